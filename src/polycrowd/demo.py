"""``polycrowd demo``: the whole loop offline, in one process.

A requester publishes an entailment project built from real crowd data (300 RTE items
with gold, shipped in ``polycrowd/data``), uploads the items as a CSV through the chat,
and launches it. Simulated workers in three languages start the bot, pick their languages
with buttons and answer tasks by pressing buttons, every answer going through the checker
and the ledger. Their accuracies are drawn from the real RTE workers' accuracies, and a
share of them are spammers (always the same button, or random). A moderator blocks the
workers the fraud rules flag. Then the project is aggregated, exported and the ledger is
audited. The items are English; the demo tags them en/es/ru round robin so that routing by
language is exercised. A second phase (:mod:`polycrowd.demo_text`) has other workers
paraphrase and translate in Spanish, Arabic and Hindi, with good and bad replies, and
reports per language how many bad replies the checker caught and good ones it accepted.
A third (:mod:`polycrowd.demo_model`) puts the model in the loop on digit images: it
pre-labels, people see only what it is unsure of, and the saving is reported.
"""

from __future__ import annotations

import asyncio
import csv
import io
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from polycrowd.bot.app import App, build_app
from polycrowd.bot.memory import MemoryChat, MemoryUser
from polycrowd.demo_model import model_phase
from polycrowd.demo_model import summary_lines as model_lines
from polycrowd.demo_text import summary_lines, text_phase
from polycrowd.engine.checking import Checker
from polycrowd.engine.io import InputError
from polycrowd.engine.types import Role
from polycrowd.settings import Settings

LANGS = ("en", "es", "ru")
LABELS = ("yes", "no")  # RTE: 1 = entailed -> yes
INSTRUCTIONS = {
    "en": "Does the text entail the hypothesis? Answer yes or no.",
    "es": "¿El texto implica la hipótesis? Responde sí (yes) o no (no).",
    "ru": "Следует ли гипотеза из текста? Ответьте yes или no.",
}


class SimClock:
    """Simulated time: workers' think time advances it, so answer times look human."""

    def __init__(self) -> None:
        self.t = time.time()

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class SimWorker:
    user: MemoryUser
    langs: tuple[str, ...]
    accuracy: float
    kind: str  # good | spam_same | spam_random


def _load_sample() -> tuple[list[tuple[str, str]], list[float]]:
    data = resources.files("polycrowd") / "data"
    rows = list(csv.DictReader(io.StringIO((data / "rte_sample.tsv").read_text()), delimiter="\t"))
    items = [(r["item"], "yes" if r["gold"] == "1" else "no") for r in rows]
    accs = [float(x) for x in (data / "rte_worker_accuracy.txt").read_text().split()]
    return items, accs


