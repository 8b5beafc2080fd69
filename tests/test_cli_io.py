"""Issue 17 on the command line: export targets and formats, user ids, backup, demo, limits.

Each refusal is one line on stderr, exit 2, no traceback, and the database is unchanged.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
from pathlib import Path

import pytest

from polycrowd.cli import main
from polycrowd.engine.core import Engine
from polycrowd.engine.io import load_spec_text
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.store import Database
from polycrowd.models.rules import RulesChecker

from .conftest import FakeClock

SPEC = "name: cats\ntype: choice\nlabels: [yes, no]\ninstructions: Is it a cat?\noverlap: 1\n"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _answered_db(path: Path) -> Path:
    """A project with two items, each answered once (so export really aggregates)."""

    async def build() -> None:
        db = await Database.open(path)
        try:
            clock = FakeClock()
            engine = Engine(db, RulesChecker(), LanguageDetector("script").detect, clock=clock)
            project = await engine.create_project(None, load_spec_text(SPEC))
            await engine.import_items(project.id, b"id,text\n=1,a cat\n2,a dog\n", name="i.csv")
            await engine.set_state(None, project.id, "live")
            worker, _ = await engine.user_for("telegram", "5")
            for _ in range(2):
                task = await engine.next_task(worker.id)
                assert task is not None
                clock.advance(10)
                await engine.submit(worker.id, task.assignment.id, "yes")
        finally:
            await db.close()

    asyncio.run(build())
    return path


@pytest.fixture
def answered(tmp_path: Path) -> Path:
    return _answered_db(tmp_path / "p.db")


@pytest.fixture
def fresh(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A database with one draft project and no items."""
    db, spec = tmp_path / "f.db", tmp_path / "s.yaml"
    spec.write_text(SPEC)
    assert main(["project", "create", str(spec), "--db", str(db)]) == 0
    capsys.readouterr()
    return db


