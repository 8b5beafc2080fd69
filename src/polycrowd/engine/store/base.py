"""The store seam: what the engine needs from a database, as protocols.

A store hands out transactions (one state change each: all of it commits or none of it
does) and read-only sessions; both carry typed repositories, one per table family, and a
transaction carries the outbox whose events are published after it commits. The SQLite
store (:mod:`polycrowd.engine.store.sqlite`) is the reference implementation; a new store
implements these protocols and passes the store tests. No SQL lives outside the store
packages (tests/test_architecture.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from polycrowd.engine.events import Flag, Outbox
    from polycrowd.engine.io import ProjectSpec
    from polycrowd.engine.types import Assignment, Item, LedgerEntry, Project, RowLike, User


# Every table, parents before children (the order a copy between stores loads them in).
TABLES = (
    "users",
    "identities",
    "user_languages",
    "user_skills",
    "projects",
    "project_languages",
    "project_skills",
    "items",
    "assignments",
    "answers",
    "results",
    "item_predictions",
    "project_models",
    "ledger",
    "ledger_checkpoints",
    "flags",
    "checker_stats",
    "payouts",
    "processed_updates",
    "link_codes",
    "tokens",
    "questions",
    "faq_entries",
    "dashboard_tokens",
    "dashboard_sessions",
    "digest_runs",
    "user_state",
)


NO_FLOOR = -1e9  # a pick priority floor that lets every item through


class StoreError(RuntimeError):
    """The database cannot be opened or migrated."""


class DuplicateKey(Exception):
    """An insert hit a unique key (e.g. an item id already in the project)."""


@dataclass(frozen=True, slots=True)
class LanguageRow:
    lang: str
    declared: bool
    weight: float
    replies: int
    trusted: bool


@dataclass(frozen=True, slots=True)
class SkillRow:
    alpha: float
    beta: float
    gold_seen: int
    paused: bool


@dataclass(frozen=True, slots=True)
class Diagnostics:
    """Invariants of a store, counted: every "bad" count is 0 in a healthy database."""

    duplicate_assignments: int  # (item, worker) pairs assigned more than once
    over_assigned_items: int  # real items past their overlap or with more live slots
    miscounted_items: int  # items whose answered counter differs from their answers
    assignments: int
    answered_assignments: int
    issued_assignments: int
    answers: int  # answers that counted at some point (accepted, review, overruled)
    routed_in_worker_language: float  # share of assignments in a trusted language
    credits: int
    duplicate_credits: int  # extra credit entries for one assignment
    blocked_users: int
    flags_by_kind: Mapping[str, int] = field(default_factory=dict)
    answer_statuses: Mapping[str, int] = field(default_factory=dict)  # of one project
    checker_versions: tuple[str, ...] = ()  # of one project

    def as_dict(self) -> dict[str, Any]:
        return {
            "duplicate_assignments": self.duplicate_assignments,
            "over_assigned_items": self.over_assigned_items,
            "miscounted_items": self.miscounted_items,
            "assignments": self.assignments,
            "answered_assignments": self.answered_assignments,
            "issued_assignments": self.issued_assignments,
            "answers": self.answers,
            "routed_in_worker_language": self.routed_in_worker_language,
            "credits": self.credits,
            "duplicate_credits": self.duplicate_credits,
            "blocked_users": self.blocked_users,
            "flags_by_kind": dict(self.flags_by_kind),
            "answer_statuses": dict(self.answer_statuses),
            "checker_versions": list(self.checker_versions),
        }


@dataclass(frozen=True, slots=True)
class QuestionRow:
    """A worker's question about a task, with the answer once there is one."""

    id: int
    worker_id: int
    project_id: int
    item_id: int | None
    lang: str
    text: str
    answer: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class LoginRow:
    """Whom a dashboard login token was made for, and that user's role and status now."""

    user_id: int
    role: str  # the role the token is bound to
    current_role: str
    status: str


@dataclass(frozen=True, slots=True)
class WorkerSummary:
    """A worker's answers over some projects (pseudonym only)."""

    pseudonym: str
    answers: int
    accepted: int
    rejected: int
    gold_answered: int
    gold_correct: int
    agreement: float | None  # share of answers equal to the aggregated result


