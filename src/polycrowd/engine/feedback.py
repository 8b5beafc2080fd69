"""Feedback, reports and dashboard data: the SQL behind questions, FAQ, reports, dashboard
logins and digests, in one place (schema version 2 in schema.sql).

Reads that the :class:`~polycrowd.engine.core.Engine` already offers (status, projects,
flags, ledger) are not repeated here; this module adds what reports, the dashboard and the
digests need on top: timestamps, per-language and per-worker aggregates, login tokens.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from polycrowd.engine.core import EngineError
from polycrowd.engine.store import Database
from polycrowd.engine.types import Role
from polycrowd.i18n import N_

COUNTED = "('accepted', 'review')"
LOGIN_TTL = 600.0
SESSION_TTL = 12 * 3600.0
WEEK = 7 * 24 * 3600.0
DAY = 24 * 3600.0


def digest_of(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Question:
    id: int
    worker_id: int
    project_id: int
    item_id: int | None
    lang: str
    text: str
    answer: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Login:
    """Who a dashboard token or session belongs to."""

    user_id: int
    role: Role


@dataclass(frozen=True, slots=True)
class WorkerRow:
    pseudonym: str
    answers: int
    accepted: int
    rejected: int
    gold_answered: int
    gold_correct: int
    agreement: float | None  # share of answers equal to the aggregated result


@dataclass(frozen=True, slots=True)
class WorkerDigest:
    user_id: int
    answers: int
    accuracy: float | None  # this week: right share on check questions, else accepted share
    previous: float | None  # the week before
    earnings: int
    skills_ok: int
    skills_at_risk: int


@dataclass(frozen=True, slots=True)
class ModeratorDigest:
    flags: int
    flagged_workers: int
    appeals: int
    checker_gold_seen: int
    checker_gold_accuracy: float | None
    payouts: int
    payout_total: int


class FeedbackStore:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    # Reports ------------------------------------------------------------------------------

    async def answer_times(self, project_id: int) -> list[float]:
        async with self.db.read() as tx:
            rows = await tx.all(
                f"SELECT created_at FROM answers WHERE project_id = ? AND status IN {COUNTED}"
                " ORDER BY created_at",
                (project_id,),
            )
        return [float(r[0]) for r in rows]

    async def answers_by_language(self, project_id: int) -> dict[str, int]:
        async with self.db.read() as tx:
            rows = await tx.all(
                "SELECT i.lang, COUNT(*) FROM answers a JOIN items i ON i.id = a.item_id"
                f" WHERE a.project_id = ? AND a.status IN {COUNTED} GROUP BY i.lang"
                " ORDER BY COUNT(*) DESC",
                (project_id,),
            )
        return {str(r[0]): int(r[1]) for r in rows}

    async def worker_accuracy(self, project_id: int) -> tuple[str, list[float]]:
        """("gold", share right per worker) when check questions were answered, else
        ("results", share of answers equal to the aggregated result per worker)."""
        async with self.db.read() as tx:
            gold = await tx.all(
                "SELECT AVG(correct) FROM answers WHERE project_id = ? AND correct IS NOT NULL"
                " GROUP BY worker_id",
                (project_id,),
            )
            if gold:
                return "gold", [float(r[0]) for r in gold]
            rows = await tx.all(
                "SELECT AVG(a.payload = r.label) FROM answers a"
                " JOIN results r ON r.item_id = a.item_id"
                f" WHERE a.project_id = ? AND a.status IN {COUNTED} GROUP BY a.worker_id",
                (project_id,),
            )
        return "results", [float(r[0]) for r in rows]

    async def confusion(self, project_id: int) -> tuple[str, list[tuple[str, str, int]]]:
        """(reference, answer, count) against gold when there is any, else against results."""
        async with self.db.read() as tx:
            gold = await tx.all(
                "SELECT i.gold, a.payload, COUNT(*) FROM answers a"
                " JOIN items i ON i.id = a.item_id"
                " WHERE a.project_id = ? AND i.gold IS NOT NULL AND a.status != 'overruled'"
                " GROUP BY i.gold, a.payload",
                (project_id,),
            )
            if gold:
                return "gold", [(str(r[0]), str(r[1]), int(r[2])) for r in gold]
            rows = await tx.all(
                "SELECT r.label, a.payload, COUNT(*) FROM answers a"
                " JOIN results r ON r.item_id = a.item_id"
                f" WHERE a.project_id = ? AND a.status IN {COUNTED} GROUP BY r.label, a.payload",
                (project_id,),
            )
        return "results", [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def spend_times(self, project_id: int) -> list[tuple[float, int]]:
        async with self.db.read() as tx:
            rows = await tx.all(
                "SELECT ts, amount FROM ledger WHERE ref LIKE 'credit:p' || ? || ':%'"
                " OR ref LIKE 'reverse:p' || ? || ':%' ORDER BY seq",
                (project_id, project_id),
            )
        return [(float(r[0]), int(r[1])) for r in rows]

    async def model_assist(self, project_id: int, overlap: int) -> tuple[int, int] | None:
        """(items settled with the model's help, human answers saved); None when the model
        was never in the loop (no result whose method names a model)."""
        async with self.db.read() as tx:
            row = await tx.one(
                "SELECT COUNT(*), COALESCE(SUM(MAX(? - answers, 0)), 0) FROM results"
                " WHERE project_id = ? AND method LIKE '%model%'",
                (overlap, project_id),
            )
        if row is None or not row[0]:
            return None
        return int(row[0]), int(row[1])

    # Dashboard ----------------------------------------------------------------------------

    async def workers(self, project_ids: Sequence[int] | None) -> list[WorkerRow]:
        """Per worker (pseudonym only) over the given projects (None: all)."""
        where = ""
        params: tuple[int, ...] = ()
        if project_ids is not None:
            if not project_ids:
                return []
            marks = ", ".join("?" for _ in project_ids)
            where, params = f"WHERE a.project_id IN ({marks})", tuple(project_ids)
        async with self.db.read() as tx:
            rows = await tx.all(
                "SELECT u.pseudonym, COUNT(*) AS n,"
                f" SUM(a.status IN {COUNTED}) AS ok, SUM(a.status = 'rejected') AS rej,"
                " SUM(a.correct IS NOT NULL) AS gold, SUM(a.correct = 1) AS gold_ok,"
                " AVG(CASE WHEN r.label IS NULL THEN NULL ELSE a.payload = r.label END) AS agr"
                " FROM answers a JOIN users u ON u.id = a.worker_id"
                f" LEFT JOIN results r ON r.item_id = a.item_id {where}"
                " GROUP BY a.worker_id ORDER BY n DESC, u.pseudonym LIMIT 500",
                params,
            )
        return [
            WorkerRow(
                str(r["pseudonym"]),
                int(r["n"]),
                int(r["ok"] or 0),
                int(r["rej"] or 0),
                int(r["gold"] or 0),
                int(r["gold_ok"] or 0),
                None if r["agr"] is None else float(r["agr"]),
            )
            for r in rows
        ]

    async def open_appeals(self, project_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        async with self.db.read() as tx:
            rows = await tx.all(
                "SELECT a.id, a.project_id, u.pseudonym, a.payload, a.reason, a.appeal_text,"
                " a.created_at FROM answers a JOIN users u ON u.id = a.worker_id"
                " WHERE a.appeal = 'open' ORDER BY a.id LIMIT 200"
            )
        keep = None if project_ids is None else set(project_ids)
        return [dict(r) for r in rows if keep is None or r["project_id"] in keep]

    async def create_login(self, user_id: int, role: Role, ttl: float = LOGIN_TTL) -> str:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        async with self.db.transaction() as tx:
            await tx.run("DELETE FROM dashboard_tokens WHERE expires_at < ?", (now - DAY,))
            await tx.run(
                "INSERT INTO dashboard_tokens(token_hash, user_id, role, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (digest_of(token), user_id, role.value, now, now + ttl),
            )
        return token

    async def redeem_login(self, token: str, ttl: float = SESSION_TTL) -> tuple[str, Login] | None:
        """Spend a login token (once, before it expires): a new session token and its login."""
        now = self.clock()
        async with self.db.transaction() as tx:
            row = await tx.one(
                "SELECT t.user_id, t.role, u.role AS current, u.status FROM dashboard_tokens t"
                " JOIN users u ON u.id = t.user_id WHERE t.token_hash = ? AND t.used_at IS NULL"
                " AND t.expires_at >= ?",
                (digest_of(token), now),
            )
            if row is None:
                return None
            await tx.run(
                "UPDATE dashboard_tokens SET used_at = ? WHERE token_hash = ?",
                (now, digest_of(token)),
            )
            if row["status"] == "blocked" or row["current"] != row["role"]:
                return None  # the role the link was made for is no longer the user's
            session = secrets.token_urlsafe(32)
            await tx.run("DELETE FROM dashboard_sessions WHERE expires_at < ?", (now,))
            await tx.run(
                "INSERT INTO dashboard_sessions(session_hash, user_id, role, created_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?)",
                (digest_of(session), row["user_id"], row["role"], now, now + ttl),
            )
        return session, Login(int(row["user_id"]), Role(row["role"]))

    async def session(self, session: str) -> Login | None:
        async with self.db.read() as tx:
            row = await tx.one(
                "SELECT s.user_id, s.role FROM dashboard_sessions s JOIN users u"
                " ON u.id = s.user_id WHERE s.session_hash = ? AND s.expires_at >= ?"
                " AND u.status != 'blocked' AND u.role = s.role",
                (digest_of(session), self.clock()),
            )
        return None if row is None else Login(int(row["user_id"]), Role(row["role"]))

    async def end_session(self, session: str) -> None:
        async with self.db.transaction() as tx:
            await tx.run(
                "DELETE FROM dashboard_sessions WHERE session_hash = ?", (digest_of(session),)
            )

    # Questions and FAQ --------------------------------------------------------------------

    async def questions_since(self, worker_id: int, seconds: float) -> int:
        async with self.db.read() as tx:
            return int(
                await tx.value(
                    "SELECT COUNT(*) FROM questions WHERE worker_id = ? AND created_at >= ?",
                    (worker_id, self.clock() - seconds),
                )
                or 0
            )

    async def ask(
        self, worker_id: int, project_id: int, item_id: int | None, lang: str, text: str
    ) -> int:
        async with self.db.transaction() as tx:
            return await tx.run(
                "INSERT INTO questions(worker_id, project_id, item_id, lang, text, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (worker_id, project_id, item_id, lang, text[:1000], self.clock()),
            )

    async def question(self, question_id: int) -> Question:
        async with self.db.read() as tx:
            r = await tx.one("SELECT * FROM questions WHERE id = ?", (question_id,))
        if r is None:
            raise EngineError(N_("Nothing found with that id."))
        return Question(
            r["id"],
            r["worker_id"],
            r["project_id"],
            r["item_id"],
            r["lang"],
            r["text"],
            r["answer"],
            r["created_at"],
        )

    async def answer(self, question_id: int, by: int, text: str) -> Question:
        async with self.db.transaction() as tx:
            n = await tx.run(
                "UPDATE questions SET answer = ?, answered_by = ?, answered_at = ? WHERE id = ?",
                (text[:2000], by, self.clock(), question_id),
            )
        if not n:
            raise EngineError(N_("Nothing found with that id."))
        return await self.question(question_id)

    async def pin_faq(self, question_id: int) -> None:
        """Append an answered question to its project's instructions in its language."""
        q = await self.question(question_id)
        if not q.answer:
            raise EngineError(N_("Answer the question first: /answer %(id)s TEXT"), id=q.id)
        async with self.db.transaction() as tx:
            if await tx.value("SELECT 1 FROM faq_entries WHERE question_id = ?", (q.id,)):
                return
            raw = await tx.value("SELECT instructions FROM projects WHERE id = ?", (q.project_id,))
            instructions: dict[str, str] = json.loads(raw or "{}")
            base = instructions.get(q.lang) or instructions.get("en") or ""
            if not base and instructions:
                base = next(iter(instructions.values()))
            instructions[q.lang] = f"{base}\n\n❓ {q.text}\n💬 {q.answer}".strip()
            await tx.run(
                "UPDATE projects SET instructions = ? WHERE id = ?",
                (json.dumps(instructions, ensure_ascii=False), q.project_id),
            )
            await tx.run(
                "INSERT INTO faq_entries(project_id, question_id, lang, question, answer,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (q.project_id, q.id, q.lang, q.text, q.answer, self.clock()),
            )

    # Digests ------------------------------------------------------------------------------

    async def last_digest(self, kind: str, target: str) -> float | None:
        async with self.db.read() as tx:
            v = await tx.value(
                "SELECT sent_at FROM digest_runs WHERE kind = ? AND target = ?", (kind, target)
            )
        return None if v is None else float(v)

    async def mark_digest(self, kind: str, targets: Sequence[str]) -> None:
        now = self.clock()
        async with self.db.transaction() as tx:
            await tx.many(
                "INSERT INTO digest_runs(kind, target, sent_at) VALUES (?, ?, ?)"
                " ON CONFLICT(kind, target) DO UPDATE SET sent_at = excluded.sent_at",
                [(kind, t, now) for t in targets],
            )

    async def workers_due(self, every: float = WEEK) -> list[int]:
        """Active workers who answered in the last week and got no digest for ``every``."""
        now = self.clock()
        async with self.db.read() as tx:
            rows = await tx.all(
                "SELECT DISTINCT a.worker_id FROM answers a JOIN users u ON u.id = a.worker_id"
                " LEFT JOIN digest_runs d ON d.kind = 'worker'"
                " AND d.target = CAST(a.worker_id AS TEXT)"
                " WHERE a.created_at >= ? AND u.status = 'active' AND u.erased = 0"
                " AND (d.sent_at IS NULL OR d.sent_at <= ?) ORDER BY a.worker_id",
                (now - WEEK, now - every + 60.0),
            )
        return [int(r[0]) for r in rows]

    async def worker_digest(self, user_id: int) -> WorkerDigest:
        now = self.clock()
        async with self.db.read() as tx:
            weeks = []
            for start, end in ((now - WEEK, now), (now - 2 * WEEK, now - WEEK)):
                r = await tx.one(
                    "SELECT COUNT(*) AS n, SUM(correct IS NOT NULL) AS g, SUM(correct = 1) AS gk,"
                    f" SUM(status IN {COUNTED}) AS ok FROM answers"
                    " WHERE worker_id = ? AND created_at > ? AND created_at <= ?",
                    (user_id, start, end),
                )
                assert r is not None
                n, g = int(r["n"] or 0), int(r["g"] or 0)
                acc = (int(r["gk"] or 0) / g) if g else (int(r["ok"] or 0) / n if n else None)
                weeks.append((n, acc))
            earned = await tx.value(
                "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE user_id = ? AND ts >= ?"
                " AND kind IN ('credit', 'bonus', 'correction', 'penalty')",
                (user_id, now - WEEK),
            )
            s = await tx.one(
                "SELECT SUM(paused = 0 AND mean >= 0.7) AS ok,"
                " SUM(paused = 1 OR mean < 0.7) AS risk FROM user_skills"
                " WHERE user_id = ? AND gold_seen > 0",
                (user_id,),
            )
        assert s is not None
        return WorkerDigest(
            user_id,
            weeks[0][0],
            weeks[0][1],
            weeks[1][1],
            int(earned or 0),
            int(s["ok"] or 0),
            int(s["risk"] or 0),
        )

    async def moderator_digest(self) -> ModeratorDigest:
        async with self.db.read() as tx:
            f = await tx.one(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT user_id) AS users FROM flags"
                " WHERE state = 'open'"
            )
            appeals = await tx.value("SELECT COUNT(*) FROM answers WHERE appeal = 'open'")
            c = await tx.one("SELECT SUM(seen) AS seen, SUM(agree) AS agree FROM checker_stats")
            p = await tx.one(
                "SELECT COUNT(*) AS n, COALESCE(SUM(amount), 0) AS total FROM payouts"
                " WHERE state = 'requested'"
            )
        assert f is not None and c is not None and p is not None
        seen = int(c["seen"] or 0)
        return ModeratorDigest(
            flags=int(f["n"] or 0),
            flagged_workers=int(f["users"] or 0),
            appeals=int(appeals or 0),
            checker_gold_seen=seen,
            checker_gold_accuracy=(int(c["agree"] or 0) / seen) if seen else None,
            payouts=int(p["n"] or 0),
            payout_total=int(p["total"] or 0),
        )
