"""Copy a whole SQLite database into an empty PostgreSQL one, then audit the copy.

Rows keep their ids, so ledger hashes, pseudonyms and references stay valid. After the
copy, both stores must hold the same number of rows per table, the same last ledger hash,
a ledger that verifies, and the same diagnostics; :class:`CopyReport` says which held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from polycrowd.engine import ledger
from polycrowd.engine.ledger_key import LedgerKeyring
from polycrowd.engine.store.base import TABLES
from polycrowd.engine.store.postgres import PgDatabase
from polycrowd.engine.store.sqlite import Database


@dataclass(frozen=True, slots=True)
class CopyReport:
    rows: dict[str, int]  # copied, per table
    mismatched: tuple[str, ...]  # tables whose row counts differ after the copy
    audit_ok: bool
    audit_problem: str
    last_hash_same: bool
    diagnostics_same: bool  # the same invariant counts in both stores

    @property
    def ok(self) -> bool:
        return (
            not self.mismatched and self.audit_ok and self.last_hash_same and self.diagnostics_same
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "mismatched_tables": list(self.mismatched),
            "audit_ok": self.audit_ok,
            "audit_problem": self.audit_problem,
            "last_hash_same": self.last_hash_same,
            "diagnostics_same": self.diagnostics_same,
        }


async def copy_store(
    src: Database,
    dst: PgDatabase,
    keyring: LedgerKeyring,
    progress: Callable[[str, int], None] | None = None,
) -> CopyReport:
    """Copy, then audit the copy with the source's ledger key and checkpoints."""
    copied = dict.fromkeys(TABLES, 0)
    async with dst.bulk_load() as load:
        for table in TABLES:
            async for columns, rows in src.dump(table):
                await load.rows(table, columns, rows)
                copied[table] += len(rows)
                if progress is not None:
                    progress(table, copied[table])
    before, after = await src.table_sizes(), await dst.table_sizes()
    report = await ledger.verify(dst, keyring)
    async with src.read() as tx:
        src_last = await tx.ledger.last()
    async with dst.read() as tx:
        dst_last = await tx.ledger.last()
    same_diagnostics = await src.diagnostics() == await dst.diagnostics()
    return CopyReport(
        rows=copied,
        mismatched=tuple(t for t in TABLES if before[t] != after[t]),
        audit_ok=report.ok,
        audit_problem=report.problem,
        last_hash_same=src_last == dst_last,
        diagnostics_same=same_diagnostics,
    )
