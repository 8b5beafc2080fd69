"""Results: batch re-aggregation, training examples for the checker, and the export."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import IO, Any

from polycrowd.engine.checking import embeddings
from polycrowd.engine.domain import TaskType
from polycrowd.engine.io import write_results
from polycrowd.engine.results import aggregate_labels, text_medoid
from polycrowd.engine.services.context import EngineContext, load_project
from polycrowd.engine.tasktypes import spec_of
from polycrowd.engine.types import RowLike


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
        if project.task_type is TaskType.TEXT:
            return await self._text_results(project_id, rows, gold_rows)
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

    async def _text_results(
        self,
        project_id: int,
        rows: list[tuple[int, int, str]],
        gold_rows: list[tuple[int, str]],
    ) -> dict[str, Any]:
        """Free-text items: the medoid answer, by the checker's embeddings when it has a
        model (cross-lingual, any wording), else by lexical similarity."""
        per_item: dict[int, list[str]] = {}
        for item, _, payload in rows:
            per_item.setdefault(int(item), []).append(str(payload))
        unique = list(dict.fromkeys(p for ps in per_item.values() for p in ps))
        vectors = await embeddings(self.ctx.checker, unique)
        where = {p: i for i, p in enumerate(unique)}
        gold_ids = {int(item) for item, _ in gold_rows}
        now, values, method = self.ctx.clock(), [], "medoid-lexical"
        for item, answers in per_item.items():
            vecs = None if vectors is None else [vectors[where[a]] for a in answers]
            res = text_medoid(answers, vecs)
            method = res.method
            if item not in gold_ids:
                values.append(
                    (
                        item,
                        project_id,
                        res.label,
                        res.method,
                        res.agreement,
                        res.agreement,
                        len(answers),
                        now,
                    )
                )
        async with self.ctx.db.transaction() as tx:
            await tx.results.save_many(values)
        return {"method": method, "items": len(per_item)}

    async def training_examples(self, project_id: int) -> list[tuple[str, str]]:
        """(item text, label) from gold items and confident results, for the checker."""
        async with self.ctx.db.read() as tx:
            project = await load_project(tx, project_id)
            rows = await tx.items.training_examples(project_id, project.confidence_target)
        return [(text, str(label)) for text, label in rows if label]

    async def export_pages(
        self, project_id: int, page: int = 0
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """The export's rows, a page of items (and their answers) at a time, in id order."""
        size = page or EXPORT_PAGE
        async with self.ctx.db.read() as tx:
            after = 0
            while items := await tx.items.page_with_results(project_id, after, size):
                first, after = int(items[0]["id"]), int(items[-1]["id"])
                answers = await tx.answers.for_export_items(project_id, first, after)
                yield _export_page(items, answers)

    async def export_rows(self, project_id: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        async with aclosing(self.export_pages(project_id)) as pages:
            async for page in pages:
                rows += page
        return rows

    async def export(self, project_id: int, out: IO[str], fmt: str = "csv", page: int = 0) -> int:
        """Stream the export into ``out``: one page (``page`` items) in memory at a time."""
        n = 0
        header = True
        async with aclosing(self.export_pages(project_id, page)) as pages:
            async for chunk in pages:
                n += await asyncio.to_thread(write_results, chunk, out, fmt, header=header)
                header = False
        if header:  # no rows: the CSV still gets its header
            await asyncio.to_thread(write_results, [], out, fmt)
        return n


EXPORT_PAGE = 5000  # items per page of a streamed export


def _export_page(items: list[RowLike], answers: list[RowLike]) -> list[dict[str, Any]]:
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