def _items_csv(items: list[tuple[str, str]], gold_every: int) -> tuple[bytes, dict[str, str]]:
    """Items as the requester's CSV; every ``gold_every``-th item carries its gold answer."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "text", "lang", "gold"])
    truth: dict[str, str] = {}
    for n, (item, label) in enumerate(items):
        lang = LANGS[n % len(LANGS)]
        is_gold = n % gold_every == 0
        text = f"RTE pair {item}: text and hypothesis #{item} ({lang})."
        w.writerow([f"rte-{item}", text, lang, label if is_gold else ""])
        truth[f"rte-{item}"] = label
    return buf.getvalue().encode(), truth


def _spec(reward: int) -> bytes:
    return (
        "name: RTE entailment (demo)\n"
        "type: choice\n"
        "labels: [yes, no]\n"
        "languages: [en, es, ru]\n"
        "instructions:\n"
        + "".join(f'  {k}: "{v}"\n' for k, v in INSTRUCTIONS.items())
        + "overlap: {min: 3, max: 7}\n"
        "confidence_target: 0.93\n"
        f"reward: {reward}\n"
        "gold_ratio: 0.1\n"
        "qualification: 2\n"
        "min_skill: 0.6\n"
        "assignment_ttl: 600\n"
    ).encode()


def _workers(n: int, accs: list[float], rng: random.Random) -> list[SimWorker]:
    out: list[SimWorker] = []
    for i in range(n):
        primary = LANGS[i % len(LANGS)]
        langs = (primary,) if rng.random() < 0.7 else (primary, rng.choice(LANGS))
        kind = "good"
        if i % 10 == 9:
            kind = "spam_same"
        elif i % 10 == 4 and i > 20:
            kind = "spam_random"
        acc = rng.choice(accs) if kind == "good" else 0.5
        user = MemoryUser(id=str(1000 + i), name=f"worker{i}", locale=primary)
        out.append(SimWorker(user, tuple(dict.fromkeys(langs)), acc, kind))
    return out


async def _onboard(chat: MemoryChat, w: SimWorker) -> None:
    await chat.command(w.user, "/start")
    # /start pre-selects the platform locale; add the others with the language buttons
    for lang in w.langs[1:]:
        await chat.press(w.user, f"l:{lang}")
    await chat.press(w.user, "lok")


def _choose(w: SimWorker, truth: str, rng: random.Random) -> str:
    if w.kind == "spam_same":
        return "yes"
    if w.kind == "spam_random":
        return rng.choice(LABELS)
    return truth if rng.random() < w.accuracy else next(x for x in LABELS if x != truth)


async def _work(
    chat: MemoryChat,
    w: SimWorker,
    truth: dict[str, str],
    rng: random.Random,
    max_tasks: int,
    clock: SimClock,
) -> int:
    done = 0
    msgs = await chat.command(w.user, "/task")
    while done < max_tasks and msgs:
        task_msg = next((m for m in msgs if m.reply.kind == "task" and m.buttons), None)
        if task_msg is None:
            break
        ext = _external_id(task_msg.text)
        label = _choose(w, truth[ext], rng)
        clock.advance(rng.uniform(0.1, 0.4) if w.kind == "spam_random" else rng.uniform(0.6, 2.0))
        aid = task_msg.button_data[0].split(":")[1]
        msgs = await chat.press(w.user, f"a:{aid}:{LABELS.index(label)}", task_msg.id)
        done += 1
        await asyncio.sleep(0)
    return done


def _external_id(text: str) -> str:
    marker = "RTE pair "
    start = text.index(marker) + len(marker)
    return "rte-" + text[start:].split(":", 1)[0]


class DemoTargetError(InputError):
    """The demo refuses a database it would mix its fake users and projects into."""


async def run_demo(
    workers: int = 60,
    seed: int = 7,
    db_path: str | None = None,
    checker: Checker | None = None,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the demo. With ``db_path`` the finished demo database is kept there: a SQLite
    file is built in a temporary folder and moved into place only when the demo succeeded
    (a crash leaves nothing behind); the path must be new (or an empty file) - the demo never
    mixes its 60-odd fake users into a database that has data. A PostgreSQL database must
    have no users and no projects."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    say = progress or (lambda _msg: None)
    base = settings or Settings()
    is_pg = db_path is not None and db_path.startswith(("postgresql://", "postgres://"))
    target = None if db_path is None or is_pg else _demo_target(Path(db_path), base)
    if is_pg:
        await _refuse_data(base.with_db(db_path))
    with tempfile.TemporaryDirectory(prefix="polycrowd-demo-") as tmp:
        work_db = str(db_path) if is_pg else str(Path(tmp) / "demo.db")
        settings = base.with_db(work_db)
        app = await build_app(settings, checker=checker)
        app.engine.rng = random.Random(seed)
        clock = SimClock()
        app.engine.clock = clock.now
        try:
            result = await _run(app, workers, rng, say, tmp, clock)
        finally:
            await app.close()
        if target is not None:
            _move_demo_db(Path(work_db), target, base)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


def _demo_target(path: Path, settings: Settings) -> Path:
    """The SQLite file the demo may create: new, or an empty regular file."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise DemoTargetError(f"{path} is not a regular file; give the demo a new file name")
    if path.exists() and path.stat().st_size > 0:
        raise DemoTargetError(
            f"{path} already exists: the demo writes a new database (remove it or pick a new"
            " name); it never adds its fake users to one that has data"
        )
    side = [Path(f"{path}{suffix}") for suffix in ("-wal", ".ledger.key", ".checkpoints")]
    if not settings.ledger_key and not settings.ledger_key_file and any(p.exists() for p in side):
        raise DemoTargetError(f"{path}: files of an earlier database are beside it; remove them")
    if not path.parent.is_dir():
        raise DemoTargetError(f"cannot write {path}: the folder does not exist")
    return path


def _move_demo_db(work: Path, target: Path, settings: Settings) -> None:
    """The closed demo database (and the ledger key and checkpoints beside it, unless the
    settings keep them elsewhere) into place; the database moves last."""
    moves = [(Path(f"{work}{s}"), Path(f"{target}{s}")) for s in ("-wal", "-shm")]
    if not settings.ledger_key and not settings.ledger_key_file:
        moves.append((Path(f"{work}.ledger.key"), Path(f"{target}.ledger.key")))
    if not settings.checkpoint_file:
        moves.append((Path(f"{work}.checkpoints"), Path(f"{target}.checkpoints")))
    for src, dst in [*moves, (work, target)]:
        if src.exists():
            shutil.move(src, dst)


async def _refuse_data(settings: Settings) -> None:
    from polycrowd.engine.store import open_store

    db = await open_store(settings.db, create=True)
    try:
        async with db.read() as tx:
            has_data = bool(await tx.projects.ids(None)) or await tx.users.get(1) is not None
    finally:
        await db.close()
    if has_data:
        raise DemoTargetError(
            "the database already has users or projects: the demo needs an empty one"
        )


