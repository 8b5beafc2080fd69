"""Online posterior of one item, used by the engine when an answer arrives."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from polycrowd.engine.aggregation._base import (
    FloatArray,
    IntArray,
    _one_coin_log_odds,
    _softmax_rows,
)

# --------------------------------------------------------------------------- online helper


def item_posterior(
    labels_of_item: Sequence[int] | IntArray,
    worker_accuracies: Sequence[float] | FloatArray,
    n_classes: int,
    prior: Sequence[float] | FloatArray | None = None,
    *,
    extra: Sequence[Sequence[float]] | FloatArray | None = None,
    hardness: float = 0.0,
    correlation: float = 0.0,
) -> FloatArray:
    """Posterior over the classes of one item under the one-coin worker model.

    ``extra`` adds voters that are not workers (e.g. a checker model): an
    ``(n_extra, n_classes)`` array whose row ``v`` is the likelihood
    P(voter v's output | true class k), multiplied into the posterior.

    ``hardness`` makes the posterior aware that an item on which workers
    disagree is probably hard, and that errors on hard items are correlated
    (several workers fall for the same trap), so the answers are worth less
    than independent votes: the workers' summed log-likelihood is divided by
    ``1 + hardness * d``, with ``d`` the number of answers that disagree with
    the leading label. Unanimous items are unaffected; with ``hardness=0``
    (default) this is the plain one-coin posterior. The adaptive-overlap
    stopping rule uses it so hard items are not closed early
    (``bench/adaptive.py``).

    ``correlation`` is the crowd's intra-item correlation of errors ``rho``
    (:func:`error_correlation`): ``n`` answers that err together on hard items
    carry the evidence of ``n / (1 + (n - 1) * rho)`` independent ones (the
    design effect), so the summed log-likelihood is scaled by that factor.
    It is ``0`` for independent workers and grows where errors cluster.

    ``labels_of_item[j]`` was given by a worker whose accuracy is
    ``worker_accuracies[j]``; a wrong answer is spread evenly over the other
    ``n_classes - 1`` labels. Accuracies are clipped to ``[1e-6, 1 - 1e-6]``. For
    accuracies above ``1 / n_classes`` every extra agreeing vote raises the
    posterior of its label. ``prior`` defaults to uniform.
    """
    if n_classes < 1:
        raise ValueError("n_classes must be >= 1")
    labs = np.asarray(labels_of_item, dtype=np.int64).reshape(-1)
    acc = np.asarray(worker_accuracies, dtype=np.float64).reshape(-1)
    if labs.shape != acc.shape:
        raise ValueError("labels_of_item and worker_accuracies must have the same length")
    if labs.size and (int(labs.min()) < 0 or int(labs.max()) >= n_classes):
        raise ValueError("labels must lie in [0, n_classes)")
    if prior is None:
        log_prior = np.full(n_classes, -math.log(n_classes))
    else:
        p = np.asarray(prior, dtype=np.float64)
        if p.shape != (n_classes,) or (p < 0).any() or p.sum() <= 0:
            raise ValueError("prior must be n_classes non-negative weights")
        with np.errstate(divide="ignore"):
            log_prior = np.log(p / p.sum())
    right, wrong = _one_coin_log_odds(acc, n_classes)
    loglik = wrong.sum() + np.bincount(labs, weights=right - wrong, minlength=n_classes)
    if hardness > 0 and labs.size:
        counts = np.bincount(labs, minlength=n_classes)
        dissent = labs.size - int(counts.max())
        loglik = loglik / (1.0 + hardness * dissent)
    if correlation > 0 and labs.size > 1:
        loglik = loglik / (1.0 + (labs.size - 1) * min(correlation, 1.0))
    logp = log_prior + loglik
    if extra is not None:
        ex = np.asarray(extra, dtype=np.float64).reshape(-1, n_classes)
        if (ex < 0).any():
            raise ValueError("extra voter likelihoods must be non-negative")
        with np.errstate(divide="ignore"):
            logp = logp + np.log(ex).sum(axis=0)
    out: FloatArray = _softmax_rows(logp[None, :])[0][0]
    return out


def error_correlation(
    items: IntArray, correct: FloatArray, accuracy: FloatArray, n_items: int
) -> float:
    """Intra-item correlation of answer errors, estimated without gold.

    ``correct[j]`` is the (model-estimated) probability that answer ``j`` is
    right, e.g. the posterior of its label under a Dawid-Skene fit, and
    ``accuracy[j]`` the expected accuracy of its worker. If workers erred
    independently, an item's number of right answers would have variance
    ``sum_j a_j (1 - a_j)``; the excess of the observed spread of
    ``sum_j (correct_j - a_j)`` over that, relative to the
    ``sum_{j != j'}`` cross terms, is the correlation ``rho`` (the usual
    intra-class correlation of a clustered binomial), clipped to ``[0, 1]``.
    """
    n = np.bincount(items, minlength=n_items).astype(np.float64)
    resid = np.bincount(items, weights=correct - accuracy, minlength=n_items)
    var = np.bincount(items, weights=accuracy * (1.0 - accuracy), minlength=n_items)
    sd = np.bincount(items, weights=np.sqrt(accuracy * (1.0 - accuracy)), minlength=n_items)
    keep = n > 1
    if not keep.any():
        return 0.0
    cross = float((sd[keep] ** 2 - var[keep]).sum())
    if cross <= 0:
        return 0.0
    excess = float((resid[keep] ** 2 - var[keep]).sum())
    return float(min(max(excess / cross, 0.0), 1.0))


def _future_counts(
    remaining: int, accuracy: float, correlation: float, right: int, wrong: int
) -> FloatArray:
    """P(m of ``remaining`` future answers are right) given ``right``/``wrong`` answers so far.

    The item's accuracy is Beta-distributed around the crowd's ``accuracy``
    with intra-item correlation ``correlation`` (``alpha + beta = 1 / rho - 1``)
    and updated by the answers so far under the assumed truth, so on an item
    where many answers already dissent the future ones are expected to dissent
    more too (a hard item). ``rho = 0`` gives the binomial.
    """
    m = np.arange(remaining + 1, dtype=np.float64)
    log_choose = np.array(
        [
            math.lgamma(remaining + 1) - math.lgamma(k + 1) - math.lgamma(remaining - k + 1)
            for k in range(remaining + 1)
        ]
    )
    a = min(max(accuracy, 1e-6), 1.0 - 1e-6)
    if correlation <= 0:
        logp = log_choose + m * math.log(a) + (remaining - m) * math.log(1.0 - a)
    else:
        s = 1.0 / min(correlation, 0.999) - 1.0
        alpha, beta = a * s + right, (1.0 - a) * s + wrong
        lb = np.array(
            [
                math.lgamma(alpha + k) + math.lgamma(beta + remaining - k)
                for k in range(remaining + 1)
            ]
        )
        logp = log_choose + lb - math.lgamma(alpha + beta + remaining)
        logp -= math.lgamma(alpha) + math.lgamma(beta) - math.lgamma(alpha + beta)
    p = np.exp(logp - logp.max())
    out: FloatArray = p / p.sum()
    return out


def flip_probability(
    labels_of_item: Sequence[int] | IntArray,
    worker_accuracies: Sequence[float] | FloatArray,
    n_classes: int,
    prior: Sequence[float] | FloatArray | None = None,
    *,
    remaining: int,
    crowd_accuracy: float,
    correlation: float = 0.0,
    crowd: Sequence[float] | FloatArray | None = None,
    samples: int = 2000,
) -> float:
    """Probability that ``remaining`` more answers would change the item's leading label.

    The stopping rule of adaptive overlap asks "would the answers we could
    still collect change our mind?" rather than "is the posterior above a fixed
    bar?". With the current posterior of :func:`item_posterior` (correlation
    discount included) over the leader ``L`` and the runner-up ``R``, the
    future answers come from workers of the crowd's mean accuracy
    ``crowd_accuracy`` whose errors on this item are correlated with
    ``correlation`` (:func:`_future_counts`: a Beta-binomial updated by the
    item's own answers, so a contested item is a hard one). The label flips
    when the final evidence for ``R`` reaches that for ``L``. Items with few
    answers left (product, 3 answers per item) are decided early; items that
    could still get many answers (bluebirds, 39) stay open until even many
    more of them could not overturn the lead, and more so where errors cluster.
    ``remaining <= 0`` gives 0.

    ``crowd`` (the accuracies of the workers who may answer, one entry per
    expected answer, e.g. every worker's accuracy repeated by their share of
    the work) replaces the average worker by workers drawn from the crowd:
    the flip is then estimated from ``samples`` simulated futures (seeded, so
    the result is reproducible), each answer weighted by its worker's log
    odds as in the posterior, so that one reliable worker can still overturn
    a lead built by weak ones. The item's Beta-distributed accuracy shifts
    every future worker's log-odds of being right by the same amount.
    """
    labs = np.asarray(labels_of_item, dtype=np.int64).reshape(-1)
    if remaining <= 0 or n_classes < 2:
        return 0.0
    acc = np.asarray(worker_accuracies, dtype=np.float64).reshape(-1)
    post = item_posterior(labs, acc, n_classes, prior, correlation=correlation)
    order = np.argsort(-post, kind="stable")
    lead, runner = int(order[0]), int(order[1])
    if prior is None:
        log_prior = np.full(n_classes, -math.log(n_classes))
    else:
        p = np.asarray(prior, dtype=np.float64)
        with np.errstate(divide="ignore"):
            log_prior = np.log(np.maximum(p / p.sum(), 1e-300))
    right, wrong = _one_coin_log_odds(acc, n_classes)
    evidence = np.bincount(labs, weights=right - wrong, minlength=n_classes)
    n, k1 = labs.size, max(n_classes - 1, 1)
    a = min(max(crowd_accuracy, 1.0 / n_classes + 1e-6), 1.0 - 1e-6)
    w = math.log(a * k1 / (1.0 - a))
    scale = 1.0 / (1.0 + (n + remaining - 1) * max(min(correlation, 1.0), 0.0))
    base = log_prior[lead] - log_prior[runner] + scale * (evidence[lead] - evidence[runner])
    counts = np.bincount(labs, minlength=n_classes)
    total = float(post[lead] + post[runner])
    share_lead = float(post[lead]) / total if total > 0 else 0.5
    if crowd is not None and len(crowd) > 0:
        pool = np.clip(np.asarray(crowd, dtype=np.float64).reshape(-1), 1e-3, 1.0 - 1e-3)
        return _flip_sampled(
            base,
            scale,
            share_lead,
            counts[lead],
            counts[runner],
            n,
            remaining,
            pool,
            a,
            correlation,
            n_classes,
            samples,
        )
    flip = 0.0
    for truth in (lead, runner):
        weight = float(post[truth]) / total if total > 0 else 0.5
        right_now = int(counts[truth])
        pm = _future_counts(remaining, a, correlation, right_now, n - right_now)
        for m, pmi in enumerate(pm.tolist()):
            if pmi < 1e-12:
                continue
            # the remaining - m wrong answers go to the other label with 1 / (K - 1)
            wrong_n = remaining - m
            x = np.arange(wrong_n + 1)
            diff = (m - x) if truth == lead else (x - m)  # votes for lead minus runner-up
            final = base + scale * w * diff
            flip += weight * pmi * float(_binom(wrong_n, 1.0 / k1)[final <= 0].sum())
    return min(max(flip, 0.0), 1.0)


def _binom(n: int, q: float) -> FloatArray:
    """Binomial(n, q) pmf."""
    if q >= 1.0:
        out = np.zeros(n + 1)
        out[n] = 1.0
        return out
    k = np.arange(n + 1, dtype=np.float64)
    logc = np.array(
        [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(n + 1)]
    )
    logp = logc + k * math.log(max(q, 1e-300)) + (n - k) * math.log(max(1.0 - q, 1e-300))
    res: FloatArray = np.exp(logp)
    return res


def _flip_sampled(
    base: float,
    scale: float,
    share_lead: float,
    right_lead: int,
    right_runner: int,
    n: int,
    remaining: int,
    pool: FloatArray,
    mean_accuracy: float,
    correlation: float,
    n_classes: int,
    samples: int,
) -> float:
    """Monte Carlo flip probability with future workers drawn from ``pool``."""
    rng = np.random.default_rng(0)
    s = max(samples, 1)
    k1 = max(n_classes - 1, 1)
    truth_lead = rng.random(s) < share_lead
    acc = pool[rng.integers(0, pool.size, (s, remaining))]
    if correlation > 0:
        conc = 1.0 / min(correlation, 0.999) - 1.0
        right_now = np.where(truth_lead, right_lead, right_runner).astype(np.float64)
        u = rng.beta(mean_accuracy * conc + right_now, (1 - mean_accuracy) * conc + n - right_now)
        u = np.clip(u, 1e-3, 1.0 - 1e-3)
        shift = np.log(u / (1 - u)) - math.log(mean_accuracy / (1 - mean_accuracy))
        logit = np.log(acc / (1 - acc)) + shift[:, None]
        acc_item = 1.0 / (1.0 + np.exp(-logit))
    else:
        acc_item = acc
    right = rng.random((s, remaining)) < acc_item
    to_other = rng.random((s, remaining)) < 1.0 / k1
    vote_truth = right
    vote_other = ~right & to_other
    sign = np.where(truth_lead, 1.0, -1.0)[:, None]
    w = np.log(acc * k1 / (1.0 - acc))
    swing = (w * (vote_truth.astype(np.float64) - vote_other) * sign).sum(axis=1)
    final = base + scale * swing
    return float(np.mean(final <= 0))
