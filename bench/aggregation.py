"""Benchmark of the aggregation methods against crowd-kit on the public data sets.

Usage::

    python bench/aggregation.py [--data DIR] [--datasets rte,temp] [--repeats 3]
    python bench/aggregation.py --subsample      # the measurement behind choose_method

For every data set in ``../shared/data`` (product, rte, temp, bluebirds) and every
method, the accuracy on the gold items and the ``fit`` wall time (best of
``--repeats`` runs, ``time.perf_counter``):

* ``mv``, ``wmv``, ``ds``, ``ocds``: polycrowd's aggregators with default settings;
* ``auto``: :class:`Auto`, what ``polycrowd aggregate`` runs by default, with
  ``method`` (the model it chose without gold) and ``ece`` (expected
  calibration error of its confidence on the gold items, 10 bins);
* ``ds_gold10``: Dawid-Skene with the gold labels of 10 % of the items clamped.
  Scored honestly by cross-fitting: items are split into 10 folds, and the
  labels of fold ``f`` come from a fit that was given the gold of fold ``f + 1``
  only, so no item's own gold is used to label it. ``seconds`` is the time of
  one such fit (the 10 fits divided by 10);
* ``crowdkit_mv``, ``crowdkit_ds``: crowd-kit 1.4.2's ``MajorityVote`` and
  ``DawidSkene(n_iter=100)`` (the data README's reference settings), timed the
  same way around ``fit_predict``.

crowd-kit is not a dependency of polycrowd. On first run the script creates
``bench/.venv-bench`` (git-ignored) with ``bench/requirements-crowdkit.txt`` and
runs crowd-kit there in a subprocess that prints JSON. If that fails, the two
crowd-kit entries have ``null`` accuracy and seconds and the reason goes to stderr.

Progress and a readable table go to stderr; the last stdout line is one JSON
object ``{dataset: {method: {"accuracy": a, "seconds": s}}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
from _data import DATA, DATASETS, ROOT, Dataset, best_of, load, log

from polycrowd.engine.aggregation import METHODS, Auto, DawidSkene, make_aggregator
from polycrowd.engine.aggregation._base import _Answers, _argmax_ties
from polycrowd.engine.aggregation.auto import (
    CANDIDATES,
    MIN_WEIGHT,
    heldout_predictions,
    pick,
    stack_weights,
)
from polycrowd.engine.aggregation.simulate import SHAPES, simulate
from polycrowd.engine.aggregation.tsv import expected_calibration_error

MARGINS = (0.0, 0.005, 0.01, 0.02, 0.05)
PER_WORKER = (5, 10, 20, 40, 80)

BENCH_VENV = ROOT / "bench" / ".venv-bench"
REQUIREMENTS = ROOT / "bench" / "requirements-crowdkit.txt"

# Runs inside bench/.venv-bench: argv = labels.tsv gold.tsv repeats; prints JSON.
CROWDKIT_RUNNER = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from crowdkit.aggregation import DawidSkene, MajorityVote

labels_path, gold_path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
df = pd.read_csv(labels_path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
df = df.rename(columns={"item": "task"})[["task", "worker", "label"]]
gold = pd.read_csv(gold_path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
gold = gold.set_index("item")["label"]
out = {}
for name, make in (
    ("crowdkit_mv", lambda: MajorityVote()),
    ("crowdkit_ds", lambda: DawidSkene(n_iter=100)),
):
    best = float("inf")
    for _ in range(max(repeats, 1)):
        model = make()
        start = time.perf_counter()
        result = model.fit_predict(df)
        best = min(best, time.perf_counter() - start)
    predicted = result.reindex(gold.index)
    out[name] = {"accuracy": float((predicted == gold).mean()), "seconds": best}
print(json.dumps(out))
"""


def _venv_python() -> Path:
    sub = "Scripts/python.exe" if os.name == "nt" else "bin/python"
    return BENCH_VENV / sub


