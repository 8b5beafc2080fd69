"""Property-based tests (issue 17, point 7): any button data and any command arguments,
pressed or typed by a worker, a requester or a moderator, get a reply - never an unhandled
exception (the dispatcher's "Something went wrong" and its logged traceback) - and leave the
database consistent: the ledger audits, no item is assigned twice to a worker or beyond its
overlap, and every credit matches an accepted answer.
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from polycrowd.bot.memory import ChatMessage, MemoryUser
from polycrowd.bot.telegram import parse_command
from polycrowd.handlers.flood import FloodControl

from .conftest import World

FAST = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
WENT_WRONG = "Something went wrong"
# what button data and command arguments are made of, plus hostile characters
PIECES = st.one_of(
    st.sampled_from(["0", "1", "2", "-1", "99999999999999999999", "1e9", "nan", "", ":", "|"]),
    st.text(alphabet="0123456789:-|abcxyz", max_size=6),
    st.text(max_size=4),
)
REST = st.lists(PIECES, max_size=4).map(":".join)
ARGS = st.lists(st.one_of(PIECES, st.text(min_size=1, max_size=8)), max_size=3)


async def _ready(world: World) -> tuple[MemoryUser, ...]:
    """Once per test: a live project, a worker holding a task."""
    worker = MemoryUser("100", "worker0", "en")
    # flood control has its own tests; here every one of the many events must reach a handler
    world.app.dispatcher.flood = FloodControl(1.0, 0, world.app.engine.clock)
    if not await world.app.engine.projects():
        await world.live_project()
        await world.chat.command(worker, "/start")
        await world.chat.press(worker, "lok")
        await world.chat.command(worker, "/task")
    return worker, world.requester, world.moderator


async def _check(
    world: World, replies: list[ChatMessage], caplog: pytest.LogCaptureFixture
) -> None:
    assert replies, "every event gets a reply"
    assert not any(WENT_WRONG in m.text for m in replies), [m.text for m in replies]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors[0].getMessage()
    report = await world.app.engine.audit()
    assert report.ok, report.problems
    diag = await world.app.engine.diagnostics()
    assert diag.duplicate_assignments == 0
    assert diag.over_assigned_items == 0 and diag.miscounted_items == 0


@FAST
@given(data=st.data(), rest=REST, who=st.integers(0, 2))
@example(data=None, rest="1:0", who=0)
async def test_any_button_data_gets_a_reply_and_keeps_the_books(
    world: World, caplog: pytest.LogCaptureFixture, data: st.DataObject | None, rest: str, who: int
) -> None:
    caplog.set_level(logging.ERROR)
    users = await _ready(world)
    prefixes = [*sorted(world.app.dispatcher.buttons), "", "zz"]
    prefix = data.draw(st.sampled_from(prefixes)) if data is not None else "a"
    press = f"{prefix}:{rest}" if rest else prefix
    caplog.clear()
    replies = await world.chat.press(users[who], press[:64])
    await _check(world, replies, caplog)


@FAST
@given(data=st.data(), args=ARGS, who=st.integers(0, 2))
async def test_any_command_arguments_get_a_reply_and_keep_the_books(
    world: World,
    caplog: pytest.LogCaptureFixture,
    data: st.DataObject,
    args: list[str],
    who: int,
) -> None:
    caplog.set_level(logging.ERROR)
    users = await _ready(world)
    # /forgetme would end the worker's part in the test; its confirmation is a button
    command = data.draw(st.sampled_from(sorted(set(world.app.dispatcher.commands) - {"forgetme"})))
    text = " ".join([f"/{command}", *(a.replace("\n", " ") for a in args)])
    caplog.clear()
    replies = await world.chat.command(users[who], text)
    await _check(world, replies, caplog)


@FAST
@given(text=st.text(max_size=80), bot=st.sampled_from(["", "polycrowd_bot"]))
def test_any_telegram_text_parses_as_a_command_or_none(text: str, bot: str) -> None:
    parsed = parse_command(text, bot)
    if parsed is not None:
        name, args = parsed
        assert isinstance(name, str) and all(isinstance(a, str) and a for a in args)


UPLOAD = st.one_of(
    st.binary(max_size=200),
    st.lists(st.text(max_size=10), max_size=6).map(
        lambda xs: ("id,text\n" + "\n".join(xs)).encode("utf-8", "surrogatepass")
    ),
)


@FAST
@given(content=UPLOAD, name=st.sampled_from(["items.csv", "items.jsonl", "spec.yaml", "x.bin"]))
@example(content=b'id,text\n9,"open\n10,b\n', name="items.csv")
@example(content=b'{"id": 9, "text": ["a"]}\n', name="items.jsonl")
async def test_any_upload_gets_a_reply_and_imports_all_or_nothing(
    world: World, caplog: pytest.LogCaptureFixture, content: bytes, name: str
) -> None:
    caplog.set_level(logging.ERROR)
    await _ready(world)
    projects = await world.app.engine.projects()
    before = [(await world.app.engine.status(p.id)).items for p in projects]
    caplog.clear()
    replies = await world.chat.upload(world.requester, name, content)
    await _check(world, replies, caplog)
    after = [(await world.app.engine.status(p.id)).items for p in projects]
    changed = [b != a for b, a in zip(before, after, strict=True)]
    assert sum(changed) <= 1  # one file goes into at most one project
    rows = len(content.splitlines())
    assert all(0 <= a - b <= rows for b, a in zip(before, after, strict=True))
