"""``polycrowd checker train|eval`` on a project, with a tiny BERT built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polycrowd.checker_cli import spans_to_bio
from polycrowd.cli import main

pytest.importorskip("torch")


def test_spans_to_bio() -> None:
    tokens, tags = spans_to_bio("Ann lives in New York", "0-1:PER;3-5:LOC")
    assert tokens == ["Ann", "lives", "in", "New", "York"]
    assert tags == ["B-PER", "O", "O", "B-LOC", "I-LOC"]
    assert spans_to_bio("a b", "none")[1] == ["O", "O"]


def test_train_then_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from polycrowd.models.train import build_tiny_bert

    db = str(tmp_path / "c.db")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: pets\ntype: choice\nlabels: [cat, dog]\ninstructions: Which pet?\n")
    words = {"cat": "meow purr whiskers", "dog": "woof bark fetch"}
    golds = ["cat" if i % 2 else "dog" for i in range(40)]
    rows = ["id,text,gold"] + [f"{i},{words[g]} {i},{g}" for i, g in enumerate(golds)]
    (tmp_path / "items.csv").write_text("\n".join(rows) + "\n")
    assert main(["project", "create", str(spec), "--db", db]) == 0
    assert main(["import", "1", str(tmp_path / "items.csv"), "--db", db]) == 0
    base = build_tiny_bert(
        tmp_path / "base",
        ["cat", "dog"],
        "classifier",
        words=["meow", "purr", "whiskers", "woof", "bark", "fetch"],
    )
    capsys.readouterr()
    out = tmp_path / "models"
    assert (
        main(
            [
                "checker",
                "train",
                "1",
                "--db",
                db,
                "--model",
                str(base),
                "--output",
                str(out),
                "--epochs",
                "8",
                "--json",
            ]
        )
        == 0
    )
    trained = json.loads(capsys.readouterr().out)
    assert trained["n_test"] > 0 and 0.0 <= trained["accuracy"] <= 1.0
    assert Path(trained["model_dir"]).is_dir()
    assert main(["checker", "eval", "1", "--db", db]) == 0
    table = capsys.readouterr().out
    assert "precision" in table and "cat" in table and "dog" in table


def test_refuses_without_enough_examples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "c.db")
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: pets\ntype: choice\nlabels: [cat, dog]\ninstructions: Which pet?\n")
    assert main(["project", "create", str(spec), "--db", db]) == 0
    assert main(["checker", "train", "1", "--db", db]) == 2
    assert "not enough labelled items" in capsys.readouterr().err
