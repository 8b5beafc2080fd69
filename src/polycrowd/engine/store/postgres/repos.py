"""PostgreSQL repositories: the SQLite ones where the SQL is portable, overridden here where
PostgreSQL differs (GREATEST, row locks for matching and submits, an advisory
lock for the ledger chain, ON CONFLICT ... RETURNING, cursors). New ids come through the
runner's ``insert_id`` (``RETURNING id`` here, lastrowid in SQLite), so inserts are shared.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import asyncpg

from polycrowd.engine.store.base import NO_FLOOR, DuplicateKey
from polycrowd.engine.store.sqlite import repos as lite
from polycrowd.engine.types import Project, RowLike

if TYPE_CHECKING:
    from polycrowd.engine.store.postgres.database import PgTx

LEDGER_LOCK = 0x70C0_1ED6  # advisory lock key of the ledger chain


def _conn(repo: lite._Repo) -> asyncpg.Connection:
    return cast("PgTx", repo.tx).conn


class UserRepo(lite.UserRepo):
    async def _fold_languages_and_skills(self, keep: int, drop: int) -> None:
        """The upserts with GREATEST (two-argument MAX in SQLite) and the target aliased."""
        tx = self.tx
        await tx.run(
            "INSERT INTO user_languages AS t (user_id, lang, declared, weight, replies, trusted)"
            " SELECT ?::bigint, lang, declared, weight, replies, trusted FROM user_languages"
            " WHERE user_id = ? ON CONFLICT (user_id, lang) DO UPDATE SET"
            " declared = GREATEST(t.declared, excluded.declared),"
            " weight = t.weight + excluded.weight, replies = t.replies + excluded.replies,"
            " trusted = GREATEST(t.trusted, excluded.trusted)",
            (keep, drop),
        )
        await tx.run(
            "INSERT INTO user_skills AS t (user_id, skill, alpha, beta, mean, gold_seen, paused,"
            " reason) SELECT ?::bigint, skill, alpha, beta, mean, gold_seen, paused, reason"
            " FROM user_skills WHERE user_id = ? ON CONFLICT (user_id, skill) DO UPDATE SET"
            " alpha = t.alpha + excluded.alpha - 2, beta = t.beta + excluded.beta - 1,"
            " gold_seen = t.gold_seen + excluded.gold_seen,"
            " paused = GREATEST(t.paused, excluded.paused)",
            (keep, drop),
        )


class LanguageRepo(lite.LanguageRepo):
    pass


class SkillRepo(lite.SkillRepo):
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
        await self.tx.run(
            "INSERT INTO user_skills AS t (user_id, skill, alpha, beta, mean, gold_seen, paused,"
            " reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, skill) DO UPDATE SET"
            " alpha = excluded.alpha, beta = excluded.beta, mean = excluded.mean,"
            " gold_seen = excluded.gold_seen, paused = excluded.paused,"
            " reason = CASE WHEN excluded.reason <> '' THEN excluded.reason ELSE t.reason END",
            (user_id, skill, alpha, beta, mean, gold_seen, int(paused), reason),
        )

    async def paused_projects(self, user_id: int) -> list[tuple[str, str]]:
        rows = await self.tx.all(
            "SELECT p.name, s.reason FROM user_skills s JOIN projects p"
            " ON s.skill = 'project:' || p.id::text WHERE s.user_id = ? AND s.paused = 1"
            " AND p.state = 'live'",
            (user_id,),
        )
        return [(str(r["name"]), str(r["reason"])) for r in rows]


class ProjectRepo(lite.ProjectRepo):
    async def get(self, project_id: int) -> Project | None:
        row = await self.tx.one("SELECT * FROM projects WHERE id = ?", (project_id,))
        if row is None:
            return None
        langs = await self.tx.all(
            "SELECT lang FROM project_languages WHERE project_id = ? ORDER BY pos", (project_id,)
        )
        return Project.from_row(row, tuple(r["lang"] for r in langs))


class ItemRepo(lite.ItemRepo):
    async def insert_many(self, rows: Iterable[Sequence[Any]]) -> None:
        try:
            await self.tx.many(
                "INSERT INTO items(project_id, external_id, content, lang, gold,"
                " is_gold, target, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        except asyncpg.UniqueViolationError as exc:
            raise DuplicateKey(str(exc)) from None

    async def uncount(self, item_id: int, overlap: int) -> None:
        await self.tx.run(
            "UPDATE items SET answered = answered - 1, filled = filled - 1,"
            " target = GREATEST(target, ?), state = 'open' WHERE id = ?",
            (overlap, item_id),
        )


# One branch per worker language (and per gold/non-gold when a honeypot is wanted), each an
# index walk over ix_items_pick in (priority, filled, confidence, project_id, id) order that
# stops at the first free item, as in the SQLite store (priority: the model in the loop's
# pick order; a floor keeps newcomers off hard items, capped projects are skipped).
# Exactness under concurrency: the candidate row is locked (FOR UPDATE SKIP LOCKED), so two
# transactions never claim the same item at once, and a row changed by a transaction that
# committed meanwhile is re-checked against ``filled < target`` before it is locked.
BRANCH_SQL = """
SELECT i.id, i.project_id, i.is_gold, i.priority, i.filled, i.confidence, p.assignment_ttl
FROM items AS i JOIN projects AS p ON p.id = i.project_id
WHERE i.lang = ?::text AND i.is_gold = ?::int AND i.state = 'open' AND p.state = 'live'
  AND i.priority >= ?::float8
  AND NOT (i.project_id = ANY(?::bigint[]))
  AND (?::bigint IS NULL OR i.project_id = ?::bigint)
  AND i.filled < i.target
  AND NOT EXISTS (
      SELECT 1 FROM assignments AS a WHERE a.item_id = i.id AND a.worker_id = ?::bigint)
  AND NOT EXISTS (
      SELECT 1 FROM project_skills AS ps
      LEFT JOIN user_skills AS us ON us.user_id = ?::bigint AND us.skill = ps.skill
      WHERE ps.project_id = p.id
        AND (us.paused = 1 OR COALESCE(us.mean, 0.5) < ps.min_score))
  AND NOT EXISTS (
      SELECT 1 FROM user_skills AS own
      WHERE own.user_id = ?::bigint AND own.skill = 'project:' || p.id::text
        AND own.paused = 1)
