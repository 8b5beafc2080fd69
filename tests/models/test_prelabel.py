"""Pre-labelling models: a pixel model on a tiny synthetic set (retraining through the
engine, on both stores: tests/engine/services/test_prelabels.py)."""

from __future__ import annotations

import numpy as np

from polycrowd.models.prelabel import image_prelabeler, pixel_features


def _blobs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """'a' images are bright on the left, 'b' on the right (4x4 pixels, noisy)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        lab = "a" if i % 2 else "b"
        img = rng.random((4, 4)) * 4
        img[:, : 2 if lab == "a" else 4] += 0 if lab == "b" else 8
        if lab == "b":
            img[:, 2:] += 8
        texts.append(" ".join(str(round(float(v), 2)) for v in img.reshape(-1)))
        labels.append(lab)
    return texts, labels


def test_pixel_features_scale_and_pad() -> None:
    x = pixel_features(["0 5 10", "2,4"])
    assert x.shape == (2, 3) and x.max() == 1.0 and x[1, 2] == 0.0


def test_pixel_model_predicts_calibrated_distributions() -> None:
    texts, labels = _blobs(60)
    model = image_prelabeler()
    pred = model.train_predict(
        ["a", "b"], list(zip(texts[:40], labels[:40], strict=False)), list(enumerate(texts))
    )
    assert pred.model_version.startswith("pixels+lr-n40@")
    probs = np.asarray([pred.probs[i] for i in range(60)])
    assert np.allclose(probs.sum(axis=1), 1.0)
    names = ["a", "b"]
    right = np.mean([names[int(k)] == y for k, y in zip(probs.argmax(1), labels, strict=True)])
    assert right > 0.9
    assert pred.accuracy is not None and pred.accuracy > 0.8
    assert pred.ece is not None and 0.0 <= pred.ece < 0.3
    # too little data: no model rather than a bad one
    assert not model.train_predict(["a", "b"], [(texts[0], "a")], []).probs
