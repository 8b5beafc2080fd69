"""Ledger: idempotent credits, hash chain, MACs, checkpoints, tamper detection."""

from __future__ import annotations

import asyncio
import itertools
import stat
from pathlib import Path
from typing import Any

import pytest

from polycrowd.engine import ledger
from polycrowd.engine.core import Engine
from polycrowd.engine.ledger_key import LedgerKeyError, LedgerKeyring
from polycrowd.engine.store import Database
from polycrowd.models.rules import RulesChecker
from polycrowd.settings import Settings


async def _user(engine: Engine, n: int) -> int:
    user, _ = await engine.user_for("memory", str(n), f"u{n}", "en")
    return user.id


async def test_same_ref_credits_once(engine: Engine) -> None:
    uid = await _user(engine, 1)

    async def credit() -> None:
        async with engine.db.transaction() as tx:
            await ledger.append(
                tx, uid, "credit", 5, "credit:p1:a1", now=engine.clock(), keyring=engine.keyring
            )

    await asyncio.gather(*(credit() for _ in range(10)))
    assert (await engine.get_user(uid)).balance == 5
    report = await engine.audit()
    assert report.ok and report.entries == 1 and report.total == 5


async def test_chain_links_and_verifies(engine: Engine) -> None:
    uid = await _user(engine, 1)
    for k in range(20):
        async with engine.db.transaction() as tx:
            await ledger.append(
                tx, uid, "credit", k, f"r{k}", now=engine.clock(), keyring=engine.keyring
            )
    entries = await engine.ledger_entries(uid, limit=100)
    by_seq = sorted(entries, key=lambda e: e.seq)
    assert by_seq[0].prev_hash == ledger.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(by_seq))
    assert (await engine.audit()).ok


async def test_rows_cannot_be_changed_through_sql(engine: Engine) -> None:
    uid = await _user(engine, 1)
    async with engine.db.transaction() as tx:
        await ledger.append(tx, uid, "credit", 5, "r1", now=engine.clock(), keyring=engine.keyring)
    with pytest.raises(Exception, match="append-only"):
        async with engine.db.transaction() as tx:
            await tx.run("UPDATE ledger SET amount = 500")
    with pytest.raises(Exception, match="append-only"):
        async with engine.db.transaction() as tx:
            await tx.run("DELETE FROM ledger")


GUARDS = ("tr_ledger_no_update", "tr_ledger_no_delete")


def _sqlite(db: Any) -> bool:
    return isinstance(db, Database)


async def _drop_guards(db: Any, names: tuple[str, ...] = GUARDS) -> None:
    on = "" if _sqlite(db) else " ON ledger"  # PostgreSQL names the table
    async with db.transaction() as tx:
        for name in names:
            await tx.run(f"DROP TRIGGER {name}{on}")


async def _restore_guards(db: Any) -> None:
    """What a careful attacker does after editing: put the triggers back."""
    async with db.transaction() as tx:
        for name, op in zip(GUARDS, ("UPDATE", "DELETE"), strict=True):
            if _sqlite(db):
                await tx.run(
                    f"CREATE TRIGGER {name} BEFORE {op} ON ledger"
                    " BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END"
                )
            else:
                await tx.run(
                    f"CREATE TRIGGER {name} BEFORE {op} ON ledger"
                    " FOR EACH ROW EXECUTE FUNCTION pc_ledger_append_only()"
                )


async def _tamper(db: Any, *sql: str) -> None:
    """What an attacker with file access does: drop the guards, edit, restore the guards."""
    await _drop_guards(db)
    async with db.transaction() as tx:
        for statement in sql:
            await tx.run(statement)
    await _restore_guards(db)


async def _rehash(db: Any) -> None:
    """Recompute every entry's sha256 and link from the genesis: the chain "verifies"."""
    async with db.read() as tx:
        rows = [dict(r) async for r in tx.ledger.chain()]
    prev = ledger.GENESIS
    await _drop_guards(db)
    async with db.transaction() as tx:
        for r in rows:
            digest = ledger.entry_hash(
                r["seq"], r["ts"], r["user_id"], r["kind"], r["amount"], r["ref"], r["memo"], prev
            )
            await tx.run(
                "UPDATE ledger SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, r["seq"])
            )
            prev = digest
    await _restore_guards(db)


async def _credits(engine: Engine, uid: int, n: int, start: int = 0) -> None:
    for k in range(start, start + n):
        async with engine.db.transaction() as tx:
            await ledger.append(
                tx, uid, "credit", 10, f"r{k}", now=engine.clock(), keyring=engine.keyring
            )