ORDER BY i.priority, i.filled, i.confidence, i.project_id, i.id
LIMIT 1
FOR UPDATE OF i SKIP LOCKED
"""


class AssignmentRepo(lite.AssignmentRepo):
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
        golds = (1, 0) if want_gold else (0,)
        skip = [int(c) for c in capped]
        candidates = []
        for lang in langs:
            for gold in golds:
                row = await self.tx.one(
                    BRANCH_SQL,
                    (
                        lang,
                        gold,
                        floor,
                        skip,
                        project_id,
                        project_id,
                        worker_id,
                        worker_id,
                        worker_id,
                    ),
                )
                if row is not None:
                    candidates.append(row)
        if not candidates:
            return None
        want = 1 if want_gold else 0
        best = min(
            candidates,
            key=lambda r: (
                r["is_gold"] != want,
                r["priority"],
                r["filled"],
                r["confidence"],
                r["project_id"],
                r["id"],
            ),
        )
        aid = await self.tx.value(
            "INSERT INTO assignments(item_id, worker_id, project_id, issued_at, expires_at,"
            " state, chat_id, platform) VALUES (?, ?, ?, ?, ?, 'issued', ?, ?) RETURNING id",
            (
                best["id"],
                worker_id,
                best["project_id"],
                now,
                now + float(best["assignment_ttl"]),
                chat_id,
                platform,
            ),
        )
        return int(aid)

    async def state(self, assignment_id: int) -> tuple[str, int]:
        """(state, attempts), with the row locked: concurrent submits of one task queue up."""
        row = await self.tx.one(
            "SELECT state, attempts FROM assignments WHERE id = ? FOR UPDATE", (assignment_id,)
        )
        assert row is not None
        return str(row["state"]), int(row["attempts"])


class AnswerRepo(lite.AnswerRepo):
    pass


class ResultRepo(lite.ResultRepo):
    pass


class PrelabelRepo(lite.PrelabelRepo):
    async def plan(self, rows: Sequence[tuple[float, int, int]]) -> None:
        await self.tx.many(
            "UPDATE items SET priority = ?, target = GREATEST(?::int, filled) WHERE id = ?", rows
        )


class CheckerStatsRepo(lite.CheckerStatsRepo):
    async def observe_gold(self, project_id: int, version: str, agree: bool) -> tuple[int, int]:
        row = await self.tx.one(
            "INSERT INTO checker_stats AS t (project_id, model_version, seen, agree)"
            " VALUES (?, ?, 1, ?) ON CONFLICT (project_id, model_version) DO UPDATE SET"
            " seen = t.seen + 1, agree = t.agree + excluded.agree RETURNING seen, agree",
            (project_id, version, int(agree)),
        )
        assert row is not None
        return int(row["seen"]), int(row["agree"])

    async def observe_result(self, project_id: int, version: str, agree: bool) -> None:
        await self.tx.run(
            "INSERT INTO checker_stats AS t (project_id, model_version, result_seen,"
            " result_agree) VALUES (?, ?, 1, ?) ON CONFLICT (project_id, model_version)"
            " DO UPDATE SET result_seen = t.result_seen + 1,"
            " result_agree = t.result_agree + excluded.result_agree",
            (project_id, version, int(agree)),
        )


PG_LEDGER_GUARDS = (
    *lite.LEDGER_GUARDS,
    ("tr_ledger_no_truncate", "ledger"),
    ("tr_ledger_checkpoints_no_truncate", "ledger_checkpoints"),
)


class LedgerRepo(lite.LedgerRepo):
    async def lock_chain(self) -> None:
        """Concurrent writers (other connections, other processes) queue here until the
        appending transaction commits, so every entry links to the one before it."""
        await _conn(self).execute("SELECT pg_advisory_xact_lock($1)", LEDGER_LOCK)

    async def chain(self) -> AsyncIterator[RowLike]:
        async for row in _conn(self).cursor(
            "SELECT seq, ts, user_id, kind, amount, ref, memo, prev_hash, hash, mac"
            " FROM ledger ORDER BY seq"
        ):
            yield row

    async def missing_guards(self) -> list[str]:
        rows = await self.tx.all(
            "SELECT t.tgname, c.relname, t.tgenabled::text AS tgenabled, p.prosrc"
            " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_proc p ON p.oid = t.tgfoid"
            " WHERE NOT t.tgisinternal"
            " AND t.tgrelid IN (to_regclass('ledger'), to_regclass('ledger_checkpoints'))"
        )
        found = {
            str(r["tgname"]): str(r["relname"])
            for r in rows
            if str(r["tgenabled"]) in {"O", "A"} and "RAISE EXCEPTION" in str(r["prosrc"]).upper()
        }
        return [name for name, table in PG_LEDGER_GUARDS if found.get(name) != table]

    async def project_spend(self, project_id: int) -> int:
        spend = await self.tx.value(
            "SELECT COALESCE(SUM(l.amount), 0) FROM ledger l"
            " WHERE l.ref LIKE 'credit:p' || ?::text || ':%'"
            " OR l.ref LIKE 'reverse:p' || ?::text || ':%'",
            (str(project_id), str(project_id)),
        )
        return int(spend or 0)


class FlagRepo(lite.FlagRepo):
    async def insert(
        self,
        kind: str,
        user_id: int | None,
        answer_id: int | None,
        project_id: int | None,
        evidence: Any,
        now: float,
    ) -> int | None:
        fid = await self.tx.value(
            "INSERT INTO flags(kind, user_id, answer_id, project_id, evidence, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
            (kind, user_id, answer_id, project_id, json.dumps(evidence), now),
        )
        return None if fid is None else int(fid)


class PayoutRepo(lite.PayoutRepo):
    pass


class TokenRepo(lite.TokenRepo):
    async def first_delivery(self, platform: str, update_id: str, now: float) -> bool:
        inserted = await self.tx.value(
            "INSERT INTO processed_updates(platform, update_id, created_at) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            (platform, update_id, now),
        )
        return inserted is not None


class LinkRepo(lite.LinkRepo):
    pass


class QuestionRepo(lite.QuestionRepo):
    pass


class DashboardRepo(lite.DashboardRepo):
    pass


class DigestRepo(lite.DigestRepo):
    pass


class ReportRepo(lite.ReportRepo):
    pass


class StateRepo(lite.StateRepo):
    """The SQLite statements are portable (ON CONFLICT upsert, row counts)."""


# The store's invariants, counted: the SQLite store's statements are portable.
diagnostics = lite.diagnostics
