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
