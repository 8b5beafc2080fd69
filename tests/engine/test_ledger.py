"""Ledger: idempotent credits, hash chain, tamper detection."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from polycrowd.engine import ledger
from polycrowd.engine.core import Engine
from polycrowd.engine.store import Database


async def _user(engine: Engine, n: int) -> int:
    user, _ = await engine.user_for("memory", str(n), f"u{n}", "en")
    return user.id


async def test_same_ref_credits_once(engine: Engine) -> None:
    uid = await _user(engine, 1)

    async def credit() -> None:
        async with engine.db.transaction() as tx:
            await ledger.append(tx, uid, "credit", 5, "credit:p1:a1", now=engine.clock())

    await asyncio.gather(*(credit() for _ in range(10)))
    assert (await engine.get_user(uid)).balance == 5
    report = await engine.audit()
    assert report.ok and report.entries == 1 and report.total == 5


async def test_chain_links_and_verifies(engine: Engine) -> None:
    uid = await _user(engine, 1)
    for k in range(20):
        async with engine.db.transaction() as tx:
            await ledger.append(tx, uid, "credit", k, f"r{k}", now=engine.clock())
    entries = await engine.ledger_entries(uid, limit=100)
    by_seq = sorted(entries, key=lambda e: e.seq)
    assert by_seq[0].prev_hash == ledger.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(by_seq))
    assert (await engine.audit()).ok


async def test_rows_cannot_be_changed_through_sql(engine: Engine) -> None:
    uid = await _user(engine, 1)
    async with engine.db.transaction() as tx:
        await ledger.append(tx, uid, "credit", 5, "r1", now=engine.clock())
    with pytest.raises(Exception, match="append-only"):
        async with engine.db.transaction() as tx:
            await tx.run("UPDATE ledger SET amount = 500")
    with pytest.raises(Exception, match="append-only"):
        async with engine.db.transaction() as tx:
            await tx.run("DELETE FROM ledger")


async def _tamper(db: Any, sql: str) -> None:
    """What an attacker with file access does: drop the guards, then edit."""
    on = "" if isinstance(db, Database) else " ON ledger"  # PostgreSQL names the table
    async with db.transaction() as tx:
        await tx.run(f"DROP TRIGGER tr_ledger_no_update{on}")
        await tx.run(f"DROP TRIGGER tr_ledger_no_delete{on}")
        await tx.run(sql)


@pytest.mark.parametrize(
    ("sql", "bad_seq", "words"),
    [
        ("UPDATE ledger SET amount = 999 WHERE seq = 3", 3, "altered"),
        ("UPDATE ledger SET user_id = user_id WHERE seq = 1; ", None, ""),
        ("DELETE FROM ledger WHERE seq = 2", 2, "missing"),
        ("UPDATE ledger SET prev_hash = 'x' WHERE seq = 4", 4, "link"),
    ],
)
async def test_tampering_is_detected(
    engine: Engine, sql: str, bad_seq: int | None, words: str
) -> None:
    uid = await _user(engine, 1)
    for k in range(5):
        async with engine.db.transaction() as tx:
            await ledger.append(tx, uid, "credit", 10, f"r{k}", now=engine.clock())
    await _tamper(engine.db, sql)
    report = await engine.audit()
    if bad_seq is None:  # a no-op update changes nothing
        assert report.ok
        return
    assert not report.ok
    assert report.first_bad_seq == bad_seq
    assert words in report.problem


async def test_removing_the_last_entry_breaks_the_balance(engine: Engine) -> None:
    uid = await _user(engine, 1)
    for k in range(3):
        async with engine.db.transaction() as tx:
            await ledger.append(tx, uid, "credit", 10, f"r{k}", now=engine.clock())
    await _tamper(engine.db, "DELETE FROM ledger WHERE seq = 3")
    report = await engine.audit()
    assert not report.ok and "balance" in report.problem


async def test_concurrent_appends_keep_one_chain(engine: Engine) -> None:
    """Many writers at once (on PostgreSQL: many connections) never fork the chain."""
    uid = await _user(engine, 1)

    async def credit(k: int) -> None:
        async with engine.db.transaction() as tx:
            await ledger.append(tx, uid, "credit", 1, f"c{k}", now=engine.clock())

    await asyncio.gather(*(credit(k) for k in range(40)))
    report = await engine.audit()
    assert report.ok and report.entries == 40 and report.total == 40
    assert (await engine.get_user(uid)).balance == 40
