"""A platform's overall send budget, shared between the processes that run one bot.

Both platforms limit a bot token as a whole (Telegram about 30 messages/s, Discord 50
requests/s), wherever its requests come from. When several ``polycrowd run`` processes serve
one bot (webhook workers, or Discord shards spread over processes), each holds a peer slot on
the shared PostgreSQL database (:meth:`Store.peers`) and uses 1/N of the budget; N is
recounted every :data:`SHARE_EVERY_S` as processes come and go (:func:`keep_share`). A SQLite
file is served by one process, which always has the whole budget.

This module imports no platform library: the Telegram queue (outbound.py) and the Discord
adapter both build on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

SHARE_EVERY_S = 10.0  # how often a process recounts the processes sharing its bot


class Slots:
    """Evenly spaced slots with a burst allowance, handed out first come, first served
    (the generic cell rate algorithm)."""

    __slots__ = ("interval", "tat", "tolerance")

    def __init__(self, per_s: float, burst: float) -> None:
        self.interval = 1.0 / per_s
        self.tolerance = self.interval * max(0.0, burst - 1.0)
        self.tat = 0.0  # the theoretical arrival time of the next call

    def reserve(self, now: float) -> float:
        """Take the next slot; return the time at which it may be used (``now`` or later)."""
        at = max(now, self.tat - self.tolerance)
        self.tat = max(self.tat, at) + self.interval
        return at

    def hold(self, until: float) -> None:
        """No slot before ``until`` (after a 429)."""
        self.tat = max(self.tat, until + self.tolerance)

    def idle(self, now: float) -> bool:
        return self.tat <= now


def shared_slots(per_s: float, burst: float, processes: int, previous: Slots | None) -> Slots:
    """The slots of 1/``processes`` of a ``per_s`` budget (burst split too, at least 1),
    continuing from ``previous`` so that a recount never frees a burst."""
    processes = max(1, processes)
    slots = Slots(per_s / processes, max(1.0, burst / processes))
    if previous is not None:
        slots.tat = previous.tat
    return slots


class SharedBudget:
    """One overall budget (``per_s`` calls a second after a ``burst``) of which this process
    uses 1/:attr:`share`: :meth:`turn` waits for the next slot."""

    __slots__ = ("_clock", "_overall", "_share", "_sleep", "burst", "calls", "per_s", "throttled")

    def __init__(
        self,
        per_s: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Coroutine[Any, Any, None]] = asyncio.sleep,
    ) -> None:
        self.per_s = per_s
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._share = 1
        self._overall = Slots(per_s, burst)
        self.calls = 0
        self.throttled = 0  # calls that waited for a slot

    @property
    def share(self) -> int:
        """Processes the budget is split between (1: this one has all of it)."""
        return self._share

    @property
    def rate(self) -> float:
        """This process's calls a second."""
        return self.per_s / self._share

    def set_share(self, processes: int) -> None:
        processes = max(1, processes)
        if processes != self._share:
            self._share = processes
            self._overall = shared_slots(self.per_s, self.burst, processes, self._overall)

    async def turn(self) -> None:
        """Wait for this call's slot."""
        self.calls += 1
        delay = self._overall.reserve(self._clock()) - self._clock()
        if delay > 0:
            self.throttled += 1
            await self._sleep(delay)


async def keep_share(
    count: Callable[[], Awaitable[int]],
    apply: Callable[[int], None],
    name: str,
    *,
    every_s: float = SHARE_EVERY_S,
) -> None:
    """Forever: ``apply(await count())`` every ``every_s`` (a failed count keeps the last)."""
    last = 1
    while True:
        try:
            n = await count()
        except Exception:
            log.warning("%s: cannot count the processes sharing the bot", name, exc_info=True)
        else:
            if n != last:
                log.info("%s: %d processes share the bot's budget", name, n)
            last = n
            apply(n)
        await asyncio.sleep(every_s)
