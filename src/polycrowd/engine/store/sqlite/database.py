"""The SQLite store: a group-committing writer, a pool of readers, migrations.

Every state change runs inside :meth:`Database.transaction`: all of it commits or none of it
does, and the events collected in its outbox are published after the commit and dropped on
rollback. Changes that arrive while the writer is busy share one ``BEGIN IMMEDIATE``
transaction (one SAVEPOINT each) and one COMMIT; reads (:meth:`Database.read`) run on their
own connections, beside the writer (WAL). ``BEGIN IMMEDIATE`` keeps other processes out while
we write. All SQL lives in this package (:mod:`polycrowd.engine.store.sqlite.repos`); the
engine talks to the repositories through the protocol in :mod:`polycrowd.engine.store.base`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import sqlite3
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Sequence,
)
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from polycrowd.engine.events import Outbox
from polycrowd.engine.store import versions
from polycrowd.engine.store.base import TABLES, Diagnostics, StoreError
from polycrowd.engine.store.sqlite import dbfile, repos

SCHEMA_VERSION = 5

# Version 3 (model in the loop) also changed version 1's tables, which schema.sql holds as they
# are now: a database older than 3 gets these statements before the section of version 3.
V3_CHANGES = """
ALTER TABLE items ADD COLUMN priority REAL NOT NULL DEFAULT 0;
DROP INDEX ix_items_pick;
CREATE INDEX ix_items_pick ON items(lang, is_gold, priority, filled, confidence, project_id, id)
    WHERE state = 'open';
ALTER TABLE results ADD COLUMN model_version TEXT;
ALTER TABLE results ADD COLUMN human_confidence REAL;
"""


@functools.cache
def migrations() -> dict[int, str]:
    """version -> SQL applied to go from version-1 to version: the version's section of
    schema.sql (a fresh database runs all of schema.sql instead). A migration's SQL never
    changes once released."""
    return versions.migrations(_schema_sql(), {3: V3_CHANGES})


Row = aiosqlite.Row

__all__ = ["Database", "Row", "StoreError", "Tx"]


T = TypeVar("T")


async def _hop(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(raw sqlite3 connection, *args)`` on the connection's thread: one hop."""
    execute = cast("Callable[..., Awaitable[T]]", conn._execute)
    return await execute(fn, conn._conn, *args)


def _hop_fetch(
    raw: sqlite3.Connection, prelude: str, sql: str, params: Sequence[Any] | dict[str, Any]
) -> list[Row]:
    if prelude:
        raw.execute(prelude)
    return raw.execute(sql, params).fetchall()


def _hop_run(
    raw: sqlite3.Connection, prelude: str, sql: str, params: Sequence[Any] | dict[str, Any]
) -> int:
    if prelude:
        raw.execute(prelude)
    cur = raw.execute(sql, params)
    try:
        if sql.lstrip()[:6].upper() == "INSERT":
            return int(cur.lastrowid or 0)
        return int(cur.rowcount)
    finally:
        cur.close()


def _hop_many(
    raw: sqlite3.Connection, prelude: str, sql: str, rows: Iterable[Sequence[Any]]
) -> None:
    if prelude:
        raw.execute(prelude)
    raw.executemany(sql, rows).close()


