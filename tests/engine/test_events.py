"""Events are published after the transaction commits, and never for a rolled-back one."""

from __future__ import annotations

import random

import pytest

from polycrowd.engine.core import Engine, EngineHooks, Flag
from polycrowd.engine.domain import FlagKind
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.services.context import EngineContext, raise_flag
from polycrowd.engine.store import Database
from polycrowd.models.rules import RulesChecker

from ..conftest import FakeClock, choice_spec, items_csv


def _context(db: Database, clock: FakeClock, cards: list[Flag]) -> EngineContext:
    hooks = EngineHooks(on_flag=[cards.append])
    detect = LanguageDetector("script").detect
    return EngineContext(db, RulesChecker(), detect, random.Random(1), clock, hooks)


async def test_a_rolled_back_flag_sends_no_card(db: Database, clock: FakeClock) -> None:
    cards: list[Flag] = []
    ctx = _context(db, clock, cards)
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await raise_flag(ctx, tx, FlagKind.CHECKER_DRIFT, None, None, None, {"x": 1})
            raise RuntimeError("the rest of the state change failed")
    assert cards == []
    async with db.read() as tx:
        assert await tx.flags.open(10) == []  # and nothing was stored


async def test_a_committed_flag_is_published_after_the_commit(
    db: Database, clock: FakeClock
) -> None:
    cards: list[Flag] = []
    ctx = _context(db, clock, cards)
    async with db.transaction() as tx:
        await raise_flag(ctx, tx, FlagKind.CHECKER_DRIFT, None, None, None, {"x": 1})
        assert cards == []  # not while the transaction is open
    assert [c.kind for c in cards] == [FlagKind.CHECKER_DRIFT]
    async with db.read() as tx:
        assert [f.id for f in await tx.flags.open(10)] == [cards[0].id]


async def test_a_flag_already_open_is_not_published_twice(db: Database, clock: FakeClock) -> None:
    cards: list[Flag] = []
    ctx = _context(db, clock, cards)
    async with db.transaction() as tx:
        uid = await tx.users.create("memory", "w1", "w1", "w-1", "en", "", clock())
    for _ in range(2):
        async with db.transaction() as tx:
            await raise_flag(ctx, tx, FlagKind.FRAUD_SPEED, uid, None, None, {})
    assert len(cards) == 1


async def test_a_failing_card_handler_does_not_undo_the_answer(
    engine: Engine, clock: FakeClock
) -> None:
    def broken(flag: Flag) -> None:
        raise ConnectionError("admin channel unreachable")

    engine.hooks.on_flag.append(broken)
    project = await engine.create_project(None, choice_spec(overlap=1, overlap_max=1))
    await engine.import_items(project.id, items_csv(40), name="i.csv")
    await engine.set_state(None, project.id, "live")
    user, _ = await engine.user_for("memory", "w1", "w1", "en")
    statuses = []
    for _ in range(30):  # always the same label: the same-label flag is raised on the way
        task = await engine.next_task(user.id)
        assert task is not None
        clock.advance(30)
        statuses.append((await engine.submit(user.id, task.assignment.id, "yes")).status)
    assert set(statuses) <= {"accepted", "review"}  # each one credited
    assert FlagKind.FRAUD_SAME_LABEL in {f.kind for f in await engine.open_flags()}
    assert (await engine.get_user(user.id)).balance == 30 * 5