@pytest.mark.parametrize(
    ("sql", "bad_seq", "words"),
    [
        ("UPDATE ledger SET amount = 999 WHERE seq = 3", 3, "altered"),
        ("UPDATE ledger SET user_id = user_id WHERE seq = 1", None, ""),
        ("DELETE FROM ledger WHERE seq = 2", 2, "missing"),
        ("UPDATE ledger SET prev_hash = 'x' WHERE seq = 4", 4, "link"),
    ],
)
async def test_tampering_is_detected(
    engine: Engine, sql: str, bad_seq: int | None, words: str
) -> None:
    uid = await _user(engine, 1)
    await _credits(engine, uid, 5)
    await _tamper(engine.db, sql)
    report = await engine.audit()
    if bad_seq is None:  # a no-op update changes nothing
        assert report.ok, report.problem
        return
    assert not report.ok
    assert report.first_bad_seq == bad_seq
    assert words in report.problem


async def test_removing_the_last_entry_breaks_the_balance(engine: Engine) -> None:
    uid = await _user(engine, 1)
    await _credits(engine, uid, 3)
    await _tamper(engine.db, "DELETE FROM ledger WHERE seq = 3")
    report = await engine.audit()
    assert not report.ok and "balance" in report.problem


# Tampering by someone who can write the database file (issue 17) ----------------------


@pytest.mark.parametrize("mac", [None, "ab" * 32])
async def test_a_forged_bonus_with_a_recomputed_hash_fails(
    engine: Engine, mac: str | None
) -> None:
    """No trigger needs dropping to append: the row has the right sha256, link and balance,
    but no valid MAC, because the key is not in the database."""
    uid = await _user(engine, 1)
    await _credits(engine, uid, 3)
    async with engine.db.read() as tx:
        last = await tx.ledger.last()
    assert last is not None
    ts = engine.clock()
    digest = ledger.entry_hash(4, ts, uid, "bonus", 1000, "bonus:x", "", last[1])
    async with engine.db.transaction() as tx:
        await tx.run(
            "INSERT INTO ledger(seq, ts, user_id, kind, amount, ref, memo, prev_hash, hash, mac)"
            " VALUES (4, ?, ?, 'bonus', 1000, 'bonus:x', '', ?, ?, ?)",
            (ts, uid, last[1], digest, mac),
        )
        await tx.run("UPDATE users SET balance = balance + 1000 WHERE id = ?", (uid,))
    report = await engine.audit()
    assert not report.ok
    assert report.first_bad_seq == 4
    assert ("no MAC" if mac is None else "MAC does not match") in report.problem


async def test_deleting_the_last_entry_and_fixing_the_balance_fails(engine: Engine) -> None:
    uid = await _user(engine, 1)
    await _credits(engine, uid, 3)
    await engine.checkpoint_ledger()
    await _tamper(
        engine.db,
        "DELETE FROM ledger WHERE seq = 3",
        f"UPDATE users SET balance = balance - 10 WHERE id = {uid}",
    )
    report = await engine.audit()
    assert not report.ok
    assert report.problem == "checkpoint 1 has 3 entries, the ledger only 2"


async def test_editing_an_entry_and_rehashing_the_rest_fails(engine: Engine) -> None:
    uid = await _user(engine, 1)
    await _credits(engine, uid, 5)
    await _tamper(
        engine.db,
        "UPDATE ledger SET amount = 999 WHERE seq = 2",
        f"UPDATE users SET balance = balance + 989 WHERE id = {uid}",
    )
    await _rehash(engine.db)
    report = await engine.audit()
    assert not report.ok
    assert report.first_bad_seq == 2
    assert report.problem == "entry 2: MAC does not match (altered, or another key)"


@pytest.mark.parametrize("name", GUARDS)
async def test_a_dropped_append_only_trigger_is_reported(engine: Engine, name: str) -> None:
    uid = await _user(engine, 1)
    await _credits(engine, uid, 2)
    assert (await engine.audit()).ok
    await _drop_guards(engine.db, (name,))
    report = await engine.audit()
    assert not report.ok
    assert report.problem == f"append-only trigger {name} is missing or disabled"
    assert report.first_bad_seq is None  # the entries themselves are fine


