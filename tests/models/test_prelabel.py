"""Pre-labelling models: a pixel model on a tiny synthetic set, retraining through the engine."""

from __future__ import annotations

import numpy as np

from polycrowd.engine.core import Engine
from polycrowd.engine.services import prelabels
from polycrowd.engine.store import Database
from polycrowd.models.prelabel import image_prelabeler, pixel_features
from tests.conftest import FakeClock, choice_spec


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


async def test_retraining_when_enough_confident_results(
    engine: Engine, db: Database, clock: FakeClock
) -> None:
    texts, labels = _blobs(40)
    project = await engine.create_project(
        None,
        choice_spec(labels=("a", "b"), model={"min_human_answers": 1, "retrain_every": 10}),
    )
    lines = ["id,text,lang,gold"] + [f"i{k},{t},en," for k, t in enumerate(texts)]
    await engine.import_items(project.id, ("\n".join(lines) + "\n").encode(), fmt="csv")
    async with db.read() as tx:
        assert not await prelabels.needs_training(tx, project)
        ids = [int(r[0]) for r in await tx.all("SELECT id FROM items ORDER BY id")]
    async with db.transaction() as tx:  # twelve confident results arrive
        for i, lab in zip(ids[:12], labels[:12], strict=False):
            await tx.run(
                "INSERT INTO results(item_id, project_id, label, method, confidence, agreement,"
                " answers, updated_at, human_confidence) VALUES (?, ?, ?, 'online', 0.99, 1,"
                " 3, 0, 0.99)",
                (i, project.id, lab),
            )
    model = image_prelabeler()
    async with db.read() as tx:
        assert await prelabels.needs_training(tx, project)
        examples, items = await prelabels.training_data(tx, project)
    pred = model.train_predict(list(project.labels), examples, items)
    async with db.transaction() as tx:
        await prelabels.store_predictions(tx, project, pred, clock())
        assert not await prelabels.needs_training(tx, project)
        status = await prelabels.status(tx, project)
        stored = await tx.value("SELECT COUNT(*) FROM item_predictions")
    assert stored == 40
    assert status.model_version == pred.model_version and status.trained_on == 12
