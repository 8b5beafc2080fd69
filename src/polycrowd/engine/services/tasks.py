"""Tasks: matching a worker to the next item, skipping, and submitting an answer."""

from __future__ import annotations

import logging

from polycrowd.engine import matching
from polycrowd.engine.checking import CheckRequest, Decision, Verdict
from polycrowd.engine.domain import AssignmentState, SubmitStatus, UserStatus
from polycrowd.engine.errors import Conflict, Forbidden
from polycrowd.engine.services import prelabels
from polycrowd.engine.services.context import EngineContext, load_task, load_user
from polycrowd.engine.services.scoring import ScoringService, SubmitResult, in_mode
from polycrowd.engine.store.base import NO_FLOOR, Session
from polycrowd.engine.tasktypes import spec_of
from polycrowd.engine.types import Task
from polycrowd.i18n import N_

log = logging.getLogger(__name__)

__all__ = ["SubmitResult", "TasksService"]


class TasksService:
    def __init__(self, ctx: EngineContext, scoring: ScoringService) -> None:
        self.ctx = ctx
        self.scoring = scoring

    async def current_task(self, user_id: int) -> Task | None:
        async with self.ctx.db.read() as tx:
            aid = await tx.assignments.current(user_id, self.ctx.clock())
            return None if aid is None else await load_task(tx, aid)

    async def next_task(
        self, user_id: int, *, chat_id: str = "", platform: str = "", project_id: int | None = None
    ) -> Task | None:
        """The worker's open task, or a newly matched one; None when nothing fits.

        What the pick depends on (status, gold policy, limits, languages) is read in a read
        session, beside the writer; the write transaction holds only the pick itself (which
        keeps overlap and "never twice" exact on its own) and the touch, and the new task is
        loaded after the commit, so the single SQLite writer is held for two statements.
        """
        now = self.ctx.clock()
        async with self.ctx.db.read() as tx:
            aid = await tx.assignments.current(user_id, now)
            if aid is not None:
                current = await load_task(tx, aid)
                if current is not None:
                    return current
            user = await load_user(tx, user_id)
            if user.status != UserStatus.ACTIVE:
                raise Forbidden(
                    N_("Your account is paused or blocked: %(reason)s"),
                    reason=user.status_reason or user.status,
                )
            want_gold = await self._want_gold(tx, user_id)
            floor, capped = await prelabels.pick_limits(tx, user_id)
            langs = await tx.languages.trusted(user_id)
        async with self.ctx.db.transaction() as wtx:
            floors = (floor,) if floor == NO_FLOOR else (floor, NO_FLOOR)
            for pick_floor in floors:
                # A newcomer is kept off hard items only while easier ones are open: with no
                # proven worker yet and every item hard, a crowd would otherwise never start.
                aid = await matching.pick(
                    wtx,
                    user_id,
                    want_gold=want_gold,
                    project_id=project_id,
                    chat_id=chat_id,
                    platform=platform,
                    now=now,
                    floor=pick_floor,
                    capped=capped,
                    langs=langs,
                )
                if aid is not None:
                    break
            await wtx.users.touch(user_id, now)
        if aid is None:
            return None
        async with self.ctx.db.read() as tx:
            return await load_task(tx, aid)

    async def _want_gold(self, tx: Session, user_id: int) -> bool:
        policy = await tx.projects.gold_policy()
        if policy is None:
            return False
        ratio, qualification = policy
        if await tx.skills.gold_seen(user_id) < qualification:
            return True
        return self.ctx.rng.random() < ratio

    async def paused_projects(self, user_id: int) -> list[tuple[str, str]]:
        """(project name, reason msgid) of live projects paused for this worker."""
        async with self.ctx.db.read() as tx:
            return await tx.skills.paused_projects(user_id)

    async def skip(self, user_id: int, assignment_id: int) -> bool:
        async with self.ctx.db.transaction() as tx:
            return await tx.assignments.skip(assignment_id, user_id)

    async def task(self, assignment_id: int) -> Task | None:
        async with self.ctx.db.read() as tx:
            return await load_task(tx, assignment_id)

    async def submit(
        self,
        user_id: int,
        assignment_id: int,
        payload: str,
        seconds: float | None = None,
        *,
        task: Task | None = None,
    ) -> SubmitResult:
        """Check an answer, then record it and credit the worker in one transaction.

        The checker runs before the transaction; the transaction re-checks the assignment
        state, so a redelivered or concurrent duplicate can never be credited twice.
        """
        now = self.ctx.clock()
        if task is not None and task.assignment.id != assignment_id:
            task = None
        async with self.ctx.db.read() as tx:
            if task is None:
                task = await load_task(tx, assignment_id)
            if task is None or task.assignment.worker_id != user_id:
                raise Forbidden(N_("This task is not yours."))
            recent = await tx.answers.recent_payloads(user_id, task.project.id)
        a = task.assignment
        if a.state == AssignmentState.ANSWERED:
            async with self.ctx.db.read() as tx:
                balance = (await load_user(tx, user_id)).balance
            verdict = Verdict(Decision.ACCEPT, 1.0, "", "duplicate")
            return SubmitResult(verdict, SubmitStatus.DUPLICATE, 0, None, balance)
        if a.state != AssignmentState.ISSUED or a.expires_at < now:
            raise Conflict(N_("This task has expired. Send /task for a new one."))
        kind = spec_of(task.project.task_type)
        payload = kind.normalise(payload)
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
        verdict = in_mode(task.project, await self._check(request))
        detection = None
        if kind.detects_language and verdict.accepted:
            detection = self.ctx.detect_language(payload)
        async with self.ctx.db.transaction() as tx:
            return await self.scoring.record(
                tx, task, user_id, payload, took, verdict, detection, recent
            )

    async def _check(self, request: CheckRequest) -> Verdict:
        try:
            return (await self.ctx.checker.check([request]))[0]
        except Exception:  # a broken checker must never mean silent acceptance
            log.exception("checker failed; sending the answer to review")
            return Verdict(
                Decision.REVIEW, 0.5, N_("A moderator will look at this answer."), "unavailable"
            )
