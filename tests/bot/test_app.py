"""The app wires the scheduler's retrain job to the project models."""

from __future__ import annotations

import asyncio
from pathlib import Path

from polycrowd.bot.app import build_app
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.types import TaskType
from polycrowd.models.prelabel import Prelabeler
from polycrowd.models.rules import RulesChecker
from polycrowd.settings import Settings
from tests.conftest import choice_spec


async def test_the_retrain_job_gets_one_project_model_per_task_type(tmp_path: Path) -> None:
    settings = Settings().with_db(tmp_path / "app.db")
    app = await build_app(settings, checker=RulesChecker(), detector=LanguageDetector("script"))
    try:
        predictor_for = app.scheduler.predictor_for
        assert predictor_for is not None
        project = await app.engine.create_project(None, choice_spec(task_type=TaskType.IMAGE))
        model = await asyncio.to_thread(predictor_for, project)
        assert isinstance(model, Prelabeler) and model.name == "pixels+lr"
        assert await asyncio.to_thread(predictor_for, project) is model  # built once
    finally:
        await app.close()