@dataclass(frozen=True, slots=True)
class LeaderRow:
    """One opted-in worker on a project's leaderboard (pseudonym only)."""

    user_id: int
    pseudonym: str
    accepted: int
    gold_answered: int
    gold_correct: int


@dataclass(frozen=True, slots=True)
class AnswerWindow:
    """A worker's answers in a time window."""

    answers: int
    gold: int  # check questions answered
    gold_correct: int
    counted: int  # accepted or in review


@dataclass(frozen=True, slots=True)
class ModerationBacklog:
    """What waits for the moderators."""

    flags: int
    flagged_workers: int
    appeals: int
    checker_gold_seen: int
    checker_gold_agreed: int
    payouts: int
    payout_total: int


@dataclass(frozen=True, slots=True)
class Totals:
    """Counters for /metrics."""

    answers_by_status: Mapping[str, int]
    credits: int
    credited: int  # minor units
    picks: int
    live_assignments: int


class UserRepository(Protocol):
    async def by_identity(self, platform: str, external_id: str) -> tuple[User, str] | None:
        """The user behind a platform identity and the chat id stored for it."""

    async def identity_owner(self, platform: str, external_id: str) -> int | None: ...

    async def create(
        self,
        platform: str,
        external_id: str,
        display_name: str,
        pseudonym: str,
        locale: str,
        chat_id: str,
        now: float,
    ) -> int:
        """A new user with one identity and its locale as declared, trusted language."""

    async def set_chat(self, platform: str, external_id: str, chat_id: str) -> None: ...

    async def get(self, user_id: int) -> User | None: ...

    async def by_platform(self, platform: str, external_id: str) -> User | None: ...

    async def by_pseudonym(self, pseudonym: str) -> User | None: ...

    async def chats(self, user_id: int) -> list[tuple[str, str]]: ...

    async def set_locale(self, user_id: int, locale: str) -> None: ...

    async def set_role(self, user_id: int, role: str) -> None: ...

    async def touch(self, user_id: int, now: float) -> None: ...

    async def count_answer(self, user_id: int, now: float) -> None: ...

    async def set_status(self, user_id: int, status: str, reason: str) -> None: ...

    async def idle(self, cutoff: float) -> list[int]: ...

    async def mark_reminded(self, user_ids: Sequence[int], now: float) -> None: ...

    async def personal_data(self, user_id: int) -> dict[str, Any] | None:
        """Everything stored about a user, table by table (for /mydata)."""

    async def forget(self, user_id: int) -> None:
        """Erase personal data; answers and ledger entries stay, tied to the pseudonym."""

    async def merge_records(self, keep: int, drop: int) -> tuple[int, int]:
        """Fold ``drop``'s identities, languages, skills and work into ``keep``."""

    async def retire_merged(self, keep: int, drop: int, answers: int) -> None: ...

    async def balances(self) -> list[tuple[int, int]]: ...


class LanguageRepository(Protocol):
    async def rows(self, user_id: int) -> list[LanguageRow]: ...

    async def declared(self, user_id: int) -> list[str]: ...

    async def trusted(self, user_id: int) -> tuple[str, ...]: ...

    async def set_declared(self, user_id: int, langs: Sequence[str]) -> None:
        """Replace the declared languages (detected evidence is kept)."""

    async def set_trusted(self, user_id: int, lang: str, trusted: bool) -> None: ...

    async def set_evidence(self, user_id: int, lang: str, weight: float, replies: int) -> None: ...


class SkillRepository(Protocol):
    async def get(self, user_id: int, skill: str) -> SkillRow | None: ...

    async def save(
        self,
        user_id: int,
        skill: str,
        alpha: float,
        beta: float,
        mean: float,
        gold_seen: int,
        paused: bool,
        reason: str,
    ) -> None:
        """Store the posterior; an empty ``reason`` keeps the stored one."""

    async def gold_seen(self, user_id: int) -> int: ...

    async def totals(self, user_id: int) -> tuple[float, float] | None:
        """(sum of alpha, sum of beta) over all skills, None without any."""

    async def paused_projects(self, user_id: int) -> list[tuple[str, str]]: ...


