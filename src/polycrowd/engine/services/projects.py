"""Projects: specs, item import, launch/pause/finish, status and checker statistics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polycrowd.engine.aggregation import encode, krippendorff_alpha
from polycrowd.engine.domain import ProjectState, TaskType
from polycrowd.engine.errors import Conflict, Forbidden
from polycrowd.engine.io import ImportLimits, InputError, ItemRow, ProjectSpec, read_items
from polycrowd.engine.services import verify
from polycrowd.engine.services.context import EngineContext, load_project, load_user
from polycrowd.engine.store.base import DuplicateKey
from polycrowd.engine.tasktypes import spec_of
from polycrowd.engine.types import Project, Role
from polycrowd.i18n import N_

log = logging.getLogger(__name__)

GOLD_TARGET = 1_000_000_000  # honeypots stay open: every worker may meet each one once


@dataclass(frozen=True, slots=True)
class ImportReport:
    project_id: int
    imported: int
    gold: int


@dataclass(frozen=True, slots=True)
class ProjectStatus:
    project: Project
    items: int
    gold_items: int
    done_items: int
    answers: int
    live_assignments: int
    rejected: int
    spend: int
    mean_agreement: float | None
    mean_confidence: float | None
    workers: int
    krippendorff_alpha: float | None = None  # over all counted labels (choice tasks)

    @property
    def progress(self) -> float:
        real = self.items - self.gold_items
        return self.done_items / real if real else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project.id,
            "name": self.project.name,
            "state": self.project.state,
            "items": self.items,
            "gold_items": self.gold_items,
            "done_items": self.done_items,
            "progress": round(self.progress, 4),
            "answers": self.answers,
            "live_assignments": self.live_assignments,
            "rejected": self.rejected,
            "spend": self.spend,
            "mean_agreement": self.mean_agreement,
            "mean_confidence": self.mean_confidence,
            "workers": self.workers,
            "krippendorff_alpha": self.krippendorff_alpha,
        }


class ProjectsService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def create_project(self, owner_id: int | None, spec: ProjectSpec) -> Project:
        now = self.ctx.clock()
        # create-then-verify: the verify project's wording comes from the catalogs (a thread)
        companion = await asyncio.to_thread(verify.companion_spec, spec) if spec.verify else None
        async with self.ctx.db.transaction() as tx:
            if companion is not None:
                spec = await verify.create_companion(tx, owner_id, spec, companion, now)
            pid = await tx.projects.create(owner_id, spec, now)
            return await load_project(tx, pid)

    async def get_project(self, project_id: int) -> Project:
        async with self.ctx.db.read() as tx:
            return await load_project(tx, project_id)

    async def projects(self, owner_id: int | None = None) -> list[Project]:
        async with self.ctx.db.read() as tx:
            return [await load_project(tx, pid) for pid in await tx.projects.ids(owner_id)]

    async def owned_project(self, user_id: int, project_id: int) -> Project:
        project = await self.get_project(project_id)
        async with self.ctx.db.read() as tx:
            user = await load_user(tx, user_id)
        if project.owner_id != user_id and not user.role.at_least(Role.MODERATOR):
            raise Forbidden(N_("Project %(id)s is not yours."), id=project_id)
        return project

    async def import_items(
        self,
        project_id: int,
        source: str | Path | bytes,
        fmt: str | None = None,
        name: str = "",
        progress: Callable[[int], None] | None = None,
        limits: ImportLimits | None = None,
    ) -> ImportReport:
        """Import a CSV/JSONL file in one transaction: all rows or none (a file over
        ``limits`` is refused whole)."""
        project = await self.get_project(project_id)
        if project.state == ProjectState.DONE:
            raise Conflict(N_("Project %(id)s is finished."), id=project_id)
        chunks = read_items(
            source,
            project.languages,
            project.labels,
            fmt,
            name,
            image_items=project.task_type is TaskType.IMAGE,
            limits=limits,
        )
        imported = gold = 0
        now = self.ctx.clock()
        async with self.ctx.db.transaction() as tx:
            existing = await tx.items.count(project_id)
            while True:
                # Parsing runs in a worker thread, chunk by chunk: the loop stays free.
                chunk = await asyncio.to_thread(_next_chunk, chunks)
                if chunk is None:
                    break
                rows = [_item_values(project, r, now) for r in chunk]
                try:
                    await tx.items.insert_many(rows)
                except DuplicateKey:
                    raise InputError(
                        "an item id in the file already exists in this project;"
                        " nothing was imported"
                    ) from None
                imported += len(rows)
                gold += sum(1 for r in chunk if r.gold is not None)
                if progress is not None:
                    progress(imported)
        log.info("project %s: imported %s items (%s before)", project_id, imported, existing)
        return ImportReport(project_id, imported, gold)

    async def set_state(self, user_id: int | None, project_id: int, state: str) -> Project:
        if user_id is not None:
            await self.owned_project(user_id, project_id)
        async with self.ctx.db.transaction() as tx:
            project = await load_project(tx, project_id)
            if state == ProjectState.LIVE and not await tx.items.count_real(project_id):
                raise Conflict(N_("Upload items before you launch the project."))
            if project.state == ProjectState.DONE and state != ProjectState.DONE:
                raise Conflict(N_("Project %(id)s is finished."), id=project_id)
            await tx.projects.set_state(project_id, state)
            return await load_project(tx, project_id)

    async def status(self, project_id: int) -> ProjectStatus:
        async with self.ctx.db.read() as tx:
            project = await load_project(tx, project_id)
            r = await tx.items.counts(project_id)
            a = await tx.answers.project_counts(project_id)
            agr, conf = await tx.results.means(project_id)
            spend = await tx.ledger.project_spend(project_id)
        return ProjectStatus(
            project=project,
            items=int(r["items"] or 0),
            gold_items=int(r["gold"] or 0),
            done_items=int(r["done"] or 0),
            answers=int(a["ok"] or 0),
            live_assignments=int(r["live"] or 0),
            rejected=int(a["rej"] or 0),
            spend=spend,
            mean_agreement=None if agr is None else round(float(agr), 4),
            mean_confidence=None if conf is None else round(float(conf), 4),
            workers=int(a["workers"] or 0),
            krippendorff_alpha=await self._alpha(project),
        )

    async def checker_stats(self, project_id: int) -> dict[str, dict[str, Any]]:
        """Per model version: accuracy on gold and agreement with confident results."""
        async with self.ctx.db.read() as tx:
            rows = await tx.checker_stats.of_project(project_id)

        def share(n: int, k: int) -> float | None:
            return round(k / n, 4) if n else None

        return {
            str(r["model_version"]): {
                "gold_seen": r["seen"],
                "gold_accuracy": share(r["seen"], r["agree"]),
                "results_seen": r["result_seen"],
                "result_agreement": share(r["result_seen"], r["result_agree"]),
            }
            for r in rows
        }

    async def update_checker_config(self, project_id: int, config: Mapping[str, Any]) -> None:
        async with self.ctx.db.transaction() as tx:
            await load_project(tx, project_id)
            await tx.projects.set_checker(project_id, config)

    async def _alpha(self, project: Project) -> float | None:
        if not spec_of(project.task_type).categorical:
            return None
        async with self.ctx.db.read() as tx:
            rows = await tx.answers.counted_labels(project.id)
        rows = [r for r in rows if r[2] in project.labels]
        if not rows:
            return None
        enc = encode(
            [str(item) for item, _, _ in rows],
            [str(worker) for _, worker, _ in rows],
            [payload for _, _, payload in rows],
            project.labels,
        )
        value = await asyncio.to_thread(krippendorff_alpha, enc.items, enc.workers, enc.labels)
        return None if np.isnan(value) else round(float(value), 4)


def _next_chunk(chunks: Iterator[list[ItemRow]]) -> list[ItemRow] | None:
    return next(chunks, None)


def _item_values(project: Project, r: ItemRow, now: float) -> tuple[Any, ...]:
    is_gold = r.gold is not None
    target = GOLD_TARGET if is_gold else project.overlap
    return (project.id, r.external_id, r.content, r.lang, r.gold, int(is_gold), target, now)
