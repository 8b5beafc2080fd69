"""Shared helpers for the aggregation benchmarks: data sets, scoring, timing.

The public crowd label data sets live in ``../shared/data`` relative to the
repository (see its README): one folder per data set with ``labels.tsv`` and
``gold.tsv``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

from polycrowd.engine.aggregation import Encoded, read_answers_tsv, read_gold_tsv  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
DATASETS = ("product", "rte", "temp", "bluebirds")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    folder: Path
    answers: Encoded
    gold: NDArray[np.int64]  # per item, -1 where unknown

    @property
    def scored(self) -> NDArray[np.bool_]:
        out: NDArray[np.bool_] = self.gold >= 0
        return out

    def accuracy(self, labels: NDArray[np.int64], mask: NDArray[np.bool_] | None = None) -> float:
        """Share of gold items (optionally within ``mask``) whose label is right."""
        keep = self.scored if mask is None else self.scored & mask
        return float(np.mean(labels[keep] == self.gold[keep]))


def load(name: str, data: Path = DATA) -> Dataset:
    folder = data / name
    answers = read_answers_tsv(folder / "labels.tsv")
    gold = answers.gold_array(read_gold_tsv(folder / "gold.tsv"))
    return Dataset(name, folder, answers, gold)


def best_of(run: Callable[[], T], repeats: int = 3) -> tuple[T, float]:
    """Result of the last run and the fastest wall time over ``repeats`` runs."""
    best = float("inf")
    result: T | None = None
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return result, best


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
