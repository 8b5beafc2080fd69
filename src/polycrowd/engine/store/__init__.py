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
    url: str | Path,
    *,
    create: bool = True,
    readonly: bool = False,
    readers: int | None = None,
    pool_min: int | None = None,
    pool_max: int | None = None,
    **kw: Any,
) -> Store:
    """The store behind ``url``: a PostgreSQL URL, or else the path of a SQLite file.

    ``readonly``: a SQLite file is opened ``mode=ro`` (no write, no migration, no WAL switch);
    on PostgreSQL the role's privileges decide, as for every other command. ``readers``: the
    SQLite reader connections (None: :func:`~.sqlite.database.default_readers`);
    ``pool_min``/``pool_max``: the PostgreSQL connection pool's size (None: 1 and 10).
    ``Settings.store_options()`` gives all three from the environment."""
    if is_postgres(url):
        from polycrowd.engine.store.postgres import PgDatabase

        if pool_min is not None:
            kw["min_size"] = pool_min
        if pool_max is not None:
            kw["max_size"] = pool_max
        return await PgDatabase.open(str(url), create=create, **kw)
    return await Database.open(url, create=create, readonly=readonly, readers=readers)


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
