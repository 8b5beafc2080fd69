"""Append-only, hash-chained ledger of credits, bonuses, penalties and payouts.

Each entry's hash is sha256 over the canonical JSON of its fields and the previous entry's
hash, so altering, removing or reordering any row breaks every hash after it. Amounts are
integers in minor units. The ``ref`` column is unique: the same answer can never be
credited twice, however often an update is redelivered or a call retried.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from polycrowd.engine.domain import LedgerKind
from polycrowd.engine.store.base import Store, Transaction
from polycrowd.engine.types import LedgerEntry

GENESIS = "0" * 64
KINDS = tuple(LedgerKind)


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
    tx: Transaction,
    user_id: int,
    kind: str,
    amount: int,
    ref: str,
    memo: str = "",
    *,
    now: float,
) -> LedgerEntry | None:
    """Append one entry inside the caller's transaction and move the user's balance.

    ``now`` is the engine's clock. Returns None (and changes nothing) when ``ref`` was
    already written: idempotent.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind: {kind}")
    await tx.ledger.lock_chain()  # one appender at a time: the chain never forks
    if await tx.ledger.has_ref(ref):
        return None
    last = await tx.ledger.last()
    seq = 1 if last is None else last[0] + 1
    prev = GENESIS if last is None else last[1]
    ts = round(now, 6)
    digest = entry_hash(seq, ts, user_id, kind, amount, ref, memo, prev)
    entry = LedgerEntry(seq, ts, user_id, kind, amount, ref, memo, prev, digest)
    await tx.ledger.insert(entry)
    return entry


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


async def verify(db: Store) -> AuditReport:
    """Walk the chain from the genesis hash; check sequence, links, hashes and balances."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    total = 0
    sums: dict[int, int] = {}
    async with db.read() as tx:
        async for row in tx.ledger.chain():
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
        balances = await tx.users.balances()
    mismatches = tuple(
        (uid, sums.get(uid, 0), balance)
        for uid, balance in balances
        if sums.get(uid, 0) != balance
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
