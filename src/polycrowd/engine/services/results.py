"""Results: batch re-aggregation, training examples for the checker, and the export."""

from __future__ import annotations

import asyncio
from typing import IO, Any

from polycrowd.engine.io import write_results
from polycrowd.engine.results import aggregate_labels
from polycrowd.engine.services.context import EngineContext, load_project
from polycrowd.engine.tasktypes import spec_of


class ResultsService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def aggregate_project(self, project_id: int, method: str = "auto") -> dict[str, Any]:
        """Re-aggregate every answered item of a project with a batch method."""
        async with self.ctx.db.read() as tx:
            project = await load_project(tx, project_id)
        async with self.ctx.db.read() as tx:
            rows = await tx.answers.counted_labels(project_id)
            gold_rows = await tx.items.gold_labels(project_id)
        if not rows:
            return {"method": method, "items": 0}
        if not spec_of(project.task_type).categorical:
            return {"method": "online", "items": len({item for item, _, _ in rows})}
        out = await asyncio.to_thread(
            aggregate_labels,
            [str(item) for item, _, _ in rows],
            [str(worker) for _, worker, _ in rows],
            [payload for _, _, payload in rows],
            method,
            {str(item): gold for item, gold in gold_rows},
            project.labels,
        )
        now = self.ctx.clock()
        async with self.ctx.db.transaction() as tx:
            gold_ids = {str(item) for item, _ in gold_rows}
            await tx.results.save_many(
                [
                    (
                        int(item),
                        project_id,
                        r.label,
                        r.method,
                        r.confidence,
                        r.agreement,
                        r.answers,
                        now,
                    )
                    for item, r in out.results.items()
                    if item not in gold_ids
                ],
            )
        return {"method": out.method, "items": len(out.results), "alpha": out.alpha}

    async def training_examples(self, project_id: int) -> list[tuple[str, str]]:
        """(item text, label) from gold items and confident results, for the checker."""
        async with self.ctx.db.read() as tx:
            project = await load_project(tx, project_id)
            rows = await tx.items.training_examples(project_id, project.confidence_target)
        return [(text, str(label)) for text, label in rows if label]

    async def export_rows(self, project_id: int) -> list[dict[str, Any]]:
        async with self.ctx.db.read() as tx:
            items = await tx.items.with_results(project_id)
            answers = await tx.answers.for_export(project_id)
        per_item: dict[int, list[dict[str, Any]]] = {}
        for a in answers:
            per_item.setdefault(int(a["item_id"]), []).append(
                {
                    "worker": a["pseudonym"],
                    "answer": a["payload"],
                    "status": a["status"],
                    "checker_score": round(float(a["score"]), 4),
                }
            )
        return [
            {
                "item": r["external_id"],
                "lang": r["lang"],
                "label": r["label"],
                "confidence": None if r["confidence"] is None else round(r["confidence"], 4),
                "agreement": None if r["agreement"] is None else round(r["agreement"], 4),
                "method": r["method"],
                "answers": r["answers"] or 0,
                "model": r["model_version"],
                "gold": r["gold"],
                "worker_answers": per_item.get(int(r["id"]), []),
            }
            for r in items
        ]

    async def export(self, project_id: int, out: IO[str], fmt: str = "csv") -> int:
        rows = await self.export_rows(project_id)
        return await asyncio.to_thread(write_results, rows, out, fmt)