class ProjectRepository(Protocol):
    async def create(self, owner_id: int | None, spec: ProjectSpec, now: float) -> int: ...

    async def get(self, project_id: int) -> Project | None: ...

    async def ids(self, owner_id: int | None = None) -> list[int]: ...

    async def live_ids(self) -> list[int]: ...

    async def set_state(self, project_id: int, state: str) -> None: ...

    async def set_checker(self, project_id: int, config: Mapping[str, Any]) -> None: ...

    async def set_instructions(self, project_id: int, instructions: Mapping[str, str]) -> None: ...

    async def reopen(self, project_id: int, now: float) -> None:
        """A done project whose deadline has not passed goes live again."""

    async def gold_policy(self) -> tuple[float, int] | None:
        """(highest gold ratio, highest qualification) over live projects; None if none."""

    async def overdue(self, now: float) -> list[int]: ...


class ItemRepository(Protocol):
    async def count(self, project_id: int) -> int: ...

    async def count_real(self, project_id: int) -> int: ...

    async def by_external(self, project_id: int, external_id: str) -> int | None:
        """The id of a project's item by its external id (the unique key), or None."""

    async def insert_many(self, rows: Iterable[Sequence[Any]]) -> None:
        """(project_id, external_id, content, lang, gold, is_gold, target, created_at) rows."""

    async def get(self, item_id: int) -> Item | None: ...

    async def progress(self, item_id: int) -> tuple[int, int]:
        """(answered, target) of one item."""

    async def set_estimate(
        self, item_id: int, confidence: float, target: int, state: str
    ) -> None: ...

    async def any_open(self, project_id: int) -> bool: ...

    async def uncount(self, item_id: int, overlap: int) -> None:
        """One counted answer no longer counts: its slot reopens."""

    async def awaiting_check(self, user_id: int, prefix: str) -> list[tuple[int, str]]:
        """(project_id, external_id) of open items whose external id starts with ``prefix``
        on which the user holds a skipped assignment (create-then-verify: the checks of the
        user's own answers, still waiting for other workers)."""

    async def counts(self, project_id: int) -> RowLike:
        """items, gold, done, live of a project."""

    async def gold_labels(self, project_id: int) -> list[tuple[int, str]]: ...

    async def training_examples(
        self, project_id: int, confidence: float
    ) -> list[tuple[str, str | None]]: ...

    async def with_results(self, project_id: int) -> list[RowLike]:
        """Real items of a project with their result, in id order (for the export)."""

    async def page_with_results(self, project_id: int, after: int, limit: int) -> list[RowLike]:
        """Like ``with_results``, one page: the next ``limit`` items with an id past ``after``."""


class AssignmentRepository(Protocol):
    async def current(self, user_id: int, now: float) -> int | None: ...

    async def get(self, assignment_id: int) -> Assignment | None: ...

    async def pick(
        self,
        worker_id: int,
        langs: Sequence[str],
        *,
        want_gold: bool,
        project_id: int | None,
        chat_id: str,
        platform: str,
        now: float,
        floor: float = NO_FLOOR,
        capped: Sequence[int] = (),
    ) -> int | None:
        """Claim the next item in one statement; the new assignment id or None.

        Items come in ``priority`` order first; ``floor`` skips items below a priority
        (hard ones, for newcomers) and ``capped`` skips whole projects (share cap)."""

    async def state(self, assignment_id: int) -> tuple[str, int]:
        """(state, attempts)."""

    async def skip(self, assignment_id: int, user_id: int) -> bool: ...

    async def answered(self, assignment_id: int) -> None: ...

    async def attempt(self, assignment_id: int, state: str) -> None: ...

    async def expire_worker(self, user_id: int) -> None: ...

    async def expire_project(self, project_id: int) -> None: ...

    async def expire_due(self, now: float) -> int:
        """Expire issued assignments past their deadline; their slots return to the items."""


