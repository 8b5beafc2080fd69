"""SQLite repositories: every statement the engine runs, grouped by the table it owns.

Each repository wraps the transaction (or read session) it belongs to; the services call
these methods and never see SQL. The statements were moved here unchanged from the engine
modules that used to hold them (core, matching, ledger, demo, bench).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from polycrowd.engine.events import Flag
from polycrowd.engine.store.base import (
    NO_FLOOR,
    AnswerWindow,
    Diagnostics,
    DuplicateKey,
    GoldResultRow,
    LanguageRow,
    LeaderRow,
    LoginRow,
    ModerationBacklog,
    OpenItemRow,
    ProjectModelRow,
    QuestionRow,
    SkillRow,
    Totals,
    VoteRow,
    WorkerSummary,
)
from polycrowd.engine.types import Assignment, Item, LedgerEntry, Project, RowLike, User

if TYPE_CHECKING:
    from polycrowd.engine.io import ProjectSpec
    from polycrowd.engine.store.sqlite.database import Tx


class SqlRunner(Protocol):
    """What the repositories run their statements on (``?`` placeholders)."""

    async def one(self, sql: str, params: Any = ()) -> Any: ...

    async def all(self, sql: str, params: Any = ()) -> list[Any]: ...

    async def value(self, sql: str, params: Any = ()) -> Any: ...

    async def run(self, sql: str, params: Any = ()) -> int: ...

    async def insert_id(self, sql: str, params: Any = ()) -> int:
        """Run an INSERT of one row; the new row's id."""
        ...

    async def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


class _Repo:
    __slots__ = ("tx",)

    def __init__(self, tx: SqlRunner) -> None:
        self.tx = tx


class UserRepo(_Repo):
    async def by_identity(self, platform: str, external_id: str) -> tuple[User, str] | None:
        """The user behind a platform identity and the chat id stored for it."""
        row = await self.tx.one(
            "SELECT u.*, i.chat_id AS known_chat FROM identities i"
            " JOIN users u ON u.id = i.user_id WHERE i.platform = ? AND i.external_id = ?",
            (platform, external_id),
        )
        return None if row is None else (User.from_row(row), str(row["known_chat"]))

    async def identity_owner(self, platform: str, external_id: str) -> int | None:
        uid = await self.tx.value(
            "SELECT user_id FROM identities WHERE platform = ? AND external_id = ?",
            (platform, external_id),
        )
        return None if uid is None else int(uid)

    async def create(
        self,
        platform: str,
        external_id: str,
        display_name: str,
        pseudonym: str,
        locale: str,
        chat_id: str,
        now: float,
    ) -> int:
        """A new user with one identity and its locale as declared, trusted language."""
        uid = await self.tx.insert_id(
            "INSERT INTO users(display_name, pseudonym, locale, created_at, last_active)"
            " VALUES (?, ?, ?, ?, ?)",
            (display_name, pseudonym, locale, now, now),
        )
        await self.tx.run(
            "INSERT INTO identities(platform, external_id, user_id, chat_id) VALUES (?, ?, ?, ?)",
            (platform, external_id, uid, chat_id),
        )
        await self.tx.run(
            "INSERT INTO user_languages(user_id, lang, declared, trusted) VALUES (?, ?, 1, 1)",
            (uid, locale),
        )
        return uid

    async def set_chat(self, platform: str, external_id: str, chat_id: str) -> None:
        await self.tx.run(
            "UPDATE identities SET chat_id = ? WHERE platform = ? AND external_id = ?",
            (chat_id, platform, external_id),
        )

    async def get(self, user_id: int) -> User | None:
        row = await self.tx.one("SELECT * FROM users WHERE id = ?", (user_id,))
        return None if row is None else User.from_row(row)

    async def by_platform(self, platform: str, external_id: str) -> User | None:
        row = await self.tx.one(
            "SELECT u.* FROM identities i JOIN users u ON u.id = i.user_id"
            " WHERE i.platform = ? AND i.external_id = ?",
            (platform, external_id),
        )
        return None if row is None else User.from_row(row)

    async def by_pseudonym(self, pseudonym: str) -> User | None:
        row = await self.tx.one("SELECT * FROM users WHERE pseudonym = ?", (pseudonym,))
        return None if row is None else User.from_row(row)

    async def chats(self, user_id: int) -> list[tuple[str, str]]:
        rows = await self.tx.all(
            "SELECT platform, chat_id FROM identities WHERE user_id = ? AND chat_id != ''",
            (user_id,),
        )
        return [(r["platform"], r["chat_id"]) for r in rows]

    async def set_locale(self, user_id: int, locale: str) -> None:
        await self.tx.run("UPDATE users SET locale = ? WHERE id = ?", (locale, user_id))

    async def set_role(self, user_id: int, role: str) -> None:
        await self.tx.run("UPDATE users SET role = ? WHERE id = ?", (role, user_id))

    async def touch(self, user_id: int, now: float) -> None:
        await self.tx.run("UPDATE users SET last_active = ? WHERE id = ?", (now, user_id))

    async def count_answer(self, user_id: int, now: float) -> None:
        await self.tx.run(
            "UPDATE users SET answers = answers + 1, last_active = ? WHERE id = ?", (now, user_id)
        )

    async def set_status(self, user_id: int, status: str, reason: str) -> None:
        await self.tx.run(
            "UPDATE users SET status = ?, status_reason = ? WHERE id = ?",
            (status, reason, user_id),
        )

    async def idle(self, cutoff: float) -> list[int]:
        rows = await self.tx.all(
            "SELECT id FROM users WHERE status = 'active' AND role = 'worker'"
            " AND erased = 0 AND last_active < ? AND (reminded_at IS NULL OR reminded_at < ?)"
            " AND EXISTS (SELECT 1 FROM projects WHERE state = 'live')",
            (cutoff, cutoff),
        )
        return [int(r["id"]) for r in rows]

    async def mark_reminded(self, user_ids: Sequence[int], now: float) -> None:
        await self.tx.many(
            "UPDATE users SET reminded_at = ? WHERE id = ?", [(now, i) for i in user_ids]
        )

    async def personal_data(self, user_id: int) -> dict[str, Any] | None:
        """Everything stored about a user, table by table (for /mydata)."""
        user = await self.tx.one("SELECT * FROM users WHERE id = ?", (user_id,))
        if user is None:
            return None
        out: dict[str, Any] = {"user": dict(user)}
        for key, sql in (
            (
                "identities",
                "SELECT platform, external_id, chat_id FROM identities WHERE user_id = ?",
            ),
            ("languages", "SELECT * FROM user_languages WHERE user_id = ?"),
            ("skills", "SELECT * FROM user_skills WHERE user_id = ?"),
            ("assignments", "SELECT * FROM assignments WHERE worker_id = ?"),
            ("answers", "SELECT * FROM answers WHERE worker_id = ?"),
            ("ledger", "SELECT * FROM ledger WHERE user_id = ?"),
            ("payouts", "SELECT * FROM payouts WHERE user_id = ?"),
            ("flags", "SELECT * FROM flags WHERE user_id = ?"),
        ):
            out[key] = [dict(r) for r in await self.tx.all(sql, (user_id,))]
        return out

    async def forget(self, user_id: int) -> None:
        """Erase personal data; answers and ledger entries stay, tied to the pseudonym."""
        tx = self.tx
        await tx.run("DELETE FROM identities WHERE user_id = ?", (user_id,))
        await tx.run("DELETE FROM user_languages WHERE user_id = ?", (user_id,))
        await tx.run("DELETE FROM link_codes WHERE user_id = ?", (user_id,))
        await tx.run("DELETE FROM tokens WHERE user_id = ?", (user_id,))
        await tx.run("UPDATE answers SET appeal_text = '' WHERE worker_id = ?", (user_id,))
        await tx.run(
            "UPDATE assignments SET state = 'expired', chat_id = ''"
            " WHERE worker_id = ? AND state = 'issued'",
            (user_id,),
        )
        await tx.run("UPDATE assignments SET chat_id = '' WHERE worker_id = ?", (user_id,))
        await tx.run(
            "UPDATE users SET display_name = '', locale = 'en', erased = 1,"
            " status = 'paused', status_reason = 'erased' WHERE id = ?",
            (user_id,),
        )

    async def merge_records(self, keep: int, drop: int) -> tuple[int, int]:
        """Fold ``drop``'s identities, languages, skills and work into ``keep``.

        Returns ``drop``'s (balance, answers); the caller moves the money through the ledger
        and then calls :meth:`retire_merged`.
        """
        tx = self.tx
        await tx.run("UPDATE identities SET user_id = ? WHERE user_id = ?", (keep, drop))
        await self._fold_languages_and_skills(keep, drop)
        await tx.run(
            "UPDATE user_skills SET mean = alpha / (alpha + beta) WHERE user_id = ?", (keep,)
        )
        # Items both accounts saw keep the older assignment; the other one is dropped.
        await tx.run(
            "DELETE FROM assignments WHERE worker_id = ? AND item_id IN"
            " (SELECT item_id FROM assignments WHERE worker_id = ?)",
            (drop, keep),
        )
        for table, col in (
            ("assignments", "worker_id"),
            ("answers", "worker_id"),
            ("flags", "user_id"),
            ("payouts", "user_id"),
            ("tokens", "user_id"),
        ):
            await tx.run(f"UPDATE {table} SET {col} = ? WHERE {col} = ?", (keep, drop))
        row = await tx.one("SELECT balance, answers FROM users WHERE id = ?", (drop,))
        return (0, 0) if row is None else (int(row["balance"]), int(row["answers"]))

    async def _fold_languages_and_skills(self, keep: int, drop: int) -> None:
        """Upsert ``drop``'s languages and skills into ``keep``'s (the evidence adds up)."""
        tx = self.tx
        await tx.run(
            "INSERT INTO user_languages(user_id, lang, declared, weight, replies, trusted)"
            " SELECT ?, lang, declared, weight, replies, trusted FROM user_languages"
            " WHERE user_id = ? AND true ON CONFLICT(user_id, lang) DO UPDATE SET"
            " declared = MAX(declared, excluded.declared), weight = weight + excluded.weight,"
            " replies = replies + excluded.replies, trusted = MAX(trusted, excluded.trusted)",
            (keep, drop),
        )
        await tx.run(
            "INSERT INTO user_skills(user_id, skill, alpha, beta, mean, gold_seen, paused, reason)"
            " SELECT ?, skill, alpha, beta, mean, gold_seen, paused, reason FROM user_skills"
            " WHERE user_id = ? AND true ON CONFLICT(user_id, skill) DO UPDATE SET"
            " alpha = alpha + excluded.alpha - 2, beta = beta + excluded.beta - 1,"
            " gold_seen = gold_seen + excluded.gold_seen, paused = MAX(paused, excluded.paused)",
            (keep, drop),
        )

    async def retire_merged(self, keep: int, drop: int, answers: int) -> None:
        tx = self.tx
        await tx.run("UPDATE users SET answers = answers + ? WHERE id = ?", (answers, keep))
        await tx.run(
            "UPDATE users SET status = 'paused', status_reason = 'merged', erased = 1,"
            " display_name = '', answers = 0 WHERE id = ?",
            (drop,),
        )
        await tx.run("DELETE FROM user_languages WHERE user_id = ?", (drop,))
        await tx.run("DELETE FROM user_skills WHERE user_id = ?", (drop,))

    async def balances(self) -> list[tuple[int, int]]:
        rows = await self.tx.all("SELECT id, balance FROM users")
        return [(int(r["id"]), int(r["balance"])) for r in rows]


