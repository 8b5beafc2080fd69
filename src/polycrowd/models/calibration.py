"""Thresholds of the checker heads, calibrated on labelled answers instead of guessed.

A head turns an (item, answer) pair into a score (cosine for ``similarity``, ``p(good)``
for a pair ``classifier``); two thresholds turn the score into a decision: at or above
``accept_above`` -> accept, below ``reject_below`` -> reject, between -> review.
:func:`calibrate` picks both from the scores of good and bad answers:

* ``accept_above`` is as high as possible (catching as many bad answers as possible) while
  at most ``max_flagged`` of the good answers fall below it (to review or rejection);
* ``reject_below`` is as high as possible while at most ``max_rejected`` of the good answers
  fall below it (an honest worker is almost never rejected by the model alone).

The results live in ``thresholds.json`` next to this module, one entry per model version
(the ``version`` of the model folder's ``polycrowd.json``, or the checker name such as
``minilm``), head and mode (the similarity head calibrates ``paraphrase`` and
``translation`` answers apart, see :func:`polycrowd.models.bert.similarity_mode`, plus
``all`` for any other mode), with the sizes and error rates they were calibrated at;
:func:`stored_thresholds` reads it and :func:`store_thresholds` writes it
(``bench/checker.py --calibrate`` does, on its calibration split).

Pure Python and numpy: no torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

THRESHOLDS_FILE = Path(__file__).with_name("thresholds.json")
MAX_FLAGGED = 0.03  # share of good answers the head may send to review or reject
MAX_REJECTED = 0.005  # share of good answers the head may reject
ALL = "all"  # the calibration over every answer, whatever its mode
_KEYS = ("accept_above", "reject_below", "review_confidence")


@dataclass(frozen=True, slots=True)
class Calibration:
    accept_above: float
    reject_below: float
    n_good: int
    n_bad: int
    good_flagged: float  # share of the good answers below accept_above
    good_rejected: float  # share of the good answers below reject_below
    bad_caught: float  # share of the bad answers below accept_above
    bad_rejected: float  # share of the bad answers below reject_below

    def thresholds(self) -> dict[str, float]:
        return {"accept_above": self.accept_above, "reject_below": self.reject_below}


def _cut(good: Sequence[float], share: float) -> float:
    """The highest threshold t with at most ``share`` of ``good`` strictly below t."""
    ordered = sorted(good)
    k = math.floor(share * len(ordered) + 1e-9)  # this many good scores may lie below t
    return ordered[min(k, len(ordered) - 1)]


def calibrate(
    good: Sequence[float],
    bad: Sequence[float],
    *,
    max_flagged: float = MAX_FLAGGED,
    max_rejected: float = MAX_REJECTED,
    digits: int = 4,
) -> Calibration:
    """Thresholds from the scores of good and bad answers (see the module docstring).

    Thresholds are rounded down to ``digits`` places (never more good answers flagged
    than allowed). Raises ``ValueError`` without good answers or on non-finite scores.
    """
    if not good:
        raise ValueError("calibration needs at least one good answer")
    if not all(math.isfinite(x) for x in (*good, *bad)):
        raise ValueError("calibration scores must be finite")
    if not 0.0 <= max_rejected <= max_flagged < 1.0:
        raise ValueError("need 0 <= max_rejected <= max_flagged < 1")
    scale = 10.0**digits
    accept = math.floor(_cut(good, max_flagged) * scale + 1e-6) / scale
    reject = min(math.floor(_cut(good, max_rejected) * scale + 1e-6) / scale, accept)

    def below(xs: Sequence[float], t: float) -> float:
        return sum(1 for x in xs if x < t) / len(xs) if xs else 0.0

    return Calibration(
        accept_above=accept,
        reject_below=reject,
        n_good=len(good),
        n_bad=len(bad),
        good_flagged=below(good, accept),
        good_rejected=below(good, reject),
        bad_caught=below(bad, accept),
        bad_rejected=below(bad, reject),
    )


def read_store(path: Path | None = None) -> dict[str, Any]:
    """The whole thresholds file (default :data:`THRESHOLDS_FILE`; ``{}`` when absent or
    unreadable)."""
    path = THRESHOLDS_FILE if path is None else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def stored_thresholds(model: str, head: str, path: Path | None = None) -> dict[str, float] | None:
    """The calibrated thresholds of ``head`` for model version ``model``, if any, as flat
    keys: ``accept_above``/``reject_below`` (all answers) and ``<mode>_accept_above``/
    ``<mode>_reject_below`` per similarity mode (``translation``, ``paraphrase``...)."""
    entry = read_store(path).get(model, {}).get(head)
    if not isinstance(entry, Mapping):
        return None
    out: dict[str, float] = {}
    for mode, cal in entry.items():
        if not isinstance(cal, Mapping):
            continue
        combiner = cal.get("combiner")
        if combiner is not None and (
            not isinstance(combiner, Mapping) or Combiner.from_json(combiner) is None
        ):
            continue  # calibrated on a score this code cannot compute: not for the cosine
        prefix = "" if mode == ALL else f"{mode}_"
        for key in _KEYS:
            value = cal.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[prefix + key] = float(value)
    return out or None


def stored_combiners(model: str, head: str, path: Path | None = None) -> dict[str, Combiner]:
    """Mode -> the :class:`Combiner` stored with that mode's thresholds (see
    :func:`store_thresholds`); a mode without one (or with an unreadable one) is left
    out, and its thresholds apply to the plain cosine."""
    entry = read_store(path).get(model, {}).get(head)
    if not isinstance(entry, Mapping):
        return {}
    out: dict[str, Combiner] = {}
    for mode, cal in entry.items():
        data = cal.get("combiner") if isinstance(cal, Mapping) else None
        combiner = Combiner.from_json(data) if isinstance(data, Mapping) else None
        if combiner is not None:
            out[str(mode)] = combiner
    return out


def store_thresholds(
    model: str,
    head: str,
    calibrations: Mapping[str, Calibration],
    source: str,
    path: Path | None = None,
    combiners: Mapping[str, Combiner] | None = None,
) -> None:
    """Record ``calibrations`` (mode -> calibration; :data:`ALL` for the thresholds that
    apply to any answer) for (``model``, ``head``), replacing that head's entry and
    keeping every other one. ``combiners``: per mode, the :class:`Combiner` whose score
    those thresholds were calibrated on (none: they apply to the cosine)."""
    data = read_store(path)
    entry: dict[str, Any] = {}
    for mode, cal in calibrations.items():
        values = {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(cal).items()}
        entry[mode] = {**values, "source": source}
        combiner = (combiners or {}).get(mode)
        if combiner is not None:
            entry[mode]["combiner"] = combiner.to_json()
    data.setdefault(model, {})[head] = entry
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (THRESHOLDS_FILE if path is None else path).write_text(text, encoding="utf-8")


# -- the combined similarity score -----------------------------------------------------------
#: what :func:`pair_features` measures of an (item, answer) pair, in this order
FEATURES = (
    "cosine",
    "recall",
    "precision",
    "recall_p10",
    "precision_p10",
    "lexical",
)


def pair_features(
    item_tokens: Any, answer_tokens: Any, cosine: float, lexical: float
) -> list[float]:
    """Scores of one (item, answer) pair, named by :data:`FEATURES`.

    ``item_tokens`` and ``answer_tokens`` are the unit contextual token embeddings (rows)
    of the two texts. Each item token is matched to its most similar answer token and
    vice versa (as BERTScore does): ``recall`` is the mean over the item's tokens,
    ``precision`` over the answer's, ``*_p10`` the 10th percentile, i.e. how well the
    worst-covered words are covered. A changed fact (another day, the opposite verb) leaves
    a few words without a counterpart while the sentence embedding hardly moves.
    ``cosine`` is the sentence-embedding cosine, ``lexical`` the rules' character-trigram
    similarity (a near-copy with a word changed scores high there, a paraphrase low).
    (The answer's length relative to the item's, tried as a seventh feature, caught fewer
    bad answers out of fold on bench/checker.py's calibration split.)
    """
    import numpy as np

    s = np.asarray(item_tokens, dtype=np.float32)
    a = np.asarray(answer_tokens, dtype=np.float32)
    if s.size == 0 or a.size == 0:
        return [cosine, 0.0, 0.0, 0.0, 0.0, lexical]
    sim = s @ a.T
    r, p = sim.max(axis=1), sim.max(axis=0)
    return [
        cosine,
        float(r.mean()),
        float(p.mean()),
        float(np.percentile(r, 10)),
        float(np.percentile(p, 10)),
        lexical,
    ]


@dataclass(frozen=True, slots=True)
class Combiner:
    """Logistic regression from :func:`pair_features` to ``p(good)``: standardised
    features (``mean``, ``scale``), then ``weights`` and ``bias``."""

    weights: tuple[float, ...]
    bias: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    features: tuple[str, ...] = FEATURES

    def score(self, features: Sequence[float]) -> float:
        z = self.bias + sum(
            w * (x - m) / s
            for w, x, m, s in zip(self.weights, features, self.mean, self.scale, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "weights": [round(w, 6) for w in self.weights],
            "bias": round(self.bias, 6),
            "mean": [round(m, 6) for m in self.mean],
            "scale": [round(s, 6) for s in self.scale],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Combiner | None:
        """``None`` when ``data`` is not a combiner over today's :data:`FEATURES`."""
        try:
            got = cls(
                tuple(float(x) for x in data["weights"]),
                float(data["bias"]),
                tuple(float(x) for x in data["mean"]),
                tuple(float(x) for x in data["scale"]),
                tuple(str(x) for x in data["features"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        sizes = {len(got.weights), len(got.mean), len(got.scale)}
        if got.features != FEATURES or sizes != {len(FEATURES)}:
            return None
        if not all(math.isfinite(x) for x in (*got.weights, got.bias, *got.mean, *got.scale)):
            return None
        return got if all(s > 0 for s in got.scale) else None


def fit_combiner(
    features: Sequence[Sequence[float]], good: Sequence[bool], *, l2: float = 1.0
) -> Combiner:
    """L2-regularised logistic regression (Newton's method) of ``good`` on ``features``.

    Raises ``ValueError`` unless both classes are present and the features are finite.
    """
    import numpy as np

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(good, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[1] != len(FEATURES):
        raise ValueError(f"need one row of {len(FEATURES)} features per label")
    if not np.isfinite(x).all() or y.min() == y.max():
        raise ValueError("need finite features and both good and bad answers")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.c_[(x - mean) / scale, np.ones(len(x))]
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0  # the bias is not shrunk
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -50, 50)))
        grad = z.T @ (p - y) + penalty * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return Combiner(
        tuple(float(v) for v in w[:-1]),
        float(w[-1]),
        tuple(float(v) for v in mean),
        tuple(float(v) for v in scale),
    )
