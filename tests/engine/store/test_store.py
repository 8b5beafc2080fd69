"""Both stores: diagnostics, typed repositories, errors and the injected clock."""

from __future__ import annotations

import pytest

from polycrowd.engine.core import Engine, EngineError
from polycrowd.engine.errors import Conflict, Forbidden, InvalidInput, NotFound, PolycrowdError
from polycrowd.engine.store import Database, Store

from ...conftest import FakeClock, choice_spec, items_csv


async def _live(engine: Engine, n_items: int = 4) -> int:
    project = await engine.create_project(None, choice_spec())
    await engine.import_items(project.id, items_csv(n_items), name="i.csv")
    await engine.set_state(None, project.id, "live")
    return project.id


def test_the_sqlite_database_is_a_store(db: Database) -> None:
    store: Store = db  # mypy checks the structure; this checks the re-export
    assert store is db


async def test_diagnostics_count_work_and_catch_a_broken_counter(
    engine: Engine, clock: FakeClock
) -> None:
    await _live(engine)
    for n in range(3):
        user, _ = await engine.user_for("memory", f"w{n}", f"w{n}", "en")
        task = await engine.next_task(user.id)
        assert task is not None
        clock.advance(5)
        await engine.submit(user.id, task.assignment.id, "yes")
    diag = await engine.diagnostics()
    assert diag.duplicate_assignments == diag.over_assigned_items == 0
    assert diag.miscounted_items == diag.duplicate_credits == 0
    assert diag.assignments == diag.answered_assignments == diag.answers == diag.credits == 3
    assert diag.routed_in_worker_language == 1.0
    async with engine.db.transaction() as tx:  # tests may use SQL to break things
        await tx.run("UPDATE items SET filled = target + 1 WHERE id = 1")
        await tx.run("UPDATE items SET answered = answered + 1 WHERE id = 2")
    broken = await engine.diagnostics()
    assert broken.over_assigned_items == 1 and broken.miscounted_items == 1


async def test_the_engine_clock_stamps_ledger_and_assignments(
    engine: Engine, clock: FakeClock
) -> None:
    clock.t = 1_000_000.25
    await _live(engine)
    user, _ = await engine.user_for("memory", "w", "w", "en")
    task = await engine.next_task(user.id)
    assert task is not None and task.assignment.issued_at == 1_000_000.25
    clock.advance(10)
    await engine.submit(user.id, task.assignment.id, "yes")
    (entry,) = await engine.ledger_entries(user.id)
    assert entry.ts == 1_000_010.25
    clock.advance(10_000)
    assert await engine.expire_assignments() == 0  # answered: nothing to expire


async def test_refusals_are_typed_and_stay_engine_errors(engine: Engine, clock: FakeClock) -> None:
    pid = await _live(engine)
    w1, _ = await engine.user_for("memory", "w1", "w1", "en")
    w2, _ = await engine.user_for("memory", "w2", "w2", "en")
    task = await engine.next_task(w1.id)
    assert task is not None
    with pytest.raises(Forbidden):
        await engine.submit(w2.id, task.assignment.id, "yes")
    with pytest.raises(NotFound) as missing:
        await engine.get_project(pid + 100)
    assert missing.value.msgid == "There is no project %(id)s." and missing.value.params
    with pytest.raises(InvalidInput):
        await engine.set_languages(w1.id, [])
    await engine.set_state(None, pid, "done")
    with pytest.raises(Conflict):
        await engine.set_state(None, pid, "live")
    with pytest.raises(EngineError):  # the old name still catches every refusal
        await engine.set_languages(w1.id, [])
    assert EngineError is PolycrowdError
