"""The SQLite store refuses anything but a healthy polycrowd database before writing a byte
(engine/store/sqlite/dbfile.py), and a read-only open can never write."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from polycrowd.engine.store import StoreError
from polycrowd.engine.store.sqlite import Database
from polycrowd.engine.store.sqlite.database import SCHEMA_VERSION
from polycrowd.engine.store.sqlite.dbfile import DbFileError, inspect


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def _polycrowd_db(path: Path, users: int = 200) -> Path:
    db = await Database.open(path)
    try:
        async with db.transaction() as tx:
            for n in range(users):  # a few pages, so that truncation has something to cut
                await tx.run(
                    "INSERT INTO users(pseudonym, created_at, last_active) VALUES (?, 0, 0)",
                    (f"w{n:04d}",),
                )
    finally:
        await db.close()
    return path


def _foreign(path: Path, *, wal: bool = False) -> Path:
    con = sqlite3.connect(path)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
    con.execute("INSERT INTO notes(body) VALUES ('mine')")
    con.commit()
    con.close()
    return path


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "-"))


async def test_a_healthy_database_passes_and_reports_its_version(tmp_path: Path) -> None:
    path = await _polycrowd_db(tmp_path / "p.db")
    found = inspect(path, create=False)
    assert (found.new, found.version, found.wal) == (False, SCHEMA_VERSION, True)
    assert _siblings(path) == []  # the check itself leaves no -wal/-shm


async def test_a_live_database_with_a_wal_passes(tmp_path: Path) -> None:
    """While the bot runs its -wal holds pages the file lacks yet: not a truncation."""
    path = await _polycrowd_db(tmp_path / "p.db", users=0)
    db = await Database.open(path)
    try:
        async with db.transaction() as tx:
            for n in range(300):
                await tx.run(
                    "INSERT INTO users(pseudonym, created_at, last_active) VALUES (?, 0, 0)",
                    (f"x{n:04d}",),
                )
        assert (tmp_path / "p.db-wal").stat().st_size > 0
        assert inspect(path, create=False).version == SCHEMA_VERSION
    finally:
        await db.close()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("text", "is not a SQLite database"),
        ("random", "is not a SQLite database"),
        ("truncated-pages", "is a truncated SQLite database (2 of"),
        ("truncated-mid-page", "is not a whole number of"),
        ("damaged-page", "is a damaged SQLite database"),
        ("foreign", "another application's SQLite database"),
        ("foreign-wal", "another application's SQLite database"),
        ("directory", "is a directory"),
    ],
)
@pytest.mark.parametrize("create", [False, True])
async def test_bad_files_are_refused_and_left_byte_identical(
    tmp_path: Path, kind: str, message: str, create: bool
) -> None:
    path = tmp_path / "x.db"
    if kind == "text":
        path.write_text("id,text\n1,hello\n" * 50)
    elif kind == "random":
        path.write_bytes(os.urandom(8192))
    elif kind.startswith("truncated") or kind == "damaged-page":
        await _polycrowd_db(path)
        data = path.read_bytes()
        page = int.from_bytes(data[16:18], "big")
        if kind == "truncated-pages":
            data = data[: 2 * page]
        elif kind == "truncated-mid-page":
            data = data[: 2 * page + 100]
        else:  # garbage over the b-tree page that holds the users table
            con = sqlite3.connect(path)
            (root,) = con.execute(
                "SELECT rootpage FROM sqlite_master WHERE name = 'users'"
            ).fetchone()
            con.close()
            start = (root - 1) * page
            data = data[:start] + b"\xff" * page + data[start + page :]
        path.write_bytes(data)
    elif kind.startswith("foreign"):
        _foreign(path, wal=kind == "foreign-wal")
    else:
        path.mkdir()
    before = None if path.is_dir() else _digest(path)
    with pytest.raises(DbFileError) as caught:
        inspect(path, create=create)
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(StoreError, match=r"x\.db"):  # the store's open refuses it the same way
        await Database.open(path, create=create)
    if before is not None:
        assert _digest(path) == before
    assert _siblings(path) == []


@pytest.mark.parametrize("kind", ["missing", "zero", "empty-sqlite"])
async def test_new_files_only_for_commands_that_create(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "new.db"
    if kind == "zero":
        path.write_bytes(b"")
    elif kind == "empty-sqlite":
        sqlite3.connect(path).execute("PRAGMA user_version = 0").connection.close()
        path.write_bytes(path.read_bytes())  # a valid SQLite file without tables
    before = path.read_bytes() if path.exists() else None
    with pytest.raises(DbFileError, match="polycrowd db migrate --db"):
        inspect(path, create=False)
    assert (path.read_bytes() if path.exists() else None) == before
    assert inspect(path, create=True).new
    db = await Database.open(path, create=True)
    try:
        assert await db.schema_version() == SCHEMA_VERSION
    finally:
        await db.close()
    assert not inspect(path, create=False).new


async def test_a_readonly_open_never_writes(tmp_path: Path) -> None:
    path = await _polycrowd_db(tmp_path / "p.db")
    before = _digest(path)
    db = await Database.open(path, create=False, readonly=True)
    try:
        async with db.read() as tx:
            assert await tx.value("SELECT COUNT(*) FROM users") == 200
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            async with db.transaction() as tx:
                await tx.run(
                    "INSERT INTO users(pseudonym, created_at, last_active) VALUES ('z', 0, 0)"
                )
    finally:
        await db.close()
    assert _digest(path) == before


async def test_a_readonly_open_does_not_migrate_an_older_schema(tmp_path: Path) -> None:
    path = await _polycrowd_db(tmp_path / "p.db", users=0)
    con = sqlite3.connect(path)
    con.execute("DELETE FROM schema_migrations WHERE version = ?", (SCHEMA_VERSION,))
    con.commit()
    con.close()
    before = _digest(path)
    with pytest.raises(StoreError, match=r"is older than this polycrowd.*db migrate"):
        await Database.open(path, create=False, readonly=True)
    assert _digest(path) == before


@pytest.mark.parametrize("kind", ["text", "newer-schema"])
async def test_a_refused_open_leaves_no_thread_behind(tmp_path: Path, kind: str) -> None:
    """A failed open used to leave aiosqlite's (non-daemon) connection thread running, so the
    CLI printed its error and then never exited."""
    import threading

    path = tmp_path / "x.db"
    if kind == "text":
        path.write_text("not a database")
    else:  # a healthy file that a later polycrowd wrote: refused after SQLite opened it
        await _polycrowd_db(path, users=0)
        con = sqlite3.connect(path)
        con.execute("INSERT INTO schema_migrations(version, applied_at) VALUES (99, 0)")
        con.commit()
        con.close()

    def connection_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if "_connection_worker" in t.name]

    assert connection_threads() == []
    for readonly in (False, True):
        with pytest.raises(StoreError):
            await Database.open(path, create=False, readonly=readonly)
    for thread in connection_threads():
        thread.join(timeout=10)  # close() stops it at once; the bound only fails a bad test
    assert connection_threads() == []
