"""``polycrowd db``: migrate a database, or copy a SQLite database into PostgreSQL;
``polycrowd backup`` and ``polycrowd restore`` of a SQLite database and its ledger key.

The ledger key lives outside the database (``<db>.ledger.key``, or POLYCROWD_LEDGER_KEY);
a backup without it cannot prove its ledger, so ``backup`` writes the key and the
checkpoint file beside the copy (``<backup>.ledger.key``, ``<backup>.checkpoints``, mode
600; ``--no-key`` leaves the key out) and ``restore`` puts them back beside the database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
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


# backup / restore -------------------------------------------------------------------------

BACKUP_HELP = (
    "Copy the database safely while the bot runs (SQLite's online backup): one consistent"
    " file, with the ledger key and checkpoints beside it as OUTPUT.ledger.key and"
    " OUTPUT.checkpoints (mode 600)."
)
RESTORE_HELP = (
    "Restore a backup into the database (--db): refuses a file that is not an intact"
    " polycrowd backup, replaces an existing database only with --force (stop the bot"
    " first), puts the backup's ledger key and checkpoints in place, then audits."
)
PG_BACKUP = (
    "backup copies a SQLite file; for PostgreSQL use pg_dump -Fc (and keep the ledger key"
    " file {key} with it), or restore a SQLite backup and `polycrowd db copy` it"
)


def add_backup_parsers(cmd: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    bk = cmd("backup", BACKUP_HELP, "polycrowd backup backups/polycrowd-2026-12-01.db")
    bk.add_argument("output", help="the backup file to write (its folder must exist)")
    bk.add_argument("--force", action="store_true", help="replace an existing backup file")
    bk.add_argument(
        "--no-key",
        action="store_true",
        help="leave the ledger key out (keep it elsewhere; restore then needs the key file"
        " or POLYCROWD_LEDGER_KEY)",
    )
    bk.add_argument("--json", action="store_true", help="print one JSON object")
    rs = cmd(
        "restore", RESTORE_HELP, "polycrowd restore backups/polycrowd-2026-12-01.db --db p.db"
    )
    rs.add_argument("backup", help="a file written by `polycrowd backup`")
    rs.add_argument(
        "--force", action="store_true", help="replace an existing database and its ledger key"
    )
    rs.add_argument("--json", action="store_true", help="print one JSON object")


def _beside(path: Path, suffix: str) -> Path:
    return Path(f"{path}{suffix}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and a.samefile(b))
    except OSError:
        return False


def _copy_private(src: Path, dst: Path, *, lines_upto: int | None = None) -> None:
    """Copy ``src`` to ``dst`` (mode 600, written aside then renamed into place). With
    ``lines_upto``: only the JSON lines whose checkpoint number is at most that."""
    data = src.read_bytes()
    if lines_upto is not None:
        kept = []
        for line in data.decode("utf-8").splitlines(keepends=True):
            try:
                n = int(json.loads(line).get("n", 0))
            except (ValueError, AttributeError, TypeError):
                continue
            if n <= lines_upto:
                kept.append(line)
        data = "".join(kept).encode("utf-8")
    tmp = dst.with_name(f".{dst.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, dst)


def backup_command(args: argparse.Namespace, settings: Settings, error: type[Exception]) -> int:
    from polycrowd.engine.ledger_key import LedgerKeyring
    from polycrowd.engine.store import is_postgres

    keyring = LedgerKeyring.for_store(settings.db, settings)
    if is_postgres(settings.db):
        raise error(PG_BACKUP.format(key=keyring.where))
    db, out = Path(settings.db), Path(args.output)
    if not db.is_file():
        raise error(f"database not found: {db}")
    if out.is_dir():
        raise error(f"{out} is a folder: name the backup file, e.g. {out / 'polycrowd.db'}")
    if not out.parent.is_dir():
        raise error(f"no such folder: {out.parent} (create it first)")
    if not os.access(out.parent, os.W_OK):
        raise error(f"cannot write into {out.parent}: permission denied")
    if _same_file(db, out):
        raise error("the backup must be another file than the database")
    if out.exists() and not args.force:
        raise error(f"{out} exists; pass --force to replace it")
    out_key, out_cps = _beside(out, ".ledger.key"), _beside(out, ".checkpoints")
    info = asyncio.run(_backup(db, out))
    copied: list[str] = []
    try:
        src_key = keyring.key_file
        if not args.no_key and src_key is not None and src_key.is_file() and not keyring.env_key:
            _copy_private(src_key, out_key)
            copied.append(str(out_key))
        src_cps = keyring.checkpoint_file
        if src_cps is not None and src_cps.is_file():
            # only the checkpoints the snapshot has (one may be written while we copy)
            _copy_private(src_cps, out_cps, lines_upto=info.checkpoint)
            copied.append(str(out_cps))
    except OSError as exc:
        raise error(f"cannot copy the ledger key or checkpoints beside {out}: {exc}") from exc
    result = {
        "database": str(db),
        "backup": str(out),
        "schema_version": info.schema_version,
        "rows": info.rows,
        "checkpoint": info.checkpoint,
        "copied": copied,
        "key": "env" if keyring.env_key else ("left out" if args.no_key else str(out_key)),
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"backed up {db} to {out} ({sum(info.rows.values())} rows)")
        if keyring.env_key:
            print("the ledger key is POLYCROWD_LEDGER_KEY: keep it to restore this backup")
        elif args.no_key:
            print(f"the ledger key was left out: keep {keyring.where} to restore this backup")
    return 0


async def _backup(db: Path, out: Path) -> Any:
    from polycrowd.engine.store.sqlite import backup_file

    return await asyncio.to_thread(backup_file, db, out)


def restore_command(args: argparse.Namespace, settings: Settings, error: type[Exception]) -> int:
    from polycrowd.engine.ledger_key import LedgerKeyring
    from polycrowd.engine.store import is_postgres

    if is_postgres(settings.db):
        raise error(
            "restore writes a SQLite file; restore PostgreSQL with pg_restore, or restore"
            " into a SQLite file and `polycrowd db copy` it into an empty PostgreSQL database"
        )
    src, db = Path(args.backup), Path(settings.db)
    if not src.is_file():
        raise error(f"backup not found: {src}")
    if not db.parent.is_dir():
        raise error(f"no such folder: {db.parent} (create it first)")
    if _same_file(src, db):
        raise error("the backup and the database are the same file")
    if db.exists() and not args.force:
        raise error(f"{db} exists; pass --force to replace it (stop the bot first)")
    target = LedgerKeyring.for_store(str(db), settings)
    src_key, src_cps = _beside(src, ".ledger.key"), _beside(src, ".checkpoints")
    has_key = src_key.is_file()
    if (
        has_key
        and not target.env_key
        and target.key_file is not None
        and target.key_file.is_file()
        and target.key_file.read_bytes() != src_key.read_bytes()
        and not args.force
    ):
        raise error(
            f"{target.key_file} holds another ledger key than the backup's; pass --force to"
            " replace it"
        )
    # What the backup says it is, checked on a staged copy before the database is touched.
    staged = LedgerKeyring(
        settings.ledger_key,
        src_key if has_key else target.key_file,
        src_cps if src_cps.is_file() else None,
    )
    out = asyncio.run(_restore(src, db, staged, target, error))
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        verdict = "audit OK" if out["audit"]["ok"] else "AUDIT FAILED"
        print(
            f"restored {src} into {db} ({sum(out['rows'].values())} rows,"
            f" {out['audit']['entries']} ledger entries); {verdict}"
        )
        for problem in out["audit"]["problems"]:
            print(f"polycrowd: ledger broken: {problem}", file=sys.stderr)
    return 0 if out["audit"]["ok"] else 1


async def _audit_file(path: Path, keyring: Any) -> Any:
    from polycrowd.engine.core import Engine
    from polycrowd.engine.language import LanguageDetector
    from polycrowd.engine.store.sqlite import Database
    from polycrowd.models.rules import RulesChecker

    store = await Database.open(path, create=False)
    try:
        engine = Engine(store, RulesChecker(), LanguageDetector("script").detect, keyring=keyring)
        report = await engine.audit()
        sizes = await store.table_sizes()
    finally:
        await store.close()
    return report, sizes


async def _restore(
    src: Path, db: Path, staged: Any, target: Any, error: type[Exception]
) -> dict[str, Any]:
    import secrets

    from polycrowd.engine.store.sqlite import discard_file, inspect_backup, restore_file

    info = await asyncio.to_thread(inspect_backup, src)
    stage = db.with_name(f".{db.name}.{secrets.token_hex(4)}.restore")
    try:
        await asyncio.to_thread(restore_file, src, stage)
        report, _ = await _audit_file(stage, staged)  # migrates an older backup, in the stage
        if not report.ok:
            raise error(f"the backup's ledger does not verify, nothing restored: {report.problem}")
        await asyncio.to_thread(restore_file, stage, db)
    finally:
        await asyncio.to_thread(discard_file, stage)
    await asyncio.to_thread(_put_keys, staged, target)
    report, sizes = await _audit_file(db, target)  # the database as the bot will see it
    return {
        "backup": str(src),
        "database": str(db),
        "schema_version_of_backup": info.schema_version,
        "rows": sizes,
        "audit": report.as_dict(),
    }


def _put_keys(staged: Any, target: Any) -> None:
    """The backup's key and checkpoints where the restored database looks for them; what
    was there is kept aside as ``*.before-restore``."""
    pairs = ((staged.key_file, target.key_file), (staged.checkpoint_file, target.checkpoint_file))
    for src, dst in pairs:
        if dst is None or (src is not None and _same_file(src, dst)):
            continue
        if dst.exists():
            if src is not None and src.read_bytes() == dst.read_bytes():
                continue
            os.replace(dst, _beside(dst, ".before-restore"))
        if src is not None:
            _copy_private(src, dst)
