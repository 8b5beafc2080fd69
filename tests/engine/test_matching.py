"""Matching: exact overlap under concurrency, no repeats, expiry, language and skill."""

from __future__ import annotations

import asyncio

from polycrowd.engine.core import Engine

from ..conftest import FakeClock, choice_spec, items_csv


async def _worker(engine: Engine, n: int, lang: str = "en") -> int:
    user, _ = await engine.user_for("memory", f"w{n}", f"w{n}", lang)
    return user.id


async def _live_project(engine: Engine, n_items: int, **kw: object) -> int:
    project = await engine.create_project(None, choice_spec(**kw))
    langs = kw.get("languages", ("en",))
    await engine.import_items(project.id, items_csv(n_items, langs), name="i.csv")  # type: ignore[arg-type]
    await engine.set_state(None, project.id, "live")
    return project.id


async def test_many_workers_at_once_fill_overlap_exactly(engine: Engine) -> None:
    await _live_project(engine, 50, overlap=3, overlap_max=3)
    workers = [await _worker(engine, n) for n in range(200)]
    tasks = await asyncio.gather(*(engine.next_task(w) for w in workers))
    issued = [t for t in tasks if t is not None]
    assert len(issued) == 150
    dup = (await engine.diagnostics()).duplicate_assignments
    async with engine.db.read() as tx:
        per_item = await tx.all("SELECT live, filled, target FROM items")
    assert dup == 0
    assert all(r["live"] == 3 and r["filled"] == 3 and r["target"] == 3 for r in per_item)


async def test_no_worker_sees_an_item_twice(engine: Engine, clock: FakeClock) -> None:
    await _live_project(engine, 3, overlap=5, overlap_max=5)
    w = await _worker(engine, 1)
    seen = []
    for _ in range(5):
        task = await engine.next_task(w)
        if task is None:
            break
        seen.append(task.item.id)
        clock.advance(5)
        result = await engine.submit(w, task.assignment.id, "yes")
        assert result.status == "accepted"
    assert len(seen) == 3 and len(set(seen)) == 3


async def test_open_task_is_shown_again_not_a_new_one(engine: Engine) -> None:
    await _live_project(engine, 5)
    w = await _worker(engine, 1)
    first = await engine.next_task(w)
    again = await engine.next_task(w)
    assert first is not None and again is not None
    assert first.assignment.id == again.assignment.id


async def test_expired_assignments_return_their_slot(engine: Engine, clock: FakeClock) -> None:
    await _live_project(engine, 1, overlap=1, overlap_max=1, assignment_ttl=60.0)
    a, b = await _worker(engine, 1), await _worker(engine, 2)
    assert await engine.next_task(a) is not None
    assert await engine.next_task(b) is None  # the only slot is taken
    clock.advance(61)
    assert await engine.expire_assignments() == 1
    task = await engine.next_task(b)
    assert task is not None
    # the worker whose assignment expired cannot answer it any more
    async with engine.db.read() as tx:
        row = await tx.one("SELECT live, filled FROM items")
    assert row is not None and row["live"] == 1 and row["filled"] == 1


async def test_items_routed_only_in_worker_languages(engine: Engine) -> None:
    await _live_project(engine, 30, languages=("en", "es", "ru"), overlap=1, overlap_max=1)
    es = await _worker(engine, 1, "es")
    got = []
    while (task := await engine.next_task(es)) is not None:
        got.append(task.item.lang)
        await engine.skip(es, task.assignment.id)
    assert got and set(got) == {"es"}
    await engine.set_languages(es, ["es", "ru"])
    task = await engine.next_task(es)
    assert task is not None and task.item.lang == "ru"


async def test_items_most_in_need_first(engine: Engine, clock: FakeClock) -> None:
    await _live_project(engine, 4, overlap=2, overlap_max=2)
    first = [await engine.next_task(await _worker(engine, n)) for n in range(4)]
    assert len({t.item.id for t in first if t}) == 4  # spread before doubling up


async def test_skill_requirement_and_pause(engine: Engine) -> None:
    await _live_project(engine, 3, skills={"medical": 0.8})
    w = await _worker(engine, 1)
    assert await engine.next_task(w) is None  # prior 0.67 < 0.8
    async with engine.db.transaction() as tx:
        await tx.run(
            "INSERT INTO user_skills(user_id, skill, alpha, beta, mean) VALUES (?, 'medical',"
            " 9, 1, 0.9)",
            (w,),
        )
    assert await engine.next_task(w) is not None


async def test_gold_only_when_wanted(engine: Engine, clock: FakeClock) -> None:
    project = await engine.create_project(None, choice_spec(gold_ratio=0.0))
    await engine.import_items(project.id, items_csv(10, gold_every=2), name="i.csv")
    await engine.set_state(None, project.id, "live")
    w = await _worker(engine, 1)
    while (task := await engine.next_task(w)) is not None:
        assert task.item.gold is None
        clock.advance(5)
        await engine.submit(w, task.assignment.id, "yes")


async def test_qualification_serves_gold_first(engine: Engine, clock: FakeClock) -> None:
    project = await engine.create_project(None, choice_spec(gold_ratio=0.1, qualification=2))
    await engine.import_items(project.id, items_csv(10, gold_every=2), name="i.csv")
    await engine.set_state(None, project.id, "live")
    w = await _worker(engine, 1)
    for _ in range(2):
        task = await engine.next_task(w)
        assert task is not None and task.item.gold is not None
        clock.advance(5)
        result = await engine.submit(w, task.assignment.id, task.item.gold or "")
        assert result.correct is True
