"""Reading answers and gold from TSV files; aggregating a TSV file."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from polycrowd.engine.aggregation._base import (
    AggregationInputError,
    Encoded,
    encode,
)
from polycrowd.engine.aggregation.auto import make_aggregator
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


def aggregate_tsv(
    input_path: str | Path,
    method: str,
    output_path: str | Path,
    gold_path: str | Path | None = None,
) -> dict[str, object]:
    """Aggregate a TSV of answers and write ``item\\tlabel\\tconfidence``.

    ``method`` is one of :data:`METHODS` or ``"auto"`` (resolved by
    :func:`choose_method`; the returned ``"method"`` is the resolved name).
    Output rows follow the items' first appearance in the input, labels in the
    input's label space. ``gold_path`` is used only to score the result
    (``"accuracy"`` over gold items that have answers; ``None`` without gold or
    overlap), never to fit, so the score is honest. ``"seconds"`` covers reading,
    fitting and writing.
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
    lines = ["item\tlabel\tconfidence"]
    for name, label, conf in zip(
        data.item_names, model.labels_.tolist(), model.confidence_.tolist(), strict=True
    ):
        lines.append(f"{name}\t{data.label_names[label]}\t{conf:.6f}")
    try:
        Path(output_path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise AggregationInputError(
            f"cannot write output ({exc.strerror})", path=str(output_path)
        ) from None
    accuracy: float | None = None
    if gold is not None:
        truth = data.gold_array(gold)
        scored = np.array([name in gold for name in data.item_names], dtype=bool)
        if scored.any():
            accuracy = float(np.mean(model.labels_[scored] == truth[scored]))
    return {
        "method": method,
        "items": data.n_items,
        "accuracy": accuracy,
        "seconds": time.perf_counter() - start,
    }
