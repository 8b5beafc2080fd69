"""The opt-in leaderboard of a project: pseudonyms only, and only of workers who asked to be
on it (``/leaderboard on``); the choice is per person, stored in ``user_state``."""

from __future__ import annotations

from polycrowd.engine.services.context import EngineContext
from polycrowd.engine.store.base import LeaderRow

OPT_IN = "leaderboard"
BOARD_SIZE = 10


class LeaderboardService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def opted_in(self, user_id: int) -> bool:
        async with self.ctx.db.read() as tx:
            row = await tx.state.get(user_id, OPT_IN)
        return row is not None and row[0] == "true"

    async def set_opt_in(self, user_id: int, on: bool) -> None:
        async with self.ctx.db.transaction() as tx:
            if on:
                await tx.state.put(user_id, OPT_IN, "true", self.ctx.clock())
            else:
                await tx.state.delete(user_id, OPT_IN)

    async def board(self, project_id: int, limit: int = BOARD_SIZE) -> list[LeaderRow]:
        async with self.ctx.db.read() as tx:
            return await tx.reports.leaderboard(project_id, OPT_IN, limit)

    async def latest_project(self, user_id: int) -> int | None:
        async with self.ctx.db.read() as tx:
            return await tx.reports.latest_project(user_id)
