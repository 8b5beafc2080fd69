"""Tests for polycrowd.engine.aggregation: toy crowds with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from polycrowd.engine.aggregation import (
    METHODS,
    AggregationInputError,
    Aggregator,
    DawidSkene,
    MajorityVote,
    OneCoinDawidSkene,
    WeightedMajorityVote,
    aggregate_tsv,
    choose_method,
    encode,
    item_posterior,
    krippendorff_alpha,
    make_aggregator,
    read_answers_tsv,
    read_gold_tsv,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

Answers = tuple[list[int], list[int], list[int]]


def _answers(rows: list[tuple[int, int, int]]) -> Answers:
    items, workers, labels = (list(col) for col in zip(*rows, strict=True))
    return items, workers, labels


@pytest.fixture
def small() -> Answers:
    """Three items, three workers: item 0 unanimous 1, item 1 two-to-one 0, item 2 split."""
    return _answers(
        [
            (0, 0, 1), (0, 1, 1), (0, 2, 1),
            (1, 0, 0), (1, 1, 0), (1, 2, 1),
            (2, 0, 0), (2, 1, 1),
        ]
    )  # fmt: skip


@pytest.fixture
def spammer_crowd() -> tuple[Answers, np.ndarray]:
    """3 good workers (90 %), 5 uniform spammers and 2 always-'1' workers, 200 items."""
    rng = np.random.default_rng(7)
    n = 200
    truth = rng.integers(0, 2, n)
    rows: list[tuple[int, int, int]] = []
    for i in range(n):
        for w in range(3):
            rows.append((i, w, int(truth[i] if rng.random() < 0.9 else 1 - truth[i])))
        for w in range(3, 8):
            rows.append((i, w, int(rng.integers(0, 2))))
        for w in range(8, 10):
            rows.append((i, w, 1))
    return _answers(rows), truth


def _check_outputs(model: Aggregator, n_items: int, n_labels: int) -> None:
    post, conf, labels = model.posteriors_, model.confidence_, model.labels_
    assert post.shape == (n_items, n_labels)
    assert np.allclose(post.sum(axis=1), 1.0)
    assert np.all((conf >= 0.0) & (conf <= 1.0))
    assert np.allclose(conf, post[np.arange(n_items), labels])


# --------------------------------------------------------------------------- encode


def test_encode_round_trip() -> None:
    enc = encode(["a", "a", "b"], ["w1", "w2", "w1"], ["yes", "no", "yes"])
    assert enc.item_names == ("a", "b")
    assert enc.worker_names == ("w1", "w2")
    assert enc.label_names == ("no", "yes")
    assert enc.items.tolist() == [0, 0, 1]
    assert enc.workers.tolist() == [0, 1, 0]
    assert enc.labels.tolist() == [1, 0, 1]
    assert enc.gold_array({"b": "no", "zzz": "yes"}).tolist() == [-1, 0]


def test_encode_with_label_set_keeps_unused_labels() -> None:
    enc = encode(["a"], ["w"], ["cat"], label_set=["dog", "cat", "bird"])
    assert enc.label_names == ("dog", "cat", "bird")
    assert enc.labels.tolist() == [1]
    with pytest.raises(ValueError, match="outside the label set"):
        encode(["a"], ["w"], ["fish"], label_set=["dog"])


# --------------------------------------------------------------------------- majority vote


def test_majority_vote_known_answers(small: Answers) -> None:
    mv = MajorityVote().fit(*small)
    assert mv.labels_[:2].tolist() == [1, 0]
    assert mv.agreement_.tolist() == pytest.approx([1.0, 2 / 3, 0.5])
    _check_outputs(mv, 3, 2)
    # more agreeing answers -> more confidence
    assert mv.confidence_[0] > mv.confidence_[1] > 0.5


def test_majority_vote_share_confidence(small: Answers) -> None:
    mv = MajorityVote(confidence="share", smoothing=1.0).fit(*small)
    prior = mv.priors_
    assert mv.confidence_[0] == pytest.approx((3 + prior[1]) / 4)
    _check_outputs(mv, 3, 2)


def test_majority_vote_ties_are_spread_and_reproducible() -> None:
    # 100 items, each with one vote for 0 and one for 1
    rows = [(i, w, w) for i in range(100) for w in range(2)]
    items, workers, labels = _answers(rows)
    first = MajorityVote(seed=3).fit_predict(items, workers, labels)
    again = MajorityVote(seed=3).fit_predict(items, workers, labels)
    assert first.tolist() == again.tolist()
    share = float(np.mean(first))
    assert 0.3 < share < 0.7  # not always the same class
    other = MajorityVote(seed=4).fit_predict(items, workers, labels)
    assert other.tolist() != first.tolist()


def test_majority_vote_prior_tie_break_uses_label_frequency() -> None:
    # label 1 is the more frequent answer overall; item 1 is tied
    rows = [(0, 0, 1), (0, 1, 1), (0, 2, 1), (1, 0, 0), (1, 1, 1)]
    labels = MajorityVote(tie_break="prior").fit_predict(*_answers(rows))
    assert labels.tolist() == [1, 1]
    rows = [(0, 0, 0), (0, 1, 0), (0, 2, 0), (1, 0, 0), (1, 1, 1)]
    labels = MajorityVote(tie_break="prior").fit_predict(*_answers(rows))
    assert labels.tolist() == [0, 0]


def test_item_without_answers_gets_prior_and_nan_agreement(small: Answers) -> None:
    for method in METHODS:
        model = make_aggregator(method).fit(*small, n_items=5)
        assert math.isnan(model.agreement_[4])
        assert model.posteriors_[4] == pytest.approx(model.priors_)
        _check_outputs(model, 5, 2)


def test_gold_items_are_clamped(small: Answers) -> None:
    for method in METHODS:
        model = make_aggregator(method).fit(*small, gold={0: 0})
        assert model.labels_[0] == 0
        assert model.posteriors_[0].tolist() == [1.0, 0.0]
        assert model.agreement_[0] == 0.0


# --------------------------------------------------------------------------- weighted / DS


def test_weighted_vote_with_given_accuracies() -> None:
    # one expert says 1, two poor workers say 0
    rows = [(0, 0, 1), (0, 1, 0), (0, 2, 0)]
    items, workers, labels = _answers(rows)
    wmv = WeightedMajorityVote().fit(items, workers, labels, accuracies=[0.99, 0.6, 0.6])
    assert wmv.labels_.tolist() == [1]
    assert wmv.skills_.tolist() == [0.99, 0.6, 0.6]
    expected = item_posterior([1, 0, 0], [0.99, 0.6, 0.6], 2, wmv.priors_)
    assert wmv.posteriors_[0] == pytest.approx(expected)
    assert MajorityVote().fit_predict(items, workers, labels).tolist() == [0]


def test_dawid_skene_beats_majority_vote_with_spammers(
    spammer_crowd: tuple[Answers, np.ndarray],
) -> None:
    answers, truth = spammer_crowd
    mv_acc = float(np.mean(MajorityVote().fit_predict(*answers) == truth))
    ds = DawidSkene().fit(*answers)
    ds_acc = float(np.mean(ds.labels_ == truth))
    assert ds_acc >= 0.9
    assert ds_acc >= mv_acc + 0.1
    assert ds.converged_ and ds.n_iter_ < ds.max_iter
    assert ds.confusions_.shape == (10, 2, 2)
    assert np.allclose(ds.confusions_.sum(axis=2), 1.0)
    assert ds.priors_.sum() == pytest.approx(1.0)
    assert ds.skills_[:3].min() > 0.8  # the good workers are found
    assert ds.skills_[3:].max() < 0.65  # spammers and constant workers are not
    _check_outputs(ds, 200, 2)
    agree = np.mean(np.array(answers[2]).reshape(200, 10) == ds.labels_[:, None], axis=1)
    assert ds.agreement_ == pytest.approx(agree)


def test_dawid_skene_log_likelihood_runs_to_tolerance(
    spammer_crowd: tuple[Answers, np.ndarray],
) -> None:
    answers, _ = spammer_crowd
    short = DawidSkene(max_iter=2).fit(*answers)
    assert not short.converged_ and short.n_iter_ == 2
    full = DawidSkene(tol=1e-10).fit(*answers)
    assert full.converged_
    assert full.log_likelihood_ >= short.log_likelihood_


def test_dawid_skene_with_sparse_workers_stays_finite() -> None:
    # each of 30 workers answers a single item; one regular worker answers all
    rows = [(i, 0, i % 2) for i in range(30)] + [(i, 1 + i, i % 2) for i in range(30)]
    for model in (DawidSkene(), OneCoinDawidSkene()):
        model.fit(*_answers(rows))
        assert np.all(np.isfinite(model.posteriors_))
        assert np.all(np.isfinite(model.confusions_))
        assert model.labels_.tolist() == [i % 2 for i in range(30)]


def test_one_coin_dawid_skene_toy() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 150)
    acc = [0.95, 0.9, 0.8, 0.6, 0.5]
    rows = []
    for i, t in enumerate(truth.tolist()):
        for w, a in enumerate(acc):
            lab = t if rng.random() < a else int((t + rng.integers(1, 3)) % 3)
            rows.append((i, w, lab))
    model = OneCoinDawidSkene().fit(*_answers(rows))
    assert float(np.mean(model.labels_ == truth)) >= 0.95
    assert model.skills_ == pytest.approx(acc, abs=0.08)
    _check_outputs(model, 150, 3)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="same length"):
        DawidSkene().fit([0, 1], [0], [0, 1])
    with pytest.raises(ValueError, match="non-negative"):
        MajorityVote().fit([0, -1], [0, 0], [0, 1])
    with pytest.raises(ValueError, match="unknown aggregation method"):
        make_aggregator("nope")


# --------------------------------------------------------------------------- choose / online


def test_choose_method() -> None:
    assert choose_method(1000, 50, 5.0, False) == "ds"
    assert choose_method(1000, 50, 5.0, True) == "ds"
    assert choose_method(10, 20, 3.0, False) == "mv"  # 1.5 answers per worker
    assert choose_method(1000, 10, 1.0, False) == "mv"  # one answer per item
    assert choose_method(0, 0, 0.0, False) == "mv"


def test_item_posterior_monotone_in_agreeing_votes() -> None:
    previous = 0.5
    for n in range(1, 8):
        post = item_posterior([1] * n, [0.7] * n, 2, None)
        assert post.sum() == pytest.approx(1.0)
        assert post[1] > previous
        previous = float(post[1])
    # a dissenting vote lowers it again
    dissent = item_posterior([1, 1, 0], [0.7] * 3, 2, None)
    assert dissent[1] < item_posterior([1, 1], [0.7] * 2, 2)[1]


def test_item_posterior_values() -> None:
    assert item_posterior([], [], 3, None) == pytest.approx([1 / 3] * 3)
    assert item_posterior([], [], 2, [3.0, 1.0]) == pytest.approx([0.75, 0.25])
    # one worker with accuracy 0.8, three classes: 0.8 vs 0.1 each
    assert item_posterior([2], [0.8], 3, None) == pytest.approx([0.1, 0.1, 0.8])
    # an accuracy of exactly 1 or 0 is clipped, not a division by zero
    assert np.all(np.isfinite(item_posterior([0, 1], [1.0, 0.0], 2, None)))
    with pytest.raises(ValueError):
        item_posterior([2], [0.9], 2, None)


# --------------------------------------------------------------------------- krippendorff


def test_krippendorff_perfect_agreement() -> None:
    items = [0, 0, 0, 1, 1, 2, 2, 2]
    labels = [0, 0, 0, 1, 1, 2, 2, 2]
    assert krippendorff_alpha(items, list(range(8)), labels) == pytest.approx(1.0)


def test_krippendorff_textbook_examples() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", nominal
    # example with missing values: 4 observers, 12 units, alpha = 0.743.
    table = [
        "1 2 3 3 2 1 4 1 2 . . .",
        "1 2 3 3 2 2 4 1 2 5 . 3",
        ". 3 3 3 2 3 4 2 2 5 1 .",
        "1 2 3 3 2 4 4 1 2 5 1 .",
    ]
    items, workers, labels = [], [], []
    for w, row in enumerate(table):
        for u, value in enumerate(row.split()):
            if value != ".":
                items.append(u)
                workers.append(w)
                labels.append(int(value))
    assert krippendorff_alpha(items, workers, labels) == pytest.approx(0.743, abs=5e-4)
    # two observers, ten binary units: alpha = 0.095
    a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    units = list(range(10)) * 2
    assert krippendorff_alpha(units, [0] * 10 + [1] * 10, a + b) == pytest.approx(0.095, abs=5e-4)


def test_krippendorff_undefined_is_nan() -> None:
    assert math.isnan(krippendorff_alpha([0, 0, 1, 1], [0, 1, 0, 1], [1, 1, 1, 1]))
    assert math.isnan(krippendorff_alpha([0, 1], [0, 0], [0, 1]))  # nothing pairable
    assert math.isnan(krippendorff_alpha([], [], []))


# --------------------------------------------------------------------------- TSV files


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_aggregate_tsv_round_trip(tmp_path: Path) -> None:
    labels = _write(
        tmp_path / "labels.tsv",
        "item\tworker\tlabel\n"
        "q1\tann\tcat\nq1\tbob\tcat\nq1\tcid\tdog\n"
        "q2\tann\tdog\nq2\tbob\tdog\nq2\tcid\tdog\n",
    )
    gold = _write(tmp_path / "gold.tsv", "item\tlabel\nq1\tcat\nq2\tcat\nq9\tdog\n")
    out = tmp_path / "out.tsv"
    for method in (*METHODS, "auto"):
        report = aggregate_tsv(labels, method, out, gold_path=gold)
        assert report["items"] == 2
        assert report["accuracy"] == pytest.approx(0.5)
        assert isinstance(report["seconds"], float)
        assert report["method"] in METHODS  # too few answers to stack: auto falls back
        assert report["weights"] == {report["method"]: 1.0}
        lines = out.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "item\tlabel\tconfidence"
        rows = [line.split("\t") for line in lines[1:]]
        assert [r[:2] for r in rows] == [["q1", "cat"], ["q2", "dog"]]
        assert all(0.0 <= float(r[2]) <= 1.0 for r in rows)
    report = aggregate_tsv(labels, "mv", out)
    assert report["accuracy"] is None


def test_read_tsv_ignores_column_order_and_extra_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "l.tsv", "label\tnote\titem\tworker\r\nA\tx\ti\tw\r\n")
    enc = read_answers_tsv(path)
    assert (enc.item_names, enc.worker_names, enc.label_names) == (("i",), ("w",), ("A",))
    gold = _write(tmp_path / "g.tsv", "item\tlabel\ni\tA\n")
    assert read_gold_tsv(gold) == {"i": "A"}


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("item\tworker\tlabel\na\tw\t1\nb\tw\n", 3, "expected 3"),
        ("item\tworker\tlabel\na\tw\t1\nb\t\t1\n", 3, "empty worker"),
        ("item\tworker\nb\tw\n", 1, "missing column(s) label"),
        ("", 1, "empty file"),
        ("item\tworker\tlabel\n", 2, "no data rows"),
        ("item\tworker\tlabel\na\tw\t1\na\tw\t0\n", 3, "first on line 2"),
    ],
)
def test_aggregate_tsv_bad_input_names_the_line(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    path = _write(tmp_path / "labels.tsv", text)
    with pytest.raises(AggregationInputError) as info:
        aggregate_tsv(path, "ds", tmp_path / "out.tsv")
    message = str(info.value)
    assert f"line {line}:" in message
    assert words in message
    assert "\n" not in message
    assert info.value.line == line
    assert isinstance(info.value, ValueError)
    assert not (tmp_path / "out.tsv").exists()


def test_aggregate_tsv_missing_file_and_bad_bytes(tmp_path: Path) -> None:
    with pytest.raises(AggregationInputError, match="file not found"):
        aggregate_tsv(tmp_path / "nope.tsv", "mv", tmp_path / "out.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"item\tworker\tlabel\na\tw\t1\nb\tw\t\xff\n")
    with pytest.raises(AggregationInputError, match="line 3: not valid UTF-8"):
        aggregate_tsv(bad, "mv", tmp_path / "out.tsv")
    with pytest.raises(AggregationInputError, match="unknown method"):
        aggregate_tsv(bad, "magic", tmp_path / "out.tsv")
    good = _write(tmp_path / "good.tsv", "item\tworker\tlabel\na\tw\t1\n")
    with pytest.raises(AggregationInputError, match="cannot write output"):
        aggregate_tsv(good, "mv", tmp_path / "no" / "such" / "dir.tsv")


# --------------------------------------------------------------------------- real data


def test_dawid_skene_on_rte() -> None:
    folder = DATA / "rte"
    if not (folder / "labels.tsv").exists():
        pytest.skip(f"dataset not found at {folder}")
    enc = read_answers_tsv(folder / "labels.tsv")
    truth = enc.gold_array(read_gold_tsv(folder / "gold.tsv"))
    ds = DawidSkene().fit(enc.items, enc.workers, enc.labels)
    accuracy = float(np.mean(ds.labels_[truth >= 0] == truth[truth >= 0]))
    assert accuracy >= 0.92
    assert ds.converged_