def _refused(capsys: pytest.CaptureFixture[str], db: Path, argv: list[str], message: str) -> str:
    before = _digest(db)
    assert main([*argv, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    assert ".part" not in err
    assert _digest(db) == before
    return err


# export -----------------------------------------------------------------------------------


def test_bogus_method_is_one_line_listing_the_methods(
    answered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _refused(
        capsys,
        answered,
        ["export", "1", "--method", "bogus"],
        "unknown method 'bogus': use one of auto, mv, wmv, ds, ocds, bds, glad, mace",
    )


def test_format_follows_the_output_extension(
    answered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.jsonl"
    assert main(["export", "1", "--output", str(out), "--db", str(answered)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["item"] for r in rows) == ["2", "=1"]  # JSONL keeps the id exact
    out = tmp_path / "r.csv"
    assert main(["export", "1", "--output", str(out), "--db", str(answered)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    assert sorted(r["item"] for r in rows) == ["'=1", "2"]  # CSV defuses the formula
    out = tmp_path / "r.data"
    assert main(["export", "1", "-o", str(out), "--format", "jsonl", "--db", str(answered)]) == 0
    assert json.loads(out.read_text().splitlines()[0])["item"] in ("=1", "2")
    capsys.readouterr()
    _refused(capsys, answered, ["export", "1", "-o", str(tmp_path / "r.xlsx")], "r.xlsx")
    assert not (tmp_path / "r.xlsx").exists()


def test_a_symlink_stays_a_link_and_its_target_gets_the_results(
    answered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    real.chmod(0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    assert main(["export", "1", "-o", str(link), "--db", str(answered)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text().startswith("item,lang,label")
    assert real.stat().st_mode & 0o777 == 0o640  # the file keeps its permissions
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "p.db", "real.csv"]
    dangling = tmp_path / "new-link.csv"
    dangling.symlink_to(tmp_path / "made.csv")
    assert main(["export", "1", "-o", str(dangling), "--db", str(answered)]) == 0
    assert dangling.is_symlink() and (tmp_path / "made.csv").read_text().startswith("item,")


def test_a_fifo_a_device_or_a_folder_is_refused(
    answered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/null"), tmp_path):
        _refused(capsys, answered, ["export", "1", "-o", str(target)], "not a regular file")
    assert fifo.exists() and not fifo.is_file()  # still a FIFO
    link = tmp_path / "to-null.csv"
    link.symlink_to("/dev/null")
    _refused(capsys, answered, ["export", "1", "-o", str(link)], "not a regular file")
    assert link.is_symlink()


def test_a_missing_folder_is_one_line_without_the_temporary_file(
    answered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "nope" / "r.csv"
    err = _refused(capsys, answered, ["export", "1", "-o", str(target)], str(target))
    assert "does not exist" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_folder_names_the_output_only(
    answered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        _refused(capsys, answered, ["export", "1", "-o", str(folder / "r.csv")], "cannot write")
    finally:
        folder.chmod(0o700)
    assert list(folder.iterdir()) == []


# user, backup, limits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "role", "message"),
    [
        ("telegram:abc", "requester", "a telegram user id is a number"),
        ("discord:12x", "requester", "a discord user id is a number"),
        ("telegram:", "requester", "a telegram user id is a number"),
        ("myspace:12", "requester", "unknown platform 'myspace': use telegram or discord"),
        ("memory:1", "admin", "unknown platform 'memory'"),
        ("telegram:12", "overlord", "role must be worker, requester, moderator or admin"),
        ("99999999999999999999999", "admin", "no such user"),
    ],
)
def test_user_grant_never_creates_a_phantom_user(
    answered: Path, capsys: pytest.CaptureFixture[str], ref: str, role: str, message: str
) -> None:
    _refused(capsys, answered, ["user", "grant", ref, role], message)


def test_user_grant_still_creates_a_real_platform_user(
    answered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["user", "grant", "discord:4242", "moderator", "--db", str(answered)]) == 0
    assert "role=moderator" in capsys.readouterr().out


def test_backup_to_a_missing_folder_is_one_line(
    answered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _refused(capsys, answered, ["backup", str(tmp_path / "nope" / "b.db")], "no such folder")


def test_a_huge_reward_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "p.db"
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    assert main(["project", "create", str(spec), "--db", str(db)]) == 0
    spec.write_text(SPEC + f"reward: {10**25}\n")
    _refused(capsys, db, ["project", "create", str(spec)], "'reward' must be at most")


def test_import_row_limit_from_settings(
    fresh: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items = tmp_path / "more.csv"
    items.write_text("id,text\na,one\nb,two\nc,three\n")
    monkeypatch.setenv("POLYCROWD_MAX_IMPORT_ROWS", "2")
    _refused(capsys, fresh, ["import", "1", str(items)], "more than 2 items")
    monkeypatch.setenv("POLYCROWD_MAX_IMPORT_ROWS", "10")
    monkeypatch.setenv("POLYCROWD_MAX_UPLOAD_BYTES", "10")
    _refused(capsys, fresh, ["import", "1", str(items)], "larger than")
    monkeypatch.delenv("POLYCROWD_MAX_UPLOAD_BYTES")
    assert main(["import", "1", str(items), "--db", str(fresh)]) == 0


def test_an_unterminated_quote_imports_nothing(
    fresh: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = tmp_path / "q.csv"
    items.write_text('id,text\na,one\nb,"two\nc,three\n')
    _refused(capsys, fresh, ["import", "1", str(items)], "line 3: a quote opened here")


# demo -------------------------------------------------------------------------------------


def test_demo_refuses_a_database_with_data(
    answered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    siblings = sorted(p.name for p in answered.parent.iterdir())
    _refused(capsys, answered, ["demo", "--rules-only", "--workers", "3"], "already exists")
    assert sorted(p.name for p in answered.parent.iterdir()) == siblings  # no key, no WAL


def test_demo_into_a_new_file_leaves_a_complete_audited_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "demo.db"
    assert main(["demo", "--rules-only", "--workers", "3", "--json", "--db", str(db)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["ledger_ok"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "demo.db",
        "demo.db.checkpoints",
        "demo.db.ledger.key",
    ]
    assert main(["audit", "--db", str(db)]) == 0
    assert "MACs verified" in capsys.readouterr().out
