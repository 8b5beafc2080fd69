"""Checks on a database file before SQLite (or polycrowd) writes a byte to it.

:func:`inspect` reads the file and refuses, with one line that names the file and what is
wrong, anything that is not a healthy polycrowd database:

* a missing file, a 0-byte file or a SQLite database without tables ("new"): accepted only
  when the caller creates databases (``create=True``: ``db migrate``, ``project create``,
  the bot's tests); every other command answers "database not found" / "is empty" with a
  hint how to create one;
* a text file, random bytes, a directory: "not a SQLite database";
* a file shorter than its header says, or not a whole number of pages: "truncated";
* SQLite's ``PRAGMA quick_check`` failing (files up to :data:`QUICK_CHECK_MAX_BYTES`);
* another application's SQLite database (tables, but no ``schema_migrations``): always
  refused, even by commands that create databases, so that polycrowd never adds its tables
  (or WAL mode) to someone else's file.

The checks open the file with ``mode=ro`` (``immutable=1`` when no ``-wal`` file says that a
connection is live), so a refused file is left byte-identical and gets no ``-wal``/``-shm``.
Blocking: call it in a thread.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from polycrowd.engine.store.base import StoreError

SQLITE_MAGIC = b"SQLite format 3\x00"
HEADER_BYTES = 100
#: ``PRAGMA quick_check`` reads every page; above this size only the header and the schema
#: are checked (about 5 s per GiB would be too slow for every command).
QUICK_CHECK_MAX_BYTES = 256 * 1024 * 1024
#: The table that marks a polycrowd database (it holds the schema version).
MARKER_TABLE = "schema_migrations"

__all__ = [
    "MARKER_TABLE",
    "DbFile",
    "DbFileError",
    "create_hint",
    "inspect",
    "readonly_uri",
]


class DbFileError(StoreError):
    """The file at ``--db`` is not a database polycrowd may open."""


@dataclass(frozen=True, slots=True)
class DbFile:
    """What :func:`inspect` found."""

    path: str
    new: bool  # missing, 0 bytes or a SQLite database without tables: polycrowd creates it
    version: int  # polycrowd schema version (0 when new)
    wal: bool  # the header says journal_mode=WAL


def create_hint(path: str) -> str:
    return f"create it with: polycrowd db migrate --db {path}"


def readonly_uri(path: str | Path) -> str:
    """A ``file:`` URI that opens ``path`` read-only: SQLite refuses every write."""
    return f"file:{quote(os.path.abspath(path))}?mode=ro"


def inspect(path: str | Path, *, create: bool) -> DbFile:
    """Check the file at ``path`` (see the module docstring); raise :class:`DbFileError`."""
    name = str(path)
    try:
        info = os.stat(name)
    except FileNotFoundError:
        if create:
            return DbFile(name, new=True, version=0, wal=False)
        raise DbFileError(f"database not found: {name} ({create_hint(name)})") from None
    except OSError as exc:
        raise DbFileError(f"cannot read {name}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(info.st_mode):
        raise DbFileError(f"{name} is a directory, not a database file")
    if not stat.S_ISREG(info.st_mode):
        raise DbFileError(f"{name} is not a regular file, not a database")
    if info.st_size == 0:
        if create:
            return DbFile(name, new=True, version=0, wal=False)
        raise DbFileError(
            f"{name} is empty (0 bytes), not a polycrowd database ({create_hint(name)})"
        )
    try:
        with open(name, "rb") as fh:
            header = fh.read(HEADER_BYTES)
    except OSError as exc:
        raise DbFileError(f"cannot read {name}: {exc.strerror or exc}") from exc
    wal = _check_header(name, header, info.st_size)
    tables, version = _read_schema(name, info.st_size, wal)
    if not tables:
        if create:
            return DbFile(name, new=True, version=0, wal=wal)
        raise DbFileError(
            f"{name} is an empty SQLite database without polycrowd's tables ({create_hint(name)})"
        )
    if version is None:
        raise DbFileError(
            f"{name} is another application's SQLite database (no polycrowd tables);"
            " refusing to touch it"
        )
    return DbFile(name, new=False, version=version, wal=wal)


def _check_header(name: str, header: bytes, size: int) -> bool:
    """Validate SQLite's 100-byte header against the file's size; True when in WAL mode."""
    if len(header) < HEADER_BYTES or not header.startswith(SQLITE_MAGIC):
        raise DbFileError(f"{name} is not a SQLite database (no SQLite header); refusing it")
    (raw_page,) = struct.unpack(">H", header[16:18])
    page = 65536 if raw_page == 1 else raw_page
    if page < 512 or page & (page - 1):
        raise DbFileError(f"{name} is a damaged SQLite database (page size {raw_page})")
    if size % page:
        raise DbFileError(
            f"{name} is a truncated SQLite database ({size} bytes is not a whole number of"
            f" {page}-byte pages)"
        )
    change, pages = struct.unpack(">II", header[24:32])
    (valid_for,) = struct.unpack(">I", header[92:96])
    # A live -wal (or a hot rollback journal) may legitimately hold pages the file lacks yet;
    # then SQLite's own checks below decide.
    pending = any(_nonempty(name + suffix) for suffix in ("-wal", "-journal"))
    if valid_for == change and pages and size // page < pages and not pending:
        raise DbFileError(
            f"{name} is a truncated SQLite database ({size // page} of {pages} pages)"
        )
    return header[18] == 2 and header[19] == 2


def _nonempty(path: str) -> bool:
    try:
        return os.stat(path).st_size > 0
    except OSError:
        return False


def _read_schema(name: str, size: int, wal: bool) -> tuple[list[str], int | None]:
    """The file's tables and polycrowd schema version (None: not a polycrowd database)."""
    uri = readonly_uri(name)
    if not wal or not os.path.exists(name + "-wal"):
        # No connection is live (a WAL connection keeps its -wal): read the file as it is,
        # without creating -wal/-shm beside it.
        uri += "&immutable=1"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=5, check_same_thread=False)
    except sqlite3.Error as exc:
        raise DbFileError(f"cannot open {name}: {exc}") from exc
    try:
        tables = [
            str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        if size <= QUICK_CHECK_MAX_BYTES:
            problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                detail = "; ".join(p.replace("\n", " ") for p in problems)
                raise DbFileError(
                    f"{name} is a damaged SQLite database (integrity check: {detail})"
                )
        if MARKER_TABLE not in tables:
            return tables, None
        version = conn.execute(f"SELECT MAX(version) FROM {MARKER_TABLE}").fetchone()[0]
        return tables, int(version or 0)
    except sqlite3.DatabaseError as exc:
        raise DbFileError(f"{name} is a damaged SQLite database ({exc})") from exc
    finally:
        conn.close()