async def test_a_defanged_trigger_is_reported(engine: Engine) -> None:
    """A trigger of the right name that no longer refuses anything does not count."""
    if not _sqlite(engine.db):
        pytest.skip("SQLite: the trigger body is checked in sqlite_master")
    await _drop_guards(engine.db, ("tr_ledger_no_update",))
    async with engine.db.transaction() as tx:
        await tx.run(
            "CREATE TRIGGER tr_ledger_no_update BEFORE UPDATE ON ledger BEGIN SELECT 1; END"
        )
    report = await engine.audit()
    assert report.problem == "append-only trigger tr_ledger_no_update is missing or disabled"


async def test_another_key_fails_every_mac_and_the_checkpoint(engine: Engine) -> None:
    uid = await _user(engine, 1)
    await _credits(engine, uid, 3)
    await engine.checkpoint_ledger()
    other = LedgerKeyring(env_key="0f" * 32, checkpoint_file=engine.keyring.checkpoint_file)
    report = await ledger.verify(engine.db, other)
    assert not report.ok and report.first_bad_seq == 1
    assert "entry 1: MAC does not match (altered, or another key)" in report.as_dict()["problems"]
    assert any("checkpoint 1: signature does not match" in p for p in report.as_dict()["problems"])


async def test_a_missing_key_file_is_an_audit_failure_and_stops_writes(engine: Engine) -> None:
    uid = await _user(engine, 1)
    await _credits(engine, uid, 2)
    key_file = engine.keyring.key_file
    assert key_file is not None and key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_file.unlink()
    fresh = LedgerKeyring(key_file=key_file, checkpoint_file=engine.keyring.checkpoint_file)
    report = await ledger.verify(engine.db, fresh)
    assert not report.ok
    assert report.problem.startswith("the ledger is signed but its key is missing")
    with pytest.raises(LedgerKeyError):
        async with engine.db.transaction() as tx:
            await ledger.append(tx, uid, "credit", 10, "r9", now=engine.clock(), keyring=fresh)
    with pytest.raises(LedgerKeyError):
        await ledger.checkpoint(engine.db, fresh, now=engine.clock())
    assert not key_file.exists()  # no new key was made up for a signed ledger
    assert (await engine.get_user(uid)).balance == 20


async def test_a_rolled_back_checkpoint_file_fails(engine: Engine) -> None:
    """Remove the last entries, and roll the checkpoint file back to before them."""
    uid = await _user(engine, 1)
    await _credits(engine, uid, 2)
    await engine.checkpoint_ledger()
    path = engine.keyring.checkpoint_file
    assert path is not None
    old = path.read_text()
    await _credits(engine, uid, 2, start=2)
    await engine.checkpoint_ledger()
    assert (await engine.audit()).ok
    path.write_text(old)
    await _tamper(
        engine.db,
        "DELETE FROM ledger WHERE seq > 2",
        f"UPDATE users SET balance = balance - 20 WHERE id = {uid}",
    )
    report = await engine.audit()
    assert not report.ok
    assert report.as_dict()["problems"] == [
        "checkpoint 2 has 4 entries, the ledger only 2",
        "checkpoints disagree: the file ends at checkpoint 1, the database at 2"
        " (one was rolled back or replaced)",
    ]


async def test_a_checkpoint_with_other_totals_fails(engine: Engine) -> None:
    uid = await _user(engine, 1)
    await _credits(engine, uid, 2)
    record = await engine.checkpoint_ledger()
    assert record["totals"] == {"credit": 20} and record["entries"] == 2
    await _tamper(engine.db, "UPDATE ledger SET kind = 'bonus' WHERE seq = 1")
    await _rehash(engine.db)
    report = await engine.audit()
    assert not report.ok and "MAC does not match" in report.problem


async def test_a_clean_ledger_passes_with_checkpoints(engine: Engine) -> None:
    uid = await _user(engine, 1)
    await _credits(engine, uid, 3)
    first = await engine.checkpoint_ledger()
    await _credits(engine, uid, 2, start=3)
    report = await engine.audit()
    assert report.ok, report.as_dict()
    assert report.authenticated and report.checkpoint == 1 and report.warnings == ()
    assert report.entries == 5 and report.totals == {"credit": 50}
    second = await engine.checkpoint_ledger()
    assert second["n"] == 2 and second["prev"] == first["mac"] and second["entries"] == 5
    assert (await engine.audit()).checkpoint == 2
    path = engine.keyring.checkpoint_file
    assert path is not None and len(path.read_text().splitlines()) == 2
    key_file = engine.keyring.key_file
    assert key_file is not None and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() not in path.read_text()  # the key is never written


