"""Scoring: recording an answer and everything it moves, in the caller's transaction.

Credit (idempotent, through the ledger), the worker's skill posterior and pauses, the
checker model's drift on gold, the language evidence of a text answer, the item's online
estimate (closing it or widening its overlap), and closing a finished project.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from polycrowd.engine import ledger, loop, quality
from polycrowd.engine.aggregation.online import flip_probability
from polycrowd.engine.checking import Decision, Verdict
from polycrowd.engine.domain import (
    AnswerStatus,
    AssignmentState,
    FlagKind,
    ItemState,
    ProjectState,
    SubmitStatus,
)
from polycrowd.engine.errors import Conflict
from polycrowd.engine.language import Detection
from polycrowd.engine.policy import review_mode_config
from polycrowd.engine.services import prelabels, verify
from polycrowd.engine.services.context import EngineContext, load_user, raise_flag
from polycrowd.engine.services.fraud import FraudService
from polycrowd.engine.services.users import UsersService
from polycrowd.engine.store.base import Transaction
from polycrowd.engine.tasktypes import Buttons, estimate, same_answer, spec_of
from polycrowd.engine.types import Project, Task
from polycrowd.i18n import N_

LAST_ANSWER_FLIP = 0.01  # close an item if its last possible answer would flip it less often


@dataclass(frozen=True, slots=True)
class SubmitResult:
    verdict: Verdict
    status: str  # accepted | review | rejected | retry | duplicate (a SubmitStatus)
    credited: int  # minor units credited by this call (0 if none)
    answer_id: int | None
    balance: int
    correct: bool | None = None  # on gold items


class ScoringService:
    def __init__(self, ctx: EngineContext, users: UsersService, fraud: FraudService) -> None:
        self.ctx = ctx
        self.users = users
        self.fraud = fraud

    async def record(
        self,
        tx: Transaction,
        task: Task,
        user_id: int,
        payload: str,
        took: float,
        verdict: Verdict,
        detection: Detection | None,
        recent: list[str],
    ) -> SubmitResult:
        now = self.ctx.clock()
        project, item = task.project, task.item
        state, attempts = await tx.assignments.state(task.assignment.id)
        if state == AssignmentState.ANSWERED:
            user = await load_user(tx, user_id)
            return SubmitResult(verdict, SubmitStatus.DUPLICATE, 0, None, user.balance)
        if state != AssignmentState.ISSUED:
            raise Conflict(N_("This task has expired. Send /task for a new one."))
        correct: bool | None = None
        if item.gold is not None and project.task_type.has_buttons:
            correct = same_answer(payload, item.gold)
        if correct is not None:
            await self._observe_checker(tx, project, verdict, correct)
        lang = None if detection is None else detection.lang
        if verdict.decision is Decision.REJECT:
            final = attempts >= 1
            answer_id = await tx.answers.insert(
                *_answer_ids(task, user_id),
                payload,
                round(took, 3),
                verdict.decision.value,
                verdict.score,
                verdict.reason,
                verdict.model_version,
                AnswerStatus.REJECTED,
                None,
                lang,
                now,
            )
            await tx.assignments.attempt(
                task.assignment.id,
                AssignmentState.REJECTED if final else AssignmentState.ISSUED,
            )
            user = await load_user(tx, user_id)
            status = SubmitStatus.REJECTED if final else SubmitStatus.RETRY
            return SubmitResult(verdict, status, 0, answer_id, user.balance, correct)
        status = (
            SubmitStatus.ACCEPTED if verdict.decision is Decision.ACCEPT else SubmitStatus.REVIEW
        )
        answer_id = await tx.answers.insert(
            *_answer_ids(task, user_id),
            payload,
            round(took, 3),
            verdict.decision.value,
            verdict.score,
            verdict.reason,
            verdict.model_version,
            status,
            correct,
            lang,
            now,
        )
        await tx.assignments.answered(task.assignment.id)
        await tx.users.count_answer(user_id, now)
        if correct is not None:
            await self.observe_skill(tx, user_id, project, correct, gold=True)
        if detection is not None and detection.lang:
            await self.users.add_language_evidence(tx, user_id, detection, payload)
        if status == SubmitStatus.REVIEW:
            await raise_flag(
                self.ctx,
                tx,
                FlagKind.ANSWER_REVIEW,
                user_id,
                answer_id,
                project.id,
                {
                    "reason": verdict.reason,
                    "score": round(verdict.score, 3),
                    "model": verdict.model_version,
                },
            )
        if item.gold is None:
            await self.update_item(tx, project, item.id)
            if spec_of(project.task_type).verifiable:
                vcfg = verify.config_of(project)
                if vcfg.project is not None:  # create-then-verify: other workers check it
                    await verify.spawn(
                        tx, vcfg, project, item, answer_id, user_id, payload, lang, now
                    )
        await self.fraud.answer_checks(
            tx, user_id, project, took, item.content, [payload, *recent]
        )
        # The credit comes last: a store that serialises ledger appends (PostgreSQL's
        # advisory lock) then holds that lock only until the commit right after.
        credited = 0
        if project.reward > 0:
            entry = await ledger.append(
                tx,
                user_id,
                "credit",
                project.reward,
                f"credit:p{project.id}:a{task.assignment.id}",
                memo=f"answer {answer_id}",
                now=now,
                keyring=self.ctx.keyring,
            )
            credited = entry.amount if entry else 0
        user = await load_user(tx, user_id)
        return SubmitResult(verdict, status, credited, answer_id, user.balance, correct)

    async def observe_skill(
        self,
        tx: Transaction,
        user_id: int,
        project: Project,
        correct: bool,
        *,
        gold: bool,
        weight: float = 1.0,
    ) -> None:
        skill_key = project.skill
        row = await tx.skills.get(user_id, skill_key)
        skill = (
            quality.Skill() if row is None else quality.Skill(row.alpha, row.beta, row.gold_seen)
        )
        skill = skill.observe(correct, weight, gold)
        threshold = project.policy.quality.pause_below
        paused = row is not None and row.paused
        reason = ""
        if not paused and quality.should_pause(skill, threshold):
            paused, reason = True, quality.PAUSE_REASON
        await tx.skills.save(
            user_id,
            skill_key,
            skill.alpha,
            skill.beta,
            skill.mean,
            skill.gold_seen,
            paused,
            reason,
        )
        if paused and reason:
            await raise_flag(
                self.ctx,
                tx,
                FlagKind.SKILL_PAUSED,
                user_id,
                None,
                project.id,
                {"skill": skill_key, "mean": round(skill.mean, 3), "gold_seen": skill.gold_seen},
            )

    async def _observe_checker(
        self, tx: Transaction, project: Project, verdict: Verdict, correct: bool
    ) -> None:
        """Track the model on gold; below the threshold its rejections become reviews."""
        if not is_model(verdict):
            return
        agree = (verdict.decision is Decision.ACCEPT) == correct
        seen, agreed = await tx.checker_stats.observe_gold(
            project.id, verdict.model_version, agree
        )
        policy = project.policy.checker
        if policy.review_mode or seen < policy.drift_min_samples:
            return
        if agreed / seen < policy.drift_threshold:
            await tx.projects.set_checker(project.id, review_mode_config(project.checker))
            await raise_flag(
                self.ctx,
                tx,
                FlagKind.CHECKER_DRIFT,
                None,
                None,
                project.id,
                {
                    "model": verdict.model_version,
                    "gold_seen": seen,
                    "accuracy": round(agreed / seen, 3),
                    "threshold": policy.drift_threshold,
                },
            )

    async def update_item(self, tx: Transaction, project: Project, item_id: int) -> None:
        """Re-estimate one item after an answer; close it or widen its overlap."""
        rows = await tx.answers.counted_for_item(item_id, project.skill, quality.Skill().mean)
        answered, target = await tx.items.progress(item_id)
        votes = [(str(r["payload"]), float(r["skill"])) for r in rows]
        # The model is one more voter (engine/loop.py): its earned vote, never by fiat.
        vote = await prelabels.model_vote(tx, project, item_id)
        extra = None if vote is None else [vote.prior.tolist()]
        label, confidence, agreement = estimate(project.task_type, project.labels, votes, extra)
        human_conf = (
            confidence if vote is None else estimate(project.task_type, project.labels, votes)[1]
        )
        cfg = None if vote is None else await prelabels.config(tx, project.id)
        done = loop.should_close(
            confidence,
            answered,
            overlap=project.overlap,
            overlap_max=project.overlap_max,
            confidence_target=project.confidence_target,
            model_used=vote is not None,
            min_human_answers=project.overlap if cfg is None else cfg.min_human_answers,
        )
        if not done and project.overlap <= answered == project.overlap_max - 1:
            done = last_answer_moot(project, votes)  # it could not change the label
        vcfg = verify.config_of(project)
        if vcfg.project is not None:
            # create-then-verify: only a verified answer is the result (verify.decide closes
            # the item; a moderator's overrule of that answer reopens it: verify.settle)
            await verify.settle(tx, vcfg, project, item_id, rows, self.ctx.clock())
            return
        if vote is not None and not done:
            await prelabels.after_answer(tx, project, item_id, vote, label, agreement, answered)
        new_target = target
        if not done and answered >= target:
            new_target = min(project.overlap_max, target + 1)
        await tx.items.set_estimate(
            item_id, confidence, new_target, ItemState.DONE if done else ItemState.OPEN
        )
        await tx.results.save_online(
            item_id,
            project.id,
            label,
            confidence,
            agreement,
            len(rows),
            self.ctx.clock(),
            None if vote is None else vote.version,
            human_conf,
        )
        if done and spec_of(project.task_type).has_buttons:
            # Agreement with a confident result is (weaker) evidence of skill, and tells how
            # often the checker model agreed with the crowd. Workers in id order: concurrent
            # writers (PostgreSQL) then lock their skill rows in one order, never deadlock.
            for r in sorted(rows, key=lambda r: int(r["worker_id"])):
                if confidence >= project.confidence_target and is_model_version(
                    str(r["model_version"])
                ):
                    agree = (r["decision"] == "accept") == same_answer(r["payload"], label)
                    await tx.checker_stats.observe_result(project.id, r["model_version"], agree)
                await self.observe_skill(
                    tx,
                    int(r["worker_id"]),
                    project,
                    same_answer(r["payload"], label),
                    gold=False,
                    weight=quality.AGREEMENT_WEIGHT,
                )
        if done and vcfg.checks:  # a verify item closed: the creator's credit is decided
            await verify.decide(
                tx,
                self,
                item_id,
                label,
                confidence,
                agreement,
                self.ctx.clock(),
                self.ctx.keyring,
            )
        if done and not await tx.items.any_open(project.id):
            await tx.projects.set_state(project.id, ProjectState.DONE)

    async def uncount(self, tx: Transaction, project: Project, item_id: int) -> None:
        """One counted answer of an item no longer counts: its slot reopens."""
        await tx.items.uncount(item_id, project.overlap)
        await self.update_item(tx, project, item_id)
        await tx.projects.reopen(project.id, self.ctx.clock())


def _answer_ids(task: Task, user_id: int) -> tuple[int, int, int, int]:
    return task.assignment.id, task.item.id, user_id, task.project.id


def last_answer_moot(project: Project, rows: Sequence[tuple[str, float]]) -> bool:
    """True if one more answer, from a worker as reliable as this item's, could not
    change the leading label (``flip_probability`` under 1 %; bench/adaptive.py)."""
    if spec_of(project.task_type).render.buttons is not Buttons.LABELS or not project.labels:
        return False
    index = {lab: k for k, lab in enumerate(project.labels)}
    kept = [(index[payload], skill) for payload, skill in rows if payload in index]
    if not kept:
        return False
    votes = [v for v, _ in kept]
    skills = [s for _, s in kept]
    mean = sum(skills) / len(skills)
    flip = flip_probability(votes, skills, len(project.labels), remaining=1, crowd_accuracy=mean)
    return flip < LAST_ANSWER_FLIP


def is_model_version(version: str) -> bool:
    return not version.startswith(("rules", "unavailable", "duplicate"))


def is_model(verdict: Verdict) -> bool:
    return is_model_version(verdict.model_version)


def in_mode(project: Project, verdict: Verdict) -> Verdict:
    """In review mode a model can no longer reject on its own: a moderator decides."""
    if (
        project.policy.checker.review_mode
        and verdict.decision is Decision.REJECT
        and is_model(verdict)
    ):
        return Verdict(Decision.REVIEW, verdict.score, verdict.reason, verdict.model_version)
    return verdict
