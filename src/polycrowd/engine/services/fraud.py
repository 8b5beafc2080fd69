"""Fraud: signals checked on every answer, and the project-wide scan for the moderators."""

from __future__ import annotations

from polycrowd.engine import quality
from polycrowd.engine.events import Flag
from polycrowd.engine.services.context import EngineContext, load_project, raise_flag
from polycrowd.engine.store.base import Transaction
from polycrowd.engine.tasktypes import spec_of
from polycrowd.engine.types import Project


class FraudService:
    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    async def answer_checks(
        self,
        tx: Transaction,
        user_id: int,
        project: Project,
        took: float,
        text: str,
        answers: list[str],
    ) -> None:
        """Too fast for the text, or always the same label: flag the worker."""
        rows = await tx.answers.recent_timings(user_id, 10)
        durations = [seconds for seconds, _ in rows]
        minimums = [quality.min_seconds(content) for _, content in rows]
        if quality.too_fast(durations, minimums):
            await raise_flag(
                self.ctx,
                tx,
                quality.FRAUD_SPEED,
                user_id,
                None,
                project.id,
                {"seconds": durations, "minimum": minimums},
            )
        if spec_of(project.task_type).has_buttons and quality.same_label(
            answers, len(project.labels)
        ):
            await raise_flag(
                self.ctx,
                tx,
                quality.FRAUD_SAME_LABEL,
                user_id,
                None,
                project.id,
                {"label": answers[0], "run": len(answers)},
            )

    async def scan_fraud(self, project_id: int, min_common: int = 15) -> list[Flag]:
        """Project-wide fraud signals, flagged for the moderators with their evidence.

        Agreement with confident results far below chance, and pairs of accounts that
        answered many items identically, including where both went against the result.
        """
        db = self.ctx.db
        async with db.read() as tx:
            project = await load_project(tx, project_id)
        if not spec_of(project.task_type).has_buttons:
            return []
        async with db.read() as tx:
            per_worker = await tx.answers.agreement_per_worker(
                project_id, project.confidence_target
            )
            pairs = await tx.answers.identical_pairs(project_id, min_common)
        found: list[Flag] = []

        def keep(flag: Flag) -> None:
            found.append(flag)

        hooks = self.ctx.hooks
        hooks.on_flag.append(keep)
        try:
            async with db.transaction() as tx:
                for r in per_worker:
                    n, agree = int(r["n"]), int(r["agree"] or 0)
                    if quality.agreement_below_chance(agree, n, len(project.labels)):
                        await raise_flag(
                            self.ctx,
                            tx,
                            quality.FRAUD_LOW_AGREEMENT,
                            int(r["worker_id"]),
                            None,
                            project_id,
                            {
                                "agreement": round(agree / n, 3),
                                "answers": n,
                                "chance": round(1 / len(project.labels), 3),
                            },
                        )
                for r in pairs:
                    if r["same"] == r["common"] and int(r["against"] or 0) >= 3:
                        evidence = {
                            "accounts": [r["w1"], r["w2"]],
                            "common_items": r["common"],
                            "identical": r["same"],
                            "against_result": r["against"],
                        }
                        for uid in (r["w1"], r["w2"]):
                            await raise_flag(
                                self.ctx,
                                tx,
                                quality.FRAUD_IDENTICAL,
                                int(uid),
                                None,
                                project_id,
                                evidence,
                            )
        finally:
            hooks.on_flag.remove(keep)
        return found