class AnswerRepository(Protocol):
    async def recent_payloads(
        self, user_id: int, project_id: int, limit: int = 24
    ) -> list[str]: ...

    async def insert(
        self,
        assignment_id: int,
        item_id: int,
        worker_id: int,
        project_id: int,
        payload: str,
        seconds: float,
        decision: str,
        score: float,
        reason: str,
        model_version: str,
        status: str,
        correct: bool | None,
        lang: str | None,
        now: float,
    ) -> int: ...

    async def counted_for_item(
        self, item_id: int, skill: str, default_skill: float
    ) -> list[RowLike]:
        """id, worker_id, payload, decision, model_version, skill of an item's counted
        answers."""

    async def recent_timings(self, user_id: int, limit: int = 10) -> list[tuple[float, str]]:
        """(seconds, item text) of the worker's latest answers."""

    async def with_reward(self, answer_id: int, *, open_appeal: bool = False) -> RowLike | None:
        """The answer row joined with its project's reward."""

    async def set_status(self, answer_id: int, status: str, reason: str | None = None) -> None: ...

    async def overrule_worker(self, user_id: int, reason: str) -> list[tuple[int, int]]:
        """Overrule a worker's counted answers on real items; (item_id, project_id) of each."""

    async def project_counts(self, project_id: int) -> RowLike:
        """ok, rej, workers of a project's answers."""

    async def counted_labels(self, project_id: int) -> list[tuple[int, int, str]]:
        """(item, worker, payload) of a project's counted answers."""

    async def worker_counts(self, user_id: int) -> RowLike:
        """n, ok, rej, gold, gold_ok of a worker's answers."""

    async def latest_appealable(self, user_id: int) -> int | None: ...

    async def own(self, answer_id: int, user_id: int) -> RowLike | None: ...

    async def open_appeal(self, answer_id: int, text: str) -> None: ...

    async def set_appeal(self, answer_id: int, state: str) -> None: ...

    async def agreement_per_worker(self, project_id: int, confidence: float) -> list[RowLike]:
        """worker_id, n, agree with confident results, per worker of a project."""

    async def identical_pairs(self, project_id: int, min_common: int) -> list[RowLike]:
        """w1, w2, common, same, against: pairs of workers with many common items."""

    async def for_export(self, project_id: int) -> list[RowLike]:
        """item_id, pseudonym, payload, status, score of a project's counted answers."""

    async def for_export_items(self, project_id: int, first: int, last: int) -> list[RowLike]:
        """Like ``for_export``, for the items with ids from ``first`` to ``last``."""


class ResultRepository(Protocol):
    async def delete(self, item_id: int) -> None:
        """An item has no result (any more)."""

    async def save_many(self, rows: Iterable[Sequence[Any]]) -> None:
        """(item_id, project_id, label, method, confidence, agreement, answers, now) rows."""

    async def save_online(
        self,
        item_id: int,
        project_id: int,
        label: str,
        confidence: float,
        agreement: float,
        answers: int,
        now: float,
        model_version: str | None,
        human_confidence: float,
    ) -> None:
        """The online estimate of one item, with the model's part in it (None: no model)."""

    async def means(self, project_id: int) -> tuple[float | None, float | None]:
        """(mean agreement, mean confidence) of a project's results."""


@dataclass(frozen=True, slots=True)
class ProjectModelRow:
    """The project model's latest version, calibration and earned trust (JSON)."""

    model_version: str
    temperature: float
    annotator: str
    accuracy: float | None
    ece: float | None
    trained_on: int
    confident_at_train: int


@dataclass(frozen=True, slots=True)
class OpenItemRow:
    item_id: int
    answered: int
    is_gold: bool
    label: str | None
    agreement: float | None


@dataclass(frozen=True, slots=True)
class VoteRow:
    probs: str  # JSON list
    model_version: str
    annotator: str  # JSON
    spec: str  # the project's spec JSON


@dataclass(frozen=True, slots=True)
class GoldResultRow:
    gold: str
    label: str
    agreement: float
    answers: int
    probs: str | None  # JSON list, None without a prediction


