"""Flood control per user: a token bucket on commands, answers and uploads.

Every event a user sends takes one token from their bucket; the bucket refills at
``rate`` tokens a second up to ``burst``. When it is empty the event is dropped: the first
dropped event is answered once with a polite message, later ones get nothing until a token
is back (so a flood never turns into a flood of replies). Moderators and admins get
``staff_factor`` times the rate and the burst.

The clock is injected (the engine's clock in the dispatcher), so tests move time by hand.
The buckets live in the :class:`FloodControl` instance (one per dispatcher), never at module
level; buckets that have refilled completely are forgotten when the table grows large.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

MAX_BUCKETS = 100_000  # prune full buckets beyond this many users


class Verdict(StrEnum):
    PASS = "pass"  # go ahead
    WARN = "warn"  # refused: answer once with the polite message
    QUIET = "quiet"  # refused again: say nothing


@dataclass(slots=True)
class Bucket:
    tokens: float
    updated: float
    warned: bool = False


class FloodControl:
    """Token buckets keyed by user (e.g. ``"telegram:42"``)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float],
        staff_factor: float = 1.0,
    ) -> None:
        if rate < 0 or burst < 0 or staff_factor <= 0:
            raise ValueError("flood rate and burst must be >= 0, the staff factor > 0")
        self.rate = rate
        self.burst = burst
        self.staff_factor = staff_factor
        self.clock = clock
        self._buckets: dict[str, Bucket] = {}

    @property
    def enabled(self) -> bool:
        """A burst of 0 turns flood control off."""
        return self.burst > 0

    def limits(self, staff: bool) -> tuple[float, float]:
        factor = self.staff_factor if staff else 1.0
        return self.rate * factor, self.burst * factor

    def take(self, key: str, staff: bool = False) -> Verdict:
        """Take one token for ``key``; say what to do with the event."""
        if not self.enabled:
            return Verdict.PASS
        rate, burst = self.limits(staff)
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._prune(now)
            bucket = self._buckets[key] = Bucket(tokens=burst, updated=now)
        elapsed = max(0.0, now - bucket.updated)  # a clock that goes back refills nothing
        bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.warned = False
            return Verdict.PASS
        if bucket.warned:
            return Verdict.QUIET
        bucket.warned = True
        return Verdict.WARN

    def _prune(self, now: float) -> None:
        """Forget the buckets that would be full by now (their users lose nothing)."""
        rate, burst = self.limits(False)
        full = [
            k
            for k, b in self._buckets.items()
            if b.tokens + max(0.0, now - b.updated) * rate >= burst
        ]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= MAX_BUCKETS:  # everyone is flooding: start over
            self._buckets.clear()
