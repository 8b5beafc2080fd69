"""Reading answers and gold from TSV files; aggregating a TSV file."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from polycrowd.engine.aggregation._base import (
    AggregationInputError,
    Encoded,
    FloatArray,
    encode,
)
from polycrowd.engine.aggregation.auto import Auto, make_aggregator
from polycrowd.engine.aggregation.registry import METHODS

# --------------------------------------------------------------------------- TSV files


def _read_tsv(path: str | Path, columns: tuple[str, ...]) -> tuple[list[list[str]], list[int]]:
    """Rows of the named columns (any order, extra columns ignored) and their line numbers."""
    name = str(path)
    try:
        raw_bytes = Path(path).read_bytes()
    except FileNotFoundError:
        raise AggregationInputError("file not found", path=name) from None
    except OSError as exc:
        raise AggregationInputError(f"cannot read file ({exc.strerror})", path=name) from None
    try:
        text = raw_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw_bytes[: exc.start].count(b"\n") + 1
        raise AggregationInputError("not valid UTF-8", path=name, line=line) from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise AggregationInputError("empty file, expected a header line", path=name, line=1)
    header = lines[0].split("\t")
    missing = [c for c in columns if c not in header]
    if missing:
        raise AggregationInputError(
            f"missing column(s) {', '.join(missing)} in header", path=name, line=1
        )
    pos = [header.index(c) for c in columns]
    rows: list[list[str]] = []
    numbers: list[int] = []
    for no, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        fields = raw.split("\t")
        if len(fields) != len(header):
            raise AggregationInputError(
                f"expected {len(header)} tab-separated fields, got {len(fields)}",
                path=name,
                line=no,
            )
        row = [fields[p].strip() for p in pos]
        empty = [c for c, v in zip(columns, row, strict=True) if not v]
        if empty:
            raise AggregationInputError(f"empty {empty[0]}", path=name, line=no)
        rows.append(row)
        numbers.append(no)
    if not rows:
        raise AggregationInputError("no data rows after the header", path=name, line=2)
    return rows, numbers


def read_answers_tsv(path: str | Path) -> Encoded:
    """Read an ``item\\tworker\\tlabel`` TSV (header line, strings) into :class:`Encoded`.

    Raises :class:`AggregationInputError` for a missing or empty file, missing
    columns, a malformed row, or a second answer by the same worker to one item.
    """
    rows, numbers = _read_tsv(path, ("item", "worker", "label"))
    first: dict[tuple[str, str], int] = {}
    for (item, worker, _), no in zip(rows, numbers, strict=True):
        seen = first.setdefault((item, worker), no)
        if seen != no:
            raise AggregationInputError(
                f"second answer by worker {worker!r} to item {item!r} (first on line {seen})",
                path=str(path),
                line=no,
            )
    items, workers, labels = (list(col) for col in zip(*rows, strict=True))
    return encode(items, workers, labels)


def read_gold_tsv(path: str | Path) -> dict[str, str]:
    """Read an ``item\\tlabel`` TSV of known labels into a dict."""
    rows, numbers = _read_tsv(path, ("item", "label"))
    gold: dict[str, str] = {}
    for (item, label), no in zip(rows, numbers, strict=True):
        if gold.setdefault(item, label) != label:
            raise AggregationInputError(
                f"conflicting gold labels for item {item!r}", path=str(path), line=no
            )
    return gold


def expected_calibration_error(
    confidence: FloatArray, right: NDArray[np.bool_], bins: int = 10
) -> float:
    """ECE: answer-weighted mean gap between confidence and accuracy in equal-width bins."""
    if confidence.size == 0:
        return math.nan
    idx = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    n = np.bincount(idx, minlength=bins).astype(np.float64)
    conf_sum = np.bincount(idx, weights=confidence, minlength=bins)
    right_sum = np.bincount(idx, weights=right.astype(np.float64), minlength=bins)
    return float(np.abs(conf_sum - right_sum).sum() / n.sum())


def workers_path_for(output_path: str | Path) -> Path:
    """Default per-worker file next to the output: ``results.tsv`` -> ``results.workers.tsv``."""
    out = Path(output_path)
    return out.with_name(f"{out.stem}.workers{out.suffix or '.tsv'}")


def _write(path: str | Path, lines: list[str]) -> None:
    try:
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise AggregationInputError(
            f"cannot write output ({exc.strerror})", path=str(path)
        ) from None


def aggregate_tsv(
    input_path: str | Path,
    method: str,
    output_path: str | Path,
    gold_path: str | Path | None = None,
    workers_path: str | Path | None = None,
) -> dict[str, object]:
    """Aggregate a TSV of answers; write ``item\tlabel\tconfidence`` and a per-worker TSV.

    ``method`` is one of :data:`METHODS` or ``"auto"`` (:class:`Auto`: the returned
    ``"method"`` is the model it chose, or ``"stack"`` for a mixture,
    ``"weights"`` the weight of each model mixed, ``"temperature"`` its
    gold-free calibration). Output rows follow the items' first appearance in the input,
    labels in the input's label space; ``confidence`` is the posterior of the
    label. The worker file (``workers_path``, default :func:`workers_path_for`)
    has ``worker\tanswers\taccuracy\tlow\thigh``: estimated accuracy and its 95 %
    interval. ``gold_path`` is used only to score the result (``"accuracy"``
    and ``"ece"``, the expected calibration error of ``confidence``, over gold
    items that have answers; ``None`` without gold or overlap), never to fit.
    The report also lists ``"results"`` (item, label, confidence) and
    ``"workers"``. ``"seconds"`` covers reading, fitting and writing.
    """
    start = time.perf_counter()
    if method != "auto" and method not in METHODS:
        raise AggregationInputError(f"unknown method {method!r}; use auto or one of {METHODS}")
    data = read_answers_tsv(input_path)
    gold = read_gold_tsv(gold_path) if gold_path is not None else None
    model = make_aggregator(method).fit(
        data.items,
        data.workers,
        data.labels,
        n_items=data.n_items,
        n_workers=data.n_workers,
        n_labels=data.n_labels,
    )
    chosen = model.chosen_ if isinstance(model, Auto) else method
    results = [
        {"item": name, "label": data.label_names[label], "confidence": round(conf, 6)}
        for name, label, conf in zip(
            data.item_names, model.labels_.tolist(), model.confidence_.tolist(), strict=True
        )
    ]
    lines = ["item\tlabel\tconfidence"]
    lines += [f"{r['item']}\t{r['label']}\t{r['confidence']:.6f}" for r in results]
    _write(output_path, lines)
    workers: list[dict[str, object]] = []
    for w, name in enumerate(data.worker_names):
        acc = float(model.worker_accuracy_[w])
        lo, hi = (float(x) for x in model.worker_interval_[w])
        workers.append(
            {
                "worker": name,
                "answers": int(model.worker_answers_[w]),
                "accuracy": None if math.isnan(acc) else round(acc, 4),
                "low": round(lo, 4),
                "high": round(hi, 4),
            }
        )
    wpath = workers_path_for(output_path) if workers_path is None else Path(workers_path)
    wlines = ["worker\tanswers\taccuracy\tlow\thigh"]
    wlines += [
        f"{r['worker']}\t{r['answers']}\t{'' if r['accuracy'] is None else r['accuracy']}"
        f"\t{r['low']}\t{r['high']}"
        for r in workers
    ]
    _write(wpath, wlines)
    accuracy: float | None = None
    ece: float | None = None
    if gold is not None:
        truth = data.gold_array(gold)
        scored = np.array([name in gold for name in data.item_names], dtype=bool)
        if scored.any():
            right = model.labels_[scored] == truth[scored]
            accuracy = float(np.mean(right))
            ece = expected_calibration_error(model.confidence_[scored], right)
    return {
        "method": chosen,
        "temperature": getattr(model, "temperature_", 1.0),
        "weights": dict(getattr(model, "weights_", {method: 1.0})),
        "items": data.n_items,
        "accuracy": accuracy,
        "ece": ece,
        "workers_output": str(wpath),
        "seconds": time.perf_counter() - start,
        "results": results,
        "workers": workers,
    }
