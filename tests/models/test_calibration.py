"""Thresholds calibrated from labelled scores, stored per model, head and mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polycrowd.models import calibration
from polycrowd.models.calibration import ALL, calibrate, store_thresholds, stored_thresholds


def test_calibrate_flags_at_most_the_allowed_share_of_good_answers() -> None:
    good = [0.80 + i / 1000 for i in range(100)]  # 0.800 .. 0.899
    bad = [0.5, 0.79, 0.805, 0.95]
    cal = calibrate(good, bad, max_flagged=0.05, max_rejected=0.01)
    assert cal.accept_above == pytest.approx(0.805)  # five good answers lie below it
    assert cal.reject_below == pytest.approx(0.801)  # one good answer lies below it
    assert cal.good_flagged == pytest.approx(0.05)
    assert cal.good_rejected == pytest.approx(0.01)
    assert cal.bad_caught == pytest.approx(0.5)  # 0.5 and 0.79; 0.805 is accepted
    assert cal.bad_rejected == pytest.approx(0.5)
    assert (cal.n_good, cal.n_bad) == (100, 4)


def test_calibrate_never_rejects_above_the_accept_threshold() -> None:
    cal = calibrate([0.9, 0.9, 0.9], [], max_flagged=0.0, max_rejected=0.0)
    assert cal.accept_above == cal.reject_below == pytest.approx(0.9)
    assert cal.good_flagged == 0.0
    assert cal.thresholds() == {"accept_above": 0.9, "reject_below": 0.9}


def test_calibrate_rounds_down() -> None:
    cal = calibrate([0.123456789], [], max_flagged=0.0, max_rejected=0.0, digits=4)
    assert cal.accept_above == pytest.approx(0.1234)  # the good answer stays accepted


@pytest.mark.parametrize(
    ("good", "kwargs"),
    [([], {}), ([float("nan")], {}), ([0.5], {"max_flagged": 0.1, "max_rejected": 0.2})],
)
def test_calibrate_refuses_bad_input(good: list[float], kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        calibrate(good, [0.1], **kwargs)


def test_store_and_read_back_per_mode(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.json"
    assert stored_thresholds("m", "similarity", path) is None  # no file yet
    para = calibrate([0.95, 0.96], [0.5], max_flagged=0.0, max_rejected=0.0)
    trans = calibrate([0.85, 0.9], [0.5], max_flagged=0.0, max_rejected=0.0)
    both = calibrate([0.85, 0.9, 0.95, 0.96], [0.5], max_flagged=0.0, max_rejected=0.0)
    store_thresholds("m", "similarity", {"paraphrase": para, "translation": trans}, "t", path)
    store_thresholds("other", "classifier", {ALL: both}, "t", path)
    assert stored_thresholds("m", "similarity", path) == {
        "paraphrase_accept_above": 0.95,
        "paraphrase_reject_below": 0.95,
        "translation_accept_above": 0.85,
        "translation_reject_below": 0.85,
    }
    assert stored_thresholds("other", "classifier", path) == {
        "accept_above": 0.85,
        "reject_below": 0.85,
    }
    assert stored_thresholds("m", "tagger", path) is None
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["m"]["similarity"]["paraphrase"]["source"] == "t"


def test_shipped_thresholds_are_readable() -> None:
    data = calibration.read_store()
    for model, heads in data.items():
        for head in heads:
            got = stored_thresholds(model, head)
            assert got, (model, head)
            for key, value in got.items():
                assert 0.0 <= value <= 1.0, key


def test_pair_features_find_the_word_without_a_counterpart() -> None:
    np = pytest.importorskip("numpy")
    eye = np.eye(4, dtype=np.float32)
    same = calibration.pair_features(eye, eye, 0.9, 0.5)
    assert dict(zip(calibration.FEATURES, same, strict=True)) == pytest.approx(
        {
            "cosine": 0.9,
            "recall": 1.0,
            "precision": 1.0,
            "recall_p10": 1.0,
            "precision_p10": 1.0,
            "lexical": 0.5,
        }
    )
    changed = eye.copy()
    changed[3] = [0.6, 0.8, 0.0, 0.0]  # the answer's last word is another word
    features = calibration.pair_features(eye, changed, 0.9, 0.5)
    got = dict(zip(calibration.FEATURES, features, strict=True))
    assert got["recall"] == pytest.approx(3 / 4)  # item word 3 has no counterpart
    assert got["recall_p10"] < got["recall"] < 1.0
    assert got["precision"] == pytest.approx((3 + 0.8) / 4)
    assert calibration.pair_features(eye[:0], eye, 0.3, 0.1)[1:5] == [0.0] * 4


def _toy_features(n: int, good: bool, seed: int) -> list[list[float]]:
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(seed)
    rows = rng.normal(0.8, 0.05, size=(n, len(calibration.FEATURES)))
    rows[:, 3] += 0.2 if good else -0.2  # the worst-covered item word tells them apart
    return rows.tolist()  # type: ignore[no-any-return]


def test_fit_combiner_learns_the_telling_feature_and_round_trips(tmp_path: Path) -> None:
    good, bad = _toy_features(200, True, 1), _toy_features(200, False, 2)
    combiner = calibration.fit_combiner(good + bad, [True] * 200 + [False] * 200)
    weights = dict(zip(calibration.FEATURES, combiner.weights, strict=True))
    assert max(weights, key=lambda k: abs(weights[k])) == "recall_p10"
    held_good, held_bad = _toy_features(50, True, 3), _toy_features(50, False, 4)
    assert min(map(combiner.score, held_good)) > 0.5 > max(map(combiner.score, held_bad))
    assert calibration.Combiner.from_json(combiner.to_json()) is not None
    wrong = {**combiner.to_json(), "features": ["cosine"]}
    assert calibration.Combiner.from_json(wrong) is None  # made for other features
    assert calibration.Combiner.from_json({"weights": []}) is None
    path = tmp_path / "thresholds.json"
    cal = calibrate([0.7, 0.9], [0.1], max_flagged=0.0, max_rejected=0.0)
    store_thresholds("m", "similarity", {"paraphrase": cal, ALL: cal}, "t", path, {ALL: combiner})
    got = calibration.stored_combiners("m", "similarity", path)
    assert list(got) == [ALL]
    assert got[ALL].score(held_good[0]) == pytest.approx(combiner.score(held_good[0]), abs=1e-4)
    assert calibration.stored_combiners("m", "classifier", path) == {}


def test_fit_combiner_refuses_bad_input() -> None:
    row = [0.5] * len(calibration.FEATURES)
    with pytest.raises(ValueError):
        calibration.fit_combiner([row, row], [True, True])  # one class only
    with pytest.raises(ValueError):
        calibration.fit_combiner([[0.5], [0.6]], [True, False])  # wrong width
    with pytest.raises(ValueError):
        calibration.fit_combiner([row, [float("nan")] * len(row)], [True, False])