class LanguageRepo(_Repo):
    async def rows(self, user_id: int) -> list[LanguageRow]:
        rows = await self.tx.all(
            "SELECT lang, declared, weight, replies, trusted FROM user_languages"
            " WHERE user_id = ?",
            (user_id,),
        )
        return [
            LanguageRow(
                str(r["lang"]),
                bool(r["declared"]),
                float(r["weight"]),
                int(r["replies"]),
                bool(r["trusted"]),
            )
            for r in rows
        ]

    async def declared(self, user_id: int) -> list[str]:
        rows = await self.tx.all(
            "SELECT lang FROM user_languages WHERE user_id = ? AND declared = 1", (user_id,)
        )
        return [str(r["lang"]) for r in rows]

    async def trusted(self, user_id: int) -> tuple[str, ...]:
        rows = await self.tx.all(
            "SELECT lang FROM user_languages WHERE user_id = ? AND trusted = 1 ORDER BY lang",
            (user_id,),
        )
        return tuple(str(r["lang"]) for r in rows)

    async def set_declared(self, user_id: int, langs: Sequence[str]) -> None:
        """Replace the declared languages (detected evidence is kept)."""
        await self.tx.run("UPDATE user_languages SET declared = 0 WHERE user_id = ?", (user_id,))
        for lang in langs:
            await self.tx.run(
                "INSERT INTO user_languages(user_id, lang, declared) VALUES (?, ?, 1)"
                " ON CONFLICT(user_id, lang) DO UPDATE SET declared = 1",
                (user_id, lang),
            )

    async def set_trusted(self, user_id: int, lang: str, trusted: bool) -> None:
        await self.tx.run(
            "UPDATE user_languages SET trusted = ? WHERE user_id = ? AND lang = ?",
            (1 if trusted else 0, user_id, lang),
        )

    async def set_evidence(self, user_id: int, lang: str, weight: float, replies: int) -> None:
        await self.tx.run(
            "INSERT INTO user_languages(user_id, lang, weight, replies) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(user_id, lang) DO UPDATE SET weight = excluded.weight,"
            " replies = excluded.replies",
            (user_id, lang, weight, replies),
        )


class SkillRepo(_Repo):
    async def get(self, user_id: int, skill: str) -> SkillRow | None:
        row = await self.tx.one(
            "SELECT alpha, beta, gold_seen, paused FROM user_skills"
            " WHERE user_id = ? AND skill = ?",
            (user_id, skill),
        )
        if row is None:
            return None
        return SkillRow(
            float(row["alpha"]), float(row["beta"]), int(row["gold_seen"]), bool(row["paused"])
        )

    async def save(
        self,
        user_id: int,
        skill: str,
        alpha: float,
        beta: float,
        mean: float,
        gold_seen: int,
        paused: bool,
        reason: str,
    ) -> None:
        """Store the posterior; an empty ``reason`` keeps the stored one."""
        await self.tx.run(
            "INSERT INTO user_skills(user_id, skill, alpha, beta, mean, gold_seen, paused, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(user_id, skill) DO UPDATE SET"
            " alpha = excluded.alpha, beta = excluded.beta, mean = excluded.mean,"
            " gold_seen = excluded.gold_seen, paused = excluded.paused,"
            " reason = CASE WHEN excluded.reason != '' THEN excluded.reason ELSE reason END",
            (user_id, skill, alpha, beta, mean, gold_seen, int(paused), reason),
        )

    async def gold_seen(self, user_id: int) -> int:
        seen = await self.tx.value(
            "SELECT COALESCE(SUM(gold_seen), 0) FROM user_skills WHERE user_id = ?", (user_id,)
        )
        return int(seen or 0)

    async def totals(self, user_id: int) -> tuple[float, float] | None:
        """(sum of alpha, sum of beta) over all skills, None without any."""
        s = await self.tx.one(
            "SELECT SUM(alpha) AS a, SUM(beta) AS b FROM user_skills WHERE user_id = ?",
            (user_id,),
        )
        if s is None or not s["a"]:
            return None
        return float(s["a"]), float(s["b"])

    async def paused_projects(self, user_id: int) -> list[tuple[str, str]]:
        rows = await self.tx.all(
            "SELECT p.name, s.reason FROM user_skills s JOIN projects p"
            " ON s.skill = 'project:' || p.id WHERE s.user_id = ? AND s.paused = 1"
            " AND p.state = 'live'",
            (user_id,),
        )
        return [(str(r["name"]), str(r["reason"])) for r in rows]


class ProjectRepo(_Repo):
    async def create(self, owner_id: int | None, spec: ProjectSpec, now: float) -> int:
        pid = await self.tx.insert_id(
            "INSERT INTO projects(owner_id, name, task_type, instructions, labels, overlap,"
            " overlap_max, confidence_target, reward, gold_ratio, qualification, min_skill,"
            " assignment_ttl, checker, target_lang, deadline, state, created_at, spec)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'draft', ?, ?)",
            (
                owner_id,
                spec.name,
                spec.task_type.value,
                json.dumps(dict(spec.instructions), ensure_ascii=False),
                json.dumps(list(spec.labels), ensure_ascii=False),
                spec.overlap,
                spec.overlap_max,
                spec.confidence_target,
                spec.reward,
                spec.gold_ratio,
                spec.qualification,
                spec.min_skill,
                spec.assignment_ttl,
                json.dumps(dict(spec.checker)),
                spec.target_lang,
                spec.deadline,
                now,
                json.dumps(spec.as_json(), ensure_ascii=False),
            ),
        )
        await self.tx.many(
            "INSERT INTO project_languages(project_id, lang) VALUES (?, ?)",
            [(pid, lang) for lang in spec.languages],
        )
        await self.tx.many(
            "INSERT INTO project_skills(project_id, skill, min_score) VALUES (?, ?, ?)",
            [(pid, s, m) for s, m in spec.skills.items()],
        )
        return pid

    async def get(self, project_id: int) -> Project | None:
        # One statement: the languages ride along as a JSON array, in insertion order.
        row = await self.tx.one(
            "SELECT p.*, (SELECT json_group_array(lang) FROM (SELECT lang"
            " FROM project_languages WHERE project_id = p.id ORDER BY rowid)) AS langs_json"
            " FROM projects p WHERE p.id = ?",
            (project_id,),
        )
        if row is None:
            return None
        return Project.from_row(row, tuple(json.loads(row["langs_json"])))

    async def ids(self, owner_id: int | None = None) -> list[int]:
        if owner_id is None:
            rows = await self.tx.all("SELECT id FROM projects ORDER BY id")
        else:
            rows = await self.tx.all(
                "SELECT id FROM projects WHERE owner_id = ? ORDER BY id", (owner_id,)
            )
        return [int(r["id"]) for r in rows]

    async def live_ids(self) -> list[int]:
        rows = await self.tx.all("SELECT id FROM projects WHERE state = 'live'")
        return [int(r["id"]) for r in rows]

    async def set_state(self, project_id: int, state: str) -> None:
        await self.tx.run("UPDATE projects SET state = ? WHERE id = ?", (state, project_id))

    async def set_checker(self, project_id: int, config: Mapping[str, Any]) -> None:
        await self.tx.run(
            "UPDATE projects SET checker = ? WHERE id = ?", (json.dumps(dict(config)), project_id)
        )

    async def set_instructions(self, project_id: int, instructions: Mapping[str, str]) -> None:
        await self.tx.run(
            "UPDATE projects SET instructions = ? WHERE id = ?",
            (json.dumps(dict(instructions), ensure_ascii=False), project_id),
        )

    async def reopen(self, project_id: int, now: float) -> None:
        """A done project whose deadline has not passed goes live again."""
        await self.tx.run(
            "UPDATE projects SET state = 'live' WHERE id = ? AND state = 'done'"
            " AND (deadline IS NULL OR deadline > ?)",
            (project_id, now),
        )

    async def gold_policy(self) -> tuple[float, int] | None:
        """(highest gold ratio, highest qualification) over live projects; None if none."""
        row = await self.tx.one(
            "SELECT MAX(gold_ratio) AS ratio, MAX(qualification) AS qual FROM projects"
            " WHERE state = 'live'"
        )
        if row is None or row["ratio"] is None:
            return None
        return float(row["ratio"] or 0.0), int(row["qual"] or 0)

    async def overdue(self, now: float) -> list[int]:
        rows = await self.tx.all(
            "SELECT id FROM projects WHERE state IN ('live', 'paused')"
            " AND deadline IS NOT NULL AND deadline < ?",
            (now,),
        )
        return [int(r["id"]) for r in rows]