class PrelabelRepository(Protocol):
    """Model in the loop: predictions, the project model, the pick order, fairness."""

    async def project_spec(self, project_id: int) -> str | None: ...

    async def live_specs(self) -> list[tuple[int, str]]:
        """(project id, spec JSON) of live projects."""

    async def labelled(self, project_id: int, confidence: float) -> list[tuple[str, str]]:
        """(content, label) of gold items and results at ``confidence`` with a person."""

    async def contents(self, project_id: int) -> list[tuple[int, str]]:
        """(item id, content) of every item of a project."""

    async def confident_count(self, project_id: int, confidence: float) -> int: ...

    async def model(self, project_id: int) -> ProjectModelRow | None: ...

    async def save_predictions(
        self, project_id: int, model_version: str, rows: Sequence[tuple[int, str]], now: float
    ) -> None:
        """(item id, probabilities JSON) rows; one prediction per item, the latest wins."""

    async def trust_evidence(
        self, project_id: int, confidence: float
    ) -> list[tuple[int, str | None, str | None]]:
        """(item id, gold, label) of gold items and results the people alone were sure of."""

    async def save_model(self, project_id: int, row: ProjectModelRow, now: float) -> None: ...

    async def open_items(self, project_id: int) -> list[OpenItemRow]:
        """A project's open items with their current result."""

    async def plan(self, rows: Sequence[tuple[float, int, int]]) -> None:
        """(priority, target, item id) rows."""

    async def close_by_model(
        self,
        project_id: int,
        rows: Sequence[tuple[int, str, float]],
        model_version: str,
        now: float,
    ) -> None:
        """(item id, label, confidence): results the model alone gives; the items close."""

    async def vote(self, item_id: int) -> VoteRow | None: ...

    async def set_priority(self, item_id: int, priority: float) -> None: ...

    async def standing(self, user_id: int) -> tuple[int, float, int] | None:
        """(answers, best skill mean, gold seen) of a worker."""

    async def share(self, user_id: int, project_id: int) -> tuple[int, int]:
        """(the worker's counted answers, all counted answers) of a project."""

    async def gold_results(self, project_id: int) -> list[GoldResultRow]: ...

    async def answers_per_worker(self, project_id: int) -> list[int]: ...

    async def first_task_waits(self, project_id: int) -> list[float]:
        """Seconds from each worker's arrival to their first task of the project."""

    async def model_results(self, project_id: int) -> int:
        """Results the model took part in."""

    async def issue(self, item_id: int, worker_id: int, now: float) -> int:
        """Assign one given item to one worker; the assignment id."""

    async def pick_order(self, project_id: int) -> list[int]:
        """Open real item ids of a project in pick order."""

    async def external_ids(self, project_id: int) -> dict[str, int]: ...

    async def result_labels(self, project_id: int) -> dict[int, str]: ...


class CheckerStatsRepository(Protocol):
    async def observe_gold(self, project_id: int, version: str, agree: bool) -> tuple[int, int]:
        """Count one gold answer judged by ``version``; its (seen, agreed) so far."""

    async def observe_result(self, project_id: int, version: str, agree: bool) -> None: ...

    async def of_project(self, project_id: int) -> list[RowLike]: ...


class LedgerRepository(Protocol):
    async def lock_chain(self) -> None:
        """Serialise appends to the chain until the transaction ends."""

    async def has_ref(self, ref: str) -> bool: ...

    async def last(self) -> tuple[int, str, str | None] | None:
        """(seq, hash, mac) of the newest entry."""

    async def insert(self, e: LedgerEntry, mac: str) -> None:
        """Write the entry with its MAC and move the user's balance by its amount."""

    def chain(self) -> AsyncIterator[RowLike]:
        """Every entry (with its ``mac``) in sequence order, streamed."""

    async def totals(self) -> dict[str, int]:
        """Sum of amounts per kind."""

    async def add_checkpoint(self, n: int, body: str, mac: str) -> None: ...

    async def last_checkpoint(self) -> tuple[int, str, str] | None:
        """(n, canonical JSON body, mac) of the newest checkpoint."""

    async def missing_guards(self) -> list[str]:
        """Names of the append-only triggers that are missing, disabled or defanged."""

    async def project_spend(self, project_id: int) -> int: ...

    async def earned(self, user_id: int) -> int: ...

    async def entries(self, user_id: int | None, limit: int) -> list[LedgerEntry]: ...


class FlagRepository(Protocol):
    async def insert(
        self,
        kind: str,
        user_id: int | None,
        answer_id: int | None,
        project_id: int | None,
        evidence: Mapping[str, Any],
        now: float,
    ) -> int | None:
        """The new flag's id; None when the same flag is already open."""

    async def open(self, limit: int) -> list[Flag]: ...

    async def resolve_answer(
        self, answer_id: int, resolution: str, kind: str | None = None
    ) -> None:
        """Resolve the open flags on an answer (of one kind, or all)."""

    async def resolve_user(self, user_id: int, resolution: str) -> None:
        """Resolve the open flags on an account (not those on one of its answers)."""

    async def resolve(self, flag_id: int, resolution: str) -> None: ...


