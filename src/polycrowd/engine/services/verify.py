"""Create-then-verify for free-text projects (issue 15, point 6).

A text project whose spec says ``verify: {overlap: 2}`` gets a companion *verify project*
when it is created: a yes/no choice project in the target language (instructions and
button names in every shipped language). Each accepted answer to the text project spawns
one verify item there (the original text, a line, the answer; external id ``a<answer id>``)
for other workers: the creator holds a closed (skipped) assignment on it, so the one
indexed pick never offers it to them.

The creator is credited when the answer is accepted, but that credit is *pending*: the
source item does not close on answers alone. When the verify item closes,

* on "yes" the verified answer becomes the source item's result and the item closes; the
  credit is final;
* on "no" the answer is overruled with a reason the creator can read (and appeal), the
  credit is reversed by a new ``correction`` ledger entry (the ledger is append-only; the
  reference is the one a moderator's reversal uses, so a credit is never reversed twice),
  and the source item's slot reopens for another creator.

The spec is kept in the project's stored spec (``verify``): ``{overlap, reward, project}``
on the text project, ``{of: "answers"}`` on its verify project.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from polycrowd.engine import ledger
from polycrowd.engine.domain import AnswerStatus, ItemState, ProjectState, TaskType
from polycrowd.engine.io import ProjectSpec
from polycrowd.engine.store.base import Session, Transaction
from polycrowd.engine.types import Item, Project, RowLike
from polycrowd.i18n import N_, Translator

YES, NO = "yes", "no"
SEPARATOR = "\n———\n"
EXTERNAL_PREFIX = "a"
#: A verify item closes when its people agree this much (two average workers saying the
#: same thing: 0.8); a split asks more, up to 2 * overlap - 1 people (no tie at the end).
CONFIDENCE = 0.75
INSTRUCTIONS = N_(
    "Check another worker's answer to this task: “%(task)s” Above the line is the original,"
    " below it the answer. Is the answer correct and complete?"
)
REVERSED = N_(
    "Other workers did not confirm this answer, so its credit was reversed. You can appeal."
)
COUNTED = (AnswerStatus.ACCEPTED, AnswerStatus.REVIEW)


@dataclass(frozen=True, slots=True)
class VerifyConfig:
    """A project's ``verify`` setting: ``project`` on a text project whose answers are
    verified (its verify project's id), ``checks`` on a verify project."""

    overlap: int = 2
    reward: int | None = None
    project: int | None = None
    checks: bool = False

    @classmethod
    def parse(cls, raw: Any) -> VerifyConfig:
        if not isinstance(raw, Mapping):
            return cls()
        project = raw.get("project")
        return cls(
            overlap=int(raw.get("overlap", 2)),
            reward=None if raw.get("reward") is None else int(raw["reward"]),
            project=None if project is None else int(project),
            checks=raw.get("of") == "answers",
        )


class Uncounter(Protocol):
    """What a rejected answer needs from scoring: its item's slot reopens."""

    async def uncount(self, tx: Transaction, project: Project, item_id: int) -> None: ...


def config_of(project: Project) -> VerifyConfig:
    """The project's verify setting, as loaded with the project (no query)."""
    return VerifyConfig.parse(project.verify)


async def config(tx: Session, project_id: int) -> VerifyConfig:
    import json

    spec = await tx.prelabels.project_spec(project_id)
    return VerifyConfig.parse(json.loads(spec or "{}").get("verify"))


def companion_spec(spec: ProjectSpec, translator: Translator | None = None) -> ProjectSpec:
    """The verify project of a text project: yes/no in the target language, worded in every
    shipped language. Reads the catalogs: call it in a worker thread."""
    tr = translator or Translator()
    cfg = VerifyConfig.parse(spec.verify)
    langs = (spec.target_lang,) if spec.target_lang else spec.languages
    shown = sorted({"en", *tr.languages, *langs})
    task = dict(spec.instructions)
    source = next(iter(task.values()), "")
    instructions = {
        lang: tr.gettext(lang, INSTRUCTIONS) % {"task": task.get(lang, source).strip()}
        for lang in shown
    }
    names = {
        lang: {YES: tr.gettext(lang, N_("Yes")), NO: tr.gettext(lang, N_("No"))} for lang in shown
    }
    return ProjectSpec(
        name=f"{spec.name} · verify"[:200],
        task_type=TaskType.CHOICE,
        instructions=instructions,
        labels=(YES, NO),
        languages=tuple(langs),
        overlap=cfg.overlap,
        overlap_max=max(cfg.overlap, 2 * cfg.overlap - 1),
        confidence_target=CONFIDENCE,
        reward=spec.reward if cfg.reward is None else cfg.reward,
        qualification=0,
        assignment_ttl=spec.assignment_ttl,
        label_names=names,
        verify={"of": "answers"},
    )


async def create_companion(
    tx: Transaction, owner_id: int | None, spec: ProjectSpec, companion: ProjectSpec, now: float
) -> ProjectSpec:
    """Create the (live, empty) verify project; the text project's spec, pointing at it."""
    cid = await tx.projects.create(owner_id, companion, now)
    await tx.projects.set_state(cid, ProjectState.LIVE)
    return replace(spec, verify={**spec.verify, "project": cid})


async def spawn(
    tx: Transaction,
    cfg: VerifyConfig,
    project: Project,
    item: Item,
    answer_id: int,
    creator_id: int,
    answer: str,
    lang: str | None,
    now: float,
) -> int | None:
    """One verify item for an accepted answer, never offered to its creator. Its id."""
    if cfg.project is None:
        return None
    external = f"{EXTERNAL_PREFIX}{answer_id}"
    if await tx.items.by_external(cfg.project, external) is not None:
        return None  # already spawned (a redelivered answer)
    verify_lang = project.target_lang or lang or item.lang
    content = f"{item.content.strip()}{SEPARATOR}{answer.strip()}"
    await tx.items.insert_many(
        [(cfg.project, external, content, verify_lang, None, 0, cfg.overlap, now)]
    )
    vid = await tx.items.by_external(cfg.project, external)
    assert vid is not None
    # The creator holds a closed assignment on it: the pick skips items a worker has seen.
    aid = await tx.prelabels.issue(vid, creator_id, now)
    await tx.assignments.skip(aid, creator_id)
    await tx.projects.reopen(cfg.project, now)  # it is done whenever it has nothing open
    return vid


async def decide(
    tx: Transaction,
    scoring: Uncounter,
    verify_item_id: int,
    label: str,
    confidence: float,
    agreement: float,
    now: float,
    keyring: Any,
) -> str | None:
    """A verify item closed with ``label``: make the creator's credit final (and the answer
    the source item's result) or reverse it. Returns "verified", "rejected" or None."""
    item = await tx.items.get(verify_item_id)
    if item is None or not item.external_id.startswith(EXTERNAL_PREFIX):
        return None
    answer_id = int(item.external_id[len(EXTERNAL_PREFIX) :])
    row = await tx.answers.with_reward(answer_id)
    if row is None or row["status"] not in COUNTED:
        return None  # gone, or a moderator already overruled it
    source = await tx.projects.get(int(row["project_id"]))
    src = await tx.items.get(int(row["item_id"]))
    if source is None or src is None:
        return None
    if label == YES:
        if src.state == ItemState.OPEN:
            await _close(tx, source, src, str(row["payload"]), confidence, agreement, now)
        return "verified"
    await tx.answers.set_status(answer_id, AnswerStatus.OVERRULED, REVERSED)
    if row["reward"]:
        await ledger.append(
            tx,
            int(row["worker_id"]),
            "correction",
            -int(row["reward"]),
            f"reverse:p{row['project_id']}:a{row['assignment_id']}",
            memo=f"answer {answer_id} not confirmed by verification",
            now=now,
            keyring=keyring,
        )
    await scoring.uncount(tx, source, src.id)
    return "rejected"


async def _close(
    tx: Transaction,
    source: Project,
    src: Item,
    payload: str,
    confidence: float,
    agreement: float,
    now: float,
) -> None:
    """A verified answer is the source item's result; the item (maybe the project) is done."""
    await tx.results.save_online(
        src.id, source.id, payload, confidence, agreement, src.answered, now, None, confidence
    )
    await tx.items.set_estimate(src.id, confidence, src.target, ItemState.DONE)
    if not await tx.items.any_open(source.id):
        await tx.projects.set_state(source.id, ProjectState.DONE)


async def settle(
    tx: Transaction,
    cfg: VerifyConfig,
    project: Project,
    item_id: int,
    rows: Sequence[RowLike],
    now: float,
) -> None:
    """An item of a verified project after its counted answers changed (``rows``: those
    still standing). A done item keeps its result while a verified answer stands behind it;
    an open one (a moderator overruled the verified answer, or no check said yes yet) takes
    another standing, verified answer as its result, or has none: an answer nobody confirmed
    is never the result."""
    item = await tx.items.get(item_id)
    if item is None or item.state == ItemState.DONE:
        return  # only verify.decide closes an item
    for r in rows:
        answer_id = int(r["id"])
        if await state(tx, cfg, answer_id) == "verified":
            vid = await tx.items.by_external(cfg.project or 0, f"{EXTERNAL_PREFIX}{answer_id}")
            checked = None if vid is None else await tx.items.get(vid)
            conf = 1.0 if checked is None else checked.confidence
            await _close(tx, project, item, str(r["payload"]), conf, conf, now)
            return
    await tx.results.delete(item_id)


async def withdraw(tx: Transaction, source_id: int, answer_id: int) -> None:
    """A moderator overruled an answer before its check ended: nobody is asked to check it."""
    cfg = await config(tx, source_id)
    if cfg.project is None:
        return
    vid = await tx.items.by_external(cfg.project, f"{EXTERNAL_PREFIX}{answer_id}")
    item = None if vid is None else await tx.items.get(vid)
    if item is None or item.state != ItemState.OPEN:
        return
    await tx.items.set_estimate(item.id, item.confidence, item.target, ItemState.DONE)
    if not await tx.items.any_open(cfg.project):
        await tx.projects.set_state(cfg.project, ProjectState.DONE)


async def pending_credit(tx: Session, user_id: int) -> int:
    """What a worker was credited for answers that other workers have not checked yet: not
    final, so not paid out (a "no" reverses it)."""
    total = 0
    configs: dict[int, VerifyConfig] = {}
    for checker_id, external in await tx.items.awaiting_check(user_id, EXTERNAL_PREFIX):
        digits = external[len(EXTERNAL_PREFIX) :]
        if not digits.isdigit():
            continue
        row = await tx.answers.with_reward(int(digits))
        if row is None or int(row["worker_id"]) != user_id or row["status"] not in COUNTED:
            continue
        source = int(row["project_id"])
        if source not in configs:
            configs[source] = await config(tx, source)
        if configs[source].project == checker_id:  # the check of this very answer
            total += int(row["reward"] or 0)
    return total


async def state(tx: Session, cfg: VerifyConfig, answer_id: int) -> str | None:
    """pending | verified | rejected for one answer of a verified project (None: none)."""
    if cfg.project is None:
        return None
    vid = await tx.items.by_external(cfg.project, f"{EXTERNAL_PREFIX}{answer_id}")
    item = None if vid is None else await tx.items.get(vid)
    if item is None:
        return None
    if item.state == ItemState.OPEN:
        return "pending"
    row = await tx.answers.with_reward(answer_id)
    return "rejected" if row is not None and row["status"] not in COUNTED else "verified"