class ItemRepo(_Repo):
    async def count(self, project_id: int) -> int:
        n = await self.tx.value("SELECT COUNT(*) FROM items WHERE project_id = ?", (project_id,))
        return int(n or 0)

    async def count_real(self, project_id: int) -> int:
        n = await self.tx.value(
            "SELECT COUNT(*) FROM items WHERE project_id = ? AND is_gold = 0", (project_id,)
        )
        return int(n or 0)

    async def by_external(self, project_id: int, external_id: str) -> int | None:
        item = await self.tx.value(
            "SELECT id FROM items WHERE project_id = ? AND external_id = ?",
            (project_id, external_id),
        )
        return None if item is None else int(item)

    async def insert_many(self, rows: Iterable[Sequence[Any]]) -> None:
        """(project_id, external_id, content, lang, gold, is_gold, target, created_at) rows.

        A duplicate external id raises :class:`DuplicateKey`."""
        try:
            await self.tx.many(
                "INSERT INTO items(project_id, external_id, content, lang, gold,"
                " is_gold, target, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        except Exception as exc:
            if "UNIQUE" in str(exc):
                raise DuplicateKey(str(exc)) from None
            raise

    async def get(self, item_id: int) -> Item | None:
        row = await self.tx.one("SELECT * FROM items WHERE id = ?", (item_id,))
        return None if row is None else Item.from_row(row)

    async def progress(self, item_id: int) -> tuple[int, int]:
        """(answered, target) of one item."""
        row = await self.tx.one("SELECT answered, target FROM items WHERE id = ?", (item_id,))
        assert row is not None
        return int(row["answered"]), int(row["target"])

    async def set_estimate(self, item_id: int, confidence: float, target: int, state: str) -> None:
        await self.tx.run(
            "UPDATE items SET confidence = ?, target = ?, state = ? WHERE id = ?",
            (confidence, target, state, item_id),
        )

    async def any_open(self, project_id: int) -> bool:
        left = await self.tx.value(
            "SELECT 1 FROM items WHERE project_id = ? AND state = 'open' AND is_gold = 0 LIMIT 1",
            (project_id,),
        )
        return bool(left)

    async def uncount(self, item_id: int, overlap: int) -> None:
        """One counted answer no longer counts: its slot reopens."""
        await self.tx.run(
            "UPDATE items SET answered = answered - 1, filled = filled - 1,"
            " target = MAX(target, ?), state = 'open' WHERE id = ?",
            (overlap, item_id),
        )

    async def awaiting_check(self, user_id: int, prefix: str) -> list[tuple[int, str]]:
        rows = await self.tx.all(
            "SELECT i.project_id, i.external_id FROM assignments s"
            " JOIN items i ON i.id = s.item_id"
            " WHERE s.worker_id = ? AND s.state = 'skipped' AND i.state = 'open'"
            " AND i.external_id LIKE ?",
            (user_id, prefix.replace("%", "").replace("_", "") + "%"),
        )
        return [(int(r["project_id"]), str(r["external_id"])) for r in rows]

    async def counts(self, project_id: int) -> RowLike:
        """items, gold, done, live of a project."""
        r = await self.tx.one(
            "SELECT COUNT(*) AS items, SUM(is_gold) AS gold,"
            " COUNT(*) FILTER (WHERE state = 'done' AND is_gold = 0) AS done, SUM(live) AS live"
            " FROM items WHERE project_id = ?",
            (project_id,),
        )
        assert r is not None
        return cast(RowLike, r)

    async def gold_labels(self, project_id: int) -> list[tuple[int, str]]:
        rows = await self.tx.all(
            "SELECT id, gold FROM items WHERE project_id = ? AND gold IS NOT NULL",
            (project_id,),
        )
        return [(int(r["id"]), str(r["gold"])) for r in rows]

    async def training_examples(
        self, project_id: int, confidence: float
    ) -> list[tuple[str, str | None]]:
        rows = await self.tx.all(
            "SELECT i.content, COALESCE(i.gold, r.label) AS label FROM items i"
            " LEFT JOIN results r ON r.item_id = i.id WHERE i.project_id = ?"
            " AND (i.gold IS NOT NULL OR (r.confidence >= ? AND i.state = 'done'))"
            " ORDER BY i.id",
            (project_id, confidence),
        )
        return [(str(r["content"]), r["label"]) for r in rows]

    async def with_results(self, project_id: int) -> list[RowLike]:
        """Real items of a project with their result, in id order (for the export)."""
        return list(
            await self.tx.all(
                "SELECT i.id, i.external_id, i.lang, i.gold, r.label, r.confidence,"
                " r.agreement, r.method, r.answers, r.model_version FROM items i"
                " LEFT JOIN results r ON r.item_id = i.id"
                " WHERE i.project_id = ? AND i.is_gold = 0 ORDER BY i.id",
                (project_id,),
            )
        )

    async def page_with_results(self, project_id: int, after: int, limit: int) -> list[RowLike]:
        return list(
            await self.tx.all(
                "SELECT i.id, i.external_id, i.lang, i.gold, r.label, r.confidence,"
                " r.agreement, r.method, r.answers, r.model_version FROM items i"
                " LEFT JOIN results r ON r.item_id = i.id"
                " WHERE i.project_id = ? AND i.is_gold = 0 AND i.id > ? ORDER BY i.id LIMIT ?",
                (project_id, after, limit),
            )
        )


# One branch per worker language (and per gold/non-gold when a honeypot is wanted): each is
# an index walk over ix_items_pick in (priority, filled, confidence, project_id, id) order,
# filtered by the live project, a free slot, "not seen by this worker" and the skill
# requirements, and stops at the first hit. The outer ORDER BY merges the few branch
# winners: honeypots first when wanted, then the model-in-the-loop priority (unsure items
# and model-vs-people disagreement first; 0 for every item without a model), fewest
# answers, lowest confidence, older projects first. ``:floor`` keeps newcomers off hard
# items (a range on the index) and ``:capped`` lists projects where the worker is over
# the project's max_share.
BRANCH_SQL = """
SELECT * FROM (
  SELECT i.id AS item_id, i.project_id, i.is_gold, i.priority, i.filled, i.confidence,
         p.assignment_ttl
  FROM items AS i INDEXED BY ix_items_pick
  JOIN projects AS p ON p.id = i.project_id
  WHERE i.lang = :lang{k} AND i.is_gold = {gold} AND i.state = 'open'
    AND i.priority >= :floor
    AND p.state = 'live'
    AND i.project_id NOT IN (SELECT value FROM json_each(:capped))
    AND (:project IS NULL OR i.project_id = :project)
    AND i.filled < i.target
    AND NOT EXISTS (
        SELECT 1 FROM assignments AS a WHERE a.item_id = i.id AND a.worker_id = :worker)
    AND NOT EXISTS (
        SELECT 1 FROM project_skills AS ps
        LEFT JOIN user_skills AS us ON us.user_id = :worker AND us.skill = ps.skill
        WHERE ps.project_id = p.id
          AND (us.paused = 1 OR COALESCE(us.mean, 0.5) < ps.min_score))
    AND NOT EXISTS (
        SELECT 1 FROM user_skills AS own
        WHERE own.user_id = :worker AND own.skill = 'project:' || p.id AND own.paused = 1)
  ORDER BY i.priority, i.filled, i.confidence, i.project_id, i.id
  LIMIT 1
)"""

PICK_SQL = """
INSERT INTO assignments(item_id, worker_id, project_id, issued_at, expires_at, state,
                        chat_id, platform)
SELECT c.item_id, :worker, c.project_id, :now, :now + c.assignment_ttl, 'issued', :chat,
       :platform
FROM ({branches}) AS c
ORDER BY (c.is_gold != :want_gold), c.priority, c.filled, c.confidence, c.project_id,
         c.item_id
LIMIT 1
RETURNING id
"""


@functools.cache
def pick_sql(n_langs: int, want_gold: bool) -> str:
    """The pick statement for a worker with ``n_langs`` trusted languages."""
    golds = (1, 0) if want_gold else (0,)
    branches = " UNION ALL ".join(
        BRANCH_SQL.format(k=k, gold=g) for k in range(n_langs) for g in golds
    )
    return PICK_SQL.format(branches=branches)


class AssignmentRepo(_Repo):
    async def current(self, user_id: int, now: float) -> int | None:
        aid = await self.tx.value(
            "SELECT id FROM assignments WHERE worker_id = ? AND state = 'issued'"
            " AND expires_at >= ? ORDER BY id DESC LIMIT 1",
            (user_id, now),
        )
        return None if aid is None else int(aid)

    async def get(self, assignment_id: int) -> Assignment | None:
        row = await self.tx.one("SELECT * FROM assignments WHERE id = ?", (assignment_id,))
        return None if row is None else Assignment.from_row(row)

    async def pick(
        self,
        worker_id: int,
        langs: Sequence[str],
        *,
        want_gold: bool,
        project_id: int | None,
        chat_id: str,
        platform: str,
        now: float,
        floor: float = NO_FLOOR,
        capped: Sequence[int] = (),
    ) -> int | None:
        """Claim the next item in one statement; the new assignment id or None."""
        params: dict[str, object] = {
            "worker": worker_id,
            "now": now,
            "project": project_id,
            "want_gold": 1 if want_gold else 0,
            "chat": chat_id,
            "platform": platform,
            "floor": floor,
            "capped": json.dumps([int(c) for c in capped]),
        }
        params.update({f"lang{k}": lang for k, lang in enumerate(langs)})
        row = await self.tx.one(pick_sql(len(langs), want_gold), params)
        return None if row is None else int(row["id"])

    async def state(self, assignment_id: int) -> tuple[str, int]:
        """(state, attempts)."""
        row = await self.tx.one(
            "SELECT state, attempts FROM assignments WHERE id = ?", (assignment_id,)
        )
        assert row is not None
        return str(row["state"]), int(row["attempts"])

    async def skip(self, assignment_id: int, user_id: int) -> bool:
        n = await self.tx.run(
            "UPDATE assignments SET state = 'skipped'"
            " WHERE id = ? AND worker_id = ? AND state = 'issued'",
            (assignment_id, user_id),
        )
        return n > 0

    async def answered(self, assignment_id: int) -> None:
        await self.tx.run(
            "UPDATE assignments SET state = 'answered' WHERE id = ?", (assignment_id,)
        )

    async def attempt(self, assignment_id: int, state: str) -> None:
        await self.tx.run(
            "UPDATE assignments SET attempts = attempts + 1, state = ? WHERE id = ?",
            (state, assignment_id),
        )

    async def expire_worker(self, user_id: int) -> None:
        await self.tx.run(
            "UPDATE assignments SET state = 'expired' WHERE worker_id = ? AND state = 'issued'",
            (user_id,),
        )

    async def expire_project(self, project_id: int) -> None:
        await self.tx.run(
            "UPDATE assignments SET state = 'expired' WHERE project_id = ? AND state = 'issued'",
            (project_id,),
        )

    async def expire_due(self, now: float) -> int:
        """Expire issued assignments past their deadline; their slots return to the items."""
        return await self.tx.run(
            "UPDATE assignments SET state = 'expired' WHERE state = 'issued' AND expires_at < ?",
            (now,),
        )


class AnswerRepo(_Repo):
    async def recent_payloads(self, user_id: int, project_id: int, limit: int = 24) -> list[str]:
        rows = await self.tx.all(
            "SELECT payload FROM answers WHERE worker_id = ? AND project_id = ?"
            " ORDER BY id DESC LIMIT ?",
            (user_id, project_id, limit),
        )
        return [r["payload"] for r in rows]

    async def insert(
        self,
        assignment_id: int,
        item_id: int,
        worker_id: int,
        project_id: int,
        payload: str,
        seconds: float,
        decision: str,
        score: float,
        reason: str,
        model_version: str,
        status: str,
        correct: bool | None,
        lang: str | None,
        now: float,
    ) -> int:
        return await self.tx.insert_id(
            "INSERT INTO answers(assignment_id, item_id, worker_id, project_id, payload, seconds,"
            " decision, score, reason, model_version, status, correct, lang, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                assignment_id,
                item_id,
                worker_id,
                project_id,
                payload,
                seconds,
                decision,
                score,
                reason,
                model_version,
                status,
                None if correct is None else int(correct),
                lang,
                now,
            ),
        )

    async def counted_for_item(
        self, item_id: int, skill: str, default_skill: float
    ) -> list[RowLike]:
        """id, worker_id, payload, decision, model_version, skill of an item's counted
        answers."""
        return list(
            await self.tx.all(
                "SELECT a.id, a.worker_id, a.payload, a.decision, a.model_version,"
                " COALESCE(s.mean, ?) AS skill FROM answers a"
                " LEFT JOIN user_skills s ON s.user_id = a.worker_id AND s.skill = ?"
                " WHERE a.item_id = ? AND a.status IN ('accepted', 'review')",
                (default_skill, skill, item_id),
            )
        )

    async def recent_timings(self, user_id: int, limit: int = 10) -> list[tuple[float, str]]:
        """(seconds, item text) of the worker's latest answers."""
        rows = await self.tx.all(
            "SELECT a.seconds, i.content FROM answers a JOIN items i ON i.id = a.item_id"
            " WHERE a.worker_id = ? ORDER BY a.id DESC LIMIT ?",
            (user_id, limit),
        )
        return [(float(r["seconds"]), str(r["content"])) for r in rows]

    async def with_reward(self, answer_id: int, *, open_appeal: bool = False) -> RowLike | None:
        """The answer row joined with its project's reward."""
        sql = (
            "SELECT a.*, p.reward FROM answers a JOIN projects p ON p.id = a.project_id"
            " WHERE a.id = ?"
        )
        if open_appeal:
            sql += " AND a.appeal = 'open'"
        return cast("RowLike | None", await self.tx.one(sql, (answer_id,)))

    async def set_status(self, answer_id: int, status: str, reason: str | None = None) -> None:
        if reason is None:
            await self.tx.run("UPDATE answers SET status = ? WHERE id = ?", (status, answer_id))
        else:
            await self.tx.run(
                "UPDATE answers SET status = ?, reason = ? WHERE id = ?",
                (status, reason, answer_id),
            )

    async def overrule_worker(self, user_id: int, reason: str) -> list[tuple[int, int]]:
        """Overrule a worker's counted answers on real items; (item_id, project_id) of each."""
        rows = await self.tx.all(
            "SELECT a.item_id, a.project_id FROM answers a JOIN items i ON i.id = a.item_id"
            " WHERE a.worker_id = ? AND a.status IN ('accepted', 'review') AND i.is_gold = 0",
            (user_id,),
        )
        if not rows:
            return []
        await self.tx.run(
            "UPDATE answers SET status = 'overruled', reason = ? WHERE worker_id = ?"
            " AND status IN ('accepted', 'review')",
            (reason, user_id),
        )
        return [(int(r["item_id"]), int(r["project_id"])) for r in rows]

    async def project_counts(self, project_id: int) -> RowLike:
        """ok, rej, workers of a project's answers."""
        a = await self.tx.one(
            "SELECT COUNT(*) FILTER (WHERE status IN ('accepted', 'review')) AS ok,"
            " COUNT(*) FILTER (WHERE status = 'rejected') AS rej,"
            " COUNT(DISTINCT worker_id) AS workers FROM answers WHERE project_id = ?",
            (project_id,),
        )
        assert a is not None
        return cast(RowLike, a)

    async def counted_labels(self, project_id: int) -> list[tuple[int, int, str]]:
        """(item, worker, payload) of a project's counted answers."""
        rows = await self.tx.all(
            "SELECT a.item_id, a.worker_id, a.payload FROM answers a"
            " JOIN items i ON i.id = a.item_id"
            " WHERE a.project_id = ? AND a.status IN ('accepted', 'review')",
            (project_id,),
        )
        return [(int(r["item_id"]), int(r["worker_id"]), str(r["payload"])) for r in rows]

    async def worker_counts(self, user_id: int) -> RowLike:
        """n, ok, rej, gold, gold_ok of a worker's answers."""
        r = await self.tx.one(
            "SELECT COUNT(*) AS n, COUNT(*) FILTER (WHERE status IN ('accepted', 'review')) AS ok,"
            " COUNT(*) FILTER (WHERE status = 'rejected') AS rej,"
            " COUNT(correct) AS gold, COUNT(*) FILTER (WHERE correct = 1) AS gold_ok"
            " FROM answers WHERE worker_id = ?",
            (user_id,),
        )
        assert r is not None
        return cast(RowLike, r)

    async def latest_appealable(self, user_id: int) -> int | None:
        aid = await self.tx.value(
            "SELECT id FROM answers WHERE worker_id = ? AND status IN"
            " ('rejected', 'overruled') AND appeal = 'none' ORDER BY id DESC LIMIT 1",
            (user_id,),
        )
        return None if aid is None else int(aid)

    async def own(self, answer_id: int, user_id: int) -> RowLike | None:
        row = await self.tx.one(
            "SELECT * FROM answers WHERE id = ? AND worker_id = ?", (answer_id, user_id)
        )
        return cast("RowLike | None", row)

    async def open_appeal(self, answer_id: int, text: str) -> None:
        await self.tx.run(
            "UPDATE answers SET appeal = 'open', appeal_text = ? WHERE id = ?", (text, answer_id)
        )

    async def set_appeal(self, answer_id: int, state: str) -> None:
        await self.tx.run("UPDATE answers SET appeal = ? WHERE id = ?", (state, answer_id))

    async def agreement_per_worker(self, project_id: int, confidence: float) -> list[RowLike]:
        """worker_id, n, agree with confident results, per worker of a project."""
        return list(
            await self.tx.all(
                "SELECT a.worker_id, COUNT(*) AS n,"
                " COUNT(*) FILTER (WHERE a.payload = r.label) AS agree"
                " FROM answers a JOIN results r ON r.item_id = a.item_id"
                " JOIN items i ON i.id = a.item_id"
                " WHERE a.project_id = ? AND a.status IN ('accepted', 'review')"
                " AND i.state = 'done' AND r.confidence >= ? GROUP BY a.worker_id",
                (project_id, confidence),
            )
        )

    async def identical_pairs(self, project_id: int, min_common: int) -> list[RowLike]:
        """w1, w2, common, same, against: pairs of workers with many common items."""
        return list(
            await self.tx.all(
                "SELECT a.worker_id AS w1, b.worker_id AS w2, COUNT(*) AS common,"
                " COUNT(*) FILTER (WHERE a.payload = b.payload) AS same,"
                " COUNT(*) FILTER (WHERE a.payload = b.payload"
                "  AND a.payload <> COALESCE(r.label, a.payload)) AS against"
                " FROM answers a JOIN answers b ON b.item_id = a.item_id"
                " AND b.worker_id > a.worker_id LEFT JOIN results r ON r.item_id = a.item_id"
                " WHERE a.project_id = ? AND a.status IN ('accepted', 'review')"
                " AND b.status IN ('accepted', 'review')"
                " GROUP BY a.worker_id, b.worker_id HAVING COUNT(*) >= ?",
                (project_id, min_common),
            )
        )

    async def for_export(self, project_id: int) -> list[RowLike]:
        """item_id, pseudonym, payload, status, score of a project's counted answers."""
        return list(
            await self.tx.all(
                "SELECT a.item_id, u.pseudonym, a.payload, a.status, a.score FROM answers a"
                " JOIN users u ON u.id = a.worker_id"
                " WHERE a.project_id = ? AND a.status IN ('accepted', 'review') ORDER BY a.id",
                (project_id,),
            )
        )

    async def for_export_items(self, project_id: int, first: int, last: int) -> list[RowLike]:
        return list(
            await self.tx.all(
                "SELECT a.item_id, u.pseudonym, a.payload, a.status, a.score FROM answers a"
                " JOIN users u ON u.id = a.worker_id"
                " WHERE a.item_id BETWEEN ? AND ? AND a.project_id = ?"
                " AND a.status IN ('accepted', 'review') ORDER BY a.id",
                (first, last, project_id),
            )
        )


