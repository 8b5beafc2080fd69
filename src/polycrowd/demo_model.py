"""The demo's model phase: the model pre-labels, people see only what it is unsure of.

A requester publishes a digits project (scikit-learn's 8x8 digit images, shipped on disk
with scikit-learn, as pixel vectors; 10 labels, every 10th item gold) with the model in
the loop (``model: {min_human_answers: 0, retrain_every: 10}``). Simulated workers, with
the real RTE workers' accuracies carried over to ten classes, answer through the chat as
in the first phase. Whenever enough confident results have arrived the project model
(pixels + logistic regression, temperature-scaled: ``polycrowd.models.prelabel``) retrains
in a worker thread, exactly as the scheduler's job does; items it is sure of close without
anyone, the rest are offered to people, unsure ones first. The phase reports the human
answers it took against what overlap 3 would have asked for (``saved_fraction``), and the
accuracy of the results against the digits' true labels.

Offline and a few seconds on CPU. Without scikit-learn (the ``ml`` extra) the phase is
skipped and says so.
"""

from __future__ import annotations

import asyncio
import csv
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from polycrowd.bot.app import App
from polycrowd.bot.memory import ChatMessage, MemoryChat, MemoryUser
from polycrowd.engine.services import prelabels

NAME = "Digits (model in the loop)"
LABELS = tuple(str(d) for d in range(10))
BASE_OVERLAP = 3  # what polycrowd asks of people without the model
GOLD_EVERY = 5
WORKERS = 10


@dataclass
class Sim:
    user: MemoryUser
    accuracy: float  # on ten classes


def digits(n: int, rng: random.Random) -> list[tuple[str, str]] | None:
    """``n`` random (pixel vector, label) pairs of scikit-learn's digits; None without it."""
    try:
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    except ImportError:
        return None
    d = load_digits()
    order = list(range(len(d.target)))
    rng.shuffle(order)
    return [(" ".join(str(int(v)) for v in d.data[i]), str(int(d.target[i]))) for i in order[:n]]


def _spec() -> bytes:
    return (
        f"name: {NAME}\n"
        "type: choice\n"
        f"labels: [{', '.join(LABELS)}]\n"
        "languages: [en]\n"
        'instructions: "Which digit is this 8x8 image (grey values, row by row)?"\n'
        f"overlap: {{min: {BASE_OVERLAP}, max: 5}}\n"
        "confidence_target: 0.95\n"
        "reward: 5\n"
        "gold_ratio: 0.1\n"
        "qualification: 3\n"
        "assignment_ttl: 600\n"
        "model: {min_human_answers: 0, retrain_every: 10}\n"
    ).encode()


def _items_csv(rows: Sequence[tuple[str, str]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "text", "lang", "gold"])
    for n, (pixels, label) in enumerate(rows):
        w.writerow([f"digit-{n}", pixels, "en", label if n % GOLD_EVERY == 0 else ""])
    return buf.getvalue().encode()


def _sims(accs: Sequence[float], rng: random.Random) -> list[Sim]:
    k = len(LABELS)
    out = []
    for i in range(WORKERS):
        a = rng.choice(accs)
        # binary accuracy a -> skill above chance on k classes (as bench/active.py does)
        acc = 1 / k + max(0.0, 2 * a - 1) * (1 - 1 / k)
        out.append(Sim(MemoryUser(str(5000 + i), f"digits{i}", "en"), acc))
    return out


def _truth_of(msg: ChatMessage, truth: dict[str, str]) -> str | None:
    return next((truth[line] for line in msg.text.splitlines() if line in truth), None)


async def _work(
    chat: MemoryChat, w: Sim, truth: dict[str, str], rng: random.Random, clock: Any, n: int
) -> int:
    done = 0
    msgs = await chat.command(w.user, "/task")
    while done < n:
        task = next((m for m in msgs if m.reply.kind == "task" and m.buttons), None)
        right = None if task is None else _truth_of(task, truth)
        if task is None or right is None:
            break
        wrong = [lab for lab in LABELS if lab != right]
        label = right if rng.random() < w.accuracy else rng.choice(wrong)
        clock.advance(rng.uniform(8.0, 15.0))  # 64 grey values: an honest look
        aid = task.button_data[0].split(":")[1]
        msgs = await chat.press(w.user, f"a:{aid}:{LABELS.index(label)}", task.id)
        done += 1
        await asyncio.sleep(0)
    return done


