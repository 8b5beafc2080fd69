"""Periodic jobs on APScheduler's AsyncIOScheduler. Jobs are thin: the work is engine
coroutines that tests call directly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from polycrowd.engine.core import Engine
from polycrowd.engine.services import prelabels
from polycrowd.engine.types import Project
from polycrowd.settings import Settings

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.on_idle: Callable[[list[int]], Awaitable[None]] | None = None
        self.on_checkpoint: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        # the app wires a project model in (polycrowd.models.prelabel.for_task_type)
        self.predictor_for: Callable[[Project], prelabels.Predictor] | None = None
        self._scheduler: AsyncIOScheduler | None = None
        from polycrowd.engine.digests import Digests

        self.digests = Digests(engine, settings)

    async def expire(self) -> int:
        n = await self.engine.expire_assignments()
        if n:
            log.info("expired %s assignments", n)
        await self.engine.expire_conversations()  # stale /newproject dialogues (24 h)
        return n

    async def remind(self) -> list[int]:
        ids = await self.engine.idle_workers(self.settings.remind_after_s)
        if ids and self.on_idle is not None:
            await self.on_idle(ids)
        return ids

    async def close_projects(self) -> list[int]:
        ids = await self.engine.close_overdue_projects()
        if ids:
            log.info("closed projects past their deadline: %s", ids)
        return ids

    async def scan_fraud(self) -> int:
        flagged = 0
        for pid in await self.engine.live_projects():
            flagged += len(await self.engine.scan_fraud(pid))
        return flagged

    async def checkpoint(self) -> dict[str, Any]:
        """Sign the ledger's head into the checkpoint file; tell the admins."""
        record = await self.engine.checkpoint_ledger()
        log.info("ledger checkpoint %s: %s entries", record["n"], record["entries"])
        if self.on_checkpoint is not None:
            await self.on_checkpoint(record)
        return record

    async def retrain(self) -> list[int]:
        """Retrain the model of every live project with enough new confident results, in a
        worker thread; store its predictions. Returns the retrained project ids."""
        done: list[int] = []
        if self.predictor_for is None:
            return done
        for pid in await self.engine.live_projects():
            project = await self.engine.get_project(pid)
            async with self.engine.db.read() as tx:
                if not await prelabels.needs_training(tx, project):
                    continue
                examples, items = await prelabels.training_data(tx, project)
            pred = await asyncio.to_thread(self._train, project, examples, items)
            if not pred.probs:
                continue
            async with self.engine.db.transaction() as tx:
                await prelabels.store_predictions(tx, project, pred, self.engine.clock())
            log.info("project %s: model %s retrained", pid, pred.model_version)
            done.append(pid)
        return done

    def _train(
        self,
        project: Project,
        examples: list[tuple[str, str]],
        items: list[tuple[int, str]],
    ) -> prelabels.Prediction:
        """In a worker thread: building a model may read its files, training is CPU work."""
        assert self.predictor_for is not None
        return self.predictor_for(project).train_predict(list(project.labels), examples, items)

    def start(self) -> None:
        """Must be called from inside the running event loop."""
        sched = AsyncIOScheduler()
        every = self.settings.expire_every_s
        jobs: list[tuple[Callable[[], Awaitable[object]], str, float]] = [
            (self.expire, "expire", every),
            (self.close_projects, "close_projects", max(every, 60.0)),
            (self.remind, "remind", max(every, 600.0)),
            (self.scan_fraud, "fraud", max(every, 600.0)),
            (self.digests.workers, "worker_digest", 3600.0),
            (self.digests.moderators, "moderator_digest", 3600.0),
            (self.checkpoint, "ledger_checkpoint", self.settings.checkpoint_every_s),
        ]
        if self.predictor_for is not None:
            jobs.append((self.retrain, "retrain", max(every, 60.0)))
        for job, name, seconds in jobs:
            sched.add_job(
                job, "interval", seconds=seconds, id=name, coalesce=True, max_instances=1
            )
        sched.start()
        self._scheduler = sched

    def jobs(self) -> list[str]:
        if self._scheduler is None:
            return []
        return sorted(job.id for job in self._scheduler.get_jobs())

    def shutdown(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None
