"""The SQLite store's connection machinery: group commits, the reader pool, nesting guards."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from polycrowd.engine.core import Engine
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.ledger_key import LedgerKeyring
from polycrowd.engine.store import Database, StoreError
from polycrowd.models.rules import RulesChecker

from ...conftest import FakeClock, choice_spec, items_csv

LIMIT = 30.0  # seconds: only ever reached if something deadlocks


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(tmp_path / "t.db", readers=2)
    yield db
    await db.close()


async def _marks(db: Database, targets: list[str]) -> dict[str, float | None]:
    async with db.read() as tx:
        return {t: await tx.digests.last("test", t) for t in targets}


async def test_queued_changes_share_one_commit_and_a_failing_one_fails_alone(
    sqlite_db: Database,
) -> None:
    db = sqlite_db
    statements: list[str] = []
    await db.conn.set_trace_callback(statements.append)
    published: list[tuple[str, bool]] = []
    release = asyncio.Event()

    async def change(name: str, *, fail: bool = False, hold: bool = False) -> None:
        async with db.transaction() as tx:
            await tx.digests.mark("test", [name], 1.0)
            tx.outbox.add(lambda: published.append((name, db.conn.in_transaction)))
            if hold:
                await release.wait()
            if fail:
                raise ValueError(name)

    first = asyncio.create_task(change("first", hold=True))
    await asyncio.sleep(0)  # it now holds the writer
    names = [f"c{k}" for k in range(5)]
    others = [asyncio.create_task(change(n, fail=n == "c2")) for n in names]
    await asyncio.sleep(0)  # they now queue behind it
    release.set()
    results = await asyncio.wait_for(asyncio.gather(first, *others, return_exceptions=True), LIMIT)
    await db.set_trace_callback(None)

    assert [type(r).__name__ for r in results] == ["NoneType"] * 3 + ["ValueError"] + [
        "NoneType"
    ] * 2
    marks = await _marks(db, ["first", *names])
    assert {t for t, v in marks.items() if v is not None} == {"first", "c0", "c1", "c3", "c4"}
    assert statements.count("COMMIT") == 1  # six changes, one commit
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert "ROLLBACK TO change3" in statements  # c2 was the third change to join
    # Events of the failed change are dropped; the others are published after the commit.
    assert sorted(n for n, _ in published) == ["c0", "c1", "c3", "c4", "first"]
    assert not any(in_tx for _, in_tx in published)


async def test_a_lone_change_that_fails_rolls_back_and_the_next_one_commits(
    sqlite_db: Database,
) -> None:
    with pytest.raises(ValueError):
        async with sqlite_db.transaction() as tx:
            await tx.digests.mark("test", ["gone"], 1.0)
            raise ValueError
    async with sqlite_db.transaction() as tx:
        await tx.digests.mark("test", ["kept"], 2.0)
    assert await _marks(sqlite_db, ["gone", "kept"]) == {"gone": None, "kept": 2.0}
    assert not sqlite_db.conn.in_transaction


async def test_a_read_inside_a_transaction_reuses_it_instead_of_deadlocking(
    sqlite_db: Database,
) -> None:
    async def body() -> float | None:
        async with sqlite_db.transaction() as tx:
            await tx.digests.mark("test", ["mine"], 3.0)
            async with sqlite_db.read() as inner:
                assert inner is tx
                return await inner.digests.last("test", "mine")  # its own uncommitted change

    assert await asyncio.wait_for(body(), LIMIT) == 3.0


async def test_a_transaction_inside_a_transaction_is_refused(sqlite_db: Database) -> None:
    with pytest.raises(StoreError, match="inside another transaction"):
        async with sqlite_db.transaction() as tx:
            await tx.digests.mark("test", ["outer"], 1.0)
            async with sqlite_db.transaction():
                pass
    assert await _marks(sqlite_db, ["outer"]) == {"outer": None}  # the outer one rolled back


async def test_reads_run_beside_an_open_write_and_see_only_committed_state(
    sqlite_db: Database,
) -> None:
    db = sqlite_db
    written = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        async with db.transaction() as tx:
            await tx.digests.mark("test", ["w"], 4.0)
            written.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await written.wait()
    # The writer holds its lock and an uncommitted row; a read neither waits nor sees it.
    assert await asyncio.wait_for(_marks(db, ["w"]), LIMIT) == {"w": None}
    release.set()
    await task
    assert await _marks(db, ["w"]) == {"w": 4.0}


async def test_without_readers_reads_go_through_the_writer(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "noreaders.db", readers=0)
    try:
        async with db.transaction() as tx:
            await tx.digests.mark("test", ["n"], 8.0)
        assert await _marks(db, ["n"]) == {"n": 8.0}
    finally:
        await db.close()


async def test_an_in_memory_database_reads_through_the_writer() -> None:
    db = await Database.open(":memory:")
    try:
        async with db.transaction() as tx:
            await tx.digests.mark("test", ["m"], 5.0)
        assert await _marks(db, ["m"]) == {"m": 5.0}
    finally:
        await db.close()


async def test_an_answer_holds_the_writer_for_few_statements(tmp_path: Path) -> None:
    """The statements per answer (next_task + submit), and those on the writer's connection.

    The pick's inputs and the task are read on reader connections, so the single writer
    runs only the pick, the touch and the answer's own transaction."""
    db = await Database.open(tmp_path / "count.db", readers=2)
    clock = FakeClock()
    engine = Engine(
        db,
        RulesChecker(),
        LanguageDetector("script").detect,
        clock=clock,
        keyring=LedgerKeyring(),
    )
    project = await engine.create_project(None, choice_spec())
    await engine.import_items(project.id, items_csv(20), name="i.csv")
    await engine.set_state(None, project.id, "live")
    users = [(await engine.user_for("memory", f"w{n}", f"w{n}", "en"))[0] for n in range(5)]
    every: list[str] = []
    writer: list[str] = []
    await db.set_trace_callback(every.append)

    def on_writer(sql: str) -> None:
        every.append(sql)
        writer.append(sql)

    await db.conn.set_trace_callback(on_writer)
    answers = 0
    for user in users:
        for _ in range(2):
            task = await engine.next_task(user.id)
            assert task is not None
            clock.advance(5)
            await engine.submit(user.id, task.assignment.id, "yes")
            answers += 1
    await db.close()
    # A trigger's statements are traced with their parent's text, right after it.
    real_writer = [s for k, s in enumerate(writer) if k == 0 or s != writer[k - 1]]
    # 45 in all, 21 on the writer (it ran all 37 before the reader pool; 41 traced in all).
    assert len(every) / answers <= 45
    assert len(real_writer) / answers <= 21


async def test_a_batch_still_commits_when_the_change_it_waited_for_is_cancelled(
    sqlite_db: Database,
) -> None:
    db = sqlite_db
    release = asyncio.Event()

    async def holder() -> None:
        async with db.transaction() as tx:
            await tx.digests.mark("test", ["held"], 6.0)
            await release.wait()

    async def queued() -> None:
        async with db.transaction() as tx:
            await tx.digests.mark("test", ["never"], 7.0)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    second = asyncio.create_task(queued())
    await asyncio.sleep(0)  # queued behind the holder, which will leave the batch open for it
    release.set()
    second.cancel()
    await asyncio.wait_for(first, LIMIT)  # the batch closes without the cancelled change
    with pytest.raises(asyncio.CancelledError):
        await second
    assert await _marks(db, ["held", "never"]) == {"held": 6.0, "never": None}
