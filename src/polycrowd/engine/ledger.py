"""Append-only, hash-chained, authenticated ledger of credits, bonuses, penalties, payouts.

Each entry's hash is sha256 over the canonical JSON of its fields and the previous entry's
hash, so altering, removing or reordering any row breaks every hash after it. Amounts are
integers in minor units. The ``ref`` column is unique: the same answer can never be
credited twice, however often an update is redelivered or a call retried.

A hash chain alone proves nothing to someone who can write the file: they recompute it.
So each entry also carries a MAC, HMAC-SHA256 under a key kept outside the database
(:mod:`polycrowd.engine.ledger_key`) over the entry's hash and the previous entry's MAC,
and signed checkpoints of the chain head (entry count, head hash, totals per kind) go to a
checkpoint file and to the database: a forged, edited or re-hashed entry fails its MAC, a
removed tail falls short of the latest checkpoint, and a rolled-back checkpoint file
disagrees with the database's record of it. :func:`verify` checks all of it, and that the
append-only triggers are still in place.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from polycrowd.engine.domain import LedgerKind
from polycrowd.engine.ledger_key import LedgerKeyError, LedgerKeyring
from polycrowd.engine.store.base import Store, Transaction
from polycrowd.engine.types import LedgerEntry
from polycrowd.i18n import N_, Msg

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


def entry_mac(key: bytes, digest: str, prev_mac: str) -> str:
    """HMAC-SHA256 over the entry's hash (which covers its content and the previous hash)
    and the previous entry's MAC ("" before the first authenticated entry)."""
    message = f"polycrowd-ledger-v1\n{digest}\n{prev_mac}".encode("ascii")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def checkpoint_mac(key: bytes, body: dict[str, Any]) -> str:
    message = ("polycrowd-checkpoint-v1\n" + _canonical(body)).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


async def _key(keyring: LedgerKeyring, *, create: bool) -> bytes | None:
    cached = keyring.cached_key()
    if cached is not None:
        return cached
    return await asyncio.to_thread(keyring.key, create=create)