RESULT_UPSERT = (
    "INSERT INTO results(item_id, project_id, label, method, confidence, agreement,"
    " answers, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT(item_id) DO UPDATE SET label = excluded.label,"
    " method = excluded.method, confidence = excluded.confidence,"
    " agreement = excluded.agreement, answers = excluded.answers,"
    " updated_at = excluded.updated_at"
)


class ResultRepo(_Repo):
    async def delete(self, item_id: int) -> None:
        await self.tx.run("DELETE FROM results WHERE item_id = ?", (item_id,))

    async def save_many(self, rows: Iterable[Sequence[Any]]) -> None:
        """(item_id, project_id, label, method, confidence, agreement, answers, now) rows."""
        await self.tx.many(RESULT_UPSERT, rows)

    async def save_online(
        self,
        item_id: int,
        project_id: int,
        label: str,
        confidence: float,
        agreement: float,
        answers: int,
        now: float,
        model_version: str | None,
        human_confidence: float,
    ) -> None:
        """The online estimate of one item, with the model's part in it (None: no model)."""
        await self.tx.run(
            "INSERT INTO results(item_id, project_id, label, method, confidence, agreement,"
            " answers, updated_at, model_version, human_confidence)"
            " VALUES (?, ?, ?, 'online', ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(item_id) DO UPDATE SET label = excluded.label,"
            " method = excluded.method, confidence = excluded.confidence,"
            " agreement = excluded.agreement, answers = excluded.answers,"
            " updated_at = excluded.updated_at, model_version = excluded.model_version,"
            " human_confidence = excluded.human_confidence",
            (
                item_id,
                project_id,
                label,
                confidence,
                agreement,
                answers,
                now,
                model_version,
                human_confidence,
            ),
        )

    async def means(self, project_id: int) -> tuple[float | None, float | None]:
        """(mean agreement, mean confidence) of a project's results."""
        res = await self.tx.one(
            "SELECT AVG(agreement) AS agr, AVG(confidence) AS conf FROM results"
            " WHERE project_id = ?",
            (project_id,),
        )
        assert res is not None
        return res["agr"], res["conf"]


