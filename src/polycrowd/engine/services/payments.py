"""Payments: payout requests and decisions, the ledger view and its audit."""

from __future__ import annotations

from typing import Any

from polycrowd.engine import ledger
from polycrowd.engine.domain import PayoutState
from polycrowd.engine.errors import Conflict, NotFound
from polycrowd.engine.services import verify
from polycrowd.engine.services.context import EngineContext, load_user
from polycrowd.engine.services.users import UsersService
from polycrowd.engine.types import LedgerEntry, Role
from polycrowd.i18n import N_


class PaymentsService:
    def __init__(self, ctx: EngineContext, users: UsersService) -> None:
        self.ctx = ctx
        self.users = users

    async def request_payout(self, user_id: int) -> int:
        async with self.ctx.db.transaction() as tx:
            user = await load_user(tx, user_id)
            # A credit still waiting for other workers' check is not final (verify.py)
            held = await tx.payouts.pending_sum(user_id) + await verify.pending_credit(tx, user_id)
            amount = user.balance - held
            if amount <= 0:
                raise Conflict(N_("There is nothing to pay out yet."))
            return await tx.payouts.create(user_id, amount, self.ctx.clock())

    async def pending_payouts(self) -> list[dict[str, Any]]:
        async with self.ctx.db.read() as tx:
            return await tx.payouts.pending()

    async def decide_payout(self, actor_id: int, payout_id: int, approve: bool) -> int:
        await self.users.require(actor_id, Role.MODERATOR)
        async with self.ctx.db.transaction() as tx:
            payout = await tx.payouts.requested(payout_id)
            if payout is None:
                raise NotFound(N_("Nothing found with that id."))
            user_id, amount = payout
            if approve:
                user = await load_user(tx, user_id)
                # never what a "no" from the checkers could still take back
                free = user.balance - await verify.pending_credit(tx, user_id)
                amount = max(0, min(amount, free))
            if approve and amount > 0:
                await ledger.append(
                    tx,
                    user_id,
                    "payout",
                    -amount,
                    f"payout:{payout_id}",
                    memo="approved",
                    now=self.ctx.clock(),
                    keyring=self.ctx.keyring,
                )
            await tx.payouts.decide(
                payout_id, PayoutState.APPROVED if approve else PayoutState.DENIED, actor_id
            )
            return amount

    async def audit(self) -> ledger.AuditReport:
        return await ledger.verify(self.ctx.db, self.ctx.keyring)

    async def checkpoint(self) -> dict[str, Any]:
        """Sign the chain head into the checkpoint file and the database."""
        return await ledger.checkpoint(self.ctx.db, self.ctx.keyring, now=self.ctx.clock())

    async def ledger_entries(
        self, user_id: int | None = None, limit: int = 50
    ) -> list[LedgerEntry]:
        async with self.ctx.db.read() as tx:
            return await tx.ledger.entries(user_id, limit)