def ensure_crowdkit() -> Path:
    """The bench venv's python with crowd-kit importable, creating it if needed."""
    python = _venv_python()
    check = [str(python), "-c", "import crowdkit, sklearn"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    log(f"creating {BENCH_VENV} with {REQUIREMENTS.name} (first run only)")
    venv.EnvBuilder(with_pip=True, clear=True).create(BENCH_VENV)
    install = [str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)]
    done = subprocess.run(install, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError("pip install failed: " + " | ".join(tail))
    if subprocess.run(check, capture_output=True).returncode != 0:
        raise RuntimeError("crowd-kit still not importable after install")
    return python


def run_crowdkit(python: Path, ds: Dataset, repeats: int) -> dict[str, dict[str, float | None]]:
    cmd = [
        str(python),
        "-c",
        CROWDKIT_RUNNER,
        str(ds.folder / "labels.tsv"),
        str(ds.folder / "gold.tsv"),
        str(repeats),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"crowd-kit run failed on {ds.name}: " + " | ".join(tail))
    result: dict[str, dict[str, float | None]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _fit_labels(method: str, ds: Dataset) -> np.ndarray:
    a = ds.answers
    model = make_aggregator(method).fit(
        a.items, a.workers, a.labels, n_items=a.n_items, n_workers=a.n_workers, n_labels=a.n_labels
    )
    return model.labels_


def cross_fit_gold(ds: Dataset, folds: int = 10, seed: int = 0) -> np.ndarray:
    """Labels where fold f was fitted with the gold of fold f + 1 only."""
    a = ds.answers
    fold = np.random.default_rng(seed).permutation(a.n_items) % folds
    labels = np.empty(a.n_items, dtype=np.int64)
    for f in range(folds):
        gold = np.where(fold == (f + 1) % folds, ds.gold, -1)
        model = DawidSkene().fit(
            a.items,
            a.workers,
            a.labels,
            n_items=a.n_items,
            n_workers=a.n_workers,
            n_labels=a.n_labels,
            gold=gold,
        )
        labels[fold == f] = model.labels_[fold == f]
    return labels


def bench_dataset(
    ds: Dataset, repeats: int, crowdkit: Path | None
) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for method in METHODS:
        labels, seconds = best_of(lambda m=method: _fit_labels(m, ds), repeats)  # type: ignore[misc]
        out[method] = {"accuracy": ds.accuracy(labels), "seconds": seconds}
        log(f"  {ds.name:10s} {method:12s} {out[method]['accuracy']:.4f}  {seconds:.4f} s")
    a = ds.answers
    shape = {"n_items": a.n_items, "n_workers": a.n_workers, "n_labels": a.n_labels}
    auto, seconds = best_of(lambda: Auto().fit(a.items, a.workers, a.labels, **shape), 1)
    right = (auto.labels_ == ds.gold)[ds.scored]
    out["auto"] = {
        "accuracy": ds.accuracy(auto.labels_),
        "seconds": seconds,
        "method": auto.chosen_,
        "ece": expected_calibration_error(auto.confidence_[ds.scored], right),
    }
    log(
        f"  {ds.name:10s} {'auto':12s} {out['auto']['accuracy']:.4f}  {seconds:.4f} s "
        f"({auto.chosen_}, ECE {out['auto']['ece']:.4f})"
    )
    labels, seconds = best_of(lambda: cross_fit_gold(ds), repeats)
    out["ds_gold10"] = {"accuracy": ds.accuracy(labels), "seconds": seconds / 10}
    log(f"  {ds.name:10s} {'ds_gold10':12s} {out['ds_gold10']['accuracy']:.4f}")
    if crowdkit is None:
        out["crowdkit_mv"] = {"accuracy": None, "seconds": None}
        out["crowdkit_ds"] = {"accuracy": None, "seconds": None}
        return out
    try:
        out.update(run_crowdkit(crowdkit, ds, repeats))
    except (RuntimeError, ValueError, OSError) as exc:
        log(f"  {ds.name}: crowd-kit failed: {exc}")
        out["crowdkit_mv"] = {"accuracy": None, "seconds": None}
        out["crowdkit_ds"] = {"accuracy": None, "seconds": None}
        return out
    for name in ("crowdkit_mv", "crowdkit_ds"):
        r = out[name]
        log(f"  {ds.name:10s} {name:12s} {r['accuracy']:.4f}  {r['seconds']:.4f} s")
    return out


def verdict(results: dict[str, dict[str, dict[str, float | None]]]) -> None:
    """Goal check on stderr: our best >= crowd-kit's best, our DS as fast as theirs."""
    for name, res in results.items():
        ours = {
            m: r["accuracy"]
            for m, r in res.items()
            if not m.startswith("crowdkit") and m != "auto"
        }
        theirs = {m: r["accuracy"] for m, r in res.items() if m.startswith("crowdkit")}
        best_ours = max(ours, key=lambda m: ours[m] or 0.0)
        known = {m: a for m, a in theirs.items() if a is not None}
        if not known:
            log(f"{name}: our best {best_ours} {ours[best_ours]:.4f}; no crowd-kit reference")
            continue
        best_theirs = max(known, key=lambda m: known[m])
        ok = (ours[best_ours] or 0.0) >= known[best_theirs]
        ds_s, ck_s = res["ds"]["seconds"], res["crowdkit_ds"]["seconds"]
        speed = f"ds {ds_s:.3f} s vs crowdkit_ds {ck_s:.3f} s" if ck_s is not None else ""
        auto = res["auto"]["accuracy"] or 0.0
        log(
            f"{name}: our best {best_ours} {ours[best_ours]:.4f} vs {best_theirs} "
            f"{known[best_theirs]:.4f} -> {'OK' if ok else 'BEHIND'}; auto {auto:.4f} "
            f"({auto - known[best_theirs]:+.4f}); {speed}"
        )


# --------------------------------------------------------------------------- subsampling


def _subsample(
    ds: Dataset, n_items: int, per_item: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n_items`` random items with at most ``per_item`` random answers each, re-indexed."""
    a = ds.answers
    chosen = rng.choice(a.n_items, n_items, replace=False)
    idx = np.flatnonzero(np.isin(a.items, chosen))
    rng.shuffle(idx)
    idx = idx[np.argsort(a.items[idx], kind="stable")]
    it = a.items[idx]
    rank = np.arange(it.size) - np.searchsorted(it, it)
    idx = idx[rank < per_item]
    kept_items, items = np.unique(a.items[idx], return_inverse=True)
    _, workers = np.unique(a.workers[idx], return_inverse=True)
    return items, workers, a.labels[idx], ds.gold[kept_items]


def subsample_study(datasets: list[Dataset], seeds: int) -> dict[str, object]:
    """Accuracy of each method on random subsets; the basis of ``choose_method``."""
    rows: list[dict[str, float]] = []
    for gold_share in (0.0, 0.1):
        for ds in datasets:
            for per_item in (2, 3, 5, 10):
                if per_item > 3 and ds.name == "product":
                    continue  # product has exactly 3 answers per item
                for n_items in (10, 20, 50, 100, 200, 400):
                    if n_items > ds.answers.n_items:
                        continue
                    for seed in range(seeds):
                        rng = np.random.default_rng(seed)
                        items, workers, labels, truth = _subsample(ds, n_items, per_item, rng)
                        n_gold = max(1, round(gold_share * n_items)) if gold_share else 0
                        is_gold = np.zeros(n_items, dtype=bool)
                        is_gold[rng.choice(n_items, n_gold, replace=False)] = True
                        gold = np.where(is_gold, truth, -1)
                        row = {
                            "gold": gold_share,
                            "per_worker": items.size / (workers.max() + 1),
                        }
                        for method in METHODS:
                            model = make_aggregator(method).fit(
                                items, workers, labels, n_labels=ds.answers.n_labels, gold=gold
                            )
                            right = model.labels_ == truth
                            row[method] = float(np.mean(right[~is_gold]))
                        rows.append(row)
            log(f"  subsample {ds.name} gold={gold_share}: {len(rows)} runs so far")
    report: dict[str, object] = {}
    for gold_share in (0.0, 0.1):
        sel = [r for r in rows if r["gold"] == gold_share]
        always = {m: round(float(np.mean([r[m] for r in sel])), 4) for m in METHODS}
        rule = {
            f"ds_if_per_worker>={t}": round(
                float(np.mean([r["ds"] if r["per_worker"] >= t else r["mv"] for r in sel])), 4
            )
            for t in (0, 2, 3, 4, 5, 8, 15)
        }
        report[f"gold_{gold_share}"] = {"runs": len(sel), "always": always, "rule": rule}
    return report


# --------------------------------------------------------------------------- auto study


def _auto_rows(
    items: np.ndarray, workers: np.ndarray, labels: np.ndarray, truth: np.ndarray, k: int
) -> dict[str, float]:
    """Accuracy of every method, of held-out selection rules, of stacking, and of ``Auto``."""
    row: dict[str, float] = {}
    shape = {"n_items": int(truth.size), "n_workers": int(workers.max()) + 1, "n_labels": k}
    posts: dict[str, np.ndarray] = {}
    for method in METHODS:
        model = make_aggregator(method).fit(items, workers, labels, **shape)
        row[method] = float(np.mean(model.labels_ == truth))
        posts[method] = model.posteriors_
    d = _Answers.build(items, workers, labels, shape["n_items"], shape["n_workers"], k)
    held = heldout_predictions(d, (*CANDIDATES, "mv"), 5, 0)
    scores = held.scores()
    for margin in MARGINS:
        row[f"auto_m{margin}"] = row[pick(scores, CANDIDATES, margin)]
        row[f"auto_with_mv_m{margin}"] = row[pick(scores, (*CANDIDATES, "mv"), margin)]
    per_worker = items.size / shape["n_workers"]
    for t in PER_WORKER:
        rule = pick(scores, CANDIDATES, 0.01) if per_worker >= t else "mace"
        row[f"auto_pw{t}"] = row[rule]
    previous = pick(scores, CANDIDATES, 0.005) if per_worker >= 5 else "mace"
    row["previous_rule"] = row[previous]
    keys = np.random.default_rng(0).random((shape["n_items"], k))
    for name, members in (("stack", CANDIDATES), ("stack_with_mv", (*CANDIDATES, "mv"))):
        cols = [held.candidates.index(c) for c in members]
        w = stack_weights(held.proba[:, cols])
        w = np.where(w >= MIN_WEIGHT, w, 0.0)
        post = sum(wi * posts[c] for wi, c in zip(w / w.sum(), members, strict=True))
        row[name] = float(np.mean(_argmax_ties(np.asarray(post), keys) == truth))
    row["stack_pw5"] = row["stack"] if per_worker >= 5 else row["mace"]
    picked = Auto(calibrate=False).fit(items, workers, labels, **shape)
    row["auto"] = float(np.mean(picked.labels_ == truth))
    return row


def auto_study(datasets: list[Dataset], seeds: int) -> dict[str, object]:
    """The measurement behind ``Auto``: simulated crowds and subsets of the real sets."""
    rows: list[tuple[str, dict[str, float]]] = []
    for name, shape in SHAPES.items():
        for seed in range(seeds):
            c = simulate(shape, seed)
            rows.append((name, _auto_rows(c.items, c.workers, c.labels, c.truth, c.n_classes)))
        log(f"  auto study: {name} done")
    for ds in datasets:
        for per_item in (3, 5):
            for n_items in (50, 200):
                if per_item > 3 and ds.name == "product":
                    continue
                if n_items > ds.answers.n_items:
                    continue
                for seed in range(seeds):
                    rng = np.random.default_rng(seed)
                    it, wk, lb, truth = _subsample(ds, n_items, per_item, rng)
                    row = _auto_rows(it, wk, lb, truth, ds.answers.n_labels)
                    rows.append((f"{ds.name}_{n_items}x{per_item}", row))
        log(f"  auto study: {ds.name} subsets done")
    rules = (
        *METHODS,
        "auto",
        "previous_rule",
        "stack",
        "stack_with_mv",
        "stack_pw5",
        *(f"auto_m{m}" for m in MARGINS),
        *(f"auto_with_mv_m{m}" for m in MARGINS),
        *(f"auto_pw{t}" for t in PER_WORKER),
    )
    mean = {r: round(float(np.mean([row[r] for _, row in rows])), 4) for r in rules}
    regret = {
        r: round(float(np.mean([max(row[m] for m in METHODS) - row[r] for _, row in rows])), 4)
        for r in rules
    }
    worst = {
        r: int(sum(row[r] <= min(row[m] for m in METHODS) + 1e-12 for _, row in rows))
        for r in rules
    }
    groups = sorted({g for g, _ in rows})
    per_group = {
        g: {r: round(float(np.mean([row[r] for h, row in rows if h == g])), 4) for r in rules}
        for g in groups
    }
    return {
        "runs": len(rows),
        "mean_accuracy": mean,
        "mean_regret": regret,
        "times_worst": worst,
        "per_group": per_group,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-crowdkit", action="store_true")
    parser.add_argument("--subsample", action="store_true", help="run the choose_method study")
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--auto-study", action="store_true", help="run the Auto study")
    args = parser.parse_args()
    names = [n for n in args.datasets.split(",") if n]
    datasets = [load(n, args.data) for n in names]
    if args.auto_study:
        print(json.dumps(auto_study(datasets, min(args.seeds, 3))))
        return
    if args.subsample:
        print(json.dumps(subsample_study(datasets, args.seeds)))
        return
    crowdkit: Path | None = None
    if not args.no_crowdkit:
        try:
            crowdkit = ensure_crowdkit()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            log(f"crowd-kit unavailable, its entries will be null: {exc}")
    results = {}
    for ds in datasets:
        log(f"{ds.name}: {len(ds.answers.items)} answers, {ds.answers.n_items} items")
        results[ds.name] = bench_dataset(ds, args.repeats, crowdkit)
    verdict(results)
    sys.stdout.flush()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