async def test_a_legacy_ledger_is_reported_unauthenticated(engine: Engine) -> None:
    """Entries from before schema 4 have no MAC: audit says so, and the first signed entry
    after them anchors them."""
    uid = await _user(engine, 1)
    prev = ledger.GENESIS
    async with engine.db.transaction() as tx:
        for seq in (1, 2):
            digest = ledger.entry_hash(seq, 1.5, uid, "credit", 10, f"old{seq}", "", prev)
            await tx.run(
                "INSERT INTO ledger(seq, ts, user_id, kind, amount, ref, memo, prev_hash, hash)"
                " VALUES (?, 1.5, ?, 'credit', 10, ?, '', ?, ?)",
                (seq, uid, f"old{seq}", prev, digest),
            )
            prev = digest
        await tx.run("UPDATE users SET balance = 20 WHERE id = ?", (uid,))
    report = await engine.audit()
    assert report.ok and not report.authenticated
    assert report.as_dict()["warnings"] == [
        "the ledger is unauthenticated: its 2 entries have no MAC"
    ]
    await _credits(engine, uid, 1)
    report = await engine.audit()
    assert report.ok and report.authenticated and report.warnings == ()
    await _tamper(engine.db, "UPDATE ledger SET amount = 500 WHERE seq = 1")
    await _rehash(engine.db)
    assert (
        await engine.audit()
    ).problem == "entry 3: MAC does not match (altered, or another key)"


async def test_two_engines_on_one_database_share_one_key(db: Any) -> None:
    """Processes that start together end up with one key file (linked into place)."""
    rings = [LedgerKeyring.for_store(str(db.path), Settings()) for _ in range(4)]
    keys = await asyncio.gather(*(asyncio.to_thread(r.key, create=True) for r in rings))
    assert len(set(keys)) == 1


async def test_concurrent_appends_keep_one_chain(engine: Engine) -> None:
    """Many writers at once (on PostgreSQL: many connections) never fork the chain."""
    uid = await _user(engine, 1)

    async def credit(k: int) -> None:
        async with engine.db.transaction() as tx:
            await ledger.append(
                tx, uid, "credit", 1, f"c{k}", now=engine.clock(), keyring=engine.keyring
            )

    await asyncio.gather(*(credit(k) for k in range(40)))
    report = await engine.audit()
    assert report.ok and report.entries == 40 and report.total == 40
    assert (await engine.get_user(uid)).balance == 40


async def test_a_version_1_database_migrates_and_its_old_entries_stay_valid(
    tmp_path: Path, detector: Any
) -> None:
    """Schema 4 adds the MAC column and the checkpoints; entries from before keep verifying
    (reported unauthenticated) and new ones are signed."""
    import sqlite3

    from polycrowd.engine.store.sqlite.database import SCHEMA_VERSION, _schema_sql, _split_sql

    from .store.test_migrations import DOWNGRADE_TO_V1

    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    for statement in _split_sql(_schema_sql()):
        con.execute(statement)
    for statement in DOWNGRADE_TO_V1[:-1]:  # back to what version 1 made
        con.execute(statement)
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
    con.execute("INSERT INTO schema_migrations VALUES (1, 0)")
    con.execute(
        "INSERT INTO users(id, pseudonym, created_at, last_active, balance)"
        " VALUES (1, 'w1', 0, 0, 10)"
    )
    digest = ledger.entry_hash(1, 1.0, 1, "credit", 10, "old", "", ledger.GENESIS)
    con.execute(
        "INSERT INTO ledger VALUES (1, 1.0, 1, 'credit', 10, 'old', '', ?, ?)",
        (ledger.GENESIS, digest),
    )
    con.commit()
    con.close()
    db = await Database.open(path)
    try:
        assert await db.schema_version() == SCHEMA_VERSION  # every migration from 1
        engine = Engine(db, RulesChecker(), detector.detect)
        report = await engine.audit()
        assert report.ok and not report.authenticated and len(report.warnings) == 1
        await _credits(engine, 1, 1)
        report = await engine.audit()
        assert report.ok and report.authenticated and report.entries == 2
    finally:
        await db.close()


async def test_audit_problems_are_translated(engine: Engine) -> None:
    from polycrowd.i18n import Translator

    uid = await _user(engine, 1)
    await _credits(engine, uid, 1)
    await _drop_guards(engine.db, ("tr_ledger_no_delete",))
    report = await engine.audit()
    text = Translator().render(report.problem_msg, "es")
    assert text == "falta el disparador de solo-añadir tr_ledger_no_delete o está desactivado"
