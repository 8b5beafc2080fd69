"""``polycrowd backup`` and ``polycrowd restore``: a backup taken while workers keep
answering restores into a new path whose ledger (chain, MACs under the same key, balances,
checkpoints) audits clean with counts that match; every refusal is one line, exit 2, and
leaves the database as it was."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from polycrowd.cli import main
from polycrowd.engine.core import Engine
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.store import Database
from polycrowd.models.rules import RulesChecker

from .conftest import choice_spec, items_csv

WORKERS = 6


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "-"


async def _engine(path: Path) -> Engine:
    db = await Database.open(path)
    return Engine(db, RulesChecker(), LanguageDetector("script").detect)


async def _populate(path: Path, answers: int = 12) -> None:
    """A small live database: one project, a few credited answers, one checkpoint."""
    engine = await _engine(path)
    try:
        project = await engine.create_project(None, choice_spec(overlap=1, overlap_max=1))
        await engine.import_items(project.id, items_csv(answers + 5), name="i.csv")
        await engine.set_state(None, project.id, "live")
        for n in range(answers):
            user, _ = await engine.user_for("memory", f"w{n % 3}", f"w{n % 3}", "en")
            task = await engine.next_task(user.id)
            assert task is not None
            await engine.submit(user.id, task.assignment.id, "yes", seconds=20)
        await engine.checkpoint_ledger()
    finally:
        await engine.db.close()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def _acli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The command from inside a running loop (in a thread, as another process would)."""
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_refusal(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


LOAD_BEFORE_BACKUP = 30  # answers recorded before the backup starts


async def _answer_until(
    engine: Engine, worker: int, stop: asyncio.Event, answered: list[int], going: asyncio.Event
) -> int:
    user, _ = await engine.user_for("memory", f"load{worker}", f"load{worker}", "en")
    done = 0
    while not stop.is_set():
        task = await engine.next_task(user.id)
        if task is None:
            break
        await engine.submit(user.id, task.assignment.id, "yes" if done % 3 else "no", seconds=20)
        done += 1
        answered.append(worker)
        if len(answered) >= LOAD_BEFORE_BACKUP:
            going.set()
    going.set()
    return done


def _key_beside(backup: Path, live: Path) -> None:
    key = Path(f"{backup}.ledger.key")
    assert key.read_bytes() == Path(f"{live}.ledger.key").read_bytes()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600


async def _counts(path: Path) -> dict[str, int]:
    db = await Database.open(path, create=False)
    try:
        sizes = await db.table_sizes()
        diag = await db.diagnostics()
    finally:
        await db.close()
    return {
        "answers": sizes["answers"],
        "ledger": sizes["ledger"],
        "credits": diag.credits,
        "duplicate_credits": diag.duplicate_credits,
        "over_assigned": diag.over_assigned_items,
        "miscounted": diag.miscounted_items,
    }


async def test_a_backup_taken_under_load_restores_and_audits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live, backup, restored = tmp_path / "live.db", tmp_path / "b" / "live.bak", tmp_path / "r.db"
    backup.parent.mkdir()
    engine = await _engine(live)
    project = await engine.create_project(None, choice_spec(overlap=2, overlap_max=2))
    await engine.import_items(project.id, items_csv(400), name="i.csv")
    await engine.set_state(None, project.id, "live")
    await engine.checkpoint_ledger()  # creates the key file and a first checkpoint
    stop, going, answered = asyncio.Event(), asyncio.Event(), list[int]()
    workers = [
        asyncio.create_task(_answer_until(engine, w, stop, answered, going))
        for w in range(WORKERS)
    ]

    async def checkpoints() -> None:  # the scheduler's checkpoints keep coming, too
        while not stop.is_set():
            await engine.checkpoint_ledger()
            await asyncio.sleep(0)

    cps = asyncio.create_task(checkpoints())
    await going.wait()  # the load is under way
    before = (await engine.diagnostics()).answers
    # the real command, in a thread, while the workers keep answering on this loop
    code = await asyncio.to_thread(main, ["backup", str(backup), "--db", str(live)])
    after = (await engine.diagnostics()).answers
    stop.set()
    await asyncio.gather(*workers, cps)
    await engine.db.close()
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "backed up" in out
    _key_beside(backup, live)

    code, out, err = await _acli(capsys, "restore", str(backup), "--db", str(restored), "--json")
    assert code == 0, err
    assert '"ok": true' in out and '"authenticated": true' in out
    code, out, err = await _acli(capsys, "audit", "--db", str(restored))
    assert code == 0, err
    assert "ledger OK" in out and "MACs verified" in out

    counts = await _counts(restored)
    # a snapshot taken within the backup
    assert LOAD_BEFORE_BACKUP <= before <= counts["answers"] <= after
    assert counts["credits"] == counts["ledger"] == counts["answers"]  # each paid once
    assert counts["duplicate_credits"] == counts["over_assigned"] == counts["miscounted"] == 0
    # the restored database runs on: a worker answers and the audit still holds
    engine = await _engine(restored)
    try:
        user, _ = await engine.user_for("memory", "after", "after", "en")
        task = await engine.next_task(user.id)
        assert task is not None
        assert (await engine.submit(user.id, task.assignment.id, "yes", seconds=20)).status
        assert (await engine.audit()).ok
    finally:
        await engine.db.close()


def test_backup_refusals_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "p.db"
    asyncio.run(_populate(db))
    before = _digest(db)
    code, _, err = _cli(capsys, "backup", str(tmp_path / "missing" / "b.db"), "--db", str(db))
    _one_line_refusal(code, err, "no such folder", "missing")
    (tmp_path / "file").write_text("x")
    code, _, err = _cli(capsys, "backup", str(tmp_path / "file" / "b.db"), "--db", str(db))
    _one_line_refusal(code, err, "no such folder")
    code, _, err = _cli(capsys, "backup", str(tmp_path), "--db", str(db))
    _one_line_refusal(code, err, "is a folder")
    code, _, err = _cli(capsys, "backup", str(db), "--db", str(db))
    _one_line_refusal(code, err, "another file")
    code, _, err = _cli(capsys, "backup", str(tmp_path / "b.db"), "--db", str(tmp_path / "no.db"))
    _one_line_refusal(code, err, "database not found")
    assert not (tmp_path / "no.db").exists()
    code, _, err = _cli(
        capsys, "backup", str(tmp_path / "b.db"), "--db", "postgresql://pc@127.0.0.1:1/x"
    )
    _one_line_refusal(code, err, "pg_dump")
    if os.geteuid() == 0:  # root writes anywhere a disk allows: /proc refuses everyone
        unwritable = Path("/proc/polycrowd-backup.db")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        unwritable = locked / "b.db"
    code, _, err = _cli(capsys, "backup", str(unwritable), "--db", str(db))
    _one_line_refusal(code, err, str(unwritable.parent))
    assert ".tmp" not in err  # names the user's path, never an internal file

    other = tmp_path / "other.db"  # another application's SQLite database
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    code, _, err = _cli(capsys, "backup", str(tmp_path / "o.bak"), "--db", str(other))
    _one_line_refusal(code, err, "no polycrowd tables")
    assert not (tmp_path / "o.bak").exists()

    target = tmp_path / "b.db"
    assert _cli(capsys, "backup", str(target), "--db", str(db))[0] == 0
    code, _, err = _cli(capsys, "backup", str(target), "--db", str(db))
    _one_line_refusal(code, err, "exists", "--force")
    assert _cli(capsys, "backup", str(target), "--db", str(db), "--force")[0] == 0
    assert _digest(db) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_restore_refuses_what_is_not_an_intact_polycrowd_backup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, backup = tmp_path / "p.db", tmp_path / "p.bak"
    asyncio.run(_populate(db))
    assert _cli(capsys, "backup", str(backup), "--db", str(db))[0] == 0
    target = tmp_path / "new.db"
    bad = {
        "text.bak": b"id,text\n1,hello\n",
        "random.bak": os.urandom(8192),
        "truncated.bak": backup.read_bytes()[: backup.stat().st_size // 2],
        "empty.bak": b"",
    }
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
        code, _, err = _cli(capsys, "restore", str(tmp_path / name), "--db", str(target))
        _one_line_refusal(code, err, "not a usable polycrowd backup", name)
        assert not target.exists()
    other = tmp_path / "other.bak"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    code, _, err = _cli(capsys, "restore", str(other), "--db", str(target))
    _one_line_refusal(code, err, "no polycrowd tables")
    code, _, err = _cli(capsys, "restore", str(tmp_path / "nope.bak"), "--db", str(target))
    _one_line_refusal(code, err, "backup not found")
    code, _, err = _cli(capsys, "restore", str(backup), "--db", str(tmp_path / "x" / "y.db"))
    _one_line_refusal(code, err, "no such folder")
    code, _, err = _cli(capsys, "restore", str(backup), "--db", "postgresql://pc@127.0.0.1:1/x")
    _one_line_refusal(code, err, "pg_restore")

    forged = tmp_path / "forged.bak"  # a credit raised in the backup, its hash left as it was
    forged.write_bytes(backup.read_bytes())
    Path(f"{forged}.ledger.key").write_bytes(Path(f"{backup}.ledger.key").read_bytes())
    with sqlite3.connect(forged) as conn:
        conn.execute("DROP TRIGGER IF EXISTS tr_ledger_no_update")
        conn.execute("UPDATE ledger SET amount = amount + 100 WHERE seq = 1")
        conn.execute("UPDATE users SET balance = balance + 100 WHERE id = 1")
    code, _, err = _cli(capsys, "restore", str(forged), "--db", str(target))
    _one_line_refusal(code, err, "does not verify", "nothing restored")
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_restore_over_a_database_needs_force_and_brings_the_backup_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, backup = tmp_path / "p.db", tmp_path / "p.bak"
    asyncio.run(_populate(db, answers=6))
    assert _cli(capsys, "backup", str(backup), "--db", str(db))[0] == 0
    asyncio.run(_more_answers(db, 4))  # the database moves on after the backup
    moved_on = _digest(db)
    code, _, err = _cli(capsys, "restore", str(backup), "--db", str(db))
    _one_line_refusal(code, err, "exists", "--force")
    assert _digest(db) == moved_on

    code, out, err = _cli(capsys, "restore", str(backup), "--db", str(db), "--force")
    assert code == 0, err
    assert "audit OK" in out
    assert asyncio.run(_counts(db))["ledger"] == 6  # the later answers are gone with it
    # the checkpoints of the later ledger are kept aside; the backup's are in place
    assert Path(f"{db}.checkpoints.before-restore").exists()
    assert _cli(capsys, "audit", "--db", str(db))[0] == 0

    # a database whose key file holds another key: replaced only with --force
    stranger = tmp_path / "s.db"
    asyncio.run(_populate(stranger, answers=2))
    code, _, err = _cli(capsys, "restore", str(backup), "--db", str(stranger))
    _one_line_refusal(code, err, "exists")
    code, _, err = _cli(capsys, "restore", str(backup), "--db", str(stranger), "--force")
    assert code == 0, err
    key = Path(f"{stranger}.ledger.key")
    assert key.read_bytes() == Path(f"{backup}.ledger.key").read_bytes()
    assert Path(f"{key}.before-restore").exists()
    assert _cli(capsys, "audit", "--db", str(stranger))[0] == 0


async def _more_answers(path: Path, n: int) -> None:
    engine = await _engine(path)
    try:
        user, _ = await engine.user_for("memory", "late", "late", "en")
        for _ in range(n):
            task = await engine.next_task(user.id)
            assert task is not None
            await engine.submit(user.id, task.assignment.id, "no", seconds=20)
        await engine.checkpoint_ledger()
    finally:
        await engine.db.close()


def test_backup_and_restore_help_have_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("backup", "restore"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert "example:" in out and f"polycrowd {command}" in out and "ledger" in out
