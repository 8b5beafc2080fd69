"""``polycrowd checker train|eval PROJECT``: fine-tune and score a project's checker model.

Training data: the project's gold items and the items whose aggregated result is confident
(at or above the project's target), with their labels. Choice/image projects get a
sequence classifier (item text -> label); spans projects a BIO token tagger. A trained model
becomes the project's checker (config ``head`` + ``model``); every verdict stores the
model version that made it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from polycrowd.engine.tasktypes import CheckerHead, spec_of
from polycrowd.settings import Settings

MIN_EXAMPLES = 20
MIN_PER_CLASS = 4


class CheckerCliError(Exception):
    pass


def spans_to_bio(text: str, spans: str) -> tuple[list[str], list[str]]:
    """ "0-2:PER;5-6:LOC" over whitespace tokens (end exclusive) -> (tokens, BIO tags)."""
    tokens = text.split()
    tags = ["O"] * len(tokens)
    for part in filter(None, (p.strip() for p in spans.split(";"))):
        if part.lower() == "none":
            continue
        rng, _, label = part.partition(":")
        start, _, end = rng.partition("-")
        s, e = int(start), int(end)
        for k in range(s, min(e, len(tokens))):
            tags[k] = ("B-" if k == s else "I-") + label
    return tokens, tags


async def _examples(settings: Settings, project_id: int) -> tuple[Any, list[tuple[str, str]]]:
    from polycrowd.engine.core import Engine
    from polycrowd.engine.language import LanguageDetector
    from polycrowd.engine.store import open_store
    from polycrowd.models.rules import RulesChecker

    db = await open_store(settings.db, create=False, **settings.store_options())
    try:
        engine = Engine(db, RulesChecker(), LanguageDetector("script").detect)
        project = await engine.get_project(project_id)
        return project, await engine.training_examples(project_id)
    finally:
        await db.close()


async def _save_config(settings: Settings, project_id: int, config: dict[str, Any]) -> None:
    from polycrowd.engine.core import Engine
    from polycrowd.engine.language import LanguageDetector
    from polycrowd.engine.store import open_store
    from polycrowd.models.rules import RulesChecker

    db = await open_store(settings.db, create=False, **settings.store_options())
    try:
        engine = Engine(db, RulesChecker(), LanguageDetector("script").detect)
        await engine.update_checker_config(project_id, config)
    finally:
        await db.close()


def checker_command(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.engine.io import InputError
    from polycrowd.models.checker import ml_available

    if not ml_available():
        raise InputError("the checker needs the [ml] extra: pip install 'polycrowd[ml]'")
    from polycrowd.models import train

    project, examples = asyncio.run(_examples(settings, args.project))
    checker_head = spec_of(project.task_type).checker_head
    if checker_head is CheckerHead.SIMILARITY:
        raise InputError(
            f"project {project.id} is a {project.task_type.value} project: its checker uses"
            " the similarity head, which needs no training"
        )
    counts: dict[str, int] = {}
    for _, label in examples:
        counts[label] = counts.get(label, 0) + 1
    if args.action == "train" and (
        len(examples) < MIN_EXAMPLES or min(counts.values(), default=0) < MIN_PER_CLASS
    ):
        raise InputError(
            f"not enough labelled items yet: {len(examples)} (need {MIN_EXAMPLES}, and"
            f" {MIN_PER_CLASS} per label); gold items and confident results count"
        )
    model = args.model or project.policy.checker.model
    if checker_head is CheckerHead.TAGGER:
        pairs = [spans_to_bio(text, label) for text, label in examples]
        tokens, tags = [p[0] for p in pairs], [p[1] for p in pairs]
        if args.action == "train":
            report = train.train_tagger(
                tokens,
                tags,
                model or None,
                args.output,
                epochs=args.epochs,
                name=f"p{project.id}-tagger",
            )
        else:
            report = train.evaluate_tagger(_need(model), tokens, tags)
        head = "tagger"
    else:
        texts, labels = [t for t, _ in examples], [lab for _, lab in examples]
        if args.action == "train":
            report = train.train_classifier(
                texts,
                labels,
                model or None,
                args.output,
                epochs=args.epochs,
                label_names=list(project.labels),
                name=f"p{project.id}-classifier",
            )
        else:
            report = train.evaluate(_need(model), texts, labels)
        head = "classifier"
    if args.action == "train":
        config = {
            **project.checker,
            "head": head,
            "model": report.model_dir,
            "model_version": report.version,
        }
        asyncio.run(_save_config(settings, project.id, config))
    if args.json:
        print(
            json.dumps(
                {"version": report.version, "model_dir": report.model_dir, **report.metrics()}
            )
        )
    else:
        print(report.format())
        if args.action == "train":
            print(f"\nsaved {report.model_dir}; project {project.id} now uses it", file=sys.stderr)
    return 0


def _need(model: str) -> str:
    from polycrowd.engine.io import InputError

    if not model or not Path(model).is_dir():
        raise InputError("no trained model for this project: run polycrowd checker train first")
    return model
