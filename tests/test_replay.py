"""``polycrowd replay`` on a small fixture: people only, and with a pixel model in the loop."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from polycrowd.cli import main


def _fixture(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = random.Random(3)
    acc = {f"w{k}": a for k, a in enumerate([0.95, 0.9, 0.85, 0.8, 0.6, 0.5])}
    labels, gold, items = ["item\tworker\tlabel"], ["item\tlabel"], ["item\tcontent"]
    for i in range(60):
        truth = "a" if i % 2 else "b"
        gold.append(f"t{i}\t{truth}")
        px = [9, 9, 0, 0] if truth == "a" else [0, 0, 9, 9]
        items.append(f"t{i}\t" + " ".join(str(v + rng.random()) for v in px))
        for w in rng.sample(sorted(acc), 5):
            lab = truth if rng.random() < acc[w] else ("b" if truth == "a" else "a")
            labels.append(f"t{i}\t{w}\t{lab}")
    paths = []
    for name, rows in (("labels", labels), ("gold", gold), ("items", items)):
        p = tmp_path / f"{name}.tsv"
        p.write_text("\n".join(rows) + "\n", encoding="utf-8")
        paths.append(p)
    return paths[0], paths[1], paths[2]


def test_replay_people_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels, gold, _ = _fixture(tmp_path)
    assert main(["replay", str(labels), "--gold", str(gold), "--overlap", "3", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {
        "answers_all",
        "answers_used",
        "saved_fraction",
        "accuracy_all",
        "accuracy",
        "accuracy_delta",
        "gini",
    }
    assert out["answers_all"] == 300
    assert 180 <= out["answers_used"] <= 300  # at least the overlap minimum of 3
    assert 0.0 <= out["gini"] < 1.0


def test_replay_with_the_model_saves_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels, gold, items = _fixture(tmp_path)
    args = ["replay", str(labels), "--gold", str(gold), "--overlap", "3", "5"]
    assert main(args) == 0
    people = json.loads(capsys.readouterr().out)
    assert main([*args, "--items", str(items), "--image"]) == 0
    with_model = json.loads(capsys.readouterr().out)
    assert with_model["answers_used"] < people["answers_used"]
    assert with_model["accuracy"] >= 0.9


def test_replay_bad_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "missing.tsv")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("polycrowd:") and len(err.strip().splitlines()) == 1
