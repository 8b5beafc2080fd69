"""The outbound queue's overall budget, shared between the processes that send with one bot."""

from __future__ import annotations

from typing import Any

from polycrowd.bot.outbound import OutboundLimits, OutboundQueue
from tests.bot.conftest import ManualClock


async def _send_to_distinct_chats(queue: OutboundQueue, clock: ManualClock, n: int) -> float:
    """Seconds (on the manual clock) that ``n`` messages to ``n`` chats take to leave."""

    async def call() -> dict[str, Any]:
        return {"ok": True}

    start = clock.now
    for chat in range(n):
        await queue.process_request(call, (), {}, "sendMessage", {"chat_id": chat + 1}, None)
    return clock.now - start


async def test_a_share_of_the_budget_sends_at_that_fraction_of_the_rate() -> None:
    limits = OutboundLimits(overall_per_s=30.0, overall_burst=20.0)
    alone_clock, shared_clock = ManualClock(), ManualClock()
    alone = OutboundQueue(limits, clock=alone_clock, sleep=alone_clock.sleep)
    shared = OutboundQueue(limits, clock=shared_clock, sleep=shared_clock.sleep)
    shared.set_share(3)
    assert (alone.share, shared.share) == (1, 3)
    alone_s = await _send_to_distinct_chats(alone, alone_clock, 200)
    shared_s = await _send_to_distinct_chats(shared, shared_clock, 200)
    # 30/s after a burst of 20, against 10/s after a burst of 6-7: three processes like the
    # shared one send no more than the one bot's 30/s (and its burst) together.
    assert abs(alone_s - (200 - 20) / 30) < 0.1
    assert abs(shared_s - (200 - 20 / 3) / 10) < 0.2


async def test_the_share_goes_back_to_the_whole_budget() -> None:
    clock = ManualClock()
    queue = OutboundQueue(OutboundLimits(), clock=clock, sleep=clock.sleep)
    queue.set_share(4)
    queue.set_share(0)  # never less than the whole budget for one process
    assert queue.share == 1
    assert abs(await _send_to_distinct_chats(queue, clock, 80) - (80 - 20) / 30) < 0.1
