"""The SQLite store: one aiosqlite connection, migrations, one transaction per state change.

Every state change runs inside :meth:`Database.transaction` (``BEGIN IMMEDIATE`` ... commit,
rollback on any exception); the events collected in its outbox are published after the
commit and dropped on rollback. Reads go through :meth:`Database.read`. Both hold one
asyncio lock, so coroutines never see each other's half-done transactions on the shared
connection, and ``BEGIN IMMEDIATE`` keeps other processes out while we write. All SQL lives
in this package (:mod:`polycrowd.engine.store.sqlite.repos`); the engine talks to the
repositories through the protocol in :mod:`polycrowd.engine.store.base`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from polycrowd.engine.events import Outbox
from polycrowd.engine.store.base import TABLES, Diagnostics, StoreError
from polycrowd.engine.store.sqlite import dbfile, repos

SCHEMA_VERSION = 5

# Version 2: questions, FAQ, dashboard logins and digest bookkeeping (services/feedback.py).
V2_FEEDBACK = """
-- A worker's question about a task, and the requester's (or a moderator's) answer.
CREATE TABLE questions (
    id INTEGER PRIMARY KEY,
    worker_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    item_id INTEGER REFERENCES items(id) ON DELETE SET NULL,
    lang TEXT NOT NULL DEFAULT 'en',
    text TEXT NOT NULL,
    answer TEXT,
    answered_by INTEGER REFERENCES users(id),
    created_at REAL NOT NULL,
    answered_at REAL
);
CREATE INDEX ix_questions_worker ON questions(worker_id, created_at);
CREATE INDEX ix_questions_project ON questions(project_id, id);

-- Questions pinned to a project's instructions.
CREATE TABLE faq_entries (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    question_id INTEGER REFERENCES questions(id) ON DELETE SET NULL,
    lang TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    created_at REAL NOT NULL
);

-- One-time dashboard login links (sha256 of the token; single use) and the sessions they open.
CREATE TABLE dashboard_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
CREATE TABLE dashboard_sessions (
    session_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);

-- When a digest last went to whom ("worker"/"<user id>", "moderators"/"all").
CREATE TABLE digest_runs (
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    sent_at REAL NOT NULL,
    PRIMARY KEY (kind, target)
);
"""

# Version 4: ledger entries carry a MAC (HMAC under a key kept outside the database; NULL in
# entries written before); signed checkpoints of the chain head, append-only as well.
V4_LEDGER = """
ALTER TABLE ledger ADD COLUMN mac TEXT;
CREATE TABLE ledger_checkpoints (
    n INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE TRIGGER tr_ledger_checkpoints_no_update BEFORE UPDATE ON ledger_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;
CREATE TRIGGER tr_ledger_checkpoints_no_delete BEFORE DELETE ON ledger_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;
"""

# Version 5: per-user state that survives a restart (engine/services/state.py): a
# /newproject conversation, the project a requester's commands act on.
V5_USER_STATE = """
CREATE TABLE user_state (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX ix_user_state_key ON user_state(key, updated_at);
"""

# version -> SQL applied to go from version-1 to version. A fresh database gets schema.sql,
# which holds every version, instead; a migration's SQL never changes once released.
MIGRATIONS: dict[int, str] = {
    2: V2_FEEDBACK,
    # Model in the loop (engine/services/prelabels.py): per-item predictions, the project
    # model's earned trust, the pick order (items.priority, first in the pick index), and
    # per result whether the model took part and how sure the people alone were.
    3: """
ALTER TABLE items ADD COLUMN priority REAL NOT NULL DEFAULT 0;
DROP INDEX ix_items_pick;
CREATE INDEX ix_items_pick ON items(lang, is_gold, priority, filled, confidence, project_id, id)
    WHERE state = 'open';
ALTER TABLE results ADD COLUMN model_version TEXT;
ALTER TABLE results ADD COLUMN human_confidence REAL;
CREATE TABLE item_predictions (
    item_id INTEGER PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
    project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    probs TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX ix_item_predictions_project ON item_predictions(project_id);
CREATE TABLE project_models (
    project_id INTEGER PRIMARY KEY REFERENCES projects(id) ON DELETE CASCADE,
    model_version TEXT NOT NULL,
    temperature REAL NOT NULL DEFAULT 1,
    annotator TEXT NOT NULL,
    accuracy REAL,
    ece REAL,
    trained_on INTEGER NOT NULL DEFAULT 0,
    confident_at_train INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
""",
    4: V4_LEDGER,
    5: V5_USER_STATE,
}


Row = aiosqlite.Row

__all__ = ["Database", "Row", "StoreError", "Tx"]


class Tx:
    """A connection inside a transaction (or a read). Thin typed wrapper over aiosqlite."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
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

    # Each method is one hop to the database thread (aiosqlite runs every cursor call as a
    # separate hop; fetching in the same hop as the execute cuts the per-query cost ~3x).

    async def one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Row | None:
        rows = await self.conn.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Row]:
        return list(await self.conn.execute_fetchall(sql, params))

    async def value(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        row = await self.one(sql, params)
        return None if row is None else row[0]

    async def run(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """Execute; return lastrowid for an INSERT, else the number of changed rows."""
        cur = await self.conn.execute(sql, params)
        # The cursor is finished (no rows to read); dropping it frees the statement.
        if sql.lstrip()[:6].upper() == "INSERT":
            return int(cur.lastrowid or 0)
        return int(cur.rowcount)

    async def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.conn.executemany(sql, rows)


class Database:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, path: str | Path, *, create: bool = True, readonly: bool = False
    ) -> Database:
        db = cls(path)
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
        try:
            conn = await aiosqlite.connect(target, isolation_level=None, timeout=30, uri=uri)
        except Exception as exc:  # sqlite3.OperationalError and friends
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        try:  # a failed open closes the connection: its thread would keep the process alive
            conn.row_factory = aiosqlite.Row
            if not readonly:
                await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA foreign_keys=ON")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=30000")
            await conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache
            await conn.execute("PRAGMA temp_store=MEMORY")
            self._conn = conn
            await (self._check_version() if readonly else self._migrate())
        except BaseException as exc:
            self._conn = None
            await conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise StoreError(f"cannot open database {self.path}: {exc}") from exc
            raise

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

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """One state change: all of it commits, or none of it does."""
        async with self._lock:
            conn = self.conn
            await conn.execute("BEGIN IMMEDIATE")
            tx = Tx(conn)
            try:
                yield tx
            except BaseException:
                tx.outbox.drop()
                await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")
        # Published outside the lock: a handler may start its own transaction.
        tx.outbox.publish()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        async with self._lock:
            yield Tx(self.conn)

    async def _migrate(self) -> None:
        async with self.transaction() as tx:
            await tx.run(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            current = await tx.value("SELECT MAX(version) FROM schema_migrations") or 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"database schema {current} is newer than this polycrowd ({SCHEMA_VERSION})"
                )
            pending = range(current + 1, SCHEMA_VERSION + 1)
            scripts = [_schema_sql()] if current == 0 else [MIGRATIONS[v] for v in pending]
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
            tx.conn.execute(f"SELECT * FROM {table} ORDER BY rowid") as cur,
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