async def append(
    tx: Transaction,
    user_id: int,
    kind: str,
    amount: int,
    ref: str,
    memo: str = "",
    *,
    now: float,
    keyring: LedgerKeyring,
) -> LedgerEntry | None:
    """Append one entry inside the caller's transaction and move the user's balance.

    ``now`` is the engine's clock. Returns None (and changes nothing) when ``ref`` was
    already written: idempotent. A key is created on the first write; if the chain is
    already authenticated and the key is gone, nothing is written (LedgerKeyError).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown ledger kind: {kind}")
    await tx.ledger.lock_chain()  # one appender at a time: the chain never forks
    if await tx.ledger.has_ref(ref):
        return None
    last = await tx.ledger.last()
    signed = last is not None and last[2] is not None
    key = await _key(keyring, create=not signed)
    if key is None:
        raise LedgerKeyError(
            N_("the ledger is signed but its key is missing (%(where)s)"), where=keyring.where
        )
    seq = 1 if last is None else last[0] + 1
    prev = GENESIS if last is None else last[1]
    prev_mac = "" if last is None else last[2] or ""
    ts = round(now, 6)
    digest = entry_hash(seq, ts, user_id, kind, amount, ref, memo, prev)
    entry = LedgerEntry(seq, ts, user_id, kind, amount, ref, memo, prev, digest)
    await tx.ledger.insert(entry, entry_mac(key, digest, prev_mac))
    return entry


async def checkpoint(db: Store, keyring: LedgerKeyring, *, now: float) -> dict[str, Any]:
    """Sign the chain head (entry count, head hash, totals per kind) and record it in the
    database and the checkpoint file, in one transaction. Returns the record."""
    async with db.transaction() as tx:
        await tx.ledger.lock_chain()
        last = await tx.ledger.last()
        previous = await tx.ledger.last_checkpoint()
        # A new key only for a ledger nothing was signed in yet, never to replace a lost one.
        fresh = (last is None or last[2] is None) and previous is None
        key = await _key(keyring, create=fresh)
        if key is None:
            raise LedgerKeyError(
                N_("the ledger is signed but its key is missing (%(where)s)"),
                where=keyring.where,
            )
        body: dict[str, Any] = {
            "v": 1,
            "n": 1 if previous is None else previous[0] + 1,
            "ts": round(now, 6),
            "entries": 0 if last is None else last[0],
            "head_hash": GENESIS if last is None else last[1],
            "totals": {k: v for k, v in sorted((await tx.ledger.totals()).items()) if v},
            "prev": "" if previous is None else previous[2],
        }
        mac = checkpoint_mac(key, body)
        await tx.ledger.add_checkpoint(int(body["n"]), _canonical(body), mac)
        record = {**body, "mac": mac}
        await asyncio.to_thread(keyring.append_checkpoint, record)
    return record


def _english(msg: Msg) -> str:
    return msg.msgid % dict(msg.params) if msg.params else msg.msgid


@dataclass(frozen=True, slots=True)
class AuditReport:
    ok: bool
    entries: int
    total: int
    first_bad_seq: int | None
    problem: str  # "" when ok: the first problem, in English
    balance_mismatches: tuple[tuple[int, int, int], ...]  # (user, ledger sum, stored balance)
    problems: tuple[Msg, ...] = ()  # everything wrong, one message each
    warnings: tuple[Msg, ...] = ()  # not wrong, but worth saying (an unauthenticated ledger)
    authenticated: bool = False  # every entry after the first signed one carries a valid MAC
    checkpoint: int | None = None  # the latest checkpoint that was checked
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def problem_msg(self) -> Msg:
        return self.problems[0] if self.problems else Msg.raw(self.problem)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "total": self.total,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "problems": [_english(m) for m in self.problems],
            "warnings": [_english(m) for m in self.warnings],
            "authenticated": self.authenticated,
            "checkpoint": self.checkpoint,
            "totals": dict(self.totals),
            "balance_mismatches": [list(m) for m in self.balance_mismatches],
        }


@dataclass
class _Walk:
    """What one pass over the chain found."""

    count: int = 0
    total: int = 0
    signed: int = 0
    unsigned: int = 0
    first_bad_seq: int | None = None
    problems: list[Msg] = field(default_factory=list)
    sums: dict[int, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    at_checkpoint: tuple[str, dict[str, int]] | None = None  # (hash, totals) at its count


def _chain_problem(row: Any, expected_seq: int, prev: str) -> str:
    seq = int(row["seq"])
    if seq != expected_seq:
        return f"entry {expected_seq} is missing (next is {seq})"
    if row["prev_hash"] != prev:
        return f"entry {seq} does not link to the entry before it"
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
        return f"entry {seq} was altered (hash mismatch)"
    return ""


async def _walk(tx: Any, key: bytes | None, keyring: LedgerKeyring, upto: int) -> _Walk:
    w = _Walk()
    prev, prev_mac, expected_seq = GENESIS, "", 1
    async for row in tx.ledger.chain():
        problem = _chain_problem(row, expected_seq, prev)
        seq = int(row["seq"])
        if problem:
            w.first_bad_seq = expected_seq if seq != expected_seq else seq
            w.problems.append(Msg.raw(problem))
            return w
        mac = row["mac"]
        if mac is None:
            if w.signed:
                w.first_bad_seq = seq
                w.problems.append(
                    Msg(
                        N_("entry %(seq)s has no MAC (written without the ledger key)"),
                        {"seq": seq},
                    )
                )
                return w
            w.unsigned += 1
        else:
            w.signed += 1
            if key is None:
                if w.signed == 1:
                    w.problems.append(
                        Msg(
                            N_("the ledger is signed but its key is missing (%(where)s)"),
                            {"where": keyring.where},
                        )
                    )
            elif not hmac.compare_digest(str(mac), entry_mac(key, str(row["hash"]), prev_mac)):
                w.first_bad_seq = seq
                w.problems.append(
                    Msg(
                        N_("entry %(seq)s: MAC does not match (altered, or another key)"),
                        {"seq": seq},
                    )
                )
                return w
        prev, prev_mac = str(row["hash"]), "" if mac is None else str(mac)
        expected_seq += 1
        w.count += 1
        amount, uid = int(row["amount"]), int(row["user_id"])
        w.total += amount
        w.sums[uid] = w.sums.get(uid, 0) + amount
        w.totals[str(row["kind"])] = w.totals.get(str(row["kind"]), 0) + amount
        if seq == upto:
            w.at_checkpoint = (prev, {k: v for k, v in w.totals.items() if v})
    return w


def _checked_checkpoint(
    record: dict[str, Any] | None, key: bytes | None
) -> tuple[dict[str, Any] | None, list[Msg]]:
    """The record if its MAC holds (or cannot be checked for want of a key)."""
    if record is None:
        return None, []
    body = {k: v for k, v in record.items() if k != "mac"}
    n = body.get("n", "?")
    try:
        good = key is None or hmac.compare_digest(
            str(record.get("mac", "")), checkpoint_mac(key, body)
        )
        int(body["n"]), int(body["entries"]), dict(body["totals"])
    except (KeyError, TypeError, ValueError):
        good = False
    if not good:
        return None, [
            Msg(
                N_("checkpoint %(number)s: signature does not match (forged, or another key)"),
                {"number": n},
            )
        ]
    return record, []


async def verify(db: Store, keyring: LedgerKeyring) -> AuditReport:
    """Walk the chain from the genesis hash; check sequence, links, hashes, MACs, balances,
    the latest checkpoint (file and database) and the append-only triggers."""
    try:
        key = await _key(keyring, create=False)
        key_problems: list[Msg] = []
    except LedgerKeyError as exc:
        key, key_problems = None, [Msg(exc.msgid, exc.params)]
    try:
        from_file = await asyncio.to_thread(keyring.latest_checkpoint)
    except LedgerKeyError as exc:
        from_file, key_problems = None, [*key_problems, Msg(exc.msgid, exc.params)]
    async with db.read() as tx:
        stored = await tx.ledger.last_checkpoint()
        from_db = None if stored is None else {**json.loads(stored[1]), "mac": stored[2]}
        file_cp, file_problems = _checked_checkpoint(from_file, key)
        db_cp, db_problems = _checked_checkpoint(from_db, key)
        cp_problems = [*file_problems, *db_problems]
        file_n = 0 if from_file is None else int(from_file.get("n", 0) or 0)
        db_n = 0 if from_db is None else int(from_db["n"])
        if not cp_problems and file_n != db_n:
            cp_problems.append(
                Msg(
                    N_(
                        "checkpoints disagree: the file ends at checkpoint %(file)s,"
                        " the database at %(db)s (one was rolled back or replaced)"
                    ),
                    {"file": file_n, "db": db_n},
                )
            )
        latest = max((c for c in (file_cp, db_cp) if c), key=lambda c: int(c["n"]), default=None)
        upto = 0 if latest is None else int(latest["entries"])
        w = await _walk(tx, key, keyring, upto)
        balances = await tx.users.balances()
        missing_guards = await tx.ledger.missing_guards()
    problems: list[Msg] = [*key_problems, *w.problems]
    mismatches = tuple(
        (uid, w.sums.get(uid, 0), balance)
        for uid, balance in balances
        if w.sums.get(uid, 0) != balance
    )
    if mismatches and not w.problems:
        uid, want, have = mismatches[0]
        problems.append(Msg.raw(f"balance of user {uid} is {have}, the ledger says {want}"))
    if latest is not None and not w.problems:
        problems.extend(_against_checkpoint(latest, w))
    problems.extend(cp_problems)
    problems.extend(
        Msg(N_("append-only trigger %(name)s is missing or disabled"), {"name": name})
        for name in missing_guards
    )
    if keyring.key_file_exposed():
        problems.append(
            Msg(
                N_("the ledger key file %(path)s can be read by other users (chmod 600)"),
                {"path": str(keyring.key_file)},
            )
        )
    warnings: list[Msg] = []
    if w.unsigned and not w.signed:
        warnings.append(
            Msg(
                N_("the ledger is unauthenticated: its %(count)s entries have no MAC"),
                {"count": w.unsigned},
            )
        )
    return AuditReport(
        ok=not problems,
        entries=w.count,
        total=w.total,
        first_bad_seq=w.first_bad_seq,
        problem=_english(problems[0]) if problems else "",
        balance_mismatches=mismatches if not w.problems else (),
        problems=tuple(problems),
        warnings=tuple(warnings),
        authenticated=w.signed > 0 and key is not None and not w.problems,
        checkpoint=None if latest is None else int(latest["n"]),
        totals={k: v for k, v in w.totals.items() if v},
    )


def _against_checkpoint(cp: dict[str, Any], w: _Walk) -> list[Msg]:
    n, entries = int(cp["n"]), int(cp["entries"])
    if entries > w.count:
        return [
            Msg(
                N_("checkpoint %(number)s has %(entries)s entries, the ledger only %(count)s"),
                {"number": n, "entries": entries, "count": w.count},
            )
        ]
    if entries == 0:
        return []
    if w.at_checkpoint is None or w.at_checkpoint[0] != cp["head_hash"]:
        return [
            Msg(
                N_("checkpoint %(number)s: entry %(seq)s is not the entry it signed"),
                {"number": n, "seq": entries},
            )
        ]
    have = w.at_checkpoint[1]
    want = {str(k): int(v) for k, v in dict(cp["totals"]).items()}
    for kind in sorted(set(have) | set(want)):
        if have.get(kind, 0) != want.get(kind, 0):
            return [
                Msg(
                    N_("checkpoint %(number)s: the %(kind)s total was %(want)s, now %(have)s"),
                    {
                        "number": n,
                        "kind": kind,
                        "want": want.get(kind, 0),
                        "have": have.get(kind, 0),
                    },
                )
            ]
    return []
