"""Moderation: flags, moderator decisions on answers and accounts, appeals."""

from __future__ import annotations

from polycrowd.engine import ledger
from polycrowd.engine.domain import AnswerStatus, AppealState, FlagKind, UserStatus
from polycrowd.engine.errors import Conflict, NotFound
from polycrowd.engine.events import Flag
from polycrowd.engine.services import verify
from polycrowd.engine.services.context import (
    EngineContext,
    load_project,
    load_user,
    raise_flag,
)
from polycrowd.engine.services.scoring import ScoringService
from polycrowd.engine.services.users import UsersService
from polycrowd.engine.store.base import Transaction
from polycrowd.engine.types import Project, Role, User
from polycrowd.i18n import N_

COUNTED = (AnswerStatus.ACCEPTED, AnswerStatus.REVIEW)
APPEALABLE = (AnswerStatus.REJECTED, AnswerStatus.OVERRULED)


class ModerationService:
    def __init__(self, ctx: EngineContext, users: UsersService, scoring: ScoringService) -> None:
        self.ctx = ctx
        self.users = users
        self.scoring = scoring

    async def open_flags(self, limit: int = 10) -> list[Flag]:
        async with self.ctx.db.read() as tx:
            return await tx.flags.open(limit)

    async def moderate_answer(
        self, actor_id: int, answer_id: int, accept: bool, reason: str = ""
    ) -> str:
        """Accept keeps the credit; reject overrules it with a reversing ledger entry."""
        await self.users.require(actor_id, Role.MODERATOR)
        async with self.ctx.db.transaction() as tx:
            row = await tx.answers.with_reward(answer_id)
            if row is None:
                raise NotFound(N_("Nothing found with that id."))
            if accept:
                if row["status"] == AnswerStatus.REVIEW:
                    await tx.answers.set_status(answer_id, AnswerStatus.ACCEPTED)
                outcome = "accepted"
            else:
                if row["status"] in COUNTED:
                    await tx.answers.set_status(
                        answer_id,
                        AnswerStatus.OVERRULED,
                        reason or N_("A moderator rejected this answer."),
                    )
                    if row["reward"]:
                        await ledger.append(
                            tx,
                            row["worker_id"],
                            "correction",
                            -int(row["reward"]),
                            f"reverse:p{row['project_id']}:a{row['assignment_id']}",
                            memo=f"answer {answer_id} overruled",
                            now=self.ctx.clock(),
                            keyring=self.ctx.keyring,
                        )
                    project = await load_project(tx, row["project_id"])
                    await self.scoring.uncount(tx, project, int(row["item_id"]))
                    await verify.withdraw(tx, project.id, answer_id)
                outcome = "rejected"
            await tx.flags.resolve_answer(answer_id, outcome)
        return outcome

    async def set_status(
        self, actor_id: int | None, user_id: int, status: str, reason: str = ""
    ) -> User:
        if actor_id is not None:
            await self.users.require(actor_id, Role.MODERATOR)
        if status not in tuple(UserStatus):
            raise ValueError(status)
        async with self.ctx.db.transaction() as tx:
            await load_user(tx, user_id)
            await tx.users.set_status(user_id, status, reason)
            if status != UserStatus.ACTIVE:
                await tx.assignments.expire_worker(user_id)
            if status == UserStatus.BLOCKED:
                await self._discard_answers(tx, user_id)
            await tx.flags.resolve_user(user_id, status)
            return await load_user(tx, user_id)

    async def _discard_answers(self, tx: Transaction, user_id: int) -> None:
        """A blocked account's labels stop counting: results are re-estimated without them
        and their items reopen for other workers. Money already earned is not touched."""
        rows = await tx.answers.overrule_worker(user_id, N_("A moderator blocked this account."))
        projects: dict[int, Project] = {}
        for item_id, pid in rows:
            if pid not in projects:
                projects[pid] = await load_project(tx, pid)
            await self.scoring.uncount(tx, projects[pid], item_id)

    async def resolve_flag(self, actor_id: int, flag_id: int, resolution: str) -> None:
        await self.users.require(actor_id, Role.MODERATOR)
        async with self.ctx.db.transaction() as tx:
            await tx.flags.resolve(flag_id, resolution)

    async def appeal(self, user_id: int, answer_id: int | None, text: str) -> int:
        """Open an appeal on a rejected answer (the latest one when no id is given)."""
        async with self.ctx.db.transaction() as tx:
            if answer_id is None:
                answer_id = await tx.answers.latest_appealable(user_id)
            row = None if answer_id is None else await tx.answers.own(answer_id, user_id)
            if answer_id is None or row is None or row["status"] not in APPEALABLE:
                raise NotFound(N_("There is no rejected answer to appeal."))
            if row["appeal"] != AppealState.NONE:
                raise Conflict(N_("This answer has already been appealed."))
            await tx.answers.open_appeal(answer_id, text[:1000])
            await raise_flag(
                self.ctx,
                tx,
                FlagKind.APPEAL,
                user_id,
                int(answer_id),
                row["project_id"],
                {"reason": row["reason"], "answer": row["payload"][:200], "appeal": text[:500]},
            )
            return int(answer_id)

    async def decide_appeal(self, actor_id: int, answer_id: int, uphold: bool) -> None:
        """Upholding an appeal pays the answer as if it had been accepted."""
        await self.users.require(actor_id, Role.MODERATOR)
        async with self.ctx.db.transaction() as tx:
            row = await tx.answers.with_reward(answer_id, open_appeal=True)
            if row is None:
                raise NotFound(N_("Nothing found with that id."))
            decision = AppealState.UPHELD if uphold else AppealState.DENIED
            await tx.answers.set_appeal(answer_id, decision)
            if uphold and row["reward"]:
                await ledger.append(
                    tx,
                    row["worker_id"],
                    "bonus",
                    int(row["reward"]),
                    f"appeal:{answer_id}",
                    memo=f"appeal upheld for answer {answer_id}",
                    now=self.ctx.clock(),
                    keyring=self.ctx.keyring,
                )
            await tx.flags.resolve_answer(answer_id, decision, FlagKind.APPEAL)
