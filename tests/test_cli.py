"""The command line: demo invariants, one-line errors with exit 2, unchanged database."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from polycrowd.cli import main

from .conftest import SHARED_DATA

SPEC = "name: cats\ntype: choice\nlabels: [yes, no]\ninstructions: Is it a cat?\n"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polycrowd.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_demo_json_invariants() -> None:
    proc = _run("demo", "--json", "--workers", "50")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in (
        "assignments",
        "answers",
        "routed_in_worker_language",
        "duplicate_assignments",
        "over_assigned_items",
        "credits_total",
        "ledger_ok",
        "accuracy",
        "seconds",
    ):
        assert key in result
    assert result["routed_in_worker_language"] == 1.0
    assert result["duplicate_assignments"] == 0
    assert result["over_assigned_items"] == 0
    assert result["ledger_ok"] is True
    assert result["answers"] > 0 and result["credits_total"] == 5 * result["answers"]
    assert result["accuracy"] >= 0.9
    assert result["blocked"] >= 1  # same-label spammers are flagged and blocked
    per = result["text_per_language"]
    assert list(per) == result["text_languages"] and len(per) == 3
    for r in per.values():
        assert 0 < r["bad_caught"] <= r["bad_sent"] and 0 <= r["good_accepted"] <= r["good_sent"]
        assert r["model"] == result["text_model"]


def test_project_import_export_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "p.db")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    items = tmp_path / "items.csv"
    items.write_text("id,text\n1,a cat\n2,a dog\n")
    assert main(["project", "create", str(spec), "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["project"] == 1
    assert main(["import", "1", str(items), "--db", db]) == 0
    assert "imported 2 items" in capsys.readouterr().out
    assert main(["project", "launch", "1", "--db", db]) == 0
    assert main(["project", "status", "1", "--db", db, "--json"]) == 0
    capsys.readouterr()
    out = tmp_path / "r.jsonl"
    assert main(["export", "1", "--format", "jsonl", "--output", str(out), "--db", db]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["item"] for r in rows] == ["1", "2"]
    assert main(["audit", "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "9", "ITEMS"], "There is no project 9"),
        (["import", "1", "MISSING"], "file not found"),
        (["import", "1", "BAD"], "line 3: missing text"),
        (["project", "create", "BADSPEC"], "'type' must be one of"),
        (["export", "7"], "There is no project 7"),
        (["project", "status", "x"], "give a project id"),
    ],
)
def test_errors_are_one_line_exit_2_and_change_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    db = tmp_path / "p.db"
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "items.csv").write_text("id,text\n1,a\n")
    (tmp_path / "bad.csv").write_text("id,text\n1,a\n2,\n")
    (tmp_path / "bad.yaml").write_text("name: x\ntype: poll\n")
    assert _run("project", "create", str(tmp_path / "spec.yaml"), "--db", str(db)).returncode == 0
    before = _digest(db)
    paths = {"ITEMS": "items.csv", "MISSING": "nope.csv", "BAD": "bad.csv", "BADSPEC": "bad.yaml"}
    argv = [str(tmp_path / paths[a]) if a in paths else a for a in args]
    proc = _run(*argv, "--db", str(db))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert _digest(db) == before


def test_audit_detects_tampering(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "demo.db"
    assert (
        _run("demo", "--json", "--rules-only", "--workers", "50", "--db", str(db)).returncode == 0
    )
    assert _run("audit", "--db", str(db)).returncode == 0
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER tr_ledger_no_update")
    con.execute("UPDATE ledger SET amount = 500 WHERE seq = 7")
    con.commit()
    con.close()
    proc = _run("audit", "--db", str(db))
    assert proc.returncode == 1
    assert "entry 7 was altered" in proc.stderr


def test_audit_names_a_forged_entry_and_a_dropped_trigger(tmp_path: Path) -> None:
    """File access is enough to append a bonus with a correct sha256 (issue 17); the MAC
    it cannot compute gives it away, and a dropped trigger is named too, one line each."""
    import sqlite3

    from polycrowd.engine.ledger import entry_hash

    db = tmp_path / "demo.db"
    assert (
        _run("demo", "--json", "--rules-only", "--workers", "20", "--db", str(db)).returncode == 0
    )
    key = Path(f"{db}.ledger.key")
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
    proc = _run("audit", "--db", str(db))
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.endswith("; MACs verified, checkpoint 1\n")
    proc = _run("audit", "--db", str(db), "--json")
    assert proc.returncode == 0, proc.stderr
    clean = json.loads(proc.stdout)
    assert clean["ok"] and clean["authenticated"] and clean["checkpoint"] == 1  # on shutdown
    con = sqlite3.connect(db)
    seq, prev = con.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    digest = entry_hash(seq + 1, 1.0, 1, "bonus", 10**6, "bonus:forged", "", prev)
    con.execute(
        "INSERT INTO ledger(seq, ts, user_id, kind, amount, ref, memo, prev_hash, hash)"
        " VALUES (?, 1.0, 1, 'bonus', 1000000, 'bonus:forged', '', ?, ?)",
        (seq + 1, prev, digest),
    )
    con.execute("UPDATE users SET balance = balance + 1000000 WHERE id = 1")
    con.execute("DROP TRIGGER tr_ledger_no_delete")
    con.commit()
    con.close()
    proc = _run("audit", "--db", str(db))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        f"polycrowd: ledger broken: entry {seq + 1} has no MAC (written without the ledger key)",
        "polycrowd: ledger broken: append-only trigger tr_ledger_no_delete is missing or disabled",
    ]
    out = json.loads(_run("audit", "--db", str(db), "--json").stdout)
    assert not out["ok"] and out["first_bad_seq"] == seq + 1 and len(out["problems"]) == 2


def test_audit_without_the_key_file_fails_and_makes_no_key(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    assert (
        _run("demo", "--json", "--rules-only", "--workers", "20", "--db", str(db)).returncode == 0
    )
    key = Path(f"{db}.ledger.key")
    key.unlink()
    before = _digest(db)
    proc = _run("audit", "--db", str(db))
    assert proc.returncode == 1
    assert f"the ledger is signed but its key is missing ({key})" in proc.stderr
    assert not key.exists() and _digest(db) == before


def test_every_command_has_help_with_an_example() -> None:
    for cmd in (
        "demo",
        "run",
        "project",
        "import",
        "export",
        "aggregate",
        "audit",
        "checker",
        "user",
        "backup",
        "report",
        "serve",
    ):
        proc = _run(cmd, "--help")
        assert proc.returncode == 0
        assert "example:" in proc.stdout and "polycrowd" in proc.stdout


def test_aggregate_on_shared_data(tmp_path: Path) -> None:
    data = SHARED_DATA / "temp"
    if not data.exists():
        pytest.skip("shared data not present")
    out = tmp_path / "r.tsv"
    proc = _run(
        "aggregate",
        "--input",
        str(data / "labels.tsv"),
        "--method",
        "ds",
        "--gold",
        str(data / "gold.tsv"),
        "--output",
        str(out),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["accuracy"] >= 0.93
    header = out.read_text().splitlines()[0]
    assert header == "item\tlabel\tconfidence"
    assert 0.0 <= result["ece"] < 0.2
    assert len(result["results"]) == result["items"]
    workers = (tmp_path / "r.workers.tsv").read_text().splitlines()
    assert workers[0] == "worker\tanswers\taccuracy\tlow\thigh"
    assert len(workers) - 1 == len(result["workers"]) == 76
    w = result["workers"][0]
    assert w["low"] <= w["accuracy"] <= w["high"]