class PrelabelRepo(_Repo):
    async def project_spec(self, project_id: int) -> str | None:
        spec = await self.tx.value("SELECT spec FROM projects WHERE id = ?", (project_id,))
        return None if spec is None else str(spec)

    async def live_specs(self) -> list[tuple[int, str]]:
        rows = await self.tx.all("SELECT id, spec FROM projects WHERE state = 'live'")
        return [(int(r["id"]), str(r["spec"] or "{}")) for r in rows]

    async def labelled(self, project_id: int, confidence: float) -> list[tuple[str, str]]:
        rows = await self.tx.all(
            "SELECT i.content, COALESCE(i.gold, r.label) AS label FROM items i"
            " LEFT JOIN results r ON r.item_id = i.id"
            " WHERE i.project_id = ? AND (i.gold IS NOT NULL"
            " OR (r.confidence >= ? AND r.answers >= 1)) ORDER BY i.id",
            (project_id, confidence),
        )
        return [(str(r["content"]), str(r["label"])) for r in rows if r["label"] is not None]

    async def contents(self, project_id: int) -> list[tuple[int, str]]:
        rows = await self.tx.all(
            "SELECT id, content FROM items WHERE project_id = ? ORDER BY id", (project_id,)
        )
        return [(int(r["id"]), str(r["content"])) for r in rows]

    async def confident_count(self, project_id: int, confidence: float) -> int:
        n = await self.tx.value(
            "SELECT COUNT(*) FROM results WHERE project_id = ? AND confidence >= ?"
            " AND answers >= 1",
            (project_id, confidence),
        )
        return int(n or 0)

    async def model(self, project_id: int) -> ProjectModelRow | None:
        m = await self.tx.one("SELECT * FROM project_models WHERE project_id = ?", (project_id,))
        if m is None:
            return None
        return ProjectModelRow(
            str(m["model_version"]),
            float(m["temperature"]),
            str(m["annotator"]),
            None if m["accuracy"] is None else float(m["accuracy"]),
            None if m["ece"] is None else float(m["ece"]),
            int(m["trained_on"]),
            int(m["confident_at_train"]),
        )

    async def save_predictions(
        self, project_id: int, model_version: str, rows: Sequence[tuple[int, str]], now: float
    ) -> None:
        await self.tx.many(
            "INSERT INTO item_predictions(item_id, project_id, model_version, probs, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(item_id) DO UPDATE SET"
            " model_version = excluded.model_version, probs = excluded.probs,"
            " created_at = excluded.created_at",
            [(i, project_id, model_version, probs, now) for i, probs in rows],
        )

    async def trust_evidence(
        self, project_id: int, confidence: float
    ) -> list[tuple[int, str | None, str | None]]:
        rows = await self.tx.all(
            "SELECT i.id, i.gold, r.label FROM items i"
            " LEFT JOIN results r ON r.item_id = i.id WHERE i.project_id = ?"
            " AND (i.gold IS NOT NULL OR r.human_confidence >= ?) ORDER BY i.id",
            (project_id, confidence),
        )
        return [(int(r["id"]), r["gold"], r["label"]) for r in rows]

    async def save_model(self, project_id: int, row: ProjectModelRow, now: float) -> None:
        await self.tx.run(
            "INSERT INTO project_models(project_id, model_version, temperature, annotator,"
            " accuracy, ece, trained_on, confident_at_train, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(project_id) DO UPDATE SET"
            " model_version = excluded.model_version, temperature = excluded.temperature,"
            " annotator = excluded.annotator, accuracy = excluded.accuracy, ece = excluded.ece,"
            " trained_on = excluded.trained_on,"
            " confident_at_train = excluded.confident_at_train,"
            " created_at = excluded.created_at",
            (
                project_id,
                row.model_version,
                row.temperature,
                row.annotator,
                row.accuracy,
                row.ece,
                row.trained_on,
                row.confident_at_train,
                now,
            ),
        )

    async def open_items(self, project_id: int) -> list[OpenItemRow]:
        rows = await self.tx.all(
            "SELECT i.id, i.answered, i.is_gold, r.label, r.agreement FROM items i"
            " LEFT JOIN results r ON r.item_id = i.id"
            " WHERE i.project_id = ? AND i.state = 'open' ORDER BY i.id",
            (project_id,),
        )
        return [
            OpenItemRow(
                int(r["id"]),
                int(r["answered"]),
                bool(r["is_gold"]),
                None if r["label"] is None else str(r["label"]),
                None if r["agreement"] is None else float(r["agreement"]),
            )
            for r in rows
        ]

    async def plan(self, rows: Sequence[tuple[float, int, int]]) -> None:
        # never below the answers and live assignments it has: a re-plan must not leave an
        # item over-assigned
        await self.tx.many(
            "UPDATE items SET priority = ?, target = MAX(?, filled) WHERE id = ?", rows
        )

    async def close_by_model(
        self,
        project_id: int,
        rows: Sequence[tuple[int, str, float]],
        model_version: str,
        now: float,
    ) -> None:
        await self.tx.many(
            "INSERT INTO results(item_id, project_id, label, method, confidence, agreement,"
            " answers, updated_at, model_version, human_confidence)"
            " VALUES (?, ?, ?, 'model', ?, 0, 0, ?, ?, 0) ON CONFLICT(item_id) DO UPDATE SET"
            " label = excluded.label, method = excluded.method,"
            " confidence = excluded.confidence, updated_at = excluded.updated_at,"
            " model_version = excluded.model_version",
            [(i, project_id, label, conf, now, model_version) for i, label, conf in rows],
        )
        await self.tx.many(
            "UPDATE items SET state = 'done', confidence = ? WHERE id = ? AND live = 0",
            [(conf, i) for i, _, conf in rows],
        )

    async def vote(self, item_id: int) -> VoteRow | None:
        row = await self.tx.one(
            "SELECT p.probs, p.model_version, m.annotator, pr.spec FROM item_predictions p"
            " JOIN project_models m ON m.project_id = p.project_id"
            " JOIN projects pr ON pr.id = p.project_id WHERE p.item_id = ?",
            (item_id,),
        )
        if row is None:
            return None
        return VoteRow(
            str(row["probs"]), str(row["model_version"]), str(row["annotator"]), str(row["spec"])
        )

    async def set_priority(self, item_id: int, priority: float) -> None:
        await self.tx.run("UPDATE items SET priority = ? WHERE id = ?", (priority, item_id))

    async def standing(self, user_id: int) -> tuple[int, float, int] | None:
        row = await self.tx.one(
            "SELECT u.answers, COALESCE(MAX(s.mean), 0) AS mean,"
            " COALESCE(SUM(s.gold_seen), 0) AS gold FROM users u"
            " LEFT JOIN user_skills s ON s.user_id = u.id WHERE u.id = ?"
            " GROUP BY u.id, u.answers",
            (user_id,),
        )
        if row is None:
            return None
        return int(row["answers"] or 0), float(row["mean"]), int(row["gold"])

    async def share(self, user_id: int, project_id: int) -> tuple[int, int]:
        row = await self.tx.one(
            "SELECT COUNT(*) AS total,"
            " COALESCE(SUM(CASE WHEN worker_id = ? THEN 1 ELSE 0 END), 0) AS mine"
            " FROM answers WHERE project_id = ? AND status IN ('accepted', 'review')",
            (user_id, project_id),
        )
        assert row is not None
        return int(row["mine"]), int(row["total"])

    async def gold_results(self, project_id: int) -> list[GoldResultRow]:
        rows = await self.tx.all(
            "SELECT i.gold, r.label, r.agreement, r.answers, p.probs FROM items i"
            " JOIN results r ON r.item_id = i.id"
            " LEFT JOIN item_predictions p ON p.item_id = i.id"
            " WHERE i.project_id = ? AND i.gold IS NOT NULL ORDER BY i.id",
            (project_id,),
        )
        return [
            GoldResultRow(
                str(r["gold"]),
                str(r["label"]),
                float(r["agreement"]),
                int(r["answers"]),
                None if r["probs"] is None else str(r["probs"]),
            )
            for r in rows
        ]

    async def answers_per_worker(self, project_id: int) -> list[int]:
        rows = await self.tx.all(
            "SELECT COUNT(*) AS n FROM answers WHERE project_id = ? AND status IN"
            " ('accepted', 'review') GROUP BY worker_id",
            (project_id,),
        )
        return [int(r["n"]) for r in rows]

    async def first_task_waits(self, project_id: int) -> list[float]:
        rows = await self.tx.all(
            "SELECT MIN(a.issued_at) - u.created_at AS wait FROM assignments a JOIN users u"
            " ON u.id = a.worker_id WHERE a.project_id = ? GROUP BY a.worker_id, u.created_at",
            (project_id,),
        )
        return [float(r["wait"]) for r in rows]

    async def model_results(self, project_id: int) -> int:
        n = await self.tx.value(
            "SELECT COUNT(*) FROM results WHERE project_id = ? AND model_version IS NOT NULL",
            (project_id,),
        )
        return int(n or 0)

    async def issue(self, item_id: int, worker_id: int, now: float) -> int:
        return await self.tx.insert_id(ISSUE_SQL, (worker_id, now, now, item_id))

    async def pick_order(self, project_id: int) -> list[int]:
        rows = await self.tx.all(
            "SELECT id FROM items WHERE project_id = ? AND state = 'open' AND is_gold = 0"
            " ORDER BY priority, filled, confidence, id",
            (project_id,),
        )
        return [int(r["id"]) for r in rows]

    async def external_ids(self, project_id: int) -> dict[str, int]:
        rows = await self.tx.all(
            "SELECT id, external_id FROM items WHERE project_id = ?", (project_id,)
        )
        return {str(r["external_id"]): int(r["id"]) for r in rows}

    async def result_labels(self, project_id: int) -> dict[int, str]:
        rows = await self.tx.all(
            "SELECT item_id, label FROM results WHERE project_id = ?", (project_id,)
        )
        return {int(r["item_id"]): str(r["label"]) for r in rows}


# Portable to PostgreSQL: the casts give its untyped parameters their types.
ISSUE_SQL = (
    "INSERT INTO assignments(item_id, worker_id, project_id, issued_at, expires_at, state)"
    " SELECT i.id, CAST(? AS BIGINT), i.project_id, CAST(? AS DOUBLE PRECISION),"
    " CAST(? AS DOUBLE PRECISION) + p.assignment_ttl, 'issued' FROM items i"
    " JOIN projects p ON p.id = i.project_id WHERE i.id = ?"
)


