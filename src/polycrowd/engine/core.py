"""The engine facade: every state change the handlers, CLI and scheduler ask for.

Each public coroutine is one state change in one transaction (or a read). The work is done
by the services in :mod:`polycrowd.engine.services` (one module per concern: users,
projects, tasks, scoring, fraud, moderation, payments, maintenance, results); this class
wires them together and keeps the one API the callers use. Nothing here knows about chat
platforms or model libraries: the checker is any object satisfying
:class:`polycrowd.engine.checking.Checker`, languages come from an injected detector, and
the database is any :class:`polycrowd.engine.store.base.Store`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from polycrowd.engine import ledger
from polycrowd.engine.checking import Checker
from polycrowd.engine.errors import (
    Conflict,
    EngineError,
    Forbidden,
    InvalidInput,
    NotFound,
    PolycrowdError,
)
from polycrowd.engine.events import EngineHooks, Flag
from polycrowd.engine.io import ImportLimits, ProjectSpec
from polycrowd.engine.language import Detection
from polycrowd.engine.ledger_key import LedgerKeyring
from polycrowd.engine.services.context import EngineContext
from polycrowd.engine.services.digests import WEEK, DigestService, ModeratorDigest, WorkerDigest
from polycrowd.engine.services.feedback import LOGIN_TTL, FeedbackService, Login, Question
from polycrowd.engine.services.fraud import FraudService
from polycrowd.engine.services.leaderboard import LeaderboardService
from polycrowd.engine.services.maintenance import MaintenanceService
from polycrowd.engine.services.moderation import ModerationService
from polycrowd.engine.services.payments import PaymentsService
from polycrowd.engine.services.projects import (
    GOLD_TARGET,
    ImportReport,
    ProjectsService,
    ProjectStatus,
)
from polycrowd.engine.services.reports import ReportFigures, ReportsService
from polycrowd.engine.services.results import ResultsService
from polycrowd.engine.services.scoring import ScoringService, SubmitResult
from polycrowd.engine.services.state import Conversation, StateService
from polycrowd.engine.services.tasks import TasksService
from polycrowd.engine.services.users import LINK_TTL, UsersService, WorkerStats
from polycrowd.engine.store.base import (
    Diagnostics,
    LeaderRow,
    Store,
    Totals,
    WorkerSummary,
)
from polycrowd.engine.types import LedgerEntry, Project, Role, Task, User
from polycrowd.settings import Settings

__all__ = [
    "GOLD_TARGET",
    "LINK_TTL",
    "Conflict",
    "Conversation",
    "Engine",
    "EngineError",
    "EngineHooks",
    "Flag",
    "Forbidden",
    "ImportReport",
    "InvalidInput",
    "NotFound",
    "PolycrowdError",
    "ProjectStatus",
    "SubmitResult",
    "WorkerStats",
]


class Engine:
    def __init__(
        self,
        db: Store,
        checker: Checker,
        detect_language: Callable[[str], Detection],
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        hooks: EngineHooks | None = None,
        keyring: LedgerKeyring | None = None,
    ) -> None:
        if keyring is None:  # the key file beside the database, or POLYCROWD_LEDGER_KEY
            keyring = LedgerKeyring.for_store(str(getattr(db, "path", "")), Settings.from_env())
        ctx = EngineContext(
            db,
            checker,
            detect_language,
            rng or random.Random(),
            clock,
            hooks or EngineHooks(),
            keyring,
        )
        self._ctx = ctx
        self.users = UsersService(ctx)
        self.projects_service = ProjectsService(ctx)
        self.fraud = FraudService(ctx)
        self.scoring = ScoringService(ctx, self.users, self.fraud)
        self.tasks = TasksService(ctx, self.scoring)
        self.moderation = ModerationService(ctx, self.users, self.scoring)
        self.payments = PaymentsService(ctx, self.users)
        self.maintenance = MaintenanceService(ctx)
        self.results = ResultsService(ctx)
        self.feedback = FeedbackService(ctx)
        self.digests = DigestService(ctx)
        self.reports = ReportsService(ctx)
        self.state = StateService(ctx)
        self.leaderboard = LeaderboardService(ctx)

    # The collaborators, replaceable after wiring (the demo and tests swap clock and rng).

    @property
    def db(self) -> Store:
        """The store (the SQLite ``Database`` unless wired otherwise)."""
        return self._ctx.db

    @db.setter
    def db(self, value: Store) -> None:
        self._ctx.db = value

    @property
    def checker(self) -> Checker:
        return self._ctx.checker

    @checker.setter
    def checker(self, value: Checker) -> None:
        self._ctx.checker = value

    @property
    def detect_language(self) -> Callable[[str], Detection]:
        return self._ctx.detect_language

    @detect_language.setter
    def detect_language(self, value: Callable[[str], Detection]) -> None:
        self._ctx.detect_language = value

    @property
    def rng(self) -> random.Random:
        return self._ctx.rng

    @rng.setter
    def rng(self, value: random.Random) -> None:
        self._ctx.rng = value

    @property
    def clock(self) -> Callable[[], float]:
        return self._ctx.clock

    @clock.setter
    def clock(self, value: Callable[[], float]) -> None:
        self._ctx.clock = value

    @property
    def hooks(self) -> EngineHooks:
        return self._ctx.hooks

    @hooks.setter
    def hooks(self, value: EngineHooks) -> None:
        self._ctx.hooks = value

    @property
    def keyring(self) -> LedgerKeyring:
        """Where the ledger's key and checkpoints live (outside the database)."""
        return self._ctx.keyring

    async def diagnostics(self, project_id: int | None = None) -> Diagnostics:
        """The store's invariants counted (duplicate assignments, over-assigned items...)."""
        return await self._ctx.db.diagnostics(project_id)

    # Users ---------------------------------------------------------------------------------

    async def user_for(
        self,
        platform: str,
        external_id: str,
        display_name: str = "",
        locale: str = "en",
        chat_id: str = "",
    ) -> tuple[User, bool]:
        """The user behind a platform identity, created on first contact. (user, created)."""
        return await self.users.user_for(platform, external_id, display_name, locale, chat_id)

    async def get_user(self, user_id: int) -> User:
        return await self.users.get_user(user_id)

    async def find_user(self, ref: str) -> User | None:
        """By id, pseudonym, or platform:external_id."""
        return await self.users.find_user(ref)

    async def chats_of(self, user_id: int) -> list[tuple[str, str]]:
        """(platform, chat id) pairs where the user can be reached."""
        return await self.users.chats_of(user_id)

    async def set_languages(self, user_id: int, langs: Sequence[str]) -> tuple[str, ...]:
        """Replace the declared languages (detected evidence is kept)."""
        return await self.users.set_languages(user_id, langs)

    async def toggle_language(self, user_id: int, lang: str) -> tuple[str, ...]:
        return await self.users.toggle_language(user_id, lang)

    async def languages_of(self, user_id: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(declared, trusted) languages."""
        return await self.users.languages_of(user_id)

    async def set_role(self, actor_id: int, user_id: int, role: Role) -> User:
        return await self.users.set_role(actor_id, user_id, role)

    async def bootstrap_role(self, user_id: int, role: Role) -> None:
        """Set a role without an actor: for the CLI and the configured first admin."""
        await self.users.bootstrap_role(user_id, role)

    # Projects ------------------------------------------------------------------------------

    async def create_project(self, owner_id: int | None, spec: ProjectSpec) -> Project:
        return await self.projects_service.create_project(owner_id, spec)

    async def get_project(self, project_id: int) -> Project:
        return await self.projects_service.get_project(project_id)

    async def projects(self, owner_id: int | None = None) -> list[Project]:
        return await self.projects_service.projects(owner_id)

    async def owned_project(self, user_id: int, project_id: int) -> Project:
        return await self.projects_service.owned_project(user_id, project_id)

    async def import_items(
        self,
        project_id: int,
        source: str | Path | bytes,
        fmt: str | None = None,
        name: str = "",
        progress: Callable[[int], None] | None = None,
        limits: ImportLimits | None = None,
    ) -> ImportReport:
        """Import a CSV/JSONL file in one transaction: all rows or none."""
        return await self.projects_service.import_items(
            project_id, source, fmt, name, progress, limits
        )

    async def set_state(self, user_id: int | None, project_id: int, state: str) -> Project:
        return await self.projects_service.set_state(user_id, project_id, state)

    async def status(self, project_id: int) -> ProjectStatus:
        return await self.projects_service.status(project_id)

    async def checker_stats(self, project_id: int) -> dict[str, dict[str, Any]]:
        """Per model version: accuracy on gold and agreement with confident results."""
        return await self.projects_service.checker_stats(project_id)

    async def update_checker_config(self, project_id: int, config: Mapping[str, Any]) -> None:
        await self.projects_service.update_checker_config(project_id, config)

    # Tasks ---------------------------------------------------------------------------------

    async def current_task(self, user_id: int) -> Task | None:
        return await self.tasks.current_task(user_id)

    async def next_task(
        self, user_id: int, *, chat_id: str = "", platform: str = "", project_id: int | None = None
    ) -> Task | None:
        """The worker's open task, or a newly matched one; None when nothing fits."""
        return await self.tasks.next_task(
            user_id, chat_id=chat_id, platform=platform, project_id=project_id
        )

    async def paused_projects(self, user_id: int) -> list[tuple[str, str]]:
        """(project name, reason msgid) of live projects paused for this worker."""
        return await self.tasks.paused_projects(user_id)

    async def skip(self, user_id: int, assignment_id: int) -> bool:
        return await self.tasks.skip(user_id, assignment_id)

    async def task(self, assignment_id: int) -> Task | None:
        return await self.tasks.task(assignment_id)

    async def submit(
        self,
        user_id: int,
        assignment_id: int,
        payload: str,
        seconds: float | None = None,
        *,
        task: Task | None = None,
    ) -> SubmitResult:
        """Check an answer, then record it and credit the worker in one transaction.

        ``task``: the assignment's task as the caller just loaded it (saves loading it again;
        the transaction re-checks the assignment's state either way)."""
        return await self.tasks.submit(user_id, assignment_id, payload, seconds, task=task)

    # Moderation ----------------------------------------------------------------------------

    async def open_flags(self, limit: int = 10) -> list[Flag]:
        return await self.moderation.open_flags(limit)

    async def moderate_answer(
        self, actor_id: int, answer_id: int, accept: bool, reason: str = ""
    ) -> str:
        """Accept keeps the credit; reject overrules it with a reversing ledger entry."""
        return await self.moderation.moderate_answer(actor_id, answer_id, accept, reason)

    async def set_status(
        self, actor_id: int | None, user_id: int, status: str, reason: str = ""
    ) -> User:
        return await self.moderation.set_status(actor_id, user_id, status, reason)

    async def resolve_flag(self, actor_id: int, flag_id: int, resolution: str) -> None:
        await self.moderation.resolve_flag(actor_id, flag_id, resolution)

    async def appeal(self, user_id: int, answer_id: int | None, text: str) -> int:
        """Open an appeal on a rejected answer (the latest one when no id is given)."""
        return await self.moderation.appeal(user_id, answer_id, text)

    async def decide_appeal(self, actor_id: int, answer_id: int, uphold: bool) -> None:
        """Upholding an appeal pays the answer as if it had been accepted."""
        await self.moderation.decide_appeal(actor_id, answer_id, uphold)

    async def scan_fraud(self, project_id: int, min_common: int = 15) -> list[Flag]:
        """Project-wide fraud signals, flagged for the moderators with their evidence."""
        return await self.fraud.scan_fraud(project_id, min_common)

    # Payments ------------------------------------------------------------------------------

    async def request_payout(self, user_id: int) -> int:
        return await self.payments.request_payout(user_id)

    async def pending_payouts(self) -> list[dict[str, Any]]:
        return await self.payments.pending_payouts()

    async def decide_payout(self, actor_id: int, payout_id: int, approve: bool) -> int:
        return await self.payments.decide_payout(actor_id, payout_id, approve)

    async def audit(self) -> ledger.AuditReport:
        return await self.payments.audit()

    async def checkpoint_ledger(self) -> dict[str, Any]:
        """Sign the ledger's head (count, hash, totals) into the checkpoint file."""
        return await self.payments.checkpoint()

    async def ledger_entries(
        self, user_id: int | None = None, limit: int = 50
    ) -> list[LedgerEntry]:
        return await self.payments.ledger_entries(user_id, limit)

    # Worker's own data ---------------------------------------------------------------------

    async def worker_stats(self, user_id: int) -> WorkerStats:
        return await self.users.worker_stats(user_id)

    async def pending_credit(self, user_id: int) -> int:
        """Of the balance, the credits still waiting for other workers' check (not paid out)."""
        return await self.users.pending_credit(user_id)

    async def my_data(self, user_id: int) -> dict[str, Any]:
        """Everything stored about a user, as one JSON-ready dict (for /mydata)."""
        return await self.users.my_data(user_id)

    async def forget(self, user_id: int) -> None:
        """Erase personal data; answers and ledger entries stay, tied to the pseudonym."""
        await self.users.forget(user_id)

    async def link_code(self, user_id: int, platform: str) -> str:
        return await self.users.link_code(user_id, platform)

    async def redeem_link(self, user_id: int, code: str) -> User:
        """Merge ``user_id`` into the user who made ``code``; refused codes merge nothing."""
        return await self.users.redeem_link(user_id, code)

    # Conversation and current-project state (stored: survives a restart) ------------------

    async def conversation(self, user_id: int) -> Conversation | None:
        """The user's open guided conversation; None when none or stale (24 h)."""
        return await self.state.conversation(user_id)

    async def save_conversation(self, user_id: int, conv: Conversation) -> None:
        await self.state.save_conversation(user_id, conv)

    async def end_conversation(self, user_id: int, *, current_project: int | None = None) -> bool:
        """Close the conversation, optionally making ``current_project`` current, at once."""
        return await self.state.end_conversation(user_id, current_project=current_project)

    async def current_project(self, user_id: int) -> int | None:
        """The project a requester's commands act on when they name none."""
        return await self.state.current_project(user_id)

    async def set_current_project(self, user_id: int, project_id: int) -> None:
        await self.state.set_current_project(user_id, project_id)

    async def expire_conversations(self) -> int:
        return await self.state.expire_conversations()

    # The opt-in leaderboard -----------------------------------------------------------------

    async def on_leaderboard(self, user_id: int) -> bool:
        return await self.leaderboard.opted_in(user_id)

    async def set_leaderboard(self, user_id: int, on: bool) -> None:
        """Show (or hide) the user's pseudonym on the leaderboards of their projects."""
        await self.leaderboard.set_opt_in(user_id, on)

    async def leaders(self, project_id: int) -> list[LeaderRow]:
        """The project's opted-in workers, most accepted answers first (pseudonyms only)."""
        return await self.leaderboard.board(project_id)

    async def latest_project_of(self, user_id: int) -> int | None:
        return await self.leaderboard.latest_project(user_id)

    # Maintenance ---------------------------------------------------------------------------

    async def expire_assignments(self) -> int:
        return await self.maintenance.expire_assignments()

    async def idle_workers(self, idle_s: float) -> list[int]:
        """Workers idle for ``idle_s`` with live work available and not reminded since."""
        return await self.maintenance.idle_workers(idle_s)

    async def close_overdue_projects(self) -> list[int]:
        return await self.maintenance.close_overdue_projects()

    async def live_projects(self) -> list[int]:
        return await self.maintenance.live_projects()

    async def update_handled(self, platform: str, update_id: str) -> bool:
        """True when the update was handled to the end before: a redelivery to drop."""
        return await self.maintenance.update_handled(platform, update_id)

    async def mark_update_handled(self, platform: str, update_id: str) -> None:
        """Record an update once its handling has committed."""
        await self.maintenance.mark_update_handled(platform, update_id)

    async def token(self, user_id: int, action: str, payload: str) -> int:
        return await self.maintenance.token(user_id, action, payload)

    async def resolve_token(self, token_id: int, user_id: int) -> tuple[str, str] | None:
        return await self.maintenance.resolve_token(token_id, user_id)

    # Results -------------------------------------------------------------------------------

    async def aggregate_project(self, project_id: int, method: str = "auto") -> dict[str, Any]:
        """Re-aggregate every answered item of a project with a batch method."""
        return await self.results.aggregate_project(project_id, method)

    async def training_examples(self, project_id: int) -> list[tuple[str, str]]:
        """(item text, label) from gold items and confident results, for the checker."""
        return await self.results.training_examples(project_id)

    async def export_rows(self, project_id: int) -> list[dict[str, Any]]:
        return await self.results.export_rows(project_id)

    async def export(self, project_id: int, out: IO[str], fmt: str = "csv") -> int:
        return await self.results.export(project_id, out, fmt)

    # Feedback: questions, FAQ, dashboard logins, digests, reports --------------------------

    async def questions_since(self, worker_id: int, seconds: float) -> int:
        """Questions the worker asked in the last ``seconds`` (for the rate limit)."""
        return await self.feedback.questions_since(worker_id, seconds)

    async def ask(
        self, worker_id: int, project_id: int, item_id: int | None, lang: str, text: str
    ) -> int:
        return await self.feedback.ask(worker_id, project_id, item_id, lang, text)

    async def question(self, question_id: int) -> Question:
        return await self.feedback.question(question_id)

    async def answer_question(self, question_id: int, by: int, text: str) -> Question:
        return await self.feedback.answer(question_id, by, text)

    async def pin_faq(self, question_id: int) -> None:
        """Append an answered question to its project's instructions in its language."""
        await self.feedback.pin_faq(question_id)

    async def dashboard_login(self, user_id: int, role: Role, ttl: float = LOGIN_TTL) -> str:
        """A one-time dashboard login token bound to the user's role."""
        return await self.feedback.create_login(user_id, role, ttl)

    async def redeem_dashboard_login(self, token: str) -> tuple[str, Login] | None:
        """Spend a login token: (session token, login), or None."""
        return await self.feedback.redeem_login(token)

    async def dashboard_session(self, session: str) -> Login | None:
        return await self.feedback.session(session)

    async def end_dashboard_session(self, session: str) -> None:
        await self.feedback.end_session(session)

    async def digest_due(self, every: float = WEEK) -> list[int]:
        """Workers due a weekly digest."""
        return await self.digests.workers_due(every)

    async def worker_digest(self, user_id: int) -> WorkerDigest:
        return await self.digests.worker_digest(user_id)

    async def moderator_digest(self) -> ModeratorDigest:
        return await self.digests.moderator_digest()

    async def digest_sent(self, kind: str, target: str) -> float | None:
        """When a digest of ``kind`` last went to ``target``."""
        return await self.digests.last_sent(kind, target)

    async def mark_digest_sent(self, kind: str, targets: Sequence[str]) -> None:
        await self.digests.mark_sent(kind, targets)

    async def report_figures(self, project_id: int) -> ReportFigures:
        """The aggregates a project's charts show."""
        return await self.reports.figures(project_id)

    async def worker_summaries(self, project_ids: Sequence[int] | None) -> list[WorkerSummary]:
        return await self.reports.workers(project_ids)

    async def open_appeals(self, project_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        return await self.reports.open_appeals(project_ids)

    async def totals(self) -> Totals:
        """Answers by status, credits and picks, for /metrics."""
        return await self.reports.totals()

    async def ping(self) -> bool:
        """True when the store answers (for /healthz)."""
        return await self.reports.ping()
