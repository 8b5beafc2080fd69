"""``polycrowd db``: migrate a database, or copy a SQLite database into PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from polycrowd.settings import Settings


def add_parser(cmd: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    db = cmd(
        "db",
        "Migrate a database to this version's schema, or copy SQLite into PostgreSQL.",
        "polycrowd db copy polycrowd.db postgresql://pc@127.0.0.1:5432/polycrowd",
    )
    db.add_argument("action", choices=["migrate", "copy"])
    db.add_argument("source", nargs="?", help="copy: the SQLite file to copy")
    db.add_argument("dest", nargs="?", help="copy: the empty postgresql:// database")
    db.add_argument("--json", action="store_true", help="print one JSON object")


def db_command(args: argparse.Namespace, settings: Settings, error: type[Exception]) -> int:
    if args.action == "migrate":
        out = asyncio.run(_migrate(settings.db))
    else:
        if not args.source or not args.dest:
            raise error("db copy needs SOURCE (a SQLite file) and DEST (a postgresql:// URL)")
        from polycrowd.engine.store import is_postgres

        if is_postgres(args.source) or not is_postgres(args.dest):
            raise error("db copy goes from a SQLite file to a postgresql:// database")
        out = asyncio.run(_copy(args.source, args.dest, settings))
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    elif args.action == "migrate":
        print(f"{out['database']}: schema version {out['schema_version']}")
    else:
        rows = sum(out["rows"].values())
        verdict = "audit OK" if out["ok"] else "AUDIT FAILED"
        print(f"copied {rows} rows in {len(out['rows'])} tables; {verdict}")
        if not out["ok"]:
            print(json.dumps(out, ensure_ascii=False), file=sys.stderr)
    return 0 if args.action == "migrate" or out["ok"] else 1


async def _migrate(url: str) -> dict[str, Any]:
    from polycrowd.engine.store import is_postgres, open_store
    from polycrowd.engine.store.postgres import redact_dsn

    store = await open_store(url, create=True)  # opening applies pending migrations
    try:
        version = await store.schema_version()
    finally:
        await store.close()
    return {"database": redact_dsn(url) if is_postgres(url) else url, "schema_version": version}


async def _copy(source: str, dest: str, settings: Settings) -> dict[str, Any]:
    from polycrowd.engine.ledger_key import LedgerKeyring
    from polycrowd.engine.store.copy import copy_store
    from polycrowd.engine.store.postgres import PgDatabase
    from polycrowd.engine.store.sqlite import Database

    keyring = LedgerKeyring.for_store(source, settings)
    src = await Database.open(source, create=False)
    try:
        dst = await PgDatabase.open(dest, create=True)
        try:
            report = await copy_store(src, dst, keyring)
        finally:
            await dst.close()
    finally:
        await src.close()
    if report.ok:  # the copy's ledger key and checkpoints go where the copy will look
        await asyncio.to_thread(keyring.copy_to, LedgerKeyring.for_store(dest, settings))
    return report.as_dict()