class CheckerStatsRepo(_Repo):
    async def observe_gold(self, project_id: int, version: str, agree: bool) -> tuple[int, int]:
        """Count one gold answer judged by ``version``; its (seen, agreed) so far."""
        await self.tx.run(
            "INSERT INTO checker_stats(project_id, model_version, seen, agree)"
            " VALUES (?, ?, 1, ?) ON CONFLICT(project_id, model_version) DO UPDATE SET"
            " seen = seen + 1, agree = agree + excluded.agree",
            (project_id, version, int(agree)),
        )
        row = await self.tx.one(
            "SELECT seen, agree FROM checker_stats WHERE project_id = ? AND model_version = ?",
            (project_id, version),
        )
        assert row is not None
        return int(row["seen"]), int(row["agree"])

    async def observe_result(self, project_id: int, version: str, agree: bool) -> None:
        await self.tx.run(
            "INSERT INTO checker_stats(project_id, model_version, result_seen,"
            " result_agree) VALUES (?, ?, 1, ?) ON CONFLICT(project_id,"
            " model_version) DO UPDATE SET result_seen = result_seen + 1,"
            " result_agree = result_agree + excluded.result_agree",
            (project_id, version, int(agree)),
        )

    async def of_project(self, project_id: int) -> list[RowLike]:
        return list(
            await self.tx.all(
                "SELECT * FROM checker_stats WHERE project_id = ? ORDER BY model_version",
                (project_id,),
            )
        )


#: The triggers that keep the ledger and its checkpoints append-only: (name, table).
LEDGER_GUARDS = (
    ("tr_ledger_no_update", "ledger"),
    ("tr_ledger_no_delete", "ledger"),
    ("tr_ledger_checkpoints_no_update", "ledger_checkpoints"),
    ("tr_ledger_checkpoints_no_delete", "ledger_checkpoints"),
)


class LedgerRepo(_Repo):
    async def lock_chain(self) -> None:
        """Serialise appends to the chain until the transaction ends.

        SQLite's BEGIN IMMEDIATE already admits one writer at a time: nothing to do."""

    async def has_ref(self, ref: str) -> bool:
        return bool(await self.tx.value("SELECT 1 FROM ledger WHERE ref = ?", (ref,)))

    async def last(self) -> tuple[int, str, str | None] | None:
        """(seq, hash, mac) of the newest entry."""
        last = await self.tx.one("SELECT seq, hash, mac FROM ledger ORDER BY seq DESC LIMIT 1")
        if last is None:
            return None
        mac = last["mac"]
        return int(last["seq"]), str(last["hash"]), None if mac is None else str(mac)

    async def insert(self, e: LedgerEntry, mac: str) -> None:
        """Write the entry with its MAC and move the user's balance by its amount."""
        await self.tx.run(
            "INSERT INTO ledger(seq, ts, user_id, kind, amount, ref, memo, prev_hash, hash, mac)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (e.seq, e.ts, e.user_id, e.kind, e.amount, e.ref, e.memo, e.prev_hash, e.hash, mac),
        )
        await self.tx.run(
            "UPDATE users SET balance = balance + ? WHERE id = ?", (e.amount, e.user_id)
        )

    async def chain(self) -> AsyncIterator[RowLike]:
        """Every entry in sequence order, streamed."""
        async with cast("Tx", self.tx).cursor(
            "SELECT seq, ts, user_id, kind, amount, ref, memo, prev_hash, hash, mac"
            " FROM ledger ORDER BY seq"
        ) as cur:
            async for row in cur:
                yield row

    async def totals(self) -> dict[str, int]:
        rows = await self.tx.all("SELECT kind, SUM(amount) AS s FROM ledger GROUP BY kind")
        return {str(r["kind"]): int(r["s"] or 0) for r in rows}

    async def add_checkpoint(self, n: int, body: str, mac: str) -> None:
        await self.tx.run(
            "INSERT INTO ledger_checkpoints(n, body, mac) VALUES (?, ?, ?)", (n, body, mac)
        )

    async def last_checkpoint(self) -> tuple[int, str, str] | None:
        row = await self.tx.one(
            "SELECT n, body, mac FROM ledger_checkpoints ORDER BY n DESC LIMIT 1"
        )
        return None if row is None else (int(row["n"]), str(row["body"]), str(row["mac"]))

    async def missing_guards(self) -> list[str]:
        rows = await self.tx.all(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'"
        )
        found = {
            str(r["name"]): str(r["tbl_name"])
            for r in rows
            if "RAISE(ABORT" in re.sub(r"\s+", "", str(r["sql"] or "")).upper()
        }
        return [name for name, table in LEDGER_GUARDS if found.get(name) != table]

    async def project_spend(self, project_id: int) -> int:
        spend = await self.tx.value(
            "SELECT COALESCE(SUM(l.amount), 0) FROM ledger l"
            " WHERE l.ref LIKE 'credit:p' || ? || ':%' OR l.ref LIKE 'reverse:p' || ? || ':%'",
            (project_id, project_id),
        )
        return int(spend or 0)

    async def earned(self, user_id: int) -> int:
        earned = await self.tx.value(
            "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE user_id = ?"
            " AND kind IN ('credit', 'bonus', 'correction', 'penalty')",
            (user_id,),
        )
        return int(earned or 0)

    async def entries(self, user_id: int | None, limit: int) -> list[LedgerEntry]:
        if user_id is None:
            rows = await self.tx.all("SELECT * FROM ledger ORDER BY seq DESC LIMIT ?", (limit,))
        else:
            rows = await self.tx.all(
                "SELECT * FROM ledger WHERE user_id = ? ORDER BY seq DESC LIMIT ?",
                (user_id, limit),
            )
        return [LedgerEntry.from_row(r) for r in rows]


class FlagRepo(_Repo):
    async def insert(
        self,
        kind: str,
        user_id: int | None,
        answer_id: int | None,
        project_id: int | None,
        evidence: Mapping[str, Any],
        now: float,
    ) -> int | None:
        """The new flag's id; None when the same flag is already open."""
        fid = await self.tx.run(
            "INSERT INTO flags(kind, user_id, answer_id, project_id, evidence, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (kind, user_id, answer_id, project_id, json.dumps(evidence), now),
        )
        changed = await self.tx.value("SELECT changes()")
        return fid if fid and changed else None

    async def open(self, limit: int) -> list[Flag]:
        rows = await self.tx.all(
            "SELECT * FROM flags WHERE state = 'open' ORDER BY id LIMIT ?", (limit,)
        )
        return [Flag.from_row(r) for r in rows]

    async def resolve_answer(
        self, answer_id: int, resolution: str, kind: str | None = None
    ) -> None:
        """Resolve the open flags on an answer (of one kind, or all)."""
        if kind is None:
            await self.tx.run(
                "UPDATE flags SET state = 'resolved', resolution = ?"
                " WHERE answer_id = ? AND state = 'open'",
                (resolution, answer_id),
            )
        else:
            await self.tx.run(
                "UPDATE flags SET state = 'resolved', resolution = ?"
                " WHERE answer_id = ? AND kind = ? AND state = 'open'",
                (resolution, answer_id, kind),
            )

    async def resolve_user(self, user_id: int, resolution: str) -> None:
        """Resolve the open flags on an account (not those on one of its answers)."""
        await self.tx.run(
            "UPDATE flags SET state = 'resolved', resolution = ?"
            " WHERE user_id = ? AND state = 'open' AND answer_id IS NULL",
            (resolution, user_id),
        )

    async def resolve(self, flag_id: int, resolution: str) -> None:
        await self.tx.run(
            "UPDATE flags SET state = 'resolved', resolution = ? WHERE id = ?",
            (resolution, flag_id),
        )


class PayoutRepo(_Repo):
    async def pending_sum(self, user_id: int) -> int:
        pending = await self.tx.value(
            "SELECT COALESCE(SUM(amount), 0) FROM payouts"
            " WHERE user_id = ? AND state = 'requested'",
            (user_id,),
        )
        return int(pending or 0)

    async def create(self, user_id: int, amount: int, now: float) -> int:
        return await self.tx.insert_id(
            "INSERT INTO payouts(user_id, amount, created_at) VALUES (?, ?, ?)",
            (user_id, amount, now),
        )

    async def pending(self) -> list[dict[str, Any]]:
        rows = await self.tx.all(
            "SELECT p.id, p.user_id, p.amount, u.pseudonym FROM payouts p"
            " JOIN users u ON u.id = p.user_id WHERE p.state = 'requested' ORDER BY p.id"
        )
        return [dict(r) for r in rows]

    async def requested(self, payout_id: int) -> tuple[int, int] | None:
        """(user_id, amount) of a payout still waiting for a decision."""
        row = await self.tx.one(
            "SELECT * FROM payouts WHERE id = ? AND state = 'requested'", (payout_id,)
        )
        return None if row is None else (int(row["user_id"]), int(row["amount"]))

    async def decide(self, payout_id: int, state: str, actor_id: int) -> None:
        await self.tx.run(
            "UPDATE payouts SET state = ?, decided_by = ? WHERE id = ?",
            (state, actor_id, payout_id),
        )


class TokenRepo(_Repo):
    async def create(self, user_id: int, action: str, payload: str, now: float) -> int:
        return await self.tx.insert_id(
            "INSERT INTO tokens(user_id, action, payload, created_at) VALUES (?, ?, ?, ?)",
            (user_id, action, payload, now),
        )

    async def get(self, token_id: int, user_id: int) -> tuple[str, str] | None:
        row = await self.tx.one(
            "SELECT action, payload FROM tokens WHERE id = ? AND user_id = ?",
            (token_id, user_id),
        )
        return None if row is None else (row["action"], row["payload"])

    async def first_delivery(self, platform: str, update_id: str, now: float) -> bool:
        """Record a delivered update; True the first time, False on a redelivery."""
        n = await self.tx.run(
            "INSERT OR IGNORE INTO processed_updates(platform, update_id, created_at)"
            " VALUES (?, ?, ?)",
            (platform, update_id, now),
        )
        changed = await self.tx.value("SELECT changes()")
        return bool(n and changed)

    async def delivered(self, platform: str, update_id: str) -> bool:
        found = await self.tx.value(
            "SELECT 1 FROM processed_updates WHERE platform = ? AND update_id = ?",
            (platform, update_id),
        )
        return found is not None


