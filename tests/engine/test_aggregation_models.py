"""Tests for the newer aggregation models, Auto, the simulator and the online posterior."""

from __future__ import annotations

import numpy as np
import pytest

from polycrowd.engine.aggregation import (
    GLAD,
    MACE,
    METHODS,
    REGISTRY,
    Auto,
    BayesianDawidSkene,
    DawidSkene,
    MajorityVote,
    item_posterior,
    make_aggregator,
)
from polycrowd.engine.aggregation.auto import MIN_WEIGHT, stack_weights
from polycrowd.engine.aggregation.online import error_correlation, flip_probability
from polycrowd.engine.aggregation.simulate import SHAPES, Shape, simulate
from polycrowd.engine.aggregation.tsv import expected_calibration_error


def _fit(method: str, c: object) -> object:
    crowd = c  # a simulate.Crowd
    return make_aggregator(method).fit(
        crowd.items,  # type: ignore[attr-defined]
        crowd.workers,  # type: ignore[attr-defined]
        crowd.labels,  # type: ignore[attr-defined]
        n_items=crowd.n_items,  # type: ignore[attr-defined]
        n_workers=crowd.n_workers,  # type: ignore[attr-defined]
        n_labels=crowd.n_classes,  # type: ignore[attr-defined]
    )


def _spam_crowd(
    seed: int = 0, constant: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """3 honest workers (80 % right) and 3 spammers (always 0, or at random), 300 items."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, 300)
    items, workers, labels = [], [], []
    for i, t in enumerate(truth):
        for w in range(6):
            items.append(i)
            workers.append(w)
            if w < 3:
                labels.append(int(t) if rng.random() < 0.8 else 1 - int(t))
            else:
                labels.append(0 if constant else int(rng.integers(0, 2)))
    return np.array(items), np.array(workers), np.array(labels), truth


def test_registry_holds_every_method_and_all_fit() -> None:
    assert set(METHODS) == set(REGISTRY)
    assert {"bds", "glad", "mace"} <= set(METHODS)
    items, workers, labels = [0, 0, 1, 1, 2], [0, 1, 0, 1, 0], [0, 0, 1, 1, 1]
    for method in (*METHODS, "auto"):
        model = make_aggregator(method).fit(items, workers, labels)
        assert model.labels_.tolist() == [0, 1, 1]
        assert np.allclose(model.posteriors_.sum(axis=1), 1.0)
        assert model.worker_answers_.tolist() == [3, 2]
        proba = model.answer_proba([0, 2], [1, 1])
        assert proba.shape == (2, 2) and np.allclose(proba.sum(axis=1), 1.0)


def test_spammers_are_down_weighted() -> None:
    items, workers, labels, truth = _spam_crowd()
    mv = MajorityVote().fit_predict(items, workers, labels)
    ds = DawidSkene().fit(items, workers, labels)
    bds = BayesianDawidSkene().fit(items, workers, labels)
    auto = Auto().fit(items, workers, labels)
    # majority vote is dragged to 0; the confusion models recover the honest workers' answers
    assert np.mean(mv == truth) < 0.8
    for model in (ds, bds, auto):
        assert np.mean(model.labels_ == truth) > 0.85
    # the spammers' estimated accuracy is about chance, the honest ones' about 0.8
    assert bds.worker_accuracy_[3:].max() < 0.6
    assert bds.worker_accuracy_[:3].min() > 0.7


def test_mace_spots_random_spammers() -> None:
    # known limit: with half the crowd pressing one button from the start, MACE's EM
    # (started from majority vote) can settle on the spammers; DS/BDS handle that case
    items, workers, labels, truth = _spam_crowd(constant=False)
    mace = MACE().fit(items, workers, labels)
    assert np.mean(mace.labels_ == truth) > 0.85
    assert mace.spam_[3:].min() > 0.6 > mace.spam_[:3].max()


def test_glad_finds_the_hard_items() -> None:
    c = simulate(SHAPES["hard_items"], seed=1)
    model = GLAD().fit(c.items, c.workers, c.labels, n_labels=c.n_classes)
    hard = c.easiness < 0.5
    assert hard.any() and (~hard).any()
    assert np.median(model.difficulty_[hard]) > 1.5 * np.median(model.difficulty_[~hard])


def test_prior_keeps_sparse_workers_from_overfitting() -> None:
    c = simulate(SHAPES["sparse_skewed_4"], seed=0)
    ds = np.mean(_fit("ds", c).labels_ == c.truth)  # type: ignore[attr-defined]
    bds = np.mean(_fit("bds", c).labels_ == c.truth)  # type: ignore[attr-defined]
    assert bds > ds + 0.02


@pytest.mark.parametrize("seed", [11, 12])
def test_auto_is_never_the_worst_on_an_unseen_crowd(seed: int) -> None:
    # a shape that is not one of the SHAPES the rule was measured on
    shape = Shape(
        n_items=250,
        n_workers=25,
        n_classes=6,
        per_item=5,
        skew=0.5,
        spammers=0.2,
        adversaries=0.1,
        ability=1.5,
    )
    c = simulate(shape, seed)
    acc = {m: float(np.mean(_fit(m, c).labels_ == c.truth)) for m in METHODS}  # type: ignore[attr-defined]
    auto = _fit("auto", c)
    auto_acc = float(np.mean(auto.labels_ == c.truth))  # type: ignore[attr-defined]
    assert auto_acc > min(acc.values())
    assert auto_acc >= np.median(list(acc.values())) - 0.01


def test_auto_confidence_is_calibrated_on_a_simulated_crowd() -> None:
    c = simulate(Shape(n_items=1500, n_workers=40, per_item=5, ability=1.2, spammers=0.1), 3)
    model = Auto().fit(c.items, c.workers, c.labels, n_labels=c.n_classes)
    right = model.labels_ == c.truth
    assert expected_calibration_error(model.confidence_, right) < 0.05
    # per-worker intervals are ordered and mostly cover the worker's accuracy on the truth
    lo, hi = model.worker_interval_[:, 0], model.worker_interval_[:, 1]
    assert np.all(lo <= hi)
    true_acc = np.bincount(
        c.workers, weights=c.labels == c.truth[c.items], minlength=c.n_workers
    ) / np.maximum(np.bincount(c.workers, minlength=c.n_workers), 1)
    covered = (lo - 0.02 <= true_acc) & (true_acc <= hi + 0.02)
    assert covered.mean() >= 0.85


def test_auto_falls_back_on_tiny_data() -> None:
    model = Auto().fit([0, 1], [0, 0], [1, 1])
    assert model.chosen_ == "bds" and model.scores_ == {}
    assert model.labels_.tolist() == [1, 1]


def test_item_posterior_extra_voter_and_hardness() -> None:
    base = item_posterior([0, 0, 1], [0.8, 0.8, 0.8], 2)
    # an extra voter that says "1" with likelihood ratio 9:1 flips the item
    extra = item_posterior([0, 0, 1], [0.8, 0.8, 0.8], 2, extra=[[0.1, 0.9]])
    assert base[0] > 0.5 > extra[0]
    # hardness: a contested item is less certain, a unanimous one unchanged
    hard = item_posterior([0, 0, 1], [0.8, 0.8, 0.8], 2, hardness=2.0)
    assert 0.5 < hard[0] < base[0]
    same = item_posterior([0, 0], [0.8, 0.8], 2, hardness=2.0)
    assert same == pytest.approx(item_posterior([0, 0], [0.8, 0.8], 2))
    with pytest.raises(ValueError, match="non-negative"):
        item_posterior([0], [0.8], 2, extra=[[-1.0, 1.0]])


def test_correlation_discounts_long_runs_not_single_answers() -> None:
    one = item_posterior([0], [0.8], 2)
    assert item_posterior([0], [0.8], 2, correlation=0.5) == pytest.approx(one)
    plain = item_posterior([0] * 6, [0.7] * 6, 2)
    discounted = item_posterior([0] * 6, [0.7] * 6, 2, correlation=0.2)
    assert 0.5 < discounted[0] < plain[0]
    # n answers at rho count as n / (1 + (n - 1) rho) independent ones
    same = item_posterior([0] * 3, [0.7] * 3, 2)
    assert item_posterior([0] * 6, [0.7] * 6, 2, correlation=1 / 5) == pytest.approx(same)


def test_error_correlation_is_higher_where_errors_cluster() -> None:
    rng = np.random.default_rng(0)
    n_items, per = 400, 8
    items = np.repeat(np.arange(n_items), per)
    acc = np.full(items.size, 0.75)
    independent = (rng.random(items.size) < 0.75).astype(float)
    # hard items: everybody is right with 0.4, easy ones with 0.9 (same mean 0.75)
    p_item = np.where(rng.random(n_items) < 0.3, 0.4, 0.9)[items]
    clustered = (rng.random(items.size) < p_item).astype(float)
    low = error_correlation(items, independent, acc, n_items)
    high = error_correlation(items, clustered, acc, n_items)
    assert low < 0.03
    assert 0.1 < high < 0.3  # between-item variance 0.0525 / total 0.1875 = 0.28
    assert error_correlation(np.arange(5), np.ones(5), np.full(5, 0.7), 5) == 0.0


def test_stack_weights_follow_the_better_predictor() -> None:
    rng = np.random.default_rng(1)
    good = rng.uniform(0.6, 0.9, 500)
    bad = good * rng.uniform(0.3, 0.9, 500)
    w = stack_weights(np.stack([bad, good], axis=1))
    assert w.sum() == pytest.approx(1.0) and w[1] > 0.95
    # two models that predict differently well on different answers are mixed
    a = np.where(np.arange(500) % 2 == 0, 0.9, 0.3)
    b = np.where(np.arange(500) % 2 == 0, 0.3, 0.9)
    assert stack_weights(np.stack([a, b], axis=1)) == pytest.approx([0.5, 0.5], abs=0.01)


def test_auto_stacks_members_into_one_posterior() -> None:
    c = simulate(SHAPES["confused_5"], 0)
    model = Auto().fit(c.items, c.workers, c.labels, n_labels=c.n_classes)
    assert sum(model.weights_.values()) == pytest.approx(1.0)
    assert min(model.weights_.values()) >= MIN_WEIGHT
    assert model.chosen_ == "stack" if len(model.weights_) > 1 else model.chosen_ in model.weights_
    assert model.posteriors_.sum(axis=1) == pytest.approx(np.ones(c.n_items))
    proba = model.answer_proba(c.items[:10], c.workers[:10])
    assert proba.sum(axis=1) == pytest.approx(np.ones(10))
    # gated: under 5 answers per worker it is MACE alone
    sparse = simulate(SHAPES["sparse_skewed_4"], 0)
    few = Auto().fit(sparse.items[:300], sparse.workers[:300], sparse.labels[:300], n_labels=4)
    assert 300 / (int(sparse.workers[:300].max()) + 1) < 5
    assert few.chosen_ == "mace" and few.weights_ == {"mace": 1.0}


def test_flip_probability_asks_whether_the_rest_could_change_the_label() -> None:
    skew = [0.88, 0.12]
    # nothing left to ask: decided
    assert flip_probability([0, 1], [0.8, 0.8], 2, skew, remaining=0, crowd_accuracy=0.8) == 0
    # a 1-1 split that the class skew decides whatever one more average answer says
    assert flip_probability([0, 1], [0.8, 0.8], 2, skew, remaining=1, crowd_accuracy=0.8) == 0
    # without the skew the same split is a coin toss
    even = flip_probability([0, 1], [0.8, 0.8], 2, None, remaining=1, crowd_accuracy=0.8)
    assert even == pytest.approx(0.5)
    # more answers to come, more chance to overturn a lead; correlated errors add to it
    lead = ([0, 0, 0, 1, 1], [0.7] * 5, 2)
    few = flip_probability(*lead, remaining=2, crowd_accuracy=0.7)
    many = flip_probability(*lead, remaining=30, crowd_accuracy=0.7)
    hard = flip_probability(*lead, remaining=30, crowd_accuracy=0.7, correlation=0.1)
    assert 0 < few < many < hard < 0.5
    # a crowd with some very reliable workers can overturn what average ones cannot
    strong = [0.55] * 8 + [0.99] * 2
    args = ([0, 1], [0.8, 0.8], 2, skew)
    sampled = flip_probability(*args, remaining=1, crowd_accuracy=0.64, crowd=strong)
    assert sampled > 0.02
    assert sampled == flip_probability(*args, remaining=1, crowd_accuracy=0.64, crowd=strong)
    # three classes: the wrong future answers spread over the other two labels
    three = flip_probability([0, 0, 1], [0.7] * 3, 3, None, remaining=3, crowd_accuracy=0.7)
    two = flip_probability([0, 0, 1], [0.7] * 3, 2, None, remaining=3, crowd_accuracy=0.7)
    assert 0 < three < two


@pytest.mark.parametrize("correlation", [0.0, 0.1])
def test_sampled_flip_matches_the_exact_one_for_a_uniform_crowd(correlation: float) -> None:
    lead = ([0, 0, 0, 1, 1], [0.7] * 5, 2)
    exact = flip_probability(*lead, remaining=30, crowd_accuracy=0.7, correlation=correlation)
    sampled = flip_probability(
        *lead, remaining=30, crowd_accuracy=0.7, correlation=correlation, crowd=[0.7] * 10
    )
    assert sampled == pytest.approx(exact, abs=0.03)
