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
        prefix = "" if mode == ALL else f"{mode}_"
        for key in _KEYS:
            value = cal.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[prefix + key] = float(value)
    return out or None


def store_thresholds(
    model: str,
    head: str,
    calibrations: Mapping[str, Calibration],
    source: str,
    path: Path | None = None,
) -> None:
    """Record ``calibrations`` (mode -> calibration; :data:`ALL` for the thresholds that
    apply to any answer) for (``model``, ``head``), replacing that head's entry and
    keeping every other one."""
    data = read_store(path)
    entry: dict[str, Any] = {}
    for mode, cal in calibrations.items():
        values = {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(cal).items()}
        entry[mode] = {**values, "source": source}
    data.setdefault(model, {})[head] = entry
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (THRESHOLDS_FILE if path is None else path).write_text(text, encoding="utf-8")
