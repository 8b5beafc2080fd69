"""The real CLI against files that are not polycrowd databases, and its error boundary
(issue 17): one line on stderr naming the file, exit 2, no traceback, the file byte-identical,
and the process exits (a failed open used to leave a thread that kept it alive)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from polycrowd.engine.store.sqlite import Database

SPEC = "name: cats\ntype: choice\nlabels: [yes, no]\ninstructions: Is it a cat?\n"
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq"  # token-shaped, 35 characters
EXIT_WITHIN_S = 120  # only bounds a hanging process: the test fails instead of waiting


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polycrowd", *args],
        capture_output=True,
        text=True,
        timeout=EXIT_WITHIN_S,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _polycrowd_db(path: Path) -> Path:
    async def make() -> None:
        db = await Database.open(path)
        async with db.transaction() as tx:
            for n in range(200):
                await tx.run(
                    "INSERT INTO users(pseudonym, created_at, last_active) VALUES (?, 0, 0)",
                    (f"w{n:04d}",),
                )
        await db.close()

    asyncio.run(make())
    return path


def _make(kind: str, path: Path) -> None:
    if kind == "text":
        path.write_text("id,text\n1,hello\n" * 100)
    elif kind == "random":
        path.write_bytes(os.urandom(16384))
    elif kind == "truncated":
        _polycrowd_db(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zero":
        path.write_bytes(b"")
    elif kind.startswith("foreign"):
        con = sqlite3.connect(path)
        if kind == "foreign-wal":
            con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
        con.execute("INSERT INTO notes(body) VALUES ('not yours')")
        con.commit()
        con.close()
    else:
        raise AssertionError(kind)


KINDS = {
    "text": "is not a SQLite database",
    "random": "is not a SQLite database",
    "truncated": "truncated SQLite database",
    "zero": "is empty (0 bytes)",
    "foreign": "another application's SQLite database",
    "foreign-wal": "another application's SQLite database",
}
COMMANDS = {
    "audit": ["audit"],
    "project-list": ["project", "list"],
    "export": ["export", "1"],
}


def _assert_one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("polycrowd: ")
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_bad_db_file_is_one_line_and_left_unchanged(
    tmp_path: Path, kind: str, command: str
) -> None:
    path = tmp_path / "bad.db"
    _make(kind, path)
    before = _digest(path)
    proc = _run(*COMMANDS[command], "--db", str(path))
    _assert_one_line(proc, str(path), KINDS[kind])
    assert proc.stdout == ""
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.db"]  # no -wal, -shm, key


def test_commands_that_create_refuse_a_foreign_database(tmp_path: Path) -> None:
    path = tmp_path / "theirs.db"
    _make("foreign", path)
    (tmp_path / "spec.yaml").write_text(SPEC)
    before = _digest(path)
    for args in (["db", "migrate"], ["project", "create", str(tmp_path / "spec.yaml")]):
        _assert_one_line(_run(*args, "--db", str(path)), "another application's")
        assert _digest(path) == before


def test_a_zero_byte_file_becomes_a_database_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    path.write_bytes(b"")
    _assert_one_line(_run("project", "list", "--db", str(path)), "polycrowd db migrate")
    assert path.read_bytes() == b""
    proc = _run("db", "migrate", "--db", str(path))
    assert proc.returncode == 0, proc.stderr
    proc = _run("project", "list", "--db", str(path))
    assert (proc.returncode, proc.stdout) == (0, "no projects\n")


def test_read_only_commands_leave_a_good_database_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    (tmp_path / "spec.yaml").write_text(SPEC)
    assert (
        _run("project", "create", str(tmp_path / "spec.yaml"), "--db", str(path)).returncode == 0
    )
    before = _digest(path)
    for args in (["audit"], ["project", "list"], ["project", "status", "1"]):
        proc = _run(*args, "--db", str(path))
        assert proc.returncode == 0, proc.stderr
        assert _digest(path) == before


def test_an_unexpected_failure_is_one_line_with_a_debug_hint(tmp_path: Path) -> None:
    """A polycrowd database someone damaged (a table dropped): no traceback unless asked."""
    path = _polycrowd_db(tmp_path / "p.db")
    con = sqlite3.connect(path)
    con.execute("DROP TABLE ledger_checkpoints")
    con.commit()
    con.close()
    before = _digest(path)
    line = _assert_one_line(_run("audit", "--db", str(path)), "internal error: ")
    assert "ledger_checkpoints" in line and "POLYCROWD_DEBUG=1" in line
    assert _digest(path) == before
    proc = _run("audit", "--db", str(path), env={"POLYCROWD_DEBUG": "1"})
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "internal error" in proc.stderr.splitlines()[-1]


def test_a_token_in_an_error_message_is_redacted(tmp_path: Path) -> None:
    """A token pasted into the wrong variable comes back in the error: never in clear."""
    proc = _run(
        "project", "list", "--db", str(tmp_path / "p.db"), env={"POLYCROWD_CHECKER_BATCH": TOKEN}
    )
    line = _assert_one_line(proc, "checker_batch", "[redacted]")
    assert TOKEN not in line and TOKEN.split(":")[1] not in line


def test_run_without_a_database_says_not_found_and_creates_nothing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "polycrowd", "run"],
        capture_output=True,
        text=True,
        timeout=EXIT_WITHIN_S,
        check=False,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("POLYCROWD_")},
    )
    _assert_one_line(proc, "database not found: polycrowd.db", "polycrowd db migrate")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POLYCROWD_LANGUAGE_BACKEND", "fasttext"),
        ("POLYCROWD_CHECKER_HEAD", "regression"),
        ("POLYCROWD_LOG_LEVEL", "LOUD"),
    ],
)
def test_run_with_a_bad_setting_is_one_line_before_anything_starts(
    tmp_path: Path, name: str, value: str
) -> None:
    path = _polycrowd_db(tmp_path / "p.db")
    before = _digest(path)
    proc = _run("run", "--db", str(path), env={name: value})
    _assert_one_line(proc, name, repr(value))
    assert _digest(path) == before
