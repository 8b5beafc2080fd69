"""Weekly worker digests and the daily moderator digest, as scheduler jobs.

The jobs run hourly; each digest goes out at most once per period (the store remembers when
each went out) and never during quiet hours (POLYCROWD_QUIET_HOURS, UTC, e.g. "22-8").
What to send comes from the engine (services/digests.py); how to send it is the app's
callback (bot/digests.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from polycrowd.engine.core import Engine
from polycrowd.engine.services.digests import DAY, WEEK, ModeratorDigest, WorkerDigest
from polycrowd.settings import Settings, SettingsError

log = logging.getLogger(__name__)


def quiet_hours(spec: str) -> frozenset[int]:
    """ "22-8" -> {22, 23, 0, ..., 7}; "" -> no quiet hours."""
    if not spec.strip():
        return frozenset()
    start, sep, end = spec.partition("-")
    try:
        a, b = int(start), int(end)
    except ValueError:
        raise SettingsError(f"bad value for quiet_hours: {spec!r}") from None
    if not sep or not (0 <= a < 24 and 0 <= b < 24):
        raise SettingsError(f"bad value for quiet_hours: {spec!r}")
    hours = range(a, b) if a <= b else [*range(a, 24), *range(0, b)]
    return frozenset(hours)


class Digests:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.quiet = quiet_hours(settings.quiet_hours)
        self.on_workers: Callable[[list[WorkerDigest]], Awaitable[None]] | None = None
        self.on_moderators: Callable[[ModeratorDigest], Awaitable[None]] | None = None

    def is_quiet(self) -> bool:
        hour = dt.datetime.fromtimestamp(self.engine.clock(), dt.UTC).hour
        return hour in self.quiet

    async def workers(self) -> list[int]:
        """Send the weekly digest to every worker due one; their ids."""
        if self.on_workers is None or self.is_quiet():
            return []
        engine = self.engine
        ids = await engine.digest_due(WEEK)
        if not ids:
            return []
        await self.on_workers([await engine.worker_digest(i) for i in ids])
        await engine.mark_digest_sent("worker", [str(i) for i in ids])
        log.info("weekly digest sent to %s workers", len(ids))
        return ids

    async def moderators(self) -> bool:
        """Send the daily moderator digest if a day has passed since the last one."""
        if self.on_moderators is None or self.is_quiet():
            return False
        last = await self.engine.digest_sent("moderators", "all")
        if last is not None and self.engine.clock() - last < DAY - 60.0:
            return False
        await self.on_moderators(await self.engine.moderator_digest())
        await self.engine.mark_digest_sent("moderators", ["all"])
        return True
