"""Flood control per user: a token bucket on commands, answers and files, on the injected
clock (time moves only when the test says so)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from polycrowd.bot.memory import MemoryUser
from polycrowd.handlers.common import TOO_FAST
from polycrowd.handlers.flood import FloodControl, Verdict
from polycrowd.i18n import Msg
from polycrowd.settings import Settings

from ..conftest import FakeClock
from .conftest import World, open_world
from .test_permissions import snapshot

# --------------------------------------------------------------------------- the bucket


def test_burst_then_one_warning_then_quiet_until_a_token_is_back() -> None:
    clock = FakeClock(1000.0)
    flood = FloodControl(rate=0.5, burst=3, clock=clock)
    assert [flood.take("u1") for _ in range(3)] == [Verdict.PASS] * 3
    assert flood.take("u1") is Verdict.WARN
    assert [flood.take("u1") for _ in range(5)] == [Verdict.QUIET] * 5
    assert flood.take("u2") is Verdict.PASS  # per user
    clock.advance(1.9)  # 0.95 of a token: not yet
    assert flood.take("u1") is Verdict.QUIET
    clock.advance(0.1)
    assert flood.take("u1") is Verdict.PASS
    assert flood.take("u1") is Verdict.WARN  # empty again: warned once more


def test_the_bucket_never_holds_more_than_the_burst() -> None:
    clock = FakeClock(0.0)
    flood = FloodControl(rate=10, burst=2, clock=clock)
    clock.advance(3600)
    assert [flood.take("u") for _ in range(3)] == [Verdict.PASS, Verdict.PASS, Verdict.WARN]
    clock.advance(-50)  # a clock that goes back refills nothing (and breaks nothing)
    assert flood.take("u") is Verdict.QUIET


def test_staff_get_more_and_zero_burst_turns_it_off() -> None:
    clock = FakeClock(0.0)
    flood = FloodControl(rate=1, burst=2, clock=clock, staff_factor=5)
    assert [flood.take("mod", staff=True) for _ in range(10)] == [Verdict.PASS] * 10
    assert flood.take("mod", staff=True) is Verdict.WARN
    off = FloodControl(rate=1, burst=0, clock=clock)
    assert all(off.take("u") is Verdict.PASS for _ in range(1000))
    with pytest.raises(ValueError):
        FloodControl(rate=-1, burst=2, clock=clock)


def test_settings_from_the_environment() -> None:
    s = Settings.from_env(
        {
            "POLYCROWD_FLOOD_RATE": "0.25",
            "POLYCROWD_FLOOD_BURST": "4",
            "POLYCROWD_FLOOD_STAFF_FACTOR": "3",
        }
    )
    assert (s.flood_rate, s.flood_burst, s.flood_staff_factor) == (0.25, 4, 3.0)


# --------------------------------------------------------------------------- in the dispatcher


@pytest.fixture
async def tight(tmp_path: Path, clock: FakeClock) -> AsyncIterator[World]:
    """A world where a user may send 3 events at once and one every 2 seconds."""
    settings = dataclasses.replace(
        Settings().with_db(tmp_path / "flood.db"),
        flood_rate=0.5,
        flood_burst=3,
        flood_staff_factor=4.0,
    )
    async with open_world(settings, clock) as w:
        yield w


async def test_commands_beyond_the_burst_get_one_polite_reply_then_silence(
    tight: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="polycrowd")
    ann = MemoryUser("101", "Ann Example", "es")
    for _ in range(3):
        [ok] = await tight.chat.command(ann, "/balance")
        assert "0.00" in ok.text
    [slow_down] = await tight.chat.command(ann, "/balance")
    assert slow_down.text == tight.app.translator.render(Msg(TOO_FAST), "es")
    assert slow_down.text != TOO_FAST  # translated
    assert await tight.chat.command(ann, "/balance") == []
    assert await tight.chat.command(ann, "/help") == []
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("flood:")]
    assert len(lines) == 3 and "warned" in lines[0] and "dropped" in lines[2]
    assert all("Ann" not in line for line in lines)
    tight.clock.advance(2.0)  # one token back
    [again] = await tight.chat.command(ann, "/balance")
    assert "0.00" in again.text


async def test_a_flooded_answer_is_not_stored(tight: World) -> None:
    await tight.live_project()
    tight.clock.advance(60)
    ann = MemoryUser("101", "ann", "en")
    await tight.chat.command(ann, "/start")
    tight.clock.advance(60)
    [task] = await tight.chat.command(ann, "/task")
    await tight.chat.command(ann, "/balance")
    await tight.chat.command(ann, "/balance")  # the bucket is empty now
    before = snapshot(tight.app.settings.db)
    [refused] = await tight.chat.press(ann, task.button("cat"), task.id)
    assert refused.text == TOO_FAST and refused.reply.alert
    assert await tight.chat.press(ann, task.button("dog"), task.id) == []
    assert snapshot(tight.app.settings.db) == before  # no answer, no credit
    tight.clock.advance(10)
    replies = await tight.chat.press(ann, task.button("cat"), task.id)
    assert any("Accepted" in m.text for m in replies)


async def test_moderators_get_a_higher_limit(tight: World) -> None:
    mod = tight.moderator
    replies = [await tight.chat.command(mod, "/review") for _ in range(12)]
    assert all(r and "Nothing to review" in r[0].text for r in replies)
    [slow_down] = await tight.chat.command(mod, "/review")
    assert slow_down.text == TOO_FAST