async def _retrain(
    app: App, project_id: int, predictor: prelabels.Predictor, *, first: bool = False
) -> bool:
    """What the scheduler's retrain job does for one project (engine/scheduler.py); the
    ``first`` one, as ``polycrowd model train`` does, on whatever there is (the gold)."""
    project = await app.engine.get_project(project_id)
    async with app.engine.db.read() as tx:
        if not first and not await prelabels.needs_training(tx, project):
            return False
        examples, items = await prelabels.training_data(tx, project)
    pred = await asyncio.to_thread(predictor.train_predict, list(LABELS), examples, items)
    if not pred.probs:
        return False
    async with app.engine.db.transaction() as tx:
        await prelabels.store_predictions(tx, project, pred, app.engine.clock())
    return True


async def model_phase(
    app: App,
    chat: MemoryChat,
    requester: MemoryUser,
    accs: Sequence[float],
    rng: random.Random,
    clock: Any,
    n_items: int = 150,
) -> dict[str, Any]:
    """Run the phase; its figures under ``model_*`` keys (``model_phase`` False if skipped)."""
    rows = digits(n_items, rng)
    if rows is None:
        return {"model_phase": False}
    from polycrowd.models.prelabel import image_prelabeler

    # the earlier phases are over: only this project is live
    for pid in await app.engine.live_projects():
        await app.engine.set_state(None, pid, "paused")
    await chat.upload(requester, "digits.yaml", _spec())
    await chat.upload(requester, "digits.csv", _items_csv(rows))
    await chat.command(requester, "/launch")
    project_id = max(p.id for p in await app.engine.projects() if p.name == NAME)
    truth = {pixels: label for pixels, label in rows}
    sims = _sims(accs, rng)
    for w in sims:
        await chat.command(w.user, "/start")
        await chat.press(w.user, "lok")
    predictor = image_prelabeler(seed=rng.randrange(1 << 30))
    # the first model learns from the requester's gold alone, before anyone answers; then
    # one task per worker a round, the model retraining as confident results come in
    trainings = int(await _retrain(app, project_id, predictor, first=True))
    for _ in range(400):
        counts = await asyncio.gather(*(_work(chat, w, truth, rng, clock, 1) for w in sims))
        await app.flush()
        trainings += await _retrain(app, project_id, predictor)
        if sum(counts) == 0:
            break
    results = [r for r in await app.engine.export_rows(project_id) if r["gold"] is None]
    answered = sum(
        1 for r in results for a in r["worker_answers"] if a["status"] in ("accepted", "review")
    )
    labels = {f"digit-{n}": label for n, (_, label) in enumerate(rows)}
    correct = sum(1 for r in results if r["label"] is not None and labels[r["item"]] == r["label"])
    project = await app.engine.get_project(project_id)
    async with app.engine.db.read() as tx:
        loop = await prelabels.status(tx, project)
    baseline = BASE_OVERLAP * len(results)
    return {
        "model_phase": True,
        "model_items": len(results),
        "model_human_answers": answered,
        "model_baseline_answers": baseline,
        "model_saved_fraction": round(1 - answered / baseline, 4) if baseline else None,
        "model_accuracy_results": round(correct / len(results), 4) if results else None,
        "model_closed_alone": sum(1 for r in results if not r["worker_answers"]),
        "model_version": loop.model_version,
        "model_accuracy": None if loop.accuracy is None else round(loop.accuracy, 4),
        "model_ece": None if loop.ece is None else round(loop.ece, 4),
        "model_trainings": trainings,
    }


def summary_lines(r: dict[str, Any]) -> list[str]:
    if not r.get("model_phase"):
        return ["  model in the loop: skipped (scikit-learn is not installed: the ml extra)"]
    acc = r["model_accuracy_results"]
    return [
        f"  model in the loop on {r['model_items']} digit images: people gave "
        f"{r['model_human_answers']} answers instead of {r['model_baseline_answers']} "
        f"(saved {100 * (r['model_saved_fraction'] or 0):.0f}%), "
        f"{r['model_closed_alone']} items closed by the model alone; "
        f"accuracy {100 * (acc or 0):.1f}% ({r['model_trainings']} trainings, model "
        f"{r['model_version']}, ECE {r['model_ece']})",
    ]
