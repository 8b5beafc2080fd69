"""Reports: the aggregates behind a requester's charts, the dashboard's worker and appeal
tables, and the counters of /metrics. Read-only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from polycrowd.engine.services.context import EngineContext, load_project
from polycrowd.engine.store.base import Totals, WorkerSummary


@dataclass(frozen=True, slots=True)
class ReportFigures:
    """What a project's charts show, read in one snapshot."""

    answer_times: tuple[float, ...]
    languages: tuple[tuple[str, int], ...]  # (language, counted answers), most first
    accuracy_source: str  # "gold" or "results"
    accuracies: tuple[float, ...]  # per worker
    confusion_source: str  # "gold" or "results"
    confusion: tuple[tuple[str, str, int], ...]  # (reference, answer, count)
    spend_times: tuple[tuple[float, int], ...]
    assist: tuple[int, int] | None  # (items settled with the model, human answers saved)


class ReportsService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def figures(self, project_id: int) -> ReportFigures:
        async with self.ctx.db.read() as tx:
            project = await load_project(tx, project_id)
            r = tx.reports
            accuracies = await r.gold_accuracy(project_id)
            acc_source = "gold"
            if not accuracies:
                acc_source, accuracies = "results", await r.result_agreement(project_id)
            confusion = await r.confusion_gold(project_id)
            conf_source = "gold"
            if not confusion:
                conf_source, confusion = "results", await r.confusion_results(project_id)
            settled, saved = await r.model_assist(project_id, project.overlap_max)
            return ReportFigures(
                answer_times=tuple(await r.answer_times(project_id)),
                languages=tuple(await r.answers_by_language(project_id)),
                accuracy_source=acc_source,
                accuracies=tuple(accuracies),
                confusion_source=conf_source,
                confusion=tuple(confusion),
                spend_times=tuple(await r.spend_times(project_id)),
                assist=(settled, saved) if settled else None,
            )

    async def workers(self, project_ids: Sequence[int] | None) -> list[WorkerSummary]:
        """Per worker (pseudonym only) over the given projects (None: all)."""
        async with self.ctx.db.read() as tx:
            return await tx.reports.workers(project_ids)

    async def open_appeals(self, project_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        async with self.ctx.db.read() as tx:
            rows = await tx.reports.open_appeals()
        keep = None if project_ids is None else set(project_ids)
        return [r for r in rows if keep is None or r["project_id"] in keep]

    async def totals(self) -> Totals:
        async with self.ctx.db.read() as tx:
            return await tx.reports.totals()

    async def ping(self) -> bool:
        async with self.ctx.db.read() as tx:
            return await tx.reports.ping()
