"""``polycrowd model train|status PROJECT`` and ``polycrowd replay LABELS.tsv``.

``model train`` fits the project model (frozen encoder embeddings, or pixels for image
projects, + logistic regression, temperature-scaled) on the project's gold and confident
results, stores a prediction for every item and re-plans the open items (priority order,
fewer people where the model is sure). ``model status`` shows the model's version,
held-out accuracy, calibration (ECE), its earned weight as a voter, accuracy by difficulty
band, Gini of answers and the median time to a first task.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from polycrowd.settings import Settings

Cmd = Callable[[str, str, str], argparse.ArgumentParser]


def add_parsers(cmd: Cmd) -> None:
    m = cmd(
        "model",
        "Train the project model that pre-labels items, or show its accuracy and calibration.",
        "polycrowd model train 1 && polycrowd model status 1 --json",
    )
    m.add_argument("action", choices=["train", "status"])
    m.add_argument("project", type=int)
    m.add_argument("--encoder", help="encoder folder (default: MiniLM; an e5 folder works)")
    m.add_argument("--json", action="store_true", help="print JSON")
    r = cmd(
        "replay",
        "Replay a past crowd dataset through the engine and print what it would have saved.",
        "polycrowd replay labels.tsv --gold gold.tsv --items items.tsv --overlap 3 5",
    )
    r.add_argument("labels", help="TSV with columns item, worker, label (one header line)")
    r.add_argument("--items", help="TSV item, content (texts, or pixels/image paths)")
    r.add_argument("--gold", help="TSV item, label: accuracy is measured on these")
    r.add_argument(
        "--overlap",
        type=int,
        nargs="+",
        default=[3, 5],
        metavar="N",
        help="overlap min [max] (default 3 5)",
    )
    r.add_argument("--confidence", type=float, default=0.95, help="confidence target")
    r.add_argument(
        "--min-human-answers",
        type=int,
        default=1,
        help="people per item when the model is sure (default 1)",
    )
    r.add_argument("--image", action="store_true", help="items are images (pixel model)")
    r.add_argument("--encoder", help="encoder folder for text items (default: MiniLM)")
    r.add_argument("--seed", type=int, default=0)


def _model(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.engine.core import Engine
    from polycrowd.engine.language import LanguageDetector
    from polycrowd.engine.services import prelabels
    from polycrowd.engine.store import open_store
    from polycrowd.models.rules import RulesChecker

    async def go() -> dict[str, Any]:
        db = await open_store(settings.db, create=False, **settings.store_options())
        try:
            engine = Engine(db, RulesChecker(), LanguageDetector("script").detect)
            project = await engine.get_project(args.project)
            if args.action == "train":
                from polycrowd.models import prelabel

                async with db.read() as tx:
                    examples, items = await prelabels.training_data(tx, project)
                model = prelabel.for_task_type(project.task_type.value, args.encoder)
                pred = await asyncio.to_thread(
                    model.train_predict, list(project.labels), examples, items
                )
                if not pred.probs:
                    raise prelabels_error(len(examples))
                async with db.transaction() as tx:
                    await prelabels.store_predictions(tx, project, pred, engine.clock())
            async with db.read() as tx:
                return (await prelabels.status(tx, project)).as_dict()
        finally:
            await db.close()

    out = asyncio.run(go())
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")
    return 0


def prelabels_error(n: int) -> Exception:
    from polycrowd.engine.io import InputError

    return InputError(
        f"only {n} labelled items (gold or confident results): need at least 10 in 2 labels"
    )


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    del settings
    from polycrowd.engine.io import InputError
    from polycrowd.engine.types import TaskType
    from polycrowd.replay import ReplayConfig, read_tsv, replay

    try:
        answers = [(r[0], r[1], r[2]) for r in read_tsv(args.labels, 3)]
        gold = {r[0]: r[1] for r in read_tsv(args.gold, 2)} if args.gold else {}
        contents = {r[0]: r[1] for r in read_tsv(args.items, 2)} if args.items else None
    except (ValueError, FileNotFoundError) as exc:
        raise InputError(str(exc)) from None
    if not answers:
        raise InputError(f"{args.labels}: no answers")
    lo = args.overlap[0]
    hi = args.overlap[1] if len(args.overlap) > 1 else lo
    if lo < 1 or hi < lo:
        raise InputError("--overlap: give min [max] with 1 <= min <= max")
    predictor = None
    if contents is not None:
        from polycrowd.models import prelabel

        predictor = prelabel.for_task_type("image" if args.image else "choice", args.encoder)
    progress = _progress()
    try:
        report = asyncio.run(
            replay(
                answers,
                contents=contents,
                gold=gold,
                predictor=predictor,
                # image contents here are pixel vectors for the pixel model, not image
                # references to send, so the replayed project is a plain choice project
                task_type=TaskType.CHOICE,
                config=ReplayConfig(
                    overlap=lo,
                    overlap_max=hi,
                    confidence_target=args.confidence,
                    min_human_answers=args.min_human_answers,
                    seed=args.seed,
                ),
                progress=None if progress is None else progress[1],
            )
        )
    finally:
        if progress is not None:
            progress[0].stop()
    print(json.dumps(report.as_dict()))
    return 0


def _progress() -> tuple[Any, Callable[[int, int], None]] | None:
    """A rich progress bar on a terminal; nothing when piped."""
    if not sys.stderr.isatty():
        return None
    from rich.progress import Progress

    bar = Progress(transient=True)
    task = bar.add_task("replaying", total=None)
    bar.start()

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "model": _model,
    "replay": _replay,
}