class LinkRepo(_Repo):
    async def create(self, code: str, user_id: int, platform: str, expires_at: float) -> None:
        await self.tx.run(
            "INSERT INTO link_codes(code, user_id, platform, expires_at) VALUES (?, ?, ?, ?)",
            (code, user_id, platform, expires_at),
        )

    async def get(self, code: str) -> tuple[int, float, bool] | None:
        """(user_id, expires_at, used) of a link code."""
        row = await self.tx.one("SELECT * FROM link_codes WHERE code = ?", (code,))
        if row is None:
            return None
        return int(row["user_id"]), float(row["expires_at"]), bool(row["used"])

    async def use(self, code: str) -> None:
        await self.tx.run("UPDATE link_codes SET used = 1 WHERE code = ?", (code,))


# Version 2: questions, FAQ, dashboard logins, digests, and the aggregates of reports. -------
# Portable SQL (CASE instead of summed booleans) so the PostgreSQL store reuses it.

COUNTED = "('accepted', 'review')"


def _ratio(value: Any) -> float:
    return float(value)


class QuestionRepo(_Repo):
    async def count_since(self, worker_id: int, since: float) -> int:
        n = await self.tx.value(
            "SELECT COUNT(*) FROM questions WHERE worker_id = ? AND created_at >= ?",
            (worker_id, since),
        )
        return int(n or 0)

    async def create(
        self,
        worker_id: int,
        project_id: int,
        item_id: int | None,
        lang: str,
        text: str,
        now: float,
    ) -> int:
        return await self.tx.insert_id(
            "INSERT INTO questions(worker_id, project_id, item_id, lang, text, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (worker_id, project_id, item_id, lang, text, now),
        )

    async def get(self, question_id: int) -> QuestionRow | None:
        r = await self.tx.one(
            "SELECT id, worker_id, project_id, item_id, lang, text, answer, created_at"
            " FROM questions WHERE id = ?",
            (question_id,),
        )
        if r is None:
            return None
        return QuestionRow(
            int(r["id"]),
            int(r["worker_id"]),
            int(r["project_id"]),
            None if r["item_id"] is None else int(r["item_id"]),
            str(r["lang"]),
            str(r["text"]),
            None if r["answer"] is None else str(r["answer"]),
            float(r["created_at"]),
        )

    async def answer(self, question_id: int, by: int, text: str, now: float) -> bool:
        n = await self.tx.run(
            "UPDATE questions SET answer = ?, answered_by = ?, answered_at = ? WHERE id = ?",
            (text, by, now, question_id),
        )
        return n > 0

    async def pinned(self, question_id: int) -> bool:
        v = await self.tx.value("SELECT 1 FROM faq_entries WHERE question_id = ?", (question_id,))
        return v is not None

    async def pin(
        self, project_id: int, question_id: int, lang: str, question: str, answer: str, now: float
    ) -> None:
        await self.tx.run(
            "INSERT INTO faq_entries(project_id, question_id, lang, question, answer, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (project_id, question_id, lang, question, answer, now),
        )


class DashboardRepo(_Repo):
    async def create_login(
        self, token_hash: str, user_id: int, role: str, now: float, expires_at: float
    ) -> None:
        await self.tx.run("DELETE FROM dashboard_tokens WHERE expires_at < ?", (now - 86400.0,))
        await self.tx.run(
            "INSERT INTO dashboard_tokens(token_hash, user_id, role, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (token_hash, user_id, role, now, expires_at),
        )

    async def spend_login(self, token_hash: str, now: float) -> LoginRow | None:
        row = await self.tx.one(
            "SELECT t.user_id, t.role, u.role AS current, u.status FROM dashboard_tokens t"
            " JOIN users u ON u.id = t.user_id WHERE t.token_hash = ? AND t.used_at IS NULL"
            " AND t.expires_at >= ?",
            (token_hash, now),
        )
        if row is None:
            return None
        await self.tx.run(
            "UPDATE dashboard_tokens SET used_at = ? WHERE token_hash = ?", (now, token_hash)
        )
        return LoginRow(
            int(row["user_id"]), str(row["role"]), str(row["current"]), str(row["status"])
        )

    async def create_session(
        self, session_hash: str, user_id: int, role: str, now: float, expires_at: float
    ) -> None:
        await self.tx.run("DELETE FROM dashboard_sessions WHERE expires_at < ?", (now,))
        await self.tx.run(
            "INSERT INTO dashboard_sessions(session_hash, user_id, role, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (session_hash, user_id, role, now, expires_at),
        )

    async def session(self, session_hash: str, now: float) -> tuple[int, str] | None:
        row = await self.tx.one(
            "SELECT s.user_id, s.role FROM dashboard_sessions s JOIN users u"
            " ON u.id = s.user_id WHERE s.session_hash = ? AND s.expires_at >= ?"
            " AND u.status != 'blocked' AND u.role = s.role",
            (session_hash, now),
        )
        return None if row is None else (int(row["user_id"]), str(row["role"]))

    async def end_session(self, session_hash: str) -> None:
        await self.tx.run("DELETE FROM dashboard_sessions WHERE session_hash = ?", (session_hash,))


class DigestRepo(_Repo):
    async def last(self, kind: str, target: str) -> float | None:
        v = await self.tx.value(
            "SELECT sent_at FROM digest_runs WHERE kind = ? AND target = ?", (kind, target)
        )
        return None if v is None else float(v)

    async def mark(self, kind: str, targets: Sequence[str], now: float) -> None:
        await self.tx.many(
            "INSERT INTO digest_runs(kind, target, sent_at) VALUES (?, ?, ?)"
            " ON CONFLICT(kind, target) DO UPDATE SET sent_at = excluded.sent_at",
            [(kind, t, now) for t in targets],
        )

    async def workers_due(self, active_since: float, sent_before: float) -> list[int]:
        rows = await self.tx.all(
            "SELECT DISTINCT a.worker_id FROM answers a JOIN users u ON u.id = a.worker_id"
            " LEFT JOIN digest_runs d ON d.kind = 'worker'"
            " AND d.target = CAST(a.worker_id AS TEXT)"
            " WHERE a.created_at >= ? AND u.status = 'active' AND u.erased = 0"
            " AND (d.sent_at IS NULL OR d.sent_at <= ?) ORDER BY a.worker_id",
            (active_since, sent_before),
        )
        return [int(r[0]) for r in rows]

    async def window(self, user_id: int, start: float, end: float) -> AnswerWindow:
        r = await self.tx.one(
            "SELECT COUNT(*) AS n, COUNT(correct) AS g,"
            " SUM(CASE WHEN correct = 1 THEN 1 ELSE 0 END) AS gk,"
            f" SUM(CASE WHEN status IN {COUNTED} THEN 1 ELSE 0 END) AS ok FROM answers"
            " WHERE worker_id = ? AND created_at > ? AND created_at <= ?",
            (user_id, start, end),
        )
        assert r is not None
        return AnswerWindow(
            int(r["n"] or 0), int(r["g"] or 0), int(r["gk"] or 0), int(r["ok"] or 0)
        )

    async def earned_since(self, user_id: int, since: float) -> int:
        v = await self.tx.value(
            "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE user_id = ? AND ts >= ?"
            " AND kind IN ('credit', 'bonus', 'correction', 'penalty')",
            (user_id, since),
        )
        return int(v or 0)

    async def skill_health(self, user_id: int, threshold: float) -> tuple[int, int]:
        r = await self.tx.one(
            "SELECT SUM(CASE WHEN paused = 0 AND mean >= ? THEN 1 ELSE 0 END) AS ok,"
            " SUM(CASE WHEN paused = 1 OR mean < ? THEN 1 ELSE 0 END) AS risk FROM user_skills"
            " WHERE user_id = ? AND gold_seen > 0",
            (threshold, threshold, user_id),
        )
        assert r is not None
        return int(r["ok"] or 0), int(r["risk"] or 0)

    async def backlog(self) -> ModerationBacklog:
        f = await self.tx.one(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT user_id) AS users FROM flags"
            " WHERE state = 'open'"
        )
        appeals = await self.tx.value("SELECT COUNT(*) FROM answers WHERE appeal = 'open'")
        c = await self.tx.one("SELECT SUM(seen) AS seen, SUM(agree) AS agree FROM checker_stats")
        p = await self.tx.one(
            "SELECT COUNT(*) AS n, COALESCE(SUM(amount), 0) AS total FROM payouts"
            " WHERE state = 'requested'"
        )
        assert f is not None and c is not None and p is not None
        return ModerationBacklog(
            flags=int(f["n"] or 0),
            flagged_workers=int(f["users"] or 0),
            appeals=int(appeals or 0),
            checker_gold_seen=int(c["seen"] or 0),
            checker_gold_agreed=int(c["agree"] or 0),
            payouts=int(p["n"] or 0),
            payout_total=int(p["total"] or 0),
        )


