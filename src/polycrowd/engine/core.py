"""The engine facade: every state change the handlers, CLI and scheduler ask for.

Each public coroutine is one state change in one transaction (or a read). Nothing here
knows about chat platforms or model libraries: the checker is any object satisfying
:class:`polycrowd.engine.checking.Checker`, languages come from an injected detector.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from polycrowd.engine import ledger, loop, matching, prelabels, quality
from polycrowd.engine.aggregation import encode, item_posterior, krippendorff_alpha
from polycrowd.engine.checking import Checker, CheckRequest, Decision, Verdict
from polycrowd.engine.io import (
    InputError,
    ItemRow,
    ProjectSpec,
    read_items,
    write_results,
)
from polycrowd.engine.language import (
    Detection,
    LanguageEvidence,
    accumulate,
    count_words,
    trusted_languages,
)
from polycrowd.engine.results import aggregate_labels
from polycrowd.engine.store import Database, Tx
from polycrowd.engine.types import (
    Assignment,
    Item,
    LedgerEntry,
    Project,
    Role,
    RowLike,
    Task,
    TaskType,
    User,
)
from polycrowd.i18n import N_

log = logging.getLogger(__name__)

GOLD_TARGET = 1_000_000_000  # honeypots stay open: every worker may meet each one once
LINK_TTL = 600.0


class EngineError(Exception):
    """A request the engine refuses; ``msgid`` is a translatable reason for the user."""

    def __init__(self, msgid: str, **params: Any) -> None:
        super().__init__(msgid % params if params else msgid)
        self.msgid = msgid
        self.params = params


@dataclass(frozen=True, slots=True)
class SubmitResult:
    verdict: Verdict
    status: str  # accepted | review | rejected | retry | duplicate
    credited: int  # minor units credited by this call (0 if none)
    answer_id: int | None
    balance: int
    correct: bool | None = None  # on gold items


@dataclass(frozen=True, slots=True)
class ImportReport:
    project_id: int
    imported: int
    gold: int


@dataclass(frozen=True, slots=True)
class ProjectStatus:
    project: Project
    items: int
    gold_items: int
    done_items: int
    answers: int
    live_assignments: int
    rejected: int
    spend: int
    mean_agreement: float | None
    mean_confidence: float | None
    workers: int
    krippendorff_alpha: float | None = None  # over all counted labels (choice tasks)

    @property
    def progress(self) -> float:
        real = self.items - self.gold_items
        return self.done_items / real if real else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project.id,
            "name": self.project.name,
            "state": self.project.state,
            "items": self.items,
            "gold_items": self.gold_items,
            "done_items": self.done_items,
            "progress": round(self.progress, 4),
            "answers": self.answers,
            "live_assignments": self.live_assignments,
            "rejected": self.rejected,
            "spend": self.spend,
            "mean_agreement": self.mean_agreement,
            "mean_confidence": self.mean_confidence,
            "workers": self.workers,
            "krippendorff_alpha": self.krippendorff_alpha,
        }


@dataclass(frozen=True, slots=True)
class WorkerStats:
    answers: int
    accepted: int
    rejected: int
    gold_answered: int
    gold_correct: int
    accuracy: float  # posterior mean over all skills
    accuracy_low: float
    earnings: int
    balance: int
    languages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Flag:
    id: int
    kind: str
    user_id: int | None
    answer_id: int | None
    project_id: int | None
    evidence: Mapping[str, Any]
    created_at: float

    @classmethod
    def from_row(cls, r: RowLike) -> Flag:
        return cls(
            r["id"],
            r["kind"],
            r["user_id"],
            r["answer_id"],
            r["project_id"],
            json.loads(r["evidence"]),
            r["created_at"],
        )


@dataclass
class EngineHooks:
    """Callbacks the app wires in (e.g. post a card to the moderators' channel)."""

    on_flag: list[Callable[[Flag], Any]] = field(default_factory=list)


class Engine:
    def __init__(
        self,
        db: Database,
        checker: Checker,
        detect_language: Callable[[str], Detection],
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        hooks: EngineHooks | None = None,
    ) -> None:
        self.db = db
        self.checker = checker
        self.detect_language = detect_language
        self.rng = rng or random.Random()
        self.clock = clock
        self.hooks = hooks or EngineHooks()

    # Users ---------------------------------------------------------------------------------

    async def user_for(
        self,
        platform: str,
        external_id: str,
        display_name: str = "",
        locale: str = "en",
        chat_id: str = "",
    ) -> tuple[User, bool]:
        """The user behind a platform identity, created on first contact. (user, created)."""
        async with self.db.read() as tx:
            row = await tx.one(
                "SELECT u.*, i.chat_id AS known_chat FROM identities i"
                " JOIN users u ON u.id = i.user_id WHERE i.platform = ? AND i.external_id = ?",
                (platform, external_id),
            )
        if row is not None and (not chat_id or row["known_chat"] == chat_id):
            return User.from_row(row), False
        now = self.clock()
        async with self.db.transaction() as tx:
            uid = await tx.value(
                "SELECT user_id FROM identities WHERE platform = ? AND external_id = ?",
                (platform, external_id),
            )
            created = uid is None
            if created:
                uid = await tx.run(
                    "INSERT INTO users(display_name, pseudonym, locale, created_at, last_active)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (display_name[:100], _pseudonym(), locale, now, now),
                )
                await tx.run(
                    "INSERT INTO identities(platform, external_id, user_id, chat_id)"
                    " VALUES (?, ?, ?, ?)",
                    (platform, external_id, uid, chat_id),
                )
                await tx.run(
                    "INSERT INTO user_languages(user_id, lang, declared, trusted)"
                    " VALUES (?, ?, 1, 1)",
                    (uid, locale),
                )
            elif chat_id:
                await tx.run(
                    "UPDATE identities SET chat_id = ? WHERE platform = ? AND external_id = ?",
                    (chat_id, platform, external_id),
                )
            user = await _user(tx, int(uid))
        return user, created

    async def get_user(self, user_id: int) -> User:
        async with self.db.read() as tx:
            return await _user(tx, user_id)

    async def find_user(self, ref: str) -> User | None:
        """By id, pseudonym, or platform:external_id."""
        async with self.db.read() as tx:
            row = None
            if ":" in ref:
                platform, _, ext = ref.partition(":")
                row = await tx.one(
                    "SELECT u.* FROM identities i JOIN users u ON u.id = i.user_id"
                    " WHERE i.platform = ? AND i.external_id = ?",
                    (platform, ext),
                )
            if row is None and ref.isdigit():
                row = await tx.one("SELECT * FROM users WHERE id = ?", (int(ref),))
            if row is None:
                row = await tx.one("SELECT * FROM users WHERE pseudonym = ?", (ref,))
        return None if row is None else User.from_row(row)

    async def chats_of(self, user_id: int) -> list[tuple[str, str]]:
        """(platform, chat id) pairs where the user can be reached."""
        async with self.db.read() as tx:
            rows = await tx.all(
                "SELECT platform, chat_id FROM identities WHERE user_id = ? AND chat_id != ''",
                (user_id,),
            )
        return [(r["platform"], r["chat_id"]) for r in rows]

    async def set_languages(self, user_id: int, langs: Sequence[str]) -> tuple[str, ...]:
        """Replace the declared languages (detected evidence is kept)."""
        clean = tuple(dict.fromkeys(x.lower() for x in langs if x))
        if not clean:
            raise EngineError(N_("Choose at least one language."))
        async with self.db.transaction() as tx:
            await tx.run("UPDATE user_languages SET declared = 0 WHERE user_id = ?", (user_id,))
            for lang in clean:
                await tx.run(
                    "INSERT INTO user_languages(user_id, lang, declared) VALUES (?, ?, 1)"
                    " ON CONFLICT(user_id, lang) DO UPDATE SET declared = 1",
                    (user_id, lang),
                )
            await tx.run("UPDATE users SET locale = ? WHERE id = ?", (clean[0], user_id))
            await self._refresh_trust(tx, user_id)
            return await _trusted(tx, user_id)

    async def toggle_language(self, user_id: int, lang: str) -> tuple[str, ...]:
        async with self.db.read() as tx:
            declared = [
                r["lang"]
                for r in await tx.all(
                    "SELECT lang FROM user_languages WHERE user_id = ? AND declared = 1",
                    (user_id,),
                )
            ]
        if lang in declared:
            if len(declared) == 1:
                raise EngineError(N_("Choose at least one language."))
            declared.remove(lang)
            new = declared
        else:
            new = [*declared, lang]
        locale = (await self.get_user(user_id)).locale
        ordered = sorted(new, key=lambda x: (x != locale, x))
        return await self.set_languages(user_id, ordered)

    async def languages_of(self, user_id: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(declared, trusted) languages."""
        async with self.db.read() as tx:
            rows = await tx.all(
                "SELECT lang, declared, trusted FROM user_languages WHERE user_id = ?",
                (user_id,),
            )
        declared = tuple(sorted(r["lang"] for r in rows if r["declared"]))
        trusted = tuple(sorted(r["lang"] for r in rows if r["trusted"]))
        return declared, trusted

    async def _refresh_trust(self, tx: Tx, user_id: int) -> None:
        rows = await tx.all(
            "SELECT lang, declared, weight, replies FROM user_languages WHERE user_id = ?",
            (user_id,),
        )
        declared = [r["lang"] for r in rows if r["declared"]]
        evidence = {
            r["lang"]: LanguageEvidence(r["lang"], r["weight"], r["replies"]) for r in rows
        }
        trusted = trusted_languages(declared, evidence)
        for r in rows:
            await tx.run(
                "UPDATE user_languages SET trusted = ? WHERE user_id = ? AND lang = ?",
                (1 if r["lang"] in trusted else 0, user_id, r["lang"]),
            )

    async def set_role(self, actor_id: int, user_id: int, role: Role) -> User:
        actor = await self.get_user(actor_id)
        if not actor.role.at_least(Role.MODERATOR) or (
            role is Role.ADMIN and actor.role is not Role.ADMIN
        ):
            raise EngineError(N_("You are not allowed to do that."))
        async with self.db.transaction() as tx:
            await tx.run("UPDATE users SET role = ? WHERE id = ?", (role.value, user_id))
            return await _user(tx, user_id)

    async def bootstrap_role(self, user_id: int, role: Role) -> None:
        """Set a role without an actor: for the CLI and the configured first admin."""
        async with self.db.transaction() as tx:
            await tx.run("UPDATE users SET role = ? WHERE id = ?", (role.value, user_id))

    # Projects ------------------------------------------------------------------------------

    async def create_project(self, owner_id: int | None, spec: ProjectSpec) -> Project:
        now = self.clock()
        async with self.db.transaction() as tx:
            pid = await tx.run(
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
            await tx.many(
                "INSERT INTO project_languages(project_id, lang) VALUES (?, ?)",
                [(pid, lang) for lang in spec.languages],
            )
            await tx.many(
                "INSERT INTO project_skills(project_id, skill, min_score) VALUES (?, ?, ?)",
                [(pid, s, m) for s, m in spec.skills.items()],
            )
            return await _project(tx, pid)

    async def get_project(self, project_id: int) -> Project:
        async with self.db.read() as tx:
            return await _project(tx, project_id)

    async def projects(self, owner_id: int | None = None) -> list[Project]:
        async with self.db.read() as tx:
            if owner_id is None:
                rows = await tx.all("SELECT id FROM projects ORDER BY id")
            else:
                rows = await tx.all(
                    "SELECT id FROM projects WHERE owner_id = ? ORDER BY id", (owner_id,)
                )
            return [await _project(tx, r["id"]) for r in rows]

    async def owned_project(self, user_id: int, project_id: int) -> Project:
        project = await self.get_project(project_id)
        user = await self.get_user(user_id)
        if project.owner_id != user_id and not user.role.at_least(Role.MODERATOR):
            raise EngineError(N_("Project %(id)s is not yours."), id=project_id)
        return project

    async def import_items(
        self,
        project_id: int,
        source: str | Path | bytes,
        fmt: str | None = None,
        name: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> ImportReport:
        """Import a CSV/JSONL file in one transaction: all rows or none."""
        project = await self.get_project(project_id)
        if project.state == "done":
            raise EngineError(N_("Project %(id)s is finished."), id=project_id)
        chunks = read_items(source, project.languages, project.labels, fmt, name)
        imported = gold = 0
        now = self.clock()
        async with self.db.transaction() as tx:
            existing = await tx.value(
                "SELECT COUNT(*) FROM items WHERE project_id = ?", (project_id,)
            )
            while True:
                # Parsing runs in a worker thread, chunk by chunk: the loop stays free.
                chunk = await asyncio.to_thread(_next_chunk, chunks)
                if chunk is None:
                    break
                rows = [_item_values(project, r, now) for r in chunk]
                try:
                    await tx.many(
                        "INSERT INTO items(project_id, external_id, content, lang, gold,"
                        " is_gold, target, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                except Exception as exc:
                    if "UNIQUE" in str(exc):
                        raise InputError(
                            "an item id in the file already exists in this project;"
                            " nothing was imported"
                        ) from None
                    raise
                imported += len(rows)
                gold += sum(1 for r in chunk if r.gold is not None)
                if progress is not None:
                    progress(imported)
        log.info("project %s: imported %s items (%s before)", project_id, imported, existing)
        return ImportReport(project_id, imported, gold)

    async def set_state(self, user_id: int | None, project_id: int, state: str) -> Project:
        if user_id is not None:
            await self.owned_project(user_id, project_id)
        async with self.db.transaction() as tx:
            project = await _project(tx, project_id)
            if state == "live":
                n = await tx.value(
                    "SELECT COUNT(*) FROM items WHERE project_id = ? AND is_gold = 0",
                    (project_id,),
                )
                if not n:
                    raise EngineError(N_("Upload items before you launch the project."))
            if project.state == "done" and state != "done":
                raise EngineError(N_("Project %(id)s is finished."), id=project_id)
            await tx.run("UPDATE projects SET state = ? WHERE id = ?", (state, project_id))
            return await _project(tx, project_id)

    async def status(self, project_id: int) -> ProjectStatus:
        async with self.db.read() as tx:
            project = await _project(tx, project_id)
            r = await tx.one(
                "SELECT COUNT(*) AS items, SUM(is_gold) AS gold,"
                " SUM(state = 'done' AND is_gold = 0) AS done, SUM(live) AS live"
                " FROM items WHERE project_id = ?",
                (project_id,),
            )
            a = await tx.one(
                "SELECT SUM(status IN ('accepted', 'review')) AS ok,"
                " SUM(status = 'rejected') AS rej, COUNT(DISTINCT worker_id) AS workers"
                " FROM answers WHERE project_id = ?",
                (project_id,),
            )
            res = await tx.one(
                "SELECT AVG(agreement) AS agr, AVG(confidence) AS conf FROM results"
                " WHERE project_id = ?",
                (project_id,),
            )
            spend = await tx.value(
                "SELECT COALESCE(SUM(l.amount), 0) FROM ledger l"
                " WHERE l.ref LIKE 'credit:p' || ? || ':%' OR l.ref LIKE 'reverse:p' || ? || ':%'",
                (project_id, project_id),
            )
        assert r is not None and a is not None and res is not None
        return ProjectStatus(
            project=project,
            items=int(r["items"] or 0),
            gold_items=int(r["gold"] or 0),
            done_items=int(r["done"] or 0),
            answers=int(a["ok"] or 0),
            live_assignments=int(r["live"] or 0),
            rejected=int(a["rej"] or 0),
            spend=int(spend or 0),
            mean_agreement=None if res["agr"] is None else round(float(res["agr"]), 4),
            mean_confidence=None if res["conf"] is None else round(float(res["conf"]), 4),
            workers=int(a["workers"] or 0),
            krippendorff_alpha=await self._alpha(project),
        )

    async def checker_stats(self, project_id: int) -> dict[str, dict[str, Any]]:
        """Per model version: accuracy on gold and agreement with confident results."""
        async with self.db.read() as tx:
            rows = await tx.all(
                "SELECT * FROM checker_stats WHERE project_id = ? ORDER BY model_version",
                (project_id,),
            )

        def share(n: int, k: int) -> float | None:
            return round(k / n, 4) if n else None

        return {
            str(r["model_version"]): {
                "gold_seen": r["seen"],
                "gold_accuracy": share(r["seen"], r["agree"]),
                "results_seen": r["result_seen"],
                "result_agreement": share(r["result_seen"], r["result_agree"]),
            }
            for r in rows
        }

    async def _alpha(self, project: Project) -> float | None:
        if project.task_type not in (TaskType.CHOICE, TaskType.IMAGE):
            return None
        async with self.db.read() as tx:
            rows = await tx.all(
                "SELECT item_id, worker_id, payload FROM answers WHERE project_id = ?"
                " AND status IN ('accepted', 'review')",
                (project.id,),
            )
        rows = [r for r in rows if r["payload"] in project.labels]
        if not rows:
            return None
        enc = encode(
            [str(r["item_id"]) for r in rows],
            [str(r["worker_id"]) for r in rows],
            [str(r["payload"]) for r in rows],
            project.labels,
        )
        value = await asyncio.to_thread(krippendorff_alpha, enc.items, enc.workers, enc.labels)
        return None if np.isnan(value) else round(float(value), 4)

    # Tasks ---------------------------------------------------------------------------------

    async def current_task(self, user_id: int) -> Task | None:
        async with self.db.read() as tx:
            aid = await tx.value(
                "SELECT id FROM assignments WHERE worker_id = ? AND state = 'issued'"
                " AND expires_at >= ? ORDER BY id DESC LIMIT 1",
                (user_id, self.clock()),
            )
            return None if aid is None else await _task(tx, int(aid))

    async def next_task(
        self, user_id: int, *, chat_id: str = "", platform: str = "", project_id: int | None = None
    ) -> Task | None:
        """The worker's open task, or a newly matched one; None when nothing fits."""
        current = await self.current_task(user_id)
        if current is not None:
            return current
        now = self.clock()
        async with self.db.transaction() as tx:
            user = await _user(tx, user_id)
            if user.status != "active":
                raise EngineError(
                    N_("Your account is paused or blocked: %(reason)s"),
                    reason=user.status_reason or user.status,
                )
            want_gold = await self._want_gold(tx, user_id)
            floor, capped = await prelabels.pick_limits(tx, user_id)
            aid = await matching.pick(
                tx,
                user_id,
                want_gold=want_gold,
                project_id=project_id,
                chat_id=chat_id,
                platform=platform,
                now=now,
                floor=floor,
                capped=capped,
            )
            await tx.run("UPDATE users SET last_active = ? WHERE id = ?", (now, user_id))
            return None if aid is None else await _task(tx, aid)

    async def _want_gold(self, tx: Tx, user_id: int) -> bool:
        row = await tx.one(
            "SELECT MAX(gold_ratio) AS ratio, MAX(qualification) AS qual FROM projects"
            " WHERE state = 'live'"
        )
        if row is None or row["ratio"] is None:
            return False
        seen = await tx.value(
            "SELECT COALESCE(SUM(gold_seen), 0) FROM user_skills WHERE user_id = ?", (user_id,)
        )
        if int(seen or 0) < int(row["qual"] or 0):
            return True
        return self.rng.random() < float(row["ratio"] or 0.0)

    async def paused_projects(self, user_id: int) -> list[tuple[str, str]]:
        """(project name, reason msgid) of live projects paused for this worker."""
        async with self.db.read() as tx:
            rows = await tx.all(
                "SELECT p.name, s.reason FROM user_skills s JOIN projects p"
                " ON s.skill = 'project:' || p.id WHERE s.user_id = ? AND s.paused = 1"
                " AND p.state = 'live'",
                (user_id,),
            )
        return [(str(r["name"]), str(r["reason"])) for r in rows]

    async def skip(self, user_id: int, assignment_id: int) -> bool:
        async with self.db.transaction() as tx:
            n = await tx.run(
                "UPDATE assignments SET state = 'skipped'"
                " WHERE id = ? AND worker_id = ? AND state = 'issued'",
                (assignment_id, user_id),
            )
        return n > 0

    async def task(self, assignment_id: int) -> Task | None:
        async with self.db.read() as tx:
            return await _task(tx, assignment_id)

    async def submit(
        self, user_id: int, assignment_id: int, payload: str, seconds: float | None = None
    ) -> SubmitResult:
        """Check an answer, then record it and credit the worker in one transaction.

        The checker runs before the transaction; the transaction re-checks the assignment
        state, so a redelivered or concurrent duplicate can never be credited twice.
        """
        now = self.clock()
        async with self.db.read() as tx:
            task = await _task(tx, assignment_id)
            if task is None or task.assignment.worker_id != user_id:
                raise EngineError(N_("This task is not yours."))
            recent = [
                r["payload"]
                for r in await tx.all(
                    "SELECT payload FROM answers WHERE worker_id = ? AND project_id = ?"
                    " ORDER BY id DESC LIMIT 24",
                    (user_id, task.project.id),
                )
            ]
        a = task.assignment
        if a.state == "answered":
            balance = (await self.get_user(user_id)).balance
            verdict = Verdict(Decision.ACCEPT, 1.0, "", "duplicate")
            return SubmitResult(verdict, "duplicate", 0, None, balance)
        if a.state != "issued" or a.expires_at < now:
            raise EngineError(N_("This task has expired. Send /task for a new one."))
        payload = _normalize_payload(task.project, payload)
        took = max(0.0, now - a.issued_at) if seconds is None else seconds
        request = CheckRequest(
            project_id=task.project.id,
            task_type=task.project.task_type.value,
            labels=task.project.labels,
            item_text=task.item.content,
            item_lang=task.item.lang,
            answer=payload,
            seconds=took,
            target_lang=task.project.target_lang,
            recent_answers=tuple(recent),
            config=task.project.checker,
        )
        verdict = _in_mode(task.project, await self._check(request))
        detection = None
        if task.project.task_type in (TaskType.TEXT, TaskType.SPANS) and verdict.accepted:
            detection = self.detect_language(payload)
        async with self.db.transaction() as tx:
            return await self._record(tx, task, user_id, payload, took, verdict, detection, recent)

    async def _check(self, request: CheckRequest) -> Verdict:
        try:
            return (await self.checker.check([request]))[0]
        except Exception:  # a broken checker must never mean silent acceptance
            log.exception("checker failed; sending the answer to review")
            return Verdict(
                Decision.REVIEW, 0.5, N_("A moderator will look at this answer."), "unavailable"
            )

    async def _record(
        self,
        tx: Tx,
        task: Task,
        user_id: int,
        payload: str,
        took: float,
        verdict: Verdict,
        detection: Detection | None,
        recent: list[str],
    ) -> SubmitResult:
        now = self.clock()
        project, item = task.project, task.item
        row = await tx.one(
            "SELECT state, attempts FROM assignments WHERE id = ?", (task.assignment.id,)
        )
        assert row is not None
        if row["state"] == "answered":
            user = await _user(tx, user_id)
            return SubmitResult(verdict, "duplicate", 0, None, user.balance)
        if row["state"] != "issued":
            raise EngineError(N_("This task has expired. Send /task for a new one."))
        correct: bool | None = None
        if item.gold is not None and project.task_type.has_buttons:
            correct = _same_answer(payload, item.gold)
        if correct is not None:
            await self._observe_checker(tx, project, verdict, correct)
        if verdict.decision is Decision.REJECT:
            final = int(row["attempts"]) >= 1
            answer_id = await _insert_answer(
                tx, task, user_id, payload, took, verdict, "rejected", None, detection, now
            )
            await tx.run(
                "UPDATE assignments SET attempts = attempts + 1, state = ? WHERE id = ?",
                ("rejected" if final else "issued", task.assignment.id),
            )
            user = await _user(tx, user_id)
            status = "rejected" if final else "retry"
            return SubmitResult(verdict, status, 0, answer_id, user.balance, correct)
        status = "accepted" if verdict.decision is Decision.ACCEPT else "review"
        answer_id = await _insert_answer(
            tx, task, user_id, payload, took, verdict, status, correct, detection, now
        )
        await tx.run(
            "UPDATE assignments SET state = 'answered' WHERE id = ?", (task.assignment.id,)
        )
        await tx.run(
            "UPDATE users SET answers = answers + 1, last_active = ? WHERE id = ?", (now, user_id)
        )
        credited = 0
        if project.reward > 0:
            entry = await ledger.append(
                tx,
                user_id,
                "credit",
                project.reward,
                f"credit:p{project.id}:a{task.assignment.id}",
                memo=f"answer {answer_id}",
            )
            credited = entry.amount if entry else 0
        if correct is not None:
            await self._observe_skill(tx, user_id, project, correct, gold=True)
        if detection is not None and detection.lang:
            await self._add_language_evidence(tx, user_id, detection, payload)
        if status == "review":
            await self._flag(
                tx,
                "answer_review",
                user_id,
                answer_id,
                project.id,
                {
                    "reason": verdict.reason,
                    "score": round(verdict.score, 3),
                    "model": verdict.model_version,
                },
            )
        if item.gold is None:
            await self._update_item(tx, project, item.id)
        await self._fraud_checks(tx, user_id, project, took, item.content, [payload, *recent])
        user = await _user(tx, user_id)
        return SubmitResult(verdict, status, credited, answer_id, user.balance, correct)

    async def _observe_skill(
        self,
        tx: Tx,
        user_id: int,
        project: Project,
        correct: bool,
        *,
        gold: bool,
        weight: float = 1.0,
    ) -> None:
        skill_key = project.skill
        row = await tx.one(
            "SELECT alpha, beta, gold_seen, paused FROM user_skills"
            " WHERE user_id = ? AND skill = ?",
            (user_id, skill_key),
        )
        skill = (
            quality.Skill()
            if row is None
            else quality.Skill(row["alpha"], row["beta"], row["gold_seen"])
        )
        skill = skill.observe(correct, weight, gold)
        threshold = project.min_skill or float(project.checker.get("pause_below", 0.0))
        paused = 1 if (row is not None and row["paused"]) else 0
        reason = ""
        if not paused and quality.should_pause(skill, threshold):
            paused, reason = 1, quality.PAUSE_REASON
        await tx.run(
            "INSERT INTO user_skills(user_id, skill, alpha, beta, mean, gold_seen, paused, reason)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(user_id, skill) DO UPDATE SET"
            " alpha = excluded.alpha, beta = excluded.beta, mean = excluded.mean,"
            " gold_seen = excluded.gold_seen, paused = excluded.paused,"
            " reason = CASE WHEN excluded.reason != '' THEN excluded.reason ELSE reason END",
            (
                user_id,
                skill_key,
                skill.alpha,
                skill.beta,
                skill.mean,
                skill.gold_seen,
                paused,
                reason,
            ),
        )
        if paused and reason:
            await self._flag(
                tx,
                "skill_paused",
                user_id,
                None,
                project.id,
                {"skill": skill_key, "mean": round(skill.mean, 3), "gold_seen": skill.gold_seen},
            )

    async def _observe_checker(
        self, tx: Tx, project: Project, verdict: Verdict, correct: bool
    ) -> None:
        """Track the model on gold; below the threshold its rejections become reviews."""
        if not _is_model(verdict):
            return
        agree = (verdict.decision is Decision.ACCEPT) == correct
        await tx.run(
            "INSERT INTO checker_stats(project_id, model_version, seen, agree)"
            " VALUES (?, ?, 1, ?) ON CONFLICT(project_id, model_version) DO UPDATE SET"
            " seen = seen + 1, agree = agree + excluded.agree",
            (project.id, verdict.model_version, int(agree)),
        )
        row = await tx.one(
            "SELECT seen, agree FROM checker_stats WHERE project_id = ? AND model_version = ?",
            (project.id, verdict.model_version),
        )
        assert row is not None
        seen, agreed = int(row["seen"]), int(row["agree"])
        min_samples = int(project.checker.get("drift_min_samples", 20))
        threshold = float(project.checker.get("drift_threshold", 0.7))
        if project.checker.get("mode") == "review" or seen < min_samples:
            return
        if agreed / seen < threshold:
            config = {**project.checker, "mode": "review"}
            await tx.run(
                "UPDATE projects SET checker = ? WHERE id = ?", (json.dumps(config), project.id)
            )
            await self._flag(
                tx,
                "checker_drift",
                None,
                None,
                project.id,
                {
                    "model": verdict.model_version,
                    "gold_seen": seen,
                    "accuracy": round(agreed / seen, 3),
                    "threshold": threshold,
                },
            )

    async def _add_language_evidence(
        self, tx: Tx, user_id: int, detection: Detection, text: str
    ) -> None:
        rows = await tx.all(
            "SELECT lang, weight, replies FROM user_languages WHERE user_id = ?", (user_id,)
        )
        evidence = {
            r["lang"]: LanguageEvidence(r["lang"], r["weight"], r["replies"]) for r in rows
        }
        updated = accumulate(evidence, detection, count_words(text))
        for lang, ev in updated.items():
            await tx.run(
                "INSERT INTO user_languages(user_id, lang, weight, replies) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(user_id, lang) DO UPDATE SET weight = excluded.weight,"
                " replies = excluded.replies",
                (user_id, lang, ev.weight, ev.replies),
            )
        await self._refresh_trust(tx, user_id)

    async def _update_item(self, tx: Tx, project: Project, item_id: int) -> None:
        """Re-estimate one item after an answer; close it or widen its overlap."""
        rows = await tx.all(
            "SELECT a.worker_id, a.payload, a.decision, a.model_version,"
            " COALESCE(s.mean, ?) AS skill FROM answers a"
            " LEFT JOIN user_skills s ON s.user_id = a.worker_id AND s.skill = ?"
            " WHERE a.item_id = ? AND a.status IN ('accepted', 'review')",
            (quality.Skill().mean, project.skill, item_id),
        )
        item_row = await tx.one("SELECT answered, target FROM items WHERE id = ?", (item_id,))
        assert item_row is not None
        answered, target = int(item_row["answered"]), int(item_row["target"])
        # The model is one more voter (engine/loop.py): its earned vote is the prior.
        vote = await prelabels.model_vote(tx, project, item_id)
        label, confidence, agreement = _estimate(project, rows, vote)
        human_conf = _estimate(project, rows)[1] if vote is not None else confidence
        cfg = await prelabels.config(tx, project.id) if vote is not None else None
        done = loop.should_close(
            confidence,
            answered,
            overlap=project.overlap,
            overlap_max=project.overlap_max,
            confidence_target=project.confidence_target,
            model_used=vote is not None,
            min_human_answers=project.overlap if cfg is None else cfg.min_human_answers,
        )
        if vote is not None and not done:
            await prelabels.after_answer(tx, project, item_id, vote, label, agreement, answered)
        new_target = target
        if not done and answered >= target:
            new_target = min(project.overlap_max, target + 1)
        await tx.run(
            "UPDATE items SET confidence = ?, target = ?, state = ? WHERE id = ?",
            (confidence, new_target, "done" if done else "open", item_id),
        )
        await tx.run(
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
                project.id,
                label,
                confidence,
                agreement,
                len(rows),
                self.clock(),
                None if vote is None else vote.version,
                human_conf,
            ),
        )
        if done and project.task_type.has_buttons:
            # Agreement with a confident result is (weaker) evidence of skill, and tells how
            # often the checker model agreed with the crowd.
            for r in rows:
                if confidence >= project.confidence_target and _is_model_version(
                    str(r["model_version"])
                ):
                    agree = (r["decision"] == "accept") == _same_answer(r["payload"], label)
                    await tx.run(
                        "INSERT INTO checker_stats(project_id, model_version, result_seen,"
                        " result_agree) VALUES (?, ?, 1, ?) ON CONFLICT(project_id,"
                        " model_version) DO UPDATE SET result_seen = result_seen + 1,"
                        " result_agree = result_agree + excluded.result_agree",
                        (project.id, r["model_version"], int(agree)),
                    )
                await self._observe_skill(
                    tx,
                    int(r["worker_id"]),
                    project,
                    _same_answer(r["payload"], label),
                    gold=False,
                    weight=quality.AGREEMENT_WEIGHT,
                )
        if done:
            open_left = await tx.value(
                "SELECT 1 FROM items WHERE project_id = ? AND state = 'open' AND is_gold = 0"
                " LIMIT 1",
                (project.id,),
            )
            if not open_left:
                await tx.run("UPDATE projects SET state = 'done' WHERE id = ?", (project.id,))

    async def _fraud_checks(
        self, tx: Tx, user_id: int, project: Project, took: float, text: str, answers: list[str]
    ) -> None:
        rows = await tx.all(
            "SELECT a.seconds, i.content FROM answers a JOIN items i ON i.id = a.item_id"
            " WHERE a.worker_id = ? ORDER BY a.id DESC LIMIT 10",
            (user_id,),
        )
        durations = [float(r["seconds"]) for r in rows]
        minimums = [quality.min_seconds(r["content"]) for r in rows]
        if quality.too_fast(durations, minimums):
            await self._flag(
                tx,
                quality.FRAUD_SPEED,
                user_id,
                None,
                project.id,
                {"seconds": durations, "minimum": minimums},
            )
        if project.task_type.has_buttons and quality.same_label(answers, len(project.labels)):
            await self._flag(
                tx,
                quality.FRAUD_SAME_LABEL,
                user_id,
                None,
                project.id,
                {"label": answers[0], "run": len(answers)},
            )

    async def _flag(
        self,
        tx: Tx,
        kind: str,
        user_id: int | None,
        answer_id: int | None,
        project_id: int | None,
        evidence: Mapping[str, Any],
    ) -> None:
        now = self.clock()
        fid = await tx.run(
            "INSERT INTO flags(kind, user_id, answer_id, project_id, evidence, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (kind, user_id, answer_id, project_id, json.dumps(evidence), now),
        )
        changed = await tx.value("SELECT changes()")
        if fid and changed:
            flag = Flag(fid, kind, user_id, answer_id, project_id, evidence, now)
            for hook in self.hooks.on_flag:
                hook(flag)

    # Moderation ---------------------------------------------------------------------------

    async def open_flags(self, limit: int = 10) -> list[Flag]:
        async with self.db.read() as tx:
            rows = await tx.all(
                "SELECT * FROM flags WHERE state = 'open' ORDER BY id LIMIT ?", (limit,)
            )
        return [Flag.from_row(r) for r in rows]

    async def _require(self, actor_id: int, role: Role) -> User:
        actor = await self.get_user(actor_id)
        if not actor.role.at_least(role):
            raise EngineError(N_("You are not allowed to do that."))
        return actor

    async def moderate_answer(
        self, actor_id: int, answer_id: int, accept: bool, reason: str = ""
    ) -> str:
        """Accept keeps the credit; reject overrules it with a reversing ledger entry."""
        await self._require(actor_id, Role.MODERATOR)
        async with self.db.transaction() as tx:
            row = await tx.one(
                "SELECT a.*, p.reward FROM answers a JOIN projects p ON p.id = a.project_id"
                " WHERE a.id = ?",
                (answer_id,),
            )
            if row is None:
                raise EngineError(N_("Nothing found with that id."))
            if accept:
                if row["status"] == "review":
                    await tx.run(
                        "UPDATE answers SET status = 'accepted' WHERE id = ?", (answer_id,)
                    )
                outcome = "accepted"
            else:
                if row["status"] in ("accepted", "review"):
                    await tx.run(
                        "UPDATE answers SET status = 'overruled', reason = ? WHERE id = ?",
                        (reason or N_("A moderator rejected this answer."), answer_id),
                    )
                    if row["reward"]:
                        await ledger.append(
                            tx,
                            row["worker_id"],
                            "correction",
                            -int(row["reward"]),
                            f"reverse:p{row['project_id']}:a{row['assignment_id']}",
                            memo=f"answer {answer_id} overruled",
                        )
                    project = await _project(tx, row["project_id"])
                    await self._uncount(tx, project, int(row["item_id"]))
                outcome = "rejected"
            await tx.run(
                "UPDATE flags SET state = 'resolved', resolution = ?"
                " WHERE answer_id = ? AND state = 'open'",
                (outcome, answer_id),
            )
        return outcome

    async def set_status(
        self, actor_id: int | None, user_id: int, status: str, reason: str = ""
    ) -> User:
        if actor_id is not None:
            await self._require(actor_id, Role.MODERATOR)
        if status not in ("active", "paused", "blocked"):
            raise ValueError(status)
        async with self.db.transaction() as tx:
            await _user(tx, user_id)
            await tx.run(
                "UPDATE users SET status = ?, status_reason = ? WHERE id = ?",
                (status, reason, user_id),
            )
            if status != "active":
                await tx.run(
                    "UPDATE assignments SET state = 'expired'"
                    " WHERE worker_id = ? AND state = 'issued'",
                    (user_id,),
                )
            if status == "blocked":
                await self._discard_answers(tx, user_id)
            await tx.run(
                "UPDATE flags SET state = 'resolved', resolution = ?"
                " WHERE user_id = ? AND state = 'open' AND answer_id IS NULL",
                (status, user_id),
            )
            return await _user(tx, user_id)

    async def _discard_answers(self, tx: Tx, user_id: int) -> None:
        """A blocked account's labels stop counting: results are re-estimated without them
        and their items reopen for other workers. Money already earned is not touched."""
        rows = await tx.all(
            "SELECT a.item_id, a.project_id FROM answers a JOIN items i ON i.id = a.item_id"
            " WHERE a.worker_id = ? AND a.status IN ('accepted', 'review') AND i.is_gold = 0",
            (user_id,),
        )
        if not rows:
            return
        await tx.run(
            "UPDATE answers SET status = 'overruled', reason = ? WHERE worker_id = ?"
            " AND status IN ('accepted', 'review')",
            (N_("A moderator blocked this account."), user_id),
        )
        projects: dict[int, Project] = {}
        for r in rows:
            pid = int(r["project_id"])
            if pid not in projects:
                projects[pid] = await _project(tx, pid)
            await self._uncount(tx, projects[pid], int(r["item_id"]))

    async def _uncount(self, tx: Tx, project: Project, item_id: int) -> None:
        """One counted answer of an item no longer counts: its slot reopens."""
        await tx.run(
            "UPDATE items SET answered = answered - 1, filled = filled - 1,"
            " target = MAX(target, ?), state = 'open' WHERE id = ?",
            (project.overlap, item_id),
        )
        await self._update_item(tx, project, item_id)
        await tx.run(
            "UPDATE projects SET state = 'live' WHERE id = ? AND state = 'done'"
            " AND (deadline IS NULL OR deadline > ?)",
            (project.id, self.clock()),
        )

    async def resolve_flag(self, actor_id: int, flag_id: int, resolution: str) -> None:
        await self._require(actor_id, Role.MODERATOR)
        async with self.db.transaction() as tx:
            await tx.run(
                "UPDATE flags SET state = 'resolved', resolution = ? WHERE id = ?",
                (resolution, flag_id),
            )

    async def request_payout(self, user_id: int) -> int:
        async with self.db.transaction() as tx:
            user = await _user(tx, user_id)
            pending = await tx.value(
                "SELECT COALESCE(SUM(amount), 0) FROM payouts"
                " WHERE user_id = ? AND state = 'requested'",
                (user_id,),
            )
            amount = user.balance - int(pending or 0)
            if amount <= 0:
                raise EngineError(N_("There is nothing to pay out yet."))
            return await tx.run(
                "INSERT INTO payouts(user_id, amount, created_at) VALUES (?, ?, ?)",
                (user_id, amount, self.clock()),
            )

    async def pending_payouts(self) -> list[dict[str, Any]]:
        async with self.db.read() as tx:
            rows = await tx.all(
                "SELECT p.id, p.user_id, p.amount, u.pseudonym FROM payouts p"
                " JOIN users u ON u.id = p.user_id WHERE p.state = 'requested' ORDER BY p.id"
            )
        return [dict(r) for r in rows]

    async def decide_payout(self, actor_id: int, payout_id: int, approve: bool) -> int:
        await self._require(actor_id, Role.MODERATOR)
        async with self.db.transaction() as tx:
            row = await tx.one(
                "SELECT * FROM payouts WHERE id = ? AND state = 'requested'", (payout_id,)
            )
            if row is None:
                raise EngineError(N_("Nothing found with that id."))
            amount = int(row["amount"])
            if approve:
                user = await _user(tx, row["user_id"])
                amount = min(amount, user.balance)
                await ledger.append(
                    tx, row["user_id"], "payout", -amount, f"payout:{payout_id}", memo="approved"
                )
            await tx.run(
                "UPDATE payouts SET state = ?, decided_by = ? WHERE id = ?",
                ("approved" if approve else "denied", actor_id, payout_id),
            )
            return amount

    async def audit(self) -> ledger.AuditReport:
        return await ledger.verify(self.db)

    # Worker's own data -----------------------------------------------------------------------

    async def worker_stats(self, user_id: int) -> WorkerStats:
        async with self.db.read() as tx:
            user = await _user(tx, user_id)
            r = await tx.one(
                "SELECT COUNT(*) AS n, SUM(status IN ('accepted', 'review')) AS ok,"
                " SUM(status = 'rejected') AS rej, SUM(correct IS NOT NULL) AS gold,"
                " SUM(correct = 1) AS gold_ok FROM answers WHERE worker_id = ?",
                (user_id,),
            )
            s = await tx.one(
                "SELECT SUM(alpha) AS a, SUM(beta) AS b FROM user_skills WHERE user_id = ?",
                (user_id,),
            )
            earned = await tx.value(
                "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE user_id = ?"
                " AND kind IN ('credit', 'bonus', 'correction', 'penalty')",
                (user_id,),
            )
            trusted = await _trusted(tx, user_id)
        assert r is not None and s is not None
        skill = quality.Skill(s["a"], s["b"]) if s["a"] else quality.Skill()
        return WorkerStats(
            answers=int(r["n"] or 0),
            accepted=int(r["ok"] or 0),
            rejected=int(r["rej"] or 0),
            gold_answered=int(r["gold"] or 0),
            gold_correct=int(r["gold_ok"] or 0),
            accuracy=skill.mean,
            accuracy_low=max(0.0, skill.mean - 1.64 * skill.std),
            earnings=int(earned or 0),
            balance=user.balance,
            languages=trusted,
        )

    async def my_data(self, user_id: int) -> dict[str, Any]:
        """Everything stored about a user, as one JSON-ready dict (for /mydata)."""
        async with self.db.read() as tx:
            user = await tx.one("SELECT * FROM users WHERE id = ?", (user_id,))
            if user is None:
                raise EngineError(N_("Nothing found with that id."))
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
                out[key] = [dict(r) for r in await tx.all(sql, (user_id,))]
        return out

    async def forget(self, user_id: int) -> None:
        """Erase personal data. Answers stay (they are the requester's labels) and ledger
        entries stay, both tied only to the user's pseudonym."""
        async with self.db.transaction() as tx:
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

    async def appeal(self, user_id: int, answer_id: int | None, text: str) -> int:
        """Open an appeal on a rejected answer (the latest one when no id is given)."""
        async with self.db.transaction() as tx:
            if answer_id is None:
                answer_id = await tx.value(
                    "SELECT id FROM answers WHERE worker_id = ? AND status IN"
                    " ('rejected', 'overruled') AND appeal = 'none' ORDER BY id DESC LIMIT 1",
                    (user_id,),
                )
            row = (
                None
                if answer_id is None
                else await tx.one(
                    "SELECT * FROM answers WHERE id = ? AND worker_id = ?", (answer_id, user_id)
                )
            )
            if row is None or row["status"] not in ("rejected", "overruled"):
                raise EngineError(N_("There is no rejected answer to appeal."))
            if row["appeal"] != "none":
                raise EngineError(N_("This answer has already been appealed."))
            await tx.run(
                "UPDATE answers SET appeal = 'open', appeal_text = ? WHERE id = ?",
                (text[:1000], answer_id),
            )
            await self._flag(
                tx,
                "appeal",
                user_id,
                int(answer_id),
                row["project_id"],
                {"reason": row["reason"], "answer": row["payload"][:200], "appeal": text[:500]},
            )
            return int(answer_id)

    async def decide_appeal(self, actor_id: int, answer_id: int, uphold: bool) -> None:
        """Upholding an appeal pays the answer as if it had been accepted."""
        await self._require(actor_id, Role.MODERATOR)
        async with self.db.transaction() as tx:
            row = await tx.one(
                "SELECT a.*, p.reward FROM answers a JOIN projects p ON p.id = a.project_id"
                " WHERE a.id = ? AND a.appeal = 'open'",
                (answer_id,),
            )
            if row is None:
                raise EngineError(N_("Nothing found with that id."))
            await tx.run(
                "UPDATE answers SET appeal = ? WHERE id = ?",
                ("upheld" if uphold else "denied", answer_id),
            )
            if uphold and row["reward"]:
                await ledger.append(
                    tx,
                    row["worker_id"],
                    "bonus",
                    int(row["reward"]),
                    f"appeal:{answer_id}",
                    memo=f"appeal upheld for answer {answer_id}",
                )
            await tx.run(
                "UPDATE flags SET state = 'resolved', resolution = ?"
                " WHERE answer_id = ? AND kind = 'appeal' AND state = 'open'",
                ("upheld" if uphold else "denied", answer_id),
            )

    # Linking platforms -----------------------------------------------------------------------

    async def link_code(self, user_id: int, platform: str) -> str:
        code = "".join(self.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(8))
        async with self.db.transaction() as tx:
            await tx.run(
                "INSERT INTO link_codes(code, user_id, platform, expires_at) VALUES (?, ?, ?, ?)",
                (code, user_id, platform, self.clock() + LINK_TTL),
            )
        return code

    async def redeem_link(self, user_id: int, code: str) -> User:
        """Merge ``user_id`` into the user who made ``code``; refused codes merge nothing."""
        async with self.db.transaction() as tx:
            row = await tx.one("SELECT * FROM link_codes WHERE code = ?", (code.upper(),))
            if row is None or row["used"]:
                raise EngineError(N_("That code is not valid."))
            if row["expires_at"] < self.clock():
                raise EngineError(N_("That code has expired. Ask for a new one."))
            keep = int(row["user_id"])
            if keep == user_id:
                raise EngineError(N_("That code is not valid."))
            await tx.run("UPDATE link_codes SET used = 1 WHERE code = ?", (code.upper(),))
            await _merge_users(tx, keep, user_id)
            return await _user(tx, keep)

    # Maintenance ---------------------------------------------------------------------------

    async def expire_assignments(self) -> int:
        async with self.db.transaction() as tx:
            return await matching.expire(tx, self.clock())

    async def idle_workers(self, idle_s: float) -> list[int]:
        """Workers idle for ``idle_s`` with live work available and not reminded since."""
        cutoff = self.clock() - idle_s
        async with self.db.transaction() as tx:
            rows = await tx.all(
                "SELECT id FROM users WHERE status = 'active' AND role = 'worker'"
                " AND erased = 0 AND last_active < ? AND (reminded_at IS NULL OR reminded_at < ?)"
                " AND EXISTS (SELECT 1 FROM projects WHERE state = 'live')",
                (cutoff, cutoff),
            )
            ids = [int(r["id"]) for r in rows]
            await tx.many(
                "UPDATE users SET reminded_at = ? WHERE id = ?", [(self.clock(), i) for i in ids]
            )
        return ids

    async def close_overdue_projects(self) -> list[int]:
        async with self.db.transaction() as tx:
            rows = await tx.all(
                "SELECT id FROM projects WHERE state IN ('live', 'paused')"
                " AND deadline IS NOT NULL AND deadline < ?",
                (self.clock(),),
            )
            ids = [int(r["id"]) for r in rows]
            for pid in ids:
                await tx.run("UPDATE projects SET state = 'done' WHERE id = ?", (pid,))
                await tx.run(
                    "UPDATE assignments SET state = 'expired'"
                    " WHERE project_id = ? AND state = 'issued'",
                    (pid,),
                )
        return ids

    async def scan_fraud(self, project_id: int, min_common: int = 15) -> list[Flag]:
        """Project-wide fraud signals, flagged for the moderators with their evidence.

        Agreement with confident results far below chance, and pairs of accounts that
        answered many items identically, including where both went against the result.
        """
        project = await self.get_project(project_id)
        if not project.task_type.has_buttons:
            return []
        async with self.db.read() as tx:
            per_worker = await tx.all(
                "SELECT a.worker_id, COUNT(*) AS n, SUM(a.payload = r.label) AS agree"
                " FROM answers a JOIN results r ON r.item_id = a.item_id"
                " JOIN items i ON i.id = a.item_id"
                " WHERE a.project_id = ? AND a.status IN ('accepted', 'review')"
                " AND i.state = 'done' AND r.confidence >= ? GROUP BY a.worker_id",
                (project_id, project.confidence_target),
            )
            pairs = await tx.all(
                "SELECT a.worker_id AS w1, b.worker_id AS w2, COUNT(*) AS common,"
                " SUM(a.payload = b.payload) AS same,"
                " SUM(a.payload = b.payload AND a.payload != COALESCE(r.label, a.payload))"
                " AS against FROM answers a JOIN answers b ON b.item_id = a.item_id"
                " AND b.worker_id > a.worker_id LEFT JOIN results r ON r.item_id = a.item_id"
                " WHERE a.project_id = ? AND a.status IN ('accepted', 'review')"
                " AND b.status IN ('accepted', 'review')"
                " GROUP BY a.worker_id, b.worker_id HAVING common >= ?",
                (project_id, min_common),
            )
        found: list[Flag] = []

        def keep(flag: Flag) -> None:
            found.append(flag)

        self.hooks.on_flag.append(keep)
        try:
            async with self.db.transaction() as tx:
                for r in per_worker:
                    n, agree = int(r["n"]), int(r["agree"] or 0)
                    if quality.agreement_below_chance(agree, n, len(project.labels)):
                        await self._flag(
                            tx,
                            quality.FRAUD_LOW_AGREEMENT,
                            int(r["worker_id"]),
                            None,
                            project_id,
                            {
                                "agreement": round(agree / n, 3),
                                "answers": n,
                                "chance": round(1 / len(project.labels), 3),
                            },
                        )
                for r in pairs:
                    if r["same"] == r["common"] and int(r["against"] or 0) >= 3:
                        evidence = {
                            "accounts": [r["w1"], r["w2"]],
                            "common_items": r["common"],
                            "identical": r["same"],
                            "against_result": r["against"],
                        }
                        for uid in (r["w1"], r["w2"]):
                            await self._flag(
                                tx, quality.FRAUD_IDENTICAL, int(uid), None, project_id, evidence
                            )
        finally:
            self.hooks.on_flag.remove(keep)
        return found

    async def live_projects(self) -> list[int]:
        async with self.db.read() as tx:
            rows = await tx.all("SELECT id FROM projects WHERE state = 'live'")
        return [int(r["id"]) for r in rows]

    async def seen_update(self, platform: str, update_id: str) -> bool:
        """Record a delivered update; True if it was seen before (a redelivery)."""
        async with self.db.transaction() as tx:
            n = await tx.run(
                "INSERT OR IGNORE INTO processed_updates(platform, update_id, created_at)"
                " VALUES (?, ?, ?)",
                (platform, update_id, self.clock()),
            )
            changed = await tx.value("SELECT changes()")
        return not (n and changed)

    # Tokens behind buttons ---------------------------------------------------------------

    async def token(self, user_id: int, action: str, payload: str) -> int:
        async with self.db.transaction() as tx:
            return await tx.run(
                "INSERT INTO tokens(user_id, action, payload, created_at) VALUES (?, ?, ?, ?)",
                (user_id, action, payload, self.clock()),
            )

    async def resolve_token(self, token_id: int, user_id: int) -> tuple[str, str] | None:
        async with self.db.read() as tx:
            row = await tx.one(
                "SELECT action, payload FROM tokens WHERE id = ? AND user_id = ?",
                (token_id, user_id),
            )
        return None if row is None else (row["action"], row["payload"])

    # Results -----------------------------------------------------------------------------

    async def aggregate_project(self, project_id: int, method: str = "auto") -> dict[str, Any]:
        """Re-aggregate every answered item of a project with a batch method."""
        project = await self.get_project(project_id)
        async with self.db.read() as tx:
            rows = await tx.all(
                "SELECT a.item_id, a.worker_id, a.payload FROM answers a"
                " JOIN items i ON i.id = a.item_id"
                " WHERE a.project_id = ? AND a.status IN ('accepted', 'review')",
                (project_id,),
            )
            gold_rows = await tx.all(
                "SELECT id, gold FROM items WHERE project_id = ? AND gold IS NOT NULL",
                (project_id,),
            )
        if not rows:
            return {"method": method, "items": 0}
        if not project.task_type.has_buttons or project.task_type is TaskType.MULTI:
            return {"method": "online", "items": len({r["item_id"] for r in rows})}
        out = await asyncio.to_thread(
            aggregate_labels,
            [str(r["item_id"]) for r in rows],
            [str(r["worker_id"]) for r in rows],
            [str(r["payload"]) for r in rows],
            method,
            {str(r["id"]): str(r["gold"]) for r in gold_rows},
            project.labels,
        )
        now = self.clock()
        async with self.db.transaction() as tx:
            gold_ids = {str(r["id"]) for r in gold_rows}
            await tx.many(
                "INSERT INTO results(item_id, project_id, label, method, confidence, agreement,"
                " answers, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(item_id) DO UPDATE SET label = excluded.label,"
                " method = excluded.method, confidence = excluded.confidence,"
                " agreement = excluded.agreement, answers = excluded.answers,"
                " updated_at = excluded.updated_at",
                [
                    (
                        int(item),
                        project_id,
                        r.label,
                        r.method,
                        r.confidence,
                        r.agreement,
                        r.answers,
                        now,
                    )
                    for item, r in out.results.items()
                    if item not in gold_ids
                ],
            )
        return {"method": out.method, "items": len(out.results), "alpha": out.alpha}

    async def training_examples(self, project_id: int) -> list[tuple[str, str]]:
        """(item text, label) from gold items and confident results, for the checker."""
        async with self.db.read() as tx:
            project = await _project(tx, project_id)
            rows = await tx.all(
                "SELECT i.content, COALESCE(i.gold, r.label) AS label FROM items i"
                " LEFT JOIN results r ON r.item_id = i.id WHERE i.project_id = ?"
                " AND (i.gold IS NOT NULL OR (r.confidence >= ? AND i.state = 'done'))"
                " ORDER BY i.id",
                (project_id, project.confidence_target),
            )
        return [(str(r["content"]), str(r["label"])) for r in rows if r["label"]]

    async def update_checker_config(self, project_id: int, config: Mapping[str, Any]) -> None:
        async with self.db.transaction() as tx:
            await _project(tx, project_id)
            await tx.run(
                "UPDATE projects SET checker = ? WHERE id = ?",
                (json.dumps(dict(config)), project_id),
            )

    async def export_rows(self, project_id: int) -> list[dict[str, Any]]:
        async with self.db.read() as tx:
            items = await tx.all(
                "SELECT i.id, i.external_id, i.lang, i.gold, r.label, r.confidence,"
                " r.agreement, r.method, r.answers, r.model_version FROM items i"
                " LEFT JOIN results r ON r.item_id = i.id"
                " WHERE i.project_id = ? AND i.is_gold = 0 ORDER BY i.id",
                (project_id,),
            )
            answers = await tx.all(
                "SELECT a.item_id, u.pseudonym, a.payload, a.status, a.score FROM answers a"
                " JOIN users u ON u.id = a.worker_id"
                " WHERE a.project_id = ? AND a.status IN ('accepted', 'review') ORDER BY a.id",
                (project_id,),
            )
        per_item: dict[int, list[dict[str, Any]]] = {}
        for a in answers:
            per_item.setdefault(int(a["item_id"]), []).append(
                {
                    "worker": a["pseudonym"],
                    "answer": a["payload"],
                    "status": a["status"],
                    "checker_score": round(float(a["score"]), 4),
                }
            )
        return [
            {
                "item": r["external_id"],
                "lang": r["lang"],
                "label": r["label"],
                "confidence": None if r["confidence"] is None else round(r["confidence"], 4),
                "agreement": None if r["agreement"] is None else round(r["agreement"], 4),
                "method": r["method"],
                "answers": r["answers"] or 0,
                "model": r["model_version"],
                "gold": r["gold"],
                "worker_answers": per_item.get(int(r["id"]), []),
            }
            for r in items
        ]

    async def export(self, project_id: int, out: IO[str], fmt: str = "csv") -> int:
        rows = await self.export_rows(project_id)
        return await asyncio.to_thread(write_results, rows, out, fmt)

    async def ledger_entries(
        self, user_id: int | None = None, limit: int = 50
    ) -> list[LedgerEntry]:
        async with self.db.read() as tx:
            if user_id is None:
                rows = await tx.all("SELECT * FROM ledger ORDER BY seq DESC LIMIT ?", (limit,))
            else:
                rows = await tx.all(
                    "SELECT * FROM ledger WHERE user_id = ? ORDER BY seq DESC LIMIT ?",
                    (user_id, limit),
                )
        return [LedgerEntry.from_row(r) for r in rows]


# Helpers ---------------------------------------------------------------------------------------


def _pseudonym() -> str:
    return "w-" + secrets.token_hex(5)


def _next_chunk(chunks: Iterator[list[ItemRow]]) -> list[ItemRow] | None:
    return next(chunks, None)


def _item_values(project: Project, r: ItemRow, now: float) -> tuple[Any, ...]:
    is_gold = r.gold is not None
    target = GOLD_TARGET if is_gold else project.overlap
    return (project.id, r.external_id, r.content, r.lang, r.gold, int(is_gold), target, now)


def _normalize_payload(project: Project, payload: str) -> str:
    text = payload.strip()
    if project.task_type is TaskType.MULTI:
        parts = sorted({p.strip() for p in text.split("|") if p.strip()})
        return "|".join(parts)
    return text


def _is_model_version(version: str) -> bool:
    return not version.startswith(("rules", "unavailable", "duplicate"))


def _is_model(verdict: Verdict) -> bool:
    return _is_model_version(verdict.model_version)


def _in_mode(project: Project, verdict: Verdict) -> Verdict:
    """In review mode a model can no longer reject on its own: a moderator decides."""
    if (
        project.checker.get("mode") == "review"
        and verdict.decision is Decision.REJECT
        and _is_model(verdict)
    ):
        return Verdict(Decision.REVIEW, verdict.score, verdict.reason, verdict.model_version)
    return verdict


def _same_answer(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def _estimate(
    project: Project, rows: Sequence[RowLike], vote: prelabels.ModelVote | None = None
) -> tuple[str, float, float]:
    """(label, confidence, agreement) of one item from its counted answers (and the model's
    earned vote, as the prior, when it takes part)."""
    if not rows:
        return "", 0.0, 0.0
    payloads = [str(r["payload"]) for r in rows]
    if project.task_type in (TaskType.CHOICE, TaskType.IMAGE) and project.labels:
        index = {lab: k for k, lab in enumerate(project.labels)}
        votes = [index[p] for p in payloads if p in index]
        skills = [float(r["skill"]) for r in rows if str(r["payload"]) in index]
        if not votes:
            return payloads[0], 0.0, 0.0
        post = item_posterior(
            votes, skills, len(project.labels), None if vote is None else vote.prior
        )
        k = int(np.argmax(post))
        label = project.labels[k]
        agreement = sum(1 for v in votes if v == k) / len(votes)
        return label, float(post[k]), agreement
    counts = Counter(p.casefold() for p in payloads)
    top, n = counts.most_common(1)[0]
    label = next(p for p in payloads if p.casefold() == top)
    agreement = n / len(payloads)
    # Free text: smoothed share of identical answers (answers rarely match exactly).
    confidence = (n + 1) / (len(payloads) + 2)
    return label, confidence, agreement


async def _user(tx: Tx, user_id: int) -> User:
    row = await tx.one("SELECT * FROM users WHERE id = ?", (user_id,))
    if row is None:
        raise EngineError(N_("Nothing found with that id."))
    return User.from_row(row)


async def _trusted(tx: Tx, user_id: int) -> tuple[str, ...]:
    rows = await tx.all(
        "SELECT lang FROM user_languages WHERE user_id = ? AND trusted = 1 ORDER BY lang",
        (user_id,),
    )
    return tuple(r["lang"] for r in rows)


async def _project(tx: Tx, project_id: int) -> Project:
    row = await tx.one("SELECT * FROM projects WHERE id = ?", (project_id,))
    if row is None:
        raise EngineError(N_("There is no project %(id)s."), id=project_id)
    langs = await tx.all(
        "SELECT lang FROM project_languages WHERE project_id = ? ORDER BY rowid", (project_id,)
    )
    return Project.from_row(row, tuple(r["lang"] for r in langs))


async def _task(tx: Tx, assignment_id: int) -> Task | None:
    row = await tx.one("SELECT * FROM assignments WHERE id = ?", (assignment_id,))
    if row is None:
        return None
    item = await tx.one("SELECT * FROM items WHERE id = ?", (row["item_id"],))
    assert item is not None
    return Task(
        Assignment.from_row(row), Item.from_row(item), await _project(tx, row["project_id"])
    )


async def _insert_answer(
    tx: Tx,
    task: Task,
    user_id: int,
    payload: str,
    took: float,
    verdict: Verdict,
    status: str,
    correct: bool | None,
    detection: Detection | None,
    now: float,
) -> int:
    return await tx.run(
        "INSERT INTO answers(assignment_id, item_id, worker_id, project_id, payload, seconds,"
        " decision, score, reason, model_version, status, correct, lang, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            task.assignment.id,
            task.item.id,
            user_id,
            task.project.id,
            payload,
            round(took, 3),
            verdict.decision.value,
            verdict.score,
            verdict.reason,
            verdict.model_version,
            status,
            None if correct is None else int(correct),
            None if detection is None else detection.lang,
            now,
        ),
    )


async def _merge_users(tx: Tx, keep: int, drop: int) -> None:
    """Fold user ``drop`` into ``keep``: identities, languages, skills, work and money."""
    await tx.run("UPDATE identities SET user_id = ? WHERE user_id = ?", (keep, drop))
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
    await tx.run("UPDATE user_skills SET mean = alpha / (alpha + beta) WHERE user_id = ?", (keep,))
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
    balance = await tx.value("SELECT balance FROM users WHERE id = ?", (drop,))
    answers = await tx.value("SELECT answers FROM users WHERE id = ?", (drop,))
    if balance:
        # Money moves through the ledger so the audit still balances.
        await ledger.append(
            tx,
            drop,
            "correction",
            -int(balance),
            f"merge-out:{drop}",
            memo=f"merged into user {keep}",
        )
        await ledger.append(
            tx,
            keep,
            "correction",
            int(balance),
            f"merge-in:{drop}",
            memo=f"merged from user {drop}",
        )
    await tx.run("UPDATE users SET answers = answers + ? WHERE id = ?", (answers or 0, keep))
    await tx.run(
        "UPDATE users SET status = 'paused', status_reason = 'merged', erased = 1,"
        " display_name = '', answers = 0 WHERE id = ?",
        (drop,),
    )
    await tx.run("DELETE FROM user_languages WHERE user_id = ?", (drop,))
    await tx.run("DELETE FROM user_skills WHERE user_id = ?", (drop,))
