"""Backups of a SQLite store with SQLite's online backup API, and their inspection.

:func:`backup_file` copies a live database in one backup step: one read transaction, so the
copy is one consistent snapshot even while the bot writes (in WAL mode readers never block
the writer). The copy is written beside its destination, checked, switched to a rollback
journal (one self-contained file) and renamed into place, so a failed backup never leaves a
partial file under the destination's name. Everything here blocks: call it in a thread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from polycrowd.engine.store.base import TABLES, StoreError
from polycrowd.engine.store.sqlite.database import SCHEMA_VERSION

SQLITE_MAGIC = b"SQLite format 3\x00"
# Tables every polycrowd database has had since version 1.
REQUIRED_TABLES = frozenset({"schema_migrations", "users", "projects", "items", "ledger"})


class BackupError(StoreError):
    """A backup cannot be taken, or a file is not a usable polycrowd backup."""


class _Unusable(Exception):
    """Why a database cannot be a polycrowd backup (the caller names the file)."""


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """What a backup holds: its schema version, rows per table, its latest checkpoint."""

    schema_version: int
    rows: dict[str, int]
    checkpoint: int  # the latest ledger checkpoint stored in it (0: none)


def _connect_ro(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def discard_file(path: Path) -> None:
    """Remove a database file and its journal, WAL and shared-memory files."""
    for p in (path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(OSError):
            p.unlink()


def backup_file(source: str | Path, dest: str | Path) -> BackupInfo:
    """Copy the live database ``source`` to ``dest`` (replacing it) with the online backup
    API; returns what the copy holds. Raises :class:`BackupError` with one line."""
    source, dest = Path(source), Path(dest)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    try:
        # the copy holds workers' data: only its owner may read it
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:
        raise BackupError(f"cannot write the backup {dest}: {exc.strerror or exc}") from exc
    try:
        try:
            src = _connect_ro(source)
        except sqlite3.Error as exc:
            raise BackupError(f"cannot read the database {source}: {exc}") from exc
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)  # one step: one consistent snapshot
                dst.execute("PRAGMA journal_mode=DELETE")
                info = _inspect(dst)
            finally:
                dst.close()
        except _Unusable as exc:
            raise BackupError(f"cannot back up {source}: {exc}") from exc
        except sqlite3.Error as exc:
            raise BackupError(f"cannot back up {source} to {dest}: {exc}") from exc
        finally:
            src.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except OSError as exc:
        raise BackupError(f"cannot write the backup {dest}: {exc.strerror or exc}") from exc
    finally:
        discard_file(tmp)
    return info


def inspect_backup(path: str | Path) -> BackupInfo:
    """Check that ``path`` is an intact polycrowd database this version can restore."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise BackupError(f"cannot read the backup {path}: {exc.strerror or exc}") from exc
    try:
        if head != SQLITE_MAGIC:
            raise _Unusable("it is not a SQLite database")
        try:
            conn = _connect_ro(path)
            try:
                return _inspect(conn)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise _Unusable(f"it is damaged ({exc})") from exc
    except _Unusable as exc:
        raise BackupError(f"{path} is not a usable polycrowd backup: {exc}") from exc


def _inspect(conn: sqlite3.Connection) -> BackupInfo:
    check = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
    if check != ["ok"]:
        raise _Unusable(f"it is damaged ({check[0] if check else 'no answer'})")
    tables = {
        str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    if not REQUIRED_TABLES.issubset(tables):
        raise _Unusable("it has no polycrowd tables")
    version = int(conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0)
    if version < 1:
        raise _Unusable("it has no schema version")
    if version > SCHEMA_VERSION:
        raise _Unusable(f"its schema {version} is newer than this polycrowd ({SCHEMA_VERSION})")
    rows = {
        t: int(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
        for t in TABLES
        if t in tables
    }
    checkpoint = 0
    if "ledger_checkpoints" in tables:
        checkpoint = int(conn.execute("SELECT MAX(n) FROM ledger_checkpoints").fetchone()[0] or 0)
    return BackupInfo(version, rows, checkpoint)


def restore_file(backup: str | Path, dest: str | Path) -> None:
    """Write the database ``backup`` into ``dest`` with the backup API (through SQLite's
    locks, so a connection still open on ``dest`` sees the restored content)."""
    backup, dest = Path(backup), Path(dest)
    try:
        src = _connect_ro(backup)
        try:
            dst = sqlite3.connect(dest, timeout=30)
            try:
                dst.execute("PRAGMA busy_timeout=30000")
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot restore {backup} into {dest}: {exc}") from exc
