"""Maintenance: the scheduler's jobs, delivered-update dedup, and tokens behind buttons."""

from __future__ import annotations

from polycrowd.engine import matching
from polycrowd.engine.domain import ProjectState
from polycrowd.engine.services.context import EngineContext


class MaintenanceService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def expire_assignments(self) -> int:
        async with self.ctx.db.transaction() as tx:
            return await matching.expire(tx, self.ctx.clock())

    async def idle_workers(self, idle_s: float) -> list[int]:
        """Workers idle for ``idle_s`` with live work available and not reminded since."""
        cutoff = self.ctx.clock() - idle_s
        async with self.ctx.db.transaction() as tx:
            ids = await tx.users.idle(cutoff)
            await tx.users.mark_reminded(ids, self.ctx.clock())
        return ids

    async def close_overdue_projects(self) -> list[int]:
        async with self.ctx.db.transaction() as tx:
            ids = await tx.projects.overdue(self.ctx.clock())
            for pid in ids:
                await tx.projects.set_state(pid, ProjectState.DONE)
                await tx.assignments.expire_project(pid)
        return ids

    async def live_projects(self) -> list[int]:
        async with self.ctx.db.read() as tx:
            return await tx.projects.live_ids()

    async def update_handled(self, platform: str, update_id: str) -> bool:
        """True when this update was handled to the end before (a redelivery to drop)."""
        async with self.ctx.db.read() as tx:
            return await tx.tokens.delivered(platform, update_id)

    async def mark_update_handled(self, platform: str, update_id: str) -> None:
        """Record the update after its handling committed (a crash before this point makes
        the platform's redelivery run it again; every state change is idempotent)."""
        async with self.ctx.db.transaction() as tx:
            await tx.tokens.first_delivery(platform, update_id, self.ctx.clock())

    async def token(self, user_id: int, action: str, payload: str) -> int:
        async with self.ctx.db.transaction() as tx:
            return await tx.tokens.create(user_id, action, payload, self.ctx.clock())

    async def resolve_token(self, token_id: int, user_id: int) -> tuple[str, str] | None:
        async with self.ctx.db.read() as tx:
            return await tx.tokens.get(token_id, user_id)
