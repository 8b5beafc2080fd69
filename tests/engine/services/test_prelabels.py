"""Pre-labels through the engine on both stores, with a real tiny pixel model."""

from __future__ import annotations

from polycrowd.engine.core import Engine
from polycrowd.engine.services import prelabels
from polycrowd.engine.store import Database
from polycrowd.models.prelabel import image_prelabeler
from tests.conftest import FakeClock, choice_spec
from tests.models.test_prelabel import _blobs


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
        ids = [
            int(r[0])
            for r in await tx.all(
                "SELECT id FROM items WHERE project_id = ? ORDER BY id", (project.id,)
            )
        ]
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
        stored = await tx.value(
            "SELECT COUNT(*) FROM item_predictions WHERE project_id = ?", (project.id,)
        )
    assert stored == 40
    assert status.model_version == pred.model_version and status.trained_on == 12
