"""Agreement statistics."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from polycrowd.engine.aggregation._base import (
    _Answers,
)

# --------------------------------------------------------------------------- agreement


def krippendorff_alpha(items: ArrayLike, workers: ArrayLike, labels: ArrayLike) -> float:
    """Krippendorff's alpha for nominal labels, via the coincidence matrix.

    Items with fewer than two answers are not pairable and are ignored.
    ``workers`` is only checked for length: in the nominal metric an answer is
    just a value in its item. Returns ``nan`` when alpha is undefined (fewer than
    two pairable values, or a single label used throughout, so no disagreement
    is expected by chance).
    """
    d = _Answers.build(items, workers, labels, None, None, None)
    m_u = d.answers_per_item
    keep = m_u >= 2
    counts = d.votes[keep]
    m_u = m_u[keep]
    if counts.shape[0] == 0:
        return math.nan
    scaled = counts / (m_u - 1.0)[:, None]
    coincidence = scaled.T @ counts - np.diag(scaled.sum(axis=0))
    n_c = coincidence.sum(axis=1)
    n = float(n_c.sum())
    observed = float(coincidence.sum() - np.trace(coincidence))
    expected = float(n * n - (n_c * n_c).sum())
    if n <= 1.0 or expected <= 0.0:
        return math.nan
    return 1.0 - (n - 1.0) * observed / expected