class PayoutRepository(Protocol):
    async def pending_sum(self, user_id: int) -> int: ...

    async def create(self, user_id: int, amount: int, now: float) -> int: ...

    async def pending(self) -> list[dict[str, Any]]: ...

    async def requested(self, payout_id: int) -> tuple[int, int] | None:
        """(user_id, amount) of a payout still waiting for a decision."""

    async def decide(self, payout_id: int, state: str, actor_id: int) -> None: ...


class TokenRepository(Protocol):
    async def create(self, user_id: int, action: str, payload: str, now: float) -> int: ...

    async def get(self, token_id: int, user_id: int) -> tuple[str, str] | None: ...

    async def first_delivery(self, platform: str, update_id: str, now: float) -> bool:
        """Record a delivered update; True the first time, False on a redelivery."""

    async def delivered(self, platform: str, update_id: str) -> bool:
        """True when the update has been recorded as handled."""


class LinkRepository(Protocol):
    async def create(self, code: str, user_id: int, platform: str, expires_at: float) -> None: ...

    async def get(self, code: str) -> tuple[int, float, bool] | None:
        """(user_id, expires_at, used) of a link code."""

    async def use(self, code: str) -> None: ...


class QuestionRepository(Protocol):
    """Questions about tasks and the FAQ entries pinned from them."""

    async def count_since(self, worker_id: int, since: float) -> int: ...

    async def create(
        self,
        worker_id: int,
        project_id: int,
        item_id: int | None,
        lang: str,
        text: str,
        now: float,
    ) -> int: ...

    async def get(self, question_id: int) -> QuestionRow | None: ...

    async def answer(self, question_id: int, by: int, text: str, now: float) -> bool:
        """Store the answer; False when there is no such question."""

    async def pinned(self, question_id: int) -> bool: ...

    async def pin(
        self, project_id: int, question_id: int, lang: str, question: str, answer: str, now: float
    ) -> None:
        """Record an FAQ entry (the project's instructions are updated separately)."""


class DashboardRepository(Protocol):
    """One-time login tokens (stored hashed) and the sessions they open."""

    async def create_login(
        self, token_hash: str, user_id: int, role: str, now: float, expires_at: float
    ) -> None:
        """Store a token; tokens expired for a day are deleted."""

    async def spend_login(self, token_hash: str, now: float) -> LoginRow | None:
        """Mark an unused, unexpired token used; None when there is none."""

    async def create_session(
        self, session_hash: str, user_id: int, role: str, now: float, expires_at: float
    ) -> None:
        """Store a session; expired sessions are deleted."""

    async def session(self, session_hash: str, now: float) -> tuple[int, str] | None:
        """(user_id, role) of a live session whose user still has that role, unblocked."""

    async def end_session(self, session_hash: str) -> None: ...


class DigestRepository(Protocol):
    """When digests went out, and what goes into them."""

    async def last(self, kind: str, target: str) -> float | None: ...

    async def mark(self, kind: str, targets: Sequence[str], now: float) -> None: ...

    async def workers_due(self, active_since: float, sent_before: float) -> list[int]:
        """Active workers who answered since ``active_since`` and got no "worker" digest
        after ``sent_before``."""

    async def window(self, user_id: int, start: float, end: float) -> AnswerWindow:
        """The worker's answers with start < created_at <= end."""

    async def earned_since(self, user_id: int, since: float) -> int: ...

    async def skill_health(self, user_id: int, threshold: float) -> tuple[int, int]:
        """(skills held, skills paused or under ``threshold``) among those with gold seen."""

    async def backlog(self) -> ModerationBacklog: ...


