"""The shared overall budget (bot/budget.py): 1/N of the rate for each of N processes."""

from __future__ import annotations

import asyncio

from polycrowd.bot.budget import SharedBudget, keep_share
from tests.bot.conftest import ManualClock


async def _seconds_for(budget: SharedBudget, clock: ManualClock, n: int) -> float:
    start = clock.now
    for _ in range(n):
        await budget.turn()
    return clock.now - start


async def test_a_share_of_the_budget_paces_at_that_fraction_of_the_rate() -> None:
    alone_clock, shared_clock = ManualClock(), ManualClock()
    alone = SharedBudget(45.0, 20.0, clock=alone_clock, sleep=alone_clock.sleep)
    shared = SharedBudget(45.0, 20.0, clock=shared_clock, sleep=shared_clock.sleep)
    shared.set_share(3)
    assert (alone.rate, shared.rate) == (45.0, 15.0)
    alone_s = await _seconds_for(alone, alone_clock, 200)
    shared_s = await _seconds_for(shared, shared_clock, 200)
    assert abs(alone_s - (200 - 20) / 45) < 0.1  # a burst of 20, then 45/s
    assert abs(shared_s - (200 - 20 / 3) / 15) < 0.2  # three such processes: 45/s together
    assert shared.calls == 200 and shared.throttled > 0
    shared.set_share(0)  # never less than the whole budget for one process
    assert shared.share == 1 and shared.rate == 45.0


async def test_keep_share_applies_each_count_and_keeps_the_last_on_failure() -> None:
    counts: list[int | BaseException] = [2, RuntimeError("database gone"), 3]
    applied: list[int] = []
    done = asyncio.Event()

    async def count() -> int:
        value = counts.pop(0)
        if not counts:
            done.set()
        if isinstance(value, BaseException):
            raise value
        return value

    task = asyncio.create_task(keep_share(count, applied.append, "test", every_s=0.0))
    await done.wait()
    await asyncio.sleep(0)
    task.cancel()
    assert applied == [2, 3]
