"""Digests: what goes into a worker's weekly digest and the moderators' daily one, and when
each last went out (the scheduler jobs that send them are in :mod:`polycrowd.engine.digests`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from polycrowd.engine.services.context import EngineContext

WEEK = 7 * 24 * 3600.0
DAY = 24 * 3600.0
SKILL_AT_RISK = 0.7  # a skill whose mean falls under this is "at risk"


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


class DigestService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def last_sent(self, kind: str, target: str) -> float | None:
        async with self.ctx.db.read() as tx:
            return await tx.digests.last(kind, target)

    async def mark_sent(self, kind: str, targets: Sequence[str]) -> None:
        async with self.ctx.db.transaction() as tx:
            await tx.digests.mark(kind, targets, self.ctx.clock())

    async def workers_due(self, every: float = WEEK) -> list[int]:
        """Active workers who answered in the last week and got no digest for ``every``."""
        now = self.ctx.clock()
        async with self.ctx.db.read() as tx:
            return await tx.digests.workers_due(now - WEEK, now - every + 60.0)

    async def worker_digest(self, user_id: int) -> WorkerDigest:
        now = self.ctx.clock()
        async with self.ctx.db.read() as tx:
            weeks: list[tuple[int, float | None]] = []
            for start, end in ((now - WEEK, now), (now - 2 * WEEK, now - WEEK)):
                w = await tx.digests.window(user_id, start, end)
                if w.gold:
                    weeks.append((w.answers, w.gold_correct / w.gold))
                else:
                    weeks.append((w.answers, w.counted / w.answers if w.answers else None))
            earned = await tx.digests.earned_since(user_id, now - WEEK)
            ok, risk = await tx.digests.skill_health(user_id, SKILL_AT_RISK)
        return WorkerDigest(user_id, weeks[0][0], weeks[0][1], weeks[1][1], earned, ok, risk)

    async def moderator_digest(self) -> ModeratorDigest:
        async with self.ctx.db.read() as tx:
            b = await tx.digests.backlog()
        seen = b.checker_gold_seen
        return ModeratorDigest(
            flags=b.flags,
            flagged_workers=b.flagged_workers,
            appeals=b.appeals,
            checker_gold_seen=seen,
            checker_gold_accuracy=b.checker_gold_agreed / seen if seen else None,
            payouts=b.payouts,
            payout_total=b.payout_total,
        )