class ReportRepository(Protocol):
    """Read-only aggregates for reports, the dashboard and /metrics."""

    async def answer_times(self, project_id: int) -> list[float]:
        """When each counted answer was recorded, in order."""

    async def answers_by_language(self, project_id: int) -> list[tuple[str, int]]:
        """(item language, counted answers), most first."""

    async def gold_accuracy(self, project_id: int) -> list[float]:
        """Per worker: share right on check questions (empty when none was answered)."""

    async def result_agreement(self, project_id: int) -> list[float]:
        """Per worker: share of counted answers equal to the aggregated result."""

    async def confusion_gold(self, project_id: int) -> list[tuple[str, str, int]]:
        """(gold, answer, count) of answers to items with gold, overruled ones left out."""

    async def confusion_results(self, project_id: int) -> list[tuple[str, str, int]]:
        """(result, answer, count) of counted answers."""

    async def spend_times(self, project_id: int) -> list[tuple[float, int]]:
        """(time, amount) of the project's credits and their reversals, in ledger order."""

    async def model_assist(self, project_id: int, overlap: int) -> tuple[int, int]:
        """(results settled with a model's help, answers short of ``overlap`` in them)."""

    async def workers(self, project_ids: Sequence[int] | None) -> list[WorkerSummary]:
        """Per worker over the given projects (None: all), most answers first."""

    async def open_appeals(self) -> list[dict[str, Any]]:
        """id, project_id, pseudonym, payload, reason, appeal_text, created_at."""

    async def leaderboard(self, project_id: int, opt_in_key: str, limit: int) -> list[LeaderRow]:
        """Workers whose ``opt_in_key`` state is ``true``, most accepted answers first."""

    async def latest_project(self, user_id: int) -> int | None:
        """The project of the user's latest answer, or None."""

    async def totals(self) -> Totals: ...

    async def ping(self) -> bool: ...


class StateRepository(Protocol):
    """Per-user state that survives a restart: one JSON value per (user, key)."""

    async def get(self, user_id: int, key: str) -> tuple[str, float] | None:
        """(JSON value, updated_at), or None."""

    async def put(self, user_id: int, key: str, value: str, now: float) -> None:
        """Insert or replace the value."""

    async def delete(self, user_id: int, key: str) -> bool:
        """True when there was a value."""

    async def expire(self, key: str, before: float) -> int:
        """Delete the values of ``key`` last updated before ``before``; how many."""

    async def of_user(self, user_id: int) -> dict[str, str]:
        """Every stored value of the user, by key (for /mydata)."""

    async def forget_user(self, user_id: int) -> int:
        """Delete every stored value of the user (for /forgetme); how many."""


class Session(Protocol):
    """A read-only session or a transaction: the repositories."""

    @property
    def users(self) -> UserRepository: ...
    @property
    def languages(self) -> LanguageRepository: ...
    @property
    def skills(self) -> SkillRepository: ...
    @property
    def projects(self) -> ProjectRepository: ...
    @property
    def items(self) -> ItemRepository: ...
    @property
    def assignments(self) -> AssignmentRepository: ...
    @property
    def answers(self) -> AnswerRepository: ...
    @property
    def results(self) -> ResultRepository: ...
    @property
    def prelabels(self) -> PrelabelRepository: ...
    @property
    def checker_stats(self) -> CheckerStatsRepository: ...
    @property
    def ledger(self) -> LedgerRepository: ...
    @property
    def flags(self) -> FlagRepository: ...
    @property
    def payouts(self) -> PayoutRepository: ...
    @property
    def tokens(self) -> TokenRepository: ...
    @property
    def links(self) -> LinkRepository: ...
    @property
    def questions(self) -> QuestionRepository: ...
    @property
    def dashboard(self) -> DashboardRepository: ...
    @property
    def digests(self) -> DigestRepository: ...
    @property
    def reports(self) -> ReportRepository: ...
    @property
    def state(self) -> StateRepository: ...


class Transaction(Session, Protocol):
    """One state change; events added to its outbox are published after it commits."""

    @property
    def outbox(self) -> Outbox: ...


class Store(Protocol):
    """A database the engine runs on."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    def read(self) -> AbstractAsyncContextManager[Session]: ...

    async def diagnostics(self, project_id: int | None = None) -> Diagnostics: ...

    async def schema_version(self) -> int: ...

    async def peers(self, group: str) -> int:
        """Processes sharing ``group`` on this store, this one included (joins on first call).

        The outbound queues divide a platform's overall budget by it."""

    async def close(self) -> None: ...