async def _run(
    app: App,
    n_workers: int,
    rng: random.Random,
    say: Callable[[str], None],
    tmp: str,
    clock: SimClock,
) -> dict[str, Any]:
    chat = MemoryChat(app.dispatcher, app.translator)
    app.add_adapter(chat)  # type: ignore[arg-type]
    items, accs = _load_sample()
    requester = MemoryUser("1", "requester", "en")
    moderator = MemoryUser("2", "moderator", "en", admin_chat=True)
    for u, role in ((requester, Role.REQUESTER), (moderator, Role.MODERATOR)):
        user, _ = await app.engine.user_for("memory", u.id, u.name, u.locale)
        await app.engine.bootstrap_role(user.id, role)

    say("requester publishes the project and uploads items")
    await chat.upload(requester, "rte.yaml", _spec(reward=5))
    items_csv, truth = _items_csv(items, gold_every=10)
    await chat.upload(requester, "items.csv", items_csv)
    await chat.command(requester, "/launch")

    sims = _workers(n_workers, accs, rng)
    say(f"{len(sims)} workers start and pick their languages")
    for w in sims:
        await _onboard(chat, w)

    say("workers answer tasks")
    rounds = 0
    while True:
        rounds += 1
        counts = await asyncio.gather(*(_work(chat, w, truth, rng, 5, clock) for w in sims))
        await app.flush()
        await _moderate(chat, moderator)
        if sum(counts) == 0 or rounds > 200:
            break
    rte_id = (await app.engine.projects())[0].id
    await chat.command(requester, f"/pause {rte_id}")  # labelling is over; text tasks next
    say("workers paraphrase and translate in three languages; the checker judges each reply")
    text = await text_phase(app, chat, requester, rng, clock)
    say("the model pre-labels digit images; people label only what it is unsure of")
    model = await model_phase(app, chat, requester, accs, rng, clock)
    say("aggregate, export and audit")
    project_id = (await app.engine.projects())[0].id
    agg = await app.engine.aggregate_project(project_id)
    await app.engine.scan_fraud(project_id)
    out = Path(tmp) / "results.csv"
    with out.open("w", encoding="utf-8", newline="") as fh:
        exported = await app.engine.export(project_id, fh, "csv")
    report = await app.engine.audit()
    stats = await _invariants(app, project_id, truth)
    status = await app.engine.status(project_id)
    return {
        **stats,
        "workers": len(sims),
        "spammers": sum(1 for w in sims if w.kind != "good"),
        "blocked": stats.pop("blocked"),
        "items": status.items - status.gold_items,
        "items_done": status.done_items,
        "exported_rows": exported,
        "method": agg.get("method"),
        "krippendorff_alpha": None if agg.get("alpha") is None else round(agg["alpha"], 4),
        "credits_total": report.total,
        "ledger_entries": report.entries,
        "ledger_ok": report.ok,
        "flags": stats.pop("flags"),
        **text,
        **model,
    }


async def _moderate(chat: MemoryChat, moderator: MemoryUser) -> None:
    """The moderator blocks workers flagged for always pressing the same button."""
    cards = chat.history(chat.admin_chat_id)
    for card in cards:
        if card.edited or "always the same label" not in card.text:
            continue
        try:
            data = card.button(data_prefix="mod:ub:")
        except LookupError:
            continue
        await chat.press(moderator, data, card.id)


async def _invariants(app: App, project_id: int, truth: dict[str, str]) -> dict[str, Any]:
    diag = await app.engine.diagnostics()
    results = [r for r in await app.engine.export_rows(project_id) if r["label"] is not None]
    correct = sum(1 for r in results if truth.get(r["item"]) == r["label"])
    return {
        "assignments": diag.assignments,
        "answers": diag.answers,
        "routed_in_worker_language": diag.routed_in_worker_language,
        "duplicate_assignments": diag.duplicate_assignments,
        "over_assigned_items": diag.over_assigned_items + diag.miscounted_items,
        "accuracy": round(correct / len(results), 4) if results else None,
        "blocked": diag.blocked_users,
        "flags": dict(diag.flags_by_kind),
    }


def summary(result: dict[str, Any]) -> str:
    r = result
    return "\n".join(
        [
            f"polycrowd demo: {r['workers']} workers ({r['spammers']} spammers) in "
            f"{len(LANGS)} languages labelled {r['items']} RTE items.",
            f"  assignments {r['assignments']}, accepted answers {r['answers']}, "
            f"items done {r['items_done']}",
            f"  routed in the worker's language: {100 * r['routed_in_worker_language']:.1f}%, "
            f"duplicate assignments: {r['duplicate_assignments']}, "
            f"over-assigned items: {r['over_assigned_items']}",
            f"  accuracy against gold ({r['method']}): {100 * (r['accuracy'] or 0):.1f}%, "
            f"Krippendorff's alpha {r['krippendorff_alpha']}",
            f"  blocked by the moderator: {r['blocked']}, flags: {r['flags']}",
            f"  paraphrases and translations in {', '.join(r['text_languages'])}: "
            f"{r['text_answers']} accepted ({r['text_review']} sent to review),"
            f" {r['text_rejections']} rejected by the checker"
            f" ({', '.join(r['checker_versions'])})",
            *summary_lines(r),
            *model_lines(r),
            f"  credits {r['credits_total'] / 100:.2f} in {r['ledger_entries']} ledger entries, "
            f"audit {'OK' if r['ledger_ok'] else 'FAILED'}",
            f"  {r['seconds']:.1f} s",
        ]
    )


def main_sync(**kw: Any) -> dict[str, Any]:
    return asyncio.run(run_demo(**kw))
