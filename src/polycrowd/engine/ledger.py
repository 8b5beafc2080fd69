"""Append-only, hash-chained ledger of credits, bonuses, penalties and payouts.

Each entry's hash is sha256 over the canonical JSON of its fields and the previous entry's
hash, so altering, removing or reordering any row breaks every hash after it. Amounts are
integers in minor units. The ``ref`` column is unique: the same answer can never be
credited twice, however often an update is redelivered or a call retried.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from polycrowd.engine.store import Database, Tx
from polycrowd.engine.types import LedgerEntry

GENESIS = "0" * 64
KINDS = ("credit", "bonus", "penalty", "payout", "correction")


def entry_hash(
    seq: int, ts: float, user_id: int, kind: str, amount: int, ref: str, memo: str, prev: str
) -> str:
    canonical = json.dumps(
        {
            "amount": amount,
            "kind": kind,
            "memo": memo,
            "prev_hash": prev,
            "ref": ref,
            "seq": seq,
            "ts": repr(ts),
            "user_id": user_id,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def append(
    tx: Tx, user_id: int, kind: str, amount: int, ref: str, memo: str = ""
) -> LedgerEntry | None:
    """Append one entry inside the caller's transaction and move the user's balance.

    Returns None (and changes nothing) when ``ref`` was already written: idempotent.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind: {kind}")
    if await tx.value("SELECT 1 FROM ledger WHERE ref = ?", (ref,)):
        return None
    last = await tx.one("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
    seq = 1 if last is None else int(last["seq"]) + 1
    prev = GENESIS if last is None else str(last["hash"])
    ts = round(time.time(), 6)
    digest = entry_hash(seq, ts, user_id, kind, amount, ref, memo, prev)
    await tx.run(
        "INSERT INTO ledger(seq, ts, user_id, kind, amount, ref, memo, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, ts, user_id, kind, amount, ref, memo, prev, digest),
    )
    await tx.run("UPDATE users SET balance = balance + ? WHERE id = ?", (amount, user_id))
    return LedgerEntry(seq, ts, user_id, kind, amount, ref, memo, prev, digest)


@dataclass(frozen=True, slots=True)
class AuditReport:
    ok: bool
    entries: int
    total: int
    first_bad_seq: int | None
    problem: str  # "" when ok
    balance_mismatches: tuple[tuple[int, int, int], ...]  # (user, ledger sum, stored balance)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "total": self.total,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "balance_mismatches": [list(m) for m in self.balance_mismatches],
        }


async def verify(db: Database) -> AuditReport:
    """Walk the chain from the genesis hash; check sequence, links, hashes and balances."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    total = 0
    sums: dict[int, int] = {}
    async with db.read() as tx:
        async with tx.conn.execute(
            "SELECT seq, ts, user_id, kind, amount, ref, memo, prev_hash, hash"
            " FROM ledger ORDER BY seq"
        ) as cur:
            async for row in cur:
                seq = int(row["seq"])
                problem = ""
                if seq != expected_seq:
                    problem = f"entry {expected_seq} is missing (next is {seq})"
                elif row["prev_hash"] != prev:
                    problem = f"entry {seq} does not link to the entry before it"
                else:
                    digest = entry_hash(
                        seq,
                        row["ts"],
                        row["user_id"],
                        row["kind"],
                        row["amount"],
                        row["ref"],
                        row["memo"],
                        row["prev_hash"],
                    )
                    if digest != row["hash"]:
                        problem = f"entry {seq} was altered (hash mismatch)"
                if problem:
                    bad = expected_seq if seq != expected_seq else seq
                    return AuditReport(False, count, total, bad, problem, ())
                prev = row["hash"]
                expected_seq += 1
                count += 1
                total += int(row["amount"])
                sums[int(row["user_id"])] = sums.get(int(row["user_id"]), 0) + int(row["amount"])
        balances = await tx.all("SELECT id, balance FROM users")
    mismatches = tuple(
        (int(r["id"]), sums.get(int(r["id"]), 0), int(r["balance"]))
        for r in balances
        if sums.get(int(r["id"]), 0) != int(r["balance"])
    )
    if mismatches:
        uid, want, have = mismatches[0]
        return AuditReport(
            False,
            count,
            total,
            None,
            f"balance of user {uid} is {have}, the ledger says {want}",
            mismatches,
        )
    return AuditReport(True, count, total, None, "", ())
