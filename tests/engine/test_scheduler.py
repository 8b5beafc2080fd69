"""Scheduled work: the engine functions directly, and the APScheduler wiring."""

from __future__ import annotations

from polycrowd.engine import ledger
from polycrowd.engine.core import Engine
from polycrowd.engine.scheduler import Scheduler
from polycrowd.settings import Settings

from ..conftest import FakeClock, choice_spec, items_csv


async def _live(engine: Engine, **kw: object) -> int:
    project = await engine.create_project(None, choice_spec(**kw))
    await engine.import_items(project.id, items_csv(4), name="i.csv")
    await engine.set_state(None, project.id, "live")
    return project.id


async def test_close_projects_past_their_deadline(engine: Engine, clock: FakeClock) -> None:
    pid = await _live(engine, deadline=clock() + 3600)
    other = await _live(engine)
    w, _ = await engine.user_for("memory", "1", "w", "en")
    assert await engine.next_task(w.id) is not None
    assert await engine.close_overdue_projects() == []
    clock.advance(3601)
    assert await engine.close_overdue_projects() == [pid]
    assert (await engine.get_project(pid)).state == "done"
    assert (await engine.get_project(other)).state == "live"
    async with engine.db.read() as tx:
        assert await tx.value("SELECT COUNT(*) FROM assignments WHERE state = 'issued'") == 0


async def test_idle_workers_are_reminded_once(engine: Engine, clock: FakeClock) -> None:
    await _live(engine)
    a, _ = await engine.user_for("memory", "1", "a", "en")
    b, _ = await engine.user_for("memory", "2", "b", "en")
    clock.advance(100)
    await engine.next_task(b.id)  # b is active
    assert await engine.idle_workers(50) == [a.id]
    assert await engine.idle_workers(50) == []  # not reminded twice in a row
    clock.advance(100)
    assert set(await engine.idle_workers(50)) == {a.id, b.id}


async def test_scheduler_runs_jobs_and_shuts_down(engine: Engine, clock: FakeClock) -> None:
    await _live(engine, assignment_ttl=10.0)
    w, _ = await engine.user_for("memory", "1", "w", "en")
    assert await engine.next_task(w.id) is not None
    clock.advance(11)
    reminded: list[list[int]] = []

    async def on_idle(ids: list[int]) -> None:
        reminded.append(ids)

    sched = Scheduler(engine, Settings(expire_every_s=0.05, remind_after_s=5))
    sched.on_idle = on_idle
    assert await sched.expire() == 1  # the job body, directly
    sched.start()
    try:
        assert sched.jobs() == [
            "close_projects",
            "expire",
            "fraud",
            "ledger_checkpoint",
            "moderator_digest",
            "remind",
            "worker_digest",
        ]
    finally:
        sched.shutdown()
    assert sched.jobs() == []
    assert await sched.remind() == [w.id]
    assert reminded == [[w.id]]


async def test_the_checkpoint_job_signs_the_head_and_tells_the_admins(engine: Engine) -> None:
    w, _ = await engine.user_for("memory", "1", "w", "en")
    async with engine.db.transaction() as tx:
        await ledger.append(tx, w.id, "bonus", 7, "b1", now=engine.clock(), keyring=engine.keyring)
    posted: list[dict[str, object]] = []

    async def on_checkpoint(record: dict[str, object]) -> None:
        posted.append(record)

    sched = Scheduler(engine, Settings())
    sched.on_checkpoint = on_checkpoint
    record = await sched.checkpoint()
    assert posted == [record] and record["n"] == 1
    path = engine.keyring.checkpoint_file
    assert path is not None and path.read_text().count("\n") == 1
    report = await engine.audit()
    assert report.ok and report.checkpoint == 1 and record["totals"] == {"bonus": 7}