class ReportRepo(_Repo):
    async def answer_times(self, project_id: int) -> list[float]:
        rows = await self.tx.all(
            f"SELECT created_at FROM answers WHERE project_id = ? AND status IN {COUNTED}"
            " ORDER BY created_at",
            (project_id,),
        )
        return [float(r[0]) for r in rows]

    async def answers_by_language(self, project_id: int) -> list[tuple[str, int]]:
        rows = await self.tx.all(
            "SELECT i.lang, COUNT(*) AS n FROM answers a JOIN items i ON i.id = a.item_id"
            f" WHERE a.project_id = ? AND a.status IN {COUNTED} GROUP BY i.lang"
            " ORDER BY n DESC, i.lang",
            (project_id,),
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    async def gold_accuracy(self, project_id: int) -> list[float]:
        rows = await self.tx.all(
            "SELECT AVG(correct) FROM answers WHERE project_id = ? AND correct IS NOT NULL"
            " GROUP BY worker_id ORDER BY worker_id",
            (project_id,),
        )
        return [_ratio(r[0]) for r in rows]

    async def result_agreement(self, project_id: int) -> list[float]:
        rows = await self.tx.all(
            "SELECT AVG(CASE WHEN a.payload = r.label THEN 1.0 ELSE 0.0 END) FROM answers a"
            " JOIN results r ON r.item_id = a.item_id"
            f" WHERE a.project_id = ? AND a.status IN {COUNTED} GROUP BY a.worker_id"
            " ORDER BY a.worker_id",
            (project_id,),
        )
        return [_ratio(r[0]) for r in rows]

    async def confusion_gold(self, project_id: int) -> list[tuple[str, str, int]]:
        rows = await self.tx.all(
            "SELECT i.gold, a.payload, COUNT(*) FROM answers a"
            " JOIN items i ON i.id = a.item_id"
            " WHERE a.project_id = ? AND i.gold IS NOT NULL AND a.status != 'overruled'"
            " GROUP BY i.gold, a.payload ORDER BY i.gold, a.payload",
            (project_id,),
        )
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def confusion_results(self, project_id: int) -> list[tuple[str, str, int]]:
        rows = await self.tx.all(
            "SELECT r.label, a.payload, COUNT(*) FROM answers a"
            " JOIN results r ON r.item_id = a.item_id"
            f" WHERE a.project_id = ? AND a.status IN {COUNTED} GROUP BY r.label, a.payload"
            " ORDER BY r.label, a.payload",
            (project_id,),
        )
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def spend_times(self, project_id: int) -> list[tuple[float, int]]:
        rows = await self.tx.all(
            "SELECT ts, amount FROM ledger WHERE ref LIKE ? OR ref LIKE ? ORDER BY seq",
            (f"credit:p{project_id}:%", f"reverse:p{project_id}:%"),
        )
        return [(float(r[0]), int(r[1])) for r in rows]

    async def model_assist(self, project_id: int, overlap: int) -> tuple[int, int]:
        row = await self.tx.one(
            "SELECT COUNT(*),"
            " COALESCE(SUM(CASE WHEN answers < ? THEN ? - answers ELSE 0 END), 0) FROM results"
            " WHERE project_id = ? AND method LIKE '%model%'",
            (overlap, overlap, project_id),
        )
        assert row is not None
        return int(row[0] or 0), int(row[1] or 0)

    async def workers(self, project_ids: Sequence[int] | None) -> list[WorkerSummary]:
        where = ""
        params: tuple[int, ...] = ()
        if project_ids is not None:
            if not project_ids:
                return []
            marks = ", ".join("?" for _ in project_ids)
            where, params = f"WHERE a.project_id IN ({marks})", tuple(project_ids)
        rows = await self.tx.all(
            "SELECT u.pseudonym, COUNT(*) AS n,"
            f" SUM(CASE WHEN a.status IN {COUNTED} THEN 1 ELSE 0 END) AS ok,"
            " SUM(CASE WHEN a.status = 'rejected' THEN 1 ELSE 0 END) AS rej,"
            " COUNT(a.correct) AS gold, SUM(CASE WHEN a.correct = 1 THEN 1 ELSE 0 END) AS gold_ok,"
            " AVG(CASE WHEN r.label IS NULL THEN NULL WHEN a.payload = r.label THEN 1.0"
            " ELSE 0.0 END) AS agr"
            " FROM answers a JOIN users u ON u.id = a.worker_id"
            f" LEFT JOIN results r ON r.item_id = a.item_id {where}"
            " GROUP BY a.worker_id, u.pseudonym ORDER BY n DESC, u.pseudonym LIMIT 500",
            params,
        )
        return [
            WorkerSummary(
                str(r["pseudonym"]),
                int(r["n"]),
                int(r["ok"] or 0),
                int(r["rej"] or 0),
                int(r["gold"] or 0),
                int(r["gold_ok"] or 0),
                None if r["agr"] is None else _ratio(r["agr"]),
            )
            for r in rows
        ]

    async def open_appeals(self) -> list[dict[str, Any]]:
        rows = await self.tx.all(
            "SELECT a.id, a.project_id, u.pseudonym, a.payload, a.reason, a.appeal_text,"
            " a.created_at FROM answers a JOIN users u ON u.id = a.worker_id"
            " WHERE a.appeal = 'open' ORDER BY a.id LIMIT 200"
        )
        return [dict(r) for r in rows]

    async def leaderboard(self, project_id: int, opt_in_key: str, limit: int) -> list[LeaderRow]:
        rows = await self.tx.all(
            "SELECT u.id, u.pseudonym,"
            f" SUM(CASE WHEN a.status IN {COUNTED} THEN 1 ELSE 0 END) AS ok,"
            " COUNT(a.correct) AS gold, SUM(CASE WHEN a.correct = 1 THEN 1 ELSE 0 END) AS gold_ok"
            " FROM answers a JOIN users u ON u.id = a.worker_id"
            " JOIN user_state s ON s.user_id = u.id AND s.key = ? AND s.value = 'true'"
            " WHERE a.project_id = ? AND u.erased = 0 AND u.status = 'active'"
            " GROUP BY u.id, u.pseudonym ORDER BY ok DESC, gold_ok DESC, u.pseudonym LIMIT ?",
            (opt_in_key, project_id, limit),
        )
        return [
            LeaderRow(int(r[0]), str(r[1]), int(r[2] or 0), int(r[3] or 0), int(r[4] or 0))
            for r in rows
        ]

    async def latest_project(self, user_id: int) -> int | None:
        v = await self.tx.value(
            "SELECT project_id FROM answers WHERE worker_id = ? ORDER BY id DESC LIMIT 1",
            (user_id,),
        )
        return None if v is None else int(v)

    async def totals(self) -> Totals:
        answers = await self.tx.all(
            "SELECT status, COUNT(*) FROM answers GROUP BY status ORDER BY status"
        )
        credits = await self.tx.one(
            "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM ledger WHERE kind = 'credit'"
        )
        picks = await self.tx.value("SELECT COUNT(*) FROM assignments")
        live = await self.tx.value("SELECT COUNT(*) FROM assignments WHERE state = 'issued'")
        assert credits is not None
        return Totals(
            {str(r[0]): int(r[1]) for r in answers},
            int(credits[0] or 0),
            int(credits[1] or 0),
            int(picks or 0),
            int(live or 0),
        )

    async def ping(self) -> bool:
        return bool(await self.tx.value("SELECT 1") == 1)


class StateRepo(_Repo):
    """user_state: one JSON value per (user, key), e.g. a guided conversation."""

    async def get(self, user_id: int, key: str) -> tuple[str, float] | None:
        row = await self.tx.one(
            "SELECT value, updated_at FROM user_state WHERE user_id = ? AND key = ?",
            (user_id, key),
        )
        return None if row is None else (str(row["value"]), float(row["updated_at"]))

    async def put(self, user_id: int, key: str, value: str, now: float) -> None:
        await self.tx.run(
            "INSERT INTO user_state(user_id, key, value, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(user_id, key) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at",
            (user_id, key, value, now),
        )

    async def delete(self, user_id: int, key: str) -> bool:
        n = await self.tx.run(
            "DELETE FROM user_state WHERE user_id = ? AND key = ?", (user_id, key)
        )
        return n > 0

    async def expire(self, key: str, before: float) -> int:
        return await self.tx.run(
            "DELETE FROM user_state WHERE key = ? AND updated_at < ?", (key, before)
        )

    async def of_user(self, user_id: int) -> dict[str, str]:
        rows = await self.tx.all(
            "SELECT key, value FROM user_state WHERE user_id = ? ORDER BY key", (user_id,)
        )
        return {str(r[0]): str(r[1]) for r in rows}

    async def forget_user(self, user_id: int) -> int:
        return await self.tx.run("DELETE FROM user_state WHERE user_id = ?", (user_id,))


async def diagnostics(tx: SqlRunner, project_id: int | None = None) -> Diagnostics:
    """The store's invariants, counted (for the demo, the benchmarks and the tests).

    Portable SQL: the PostgreSQL store counts with this function too."""
    duplicates = await tx.value(
        "SELECT COUNT(*) FROM (SELECT 1 FROM assignments GROUP BY item_id, worker_id"
        " HAVING COUNT(*) > 1) AS d"
    )
    over = await tx.value(
        "SELECT COUNT(*) FROM items i JOIN projects p ON p.id = i.project_id"
        " WHERE i.is_gold = 0 AND (i.answered > p.overlap_max OR i.filled > i.target)"
    )
    miscounted = await tx.value(
        "SELECT COUNT(*) FROM items i WHERE i.is_gold = 0"
        " AND i.answered <> (SELECT COUNT(*) FROM answers a"
        "  WHERE a.item_id = i.id AND a.status IN ('accepted', 'review'))"
    )
    counts = await tx.one(
        "SELECT COUNT(*) AS n, COUNT(*) FILTER (WHERE state = 'answered') AS answered,"
        " COUNT(*) FILTER (WHERE state = 'issued') AS issued FROM assignments"
    )
    assert counts is not None
    answers = await tx.value(
        "SELECT COUNT(*) FROM answers WHERE status IN ('accepted', 'review', 'overruled')"
    )
    routed = await tx.value(
        "SELECT AVG(CASE WHEN EXISTS (SELECT 1 FROM user_languages l"
        " WHERE l.user_id = a.worker_id AND l.lang = i.lang AND l.trusted = 1)"
        " THEN 1.0 ELSE 0.0 END)"
        " FROM assignments a JOIN items i ON i.id = a.item_id"
    )
    credits = await tx.value("SELECT COUNT(*) FROM ledger WHERE kind = 'credit'")
    duplicate_credits = await tx.value(
        "SELECT COALESCE(SUM(n - 1), 0) FROM (SELECT a.assignment_id, COUNT(*) AS n"
        " FROM ledger l JOIN answers a ON a.id = CAST(substr(l.memo, 8) AS BIGINT)"
        " WHERE l.kind = 'credit' AND l.memo LIKE 'answer %'"
        " GROUP BY a.assignment_id HAVING COUNT(*) > 1) AS d"
    )
    blocked = await tx.value("SELECT COUNT(*) FROM users WHERE status = 'blocked'")
    flags = await tx.all("SELECT kind, COUNT(*) AS n FROM flags GROUP BY kind")
    statuses: dict[str, int] = {}
    versions: tuple[str, ...] = ()
    if project_id is not None:
        rows = await tx.all(
            "SELECT status, model_version, COUNT(*) AS n FROM answers WHERE project_id = ?"
            " GROUP BY status, model_version",
            (project_id,),
        )
        for r in rows:
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + int(r["n"])
        versions = tuple(sorted({str(r["model_version"]) for r in rows}))
    return Diagnostics(
        duplicate_assignments=int(duplicates or 0),
        over_assigned_items=int(over or 0),
        miscounted_items=int(miscounted or 0),
        assignments=int(counts["n"] or 0),
        answered_assignments=int(counts["answered"] or 0),
        issued_assignments=int(counts["issued"] or 0),
        answers=int(answers or 0),
        routed_in_worker_language=round(float(routed or 0.0), 4),
        credits=int(credits or 0),
        duplicate_credits=int(duplicate_credits or 0),
        blocked_users=int(blocked or 0),
        flags_by_kind={str(r["kind"]): int(r["n"]) for r in flags},
        answer_statuses=statuses,
        checker_versions=versions,
    )
