"""Stores: the protocol (:mod:`.base`) and its implementations (:mod:`.sqlite`,
:mod:`.postgres`). ``from polycrowd.engine.store import Database`` is the SQLite store, as
before; :func:`open_store` picks the store from a path or a ``postgresql://`` URL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polycrowd.engine.store.base import Diagnostics, Session, Store, StoreError, Transaction
from polycrowd.engine.store.sqlite import Database, Row, Tx
from polycrowd.engine.store.sqlite.database import SCHEMA_VERSION

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(url: str | Path) -> bool:
    return str(url).startswith(POSTGRES_SCHEMES)


async def open_store(
    url: str | Path, *, create: bool = True, readonly: bool = False, **kw: Any
) -> Store:
    """The store behind ``url``: a PostgreSQL URL, or else the path of a SQLite file.

    ``readonly``: a SQLite file is opened ``mode=ro`` (no write, no migration, no WAL switch);
    on PostgreSQL the role's privileges decide, as for every other command."""
    if is_postgres(url):
        from polycrowd.engine.store.postgres import PgDatabase

        return await PgDatabase.open(str(url), create=create, **kw)
    return await Database.open(url, create=create, readonly=readonly)


__all__ = [
    "SCHEMA_VERSION",
    "Database",
    "Diagnostics",
    "Row",
    "Session",
    "Store",
    "StoreError",
    "Transaction",
    "Tx",
    "is_postgres",
    "open_store",
]
