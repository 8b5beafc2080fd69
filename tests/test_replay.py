"""``polycrowd replay`` on a small fixture: people only, and with a pixel model in the loop."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from polycrowd.cli import main
from polycrowd.models.prelabel import Prelabeler
from polycrowd.replay import ReplayConfig, replay


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


def _long_text_answers() -> tuple[list[tuple[str, str, str]], dict[str, str], dict[str, str]]:
    rng = random.Random(5)
    answers, gold, contents = [], {}, {}
    for i in range(40):
        truth = "a" if i % 2 else "b"
        gold[f"t{i}"] = truth
        # a news-article-sized item: 400 words, far more than a person reads in 20 seconds
        contents[f"t{i}"] = " ".join(["alpha" if truth == "a" else "beta"] * 400)
        for w in rng.sample(range(8), 5):
            lab = truth if rng.random() < 0.85 else ("b" if truth == "a" else "a")
            answers.append((f"t{i}", f"w{w}", lab))
    return answers, gold, contents


async def test_replay_counts_answers_on_long_items(tmp_path: Path) -> None:
    """Past answers on long texts are heard: the replay gives each the time an honest
    reader needs, so the checker does not reject them as too fast (it did with a fixed 20
    seconds: every answer on an article was rejected and items were left without a
    result)."""
    answers, gold, contents = _long_text_answers()
    config = ReplayConfig(overlap=3, overlap_max=5)
    short = await replay(answers, labels=["a", "b"], gold=gold, config=config, folder=tmp_path)
    long = await replay(
        answers, labels=["a", "b"], contents=contents, gold=gold, config=config, folder=tmp_path
    )
    assert set(long.labels) == set(gold)
    assert long.answers_used == short.answers_used
    assert long.accuracy == short.accuracy
    assert long.accuracy is not None and long.accuracy >= 0.9


def _word_features(texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.asarray([[t.count("alpha"), t.count("beta"), 1.0] for t in texts], np.float64)


async def test_replay_with_a_text_model_on_long_items(tmp_path: Path) -> None:
    answers, gold, contents = _long_text_answers()
    report = await replay(
        answers,
        labels=["a", "b"],
        contents=contents,
        gold=gold,
        predictor=Prelabeler(_word_features, name="words"),
        config=ReplayConfig(overlap=3, overlap_max=5, min_human_answers=1, retrain_every=10),
        folder=tmp_path,
    )
    assert set(report.labels) == set(gold)
    assert report.accuracy is not None and report.accuracy >= 0.95
    assert report.answers_used < report.answers_all