class Tx:
    """A connection inside a transaction (or a read). Thin typed wrapper over aiosqlite.

    Each query is one hop to the connection's thread; the statement that opens the
    transaction, savepoint or read snapshot (the *prelude*) rides along with the first query
    instead of taking a hop of its own.
    """

    def __init__(self, conn: aiosqlite.Connection, prelude: str = "") -> None:
        self.conn = conn
        self.prelude = prelude  # run just before the next query, in the same hop
        self.began = False  # whether the prelude has run
        self.savepoint = ""  # the savepoint a change that joined a group commit runs in
        self.active = True  # False once its transaction (or read) has ended
        self.outbox = Outbox()
        self.users = repos.UserRepo(self)
        self.languages = repos.LanguageRepo(self)
        self.skills = repos.SkillRepo(self)
        self.projects = repos.ProjectRepo(self)
        self.items = repos.ItemRepo(self)
        self.assignments = repos.AssignmentRepo(self)
        self.answers = repos.AnswerRepo(self)
        self.results = repos.ResultRepo(self)
        self.prelabels = repos.PrelabelRepo(self)
        self.checker_stats = repos.CheckerStatsRepo(self)
        self.ledger = repos.LedgerRepo(self)
        self.flags = repos.FlagRepo(self)
        self.payouts = repos.PayoutRepo(self)
        self.tokens = repos.TokenRepo(self)
        self.links = repos.LinkRepo(self)
        self.questions = repos.QuestionRepo(self)
        self.dashboard = repos.DashboardRepo(self)
        self.digests = repos.DigestRepo(self)
        self.reports = repos.ReportRepo(self)
        self.state = repos.StateRepo(self)

    def _take_prelude(self) -> str:
        prelude, self.prelude = self.prelude, ""
        if prelude:
            self.began = True
        return prelude

    async def begin(self) -> None:
        """Run the prelude now (before a cursor is opened on the connection)."""
        if self.prelude:
            await self.conn.execute(self._take_prelude())

    async def one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
        rows = await self.all(sql, params)
        return next(iter(rows), None)

    async def all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        conn = self.conn
        return await _hop(conn, _hop_fetch, self._take_prelude(), sql, params)

    async def value(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        row = await self.one(sql, params)
        return None if row is None else row[0]

    async def run(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Execute; return lastrowid for an INSERT, else the number of changed rows."""
        conn = self.conn
        return int(await _hop(conn, _hop_run, self._take_prelude(), sql, params))

    async def insert_id(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Run an INSERT of one row; the new row's id (its lastrowid)."""
        return await self.run(sql, params)

    async def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        conn = self.conn
        await _hop(conn, _hop_many, self._take_prelude(), sql, rows)

    @asynccontextmanager
    async def cursor(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = ()
    ) -> AsyncIterator[aiosqlite.Cursor]:
        """A cursor to stream a large result from."""
        await self.begin()
        async with self.conn.execute(sql, params) as cur:
            yield cur


def default_readers() -> int:
    """Reader connections when none are asked for: none on one or two cores, else up to 4.

    Measured on 2 shared cores (bench/matching.py, 200 workers at once), every reader thread
    cost throughput: each hop to a mostly idle reader thread waits to be scheduled, while
    the writer's thread, always busy, takes the next statement at once. With cores to
    spare, readers run beside the writer (SQLite releases the GIL)."""
    return max(0, min(4, (os.cpu_count() or 1) - 2))


class _Batch:
    """One group commit: the changes that share an outer transaction and its COMMIT."""

    __slots__ = ("changes", "committed", "done", "error", "savepoints")

    def __init__(self) -> None:
        self.changes = 0  # changes that joined (and did not fail)
        self.savepoints = 0
        self.committed = False
        self.error: BaseException | None = None
        # resolved when the batch is closed: its changes wait on it, not on the lock
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def close(self, error: BaseException | None = None) -> None:
        self.committed = True
        self.error = self.error or error
        if not self.done.done():
            self.done.set_result(None)


class Database:
    """One SQLite file: a writer connection that group-commits, and a pool of readers.

    Writes: every :meth:`transaction` is one state change. Changes that queue for the writer
    while another runs join its outer ``BEGIN IMMEDIATE`` transaction, each inside its own
    SAVEPOINT (a failing change rolls back only its savepoint and raises to its own caller);
    the last change of the batch (nobody else waiting, or ``max_batch`` reached) commits
    once for all of them. No caller returns before the commit that holds its change, and its
    outbox events are published only after that commit (dropped if it fails).

    Reads: :meth:`read` sessions run on their own connections (``readers`` of them; see
    :func:`default_readers`) beside the writer (WAL), each session one snapshot (a deferred
    ``BEGIN`` ... ``ROLLBACK``), so reads never wait for the writer's lock; with no readers
    they take the writer's lock and connection. A read opened inside a transaction reuses
    that transaction's connection (and sees its uncommitted changes) instead of
    deadlocking; a transaction opened inside another raises :class:`StoreError`.
    """

    def __init__(
        self, path: str | Path, *, readers: int | None = None, max_batch: int = 64
    ) -> None:
        self.path = str(path)
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        if readers is None:
            readers = default_readers()
        self._readers_wanted = readers if self.path != ":memory:" else 0
        self._readers: list[aiosqlite.Connection] = []
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._max_batch = max(1, max_batch)
        self._batch: _Batch | None = None
        self._queued = 0  # changes waiting for the writer
        self._flushes: set[asyncio.Future[None]] = set()  # flushes, reader releases
        # The transaction the running task is inside, if any (nested read/transaction guard).
        self._current: contextvars.ContextVar[Tx | None] = contextvars.ContextVar(
            f"polycrowd_sqlite_tx_{id(self)}", default=None
        )

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        create: bool = True,
        readonly: bool = False,
        readers: int | None = None,
    ) -> Database:
        db = cls(path, readers=readers)
        await db.connect(create=create, readonly=readonly)
        return db

    async def connect(self, *, create: bool = True, readonly: bool = False) -> None:
        """Open the file; ``create``: a missing or empty file becomes a new database;
        ``readonly``: SQLite refuses every write (``mode=ro``), nothing is migrated. Anything
        but a healthy polycrowd database is refused before a byte is written (dbfile.py)."""
        target, uri = self.path, False
        if self.path != ":memory:":
            await asyncio.to_thread(dbfile.inspect, self.path, create=create and not readonly)
            if readonly:
                target, uri = dbfile.readonly_uri(self.path), True
        conn = await self._connect(target, uri)
        try:  # a failed open closes the connection: its thread would keep the process alive
            if not readonly:
                await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
            await (self._check_version() if readonly else self._migrate())
        except BaseException as exc:
            self._conn = None
            await conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"cannot open database {self.path}: {exc}") from exc
            raise
        try:
            for _ in range(self._readers_wanted):
                reader = await self._connect(target, uri)
                await reader.execute("PRAGMA query_only=ON")
                self._readers.append(reader)
                self._idle.put_nowait(reader)
        except BaseException:
            await self.close()
            raise

    async def _connect(self, target: str, uri: bool) -> aiosqlite.Connection:
        try:
            conn = await aiosqlite.connect(target, isolation_level=None, timeout=30, uri=uri)
        except Exception as exc:  # sqlite3.OperationalError and friends
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=30000")
            await conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
            await conn.execute("PRAGMA temp_store=MEMORY")
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"cannot open database {self.path}: {exc}") from exc
            raise
        return conn

    async def _check_version(self) -> None:
        """A read-only open migrates nothing: the schema must be this version's."""
        current = await self.schema_version()
        if current != SCHEMA_VERSION:
            newer = "newer" if current > SCHEMA_VERSION else "older"
            hint = f"; upgrade it with: polycrowd db migrate --db {self.path}"
            hint = "" if current > SCHEMA_VERSION else hint
            raise StoreError(
                f"database schema {current} of {self.path} is {newer} than this polycrowd"
                f" ({SCHEMA_VERSION}){hint}"
            )

    async def close(self) -> None:
        if self._conn is not None:
            async with self._lock:
                if self._batch is not None:
                    await self._commit(self._batch)
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        readers, self._readers = self._readers, []
        self._idle = asyncio.Queue()
        for reader in readers:
            await reader.close()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def __aenter__(self) -> Database:
        if self._conn is None:
            await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError("database is not open")
        return self._conn

    @property
    def readers(self) -> int:
        """Reader connections open beside the writer (0: reads go through the writer)."""
        return len(self._readers)

    async def peers(self, group: str) -> int:
        """Processes sharing ``group``: one (a SQLite file is served by one process)."""
        return 1

    async def set_trace_callback(self, callback: Callable[[str], object] | None) -> None:
        """Call ``callback`` with every statement any of its connections runs (tests)."""
        for conn in (self.conn, *self._readers):
            await conn.set_trace_callback(cast("Any", callback))

    def _inside(self) -> Tx | None:
        tx = self._current.get()
        return tx if tx is not None and tx.active else None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """One state change: all of it commits, or none of it does."""
        if self._inside() is not None:
            raise StoreError("a transaction cannot be opened inside another transaction")
        self._queued += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self._queued -= 1
            if self._queued == 0 and self._batch is not None and not self._lock.locked():
                # We were the last one queued and the batch waits for us: close it.
                self._spawn(self._flush(self._batch))
            raise
        self._queued -= 1
        try:
            conn = self.conn
            batch = self._batch
            if batch is None:
                batch = self._batch = _Batch()
            if conn.in_transaction:
                # Join the open batch: a savepoint of our own, never released (COMMIT takes
                # them all), so the next change's savepoint nests inside ours.
                batch.savepoints += 1
                tx = Tx(conn, f"SAVEPOINT change{batch.savepoints}")
                tx.savepoint = f"change{batch.savepoints}"
            else:
                tx = Tx(conn, "BEGIN IMMEDIATE")
            token = self._current.set(tx)
            try:
                yield tx
            except BaseException:
                tx.outbox.drop()
                await self._undo(batch, tx)
                raise
            finally:
                tx.active = False
                self._current.reset(token)
            batch.changes += 1
            if self._queued == 0 or batch.changes >= self._max_batch:
                await self._commit(batch)
        finally:
            if self._batch is not None and self._queued == 0:
                # Nobody left to close the batch (the last change failed, or was cancelled).
                await self._commit(self._batch)
            self._lock.release()
        if not batch.committed:
            # Others queued behind us join the batch; the last of them commits it.
            await asyncio.shield(batch.done)
        if batch.error is not None:
            raise StoreError(f"the group commit failed: {batch.error}") from batch.error
        # Published outside the lock: a handler may start its own transaction.
        tx.outbox.publish()

    async def _undo(self, batch: _Batch, tx: Tx) -> None:
        """Roll back one failed change: its savepoint, or the transaction it opened."""
        conn = self.conn
        if not tx.began:
            return  # it ran no statement
        if not conn.in_transaction:
            if batch.changes:  # SQLite rolled the whole transaction back (e.g. disk full)
                self._batch = None
                batch.close(StoreError("the transaction was rolled back by SQLite"))
            return
        if tx.savepoint:
            await conn.execute(f"ROLLBACK TO {tx.savepoint}")
        else:
            # It opened the transaction: every change before it in the batch ran no SQL.
            await conn.execute("ROLLBACK")

    async def _commit(self, batch: _Batch) -> None:
        self._batch = None
        error: BaseException | None = None
        try:
            if self.conn.in_transaction:
                await self.conn.execute("COMMIT")
        except BaseException as exc:
            error = exc
            if self.conn.in_transaction:
                await self.conn.execute("ROLLBACK")
        finally:
            batch.close(error)

    async def _flush(self, batch: _Batch) -> None:
        async with self._lock:
            if self._batch is batch:
                await self._commit(batch)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background; close() waits for it."""
        task = asyncio.ensure_future(work)
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        """A read-only session: one snapshot of the last committed state."""
        inside = self._inside()
        if inside is not None:
            yield inside
            return
        if not self._readers:  # in memory, or no readers wanted: read through the writer
            async with self._lock:
                if self._batch is not None:
                    await self._commit(self._batch)
                yield Tx(self.conn)
            return
        conn = await self._idle.get()
        tx = Tx(conn, "BEGIN")
        try:
            yield tx
        except BaseException:
            await self._release_reader(tx)
            raise
        # The caller goes on at once; the snapshot ends (and the connection returns to the
        # pool) in the background.
        self._spawn(self._release_reader(tx))

    async def _release_reader(self, tx: Tx) -> None:
        try:
            if tx.began and tx.conn.in_transaction:
                await tx.conn.execute("ROLLBACK")
        finally:
            if tx.conn in self._readers:
                self._idle.put_nowait(tx.conn)

    async def _migrate(self) -> None:
        async with self.transaction() as tx:
            await tx.run(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            current = await tx.value("SELECT MAX(version) FROM schema_migrations") or 0
            scripts, pending = versions.plan(current, SCHEMA_VERSION, _schema_sql(), migrations())
            for sql in scripts:
                for statement in _split_sql(sql):
                    await tx.run(statement)
            for version in pending:
                await tx.run(
                    "INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )

    async def diagnostics(self, project_id: int | None = None) -> Diagnostics:
        """Invariants (duplicate assignments, over-assigned items, ...) counted."""
        async with self.read() as tx:
            return await repos.diagnostics(tx, project_id)

    async def table_sizes(self) -> dict[str, int]:
        """Rows per table."""
        async with self.read() as tx:
            return {t: int(await tx.value(f"SELECT COUNT(*) FROM {t}")) for t in TABLES}

    async def dump(
        self, table: str, batch: int = 5000
    ) -> AsyncIterator[tuple[list[str], list[tuple[Any, ...]]]]:
        """(columns, rows) of one table in insertion order, a batch at a time."""
        if table not in TABLES:
            raise ValueError(table)
        async with (
            self.read() as tx,
            tx.cursor(f"SELECT * FROM {table} ORDER BY rowid") as cur,
        ):
            columns = [d[0] for d in cur.description]
            while rows := await cur.fetchmany(batch):
                yield columns, [tuple(r) for r in rows]

    async def schema_version(self) -> int:
        async with self.read() as tx:
            return int(await tx.value("SELECT MAX(version) FROM schema_migrations") or 0)


def _schema_sql() -> str:
    return (
        resources.files("polycrowd.engine.store.sqlite").joinpath("schema.sql").read_text("utf-8")
    )


def _split_sql(script: str) -> list[str]:
    """Split a script into statements, keeping CREATE TRIGGER ... END; bodies whole."""
    statements: list[str] = []
    buf: list[str] = []
    in_trigger = False
    for line in script.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("--")):
            continue
        buf.append(line)
        upper = stripped.upper()
        if upper.startswith("CREATE TRIGGER"):
            in_trigger = True
        if in_trigger:
            if upper == "END;":
                statements.append("\n".join(buf))
                buf, in_trigger = [], False
        elif stripped.endswith(";"):
            statements.append("\n".join(buf))
            buf = []
    if any(s.strip() for s in buf):
        statements.append("\n".join(buf))
    return statements
