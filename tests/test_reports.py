"""Requester reports: real charts from a small project, sane PNG sizes, the HTML page."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from polycrowd.cli import main
from polycrowd.engine.core import Engine
from polycrowd.i18n import Translator
from polycrowd.reports import HEIGHT_PX, WIDTH_PX, build_report

from .conftest import FakeClock, choice_spec, items_csv

pytest.importorskip("matplotlib")
pytest.importorskip("jinja2")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


async def small_project(engine: Engine, clock: FakeClock) -> int:
    owner, _ = await engine.user_for("memory", "req")
    project = await engine.create_project(
        owner.id, choice_spec(languages=("en", "es"), gold_ratio=0.3)
    )
    await engine.import_items(project.id, items_csv(12, ("en", "es"), gold_every=4), name="i.csv")
    await engine.set_state(None, project.id, "live")
    for w in range(4):
        worker, _ = await engine.user_for("memory", f"w{w}", locale="en")
        await engine.set_languages(worker.id, ["en", "es"])
        for _ in range(6):
            task = await engine.next_task(worker.id)
            if task is None:
                break
            clock.advance(20)
            label = task.item.gold or ("yes" if (task.item.id + w) % 3 else "no")
            if w == 3:
                label = "no"
            await engine.submit(worker.id, task.assignment.id, label)
    await engine.aggregate_project(project.id)
    return project.id


async def test_charts_are_phone_sized_pngs_with_content(engine: Engine, clock: FakeClock) -> None:
    pid = await small_project(engine, clock)
    report = await build_report(engine, pid, Translator(), "en")
    names = [c.name for c in report.charts]
    assert names == ["progress", "languages", "accuracy", "confusion", "spend"]  # no model
    for chart in report.charts:
        assert png_size(chart.png) == (WIDTH_PX, HEIGHT_PX), chart.name
        assert len(chart.png) > 15_000, chart.name  # drawn, not a blank canvas
    titles = {c.name: c.title for c in report.charts}
    assert titles["confusion"] == "Answers against gold"
    assert "Worker accuracy on check questions" in report.html
    assert report.html.count("data:image/png;base64,") == 5


async def test_titles_follow_the_language_and_user_text_is_escaped(
    engine: Engine, clock: FakeClock
) -> None:
    owner, _ = await engine.user_for("memory", "req")
    project = await engine.create_project(owner.id, choice_spec(name="<b>cats</b>"))
    report = await build_report(engine, project.id, Translator(), "es")
    assert report.charts == ()  # nothing answered yet: no empty charts
    assert "&lt;b&gt;cats&lt;/b&gt;" in report.html and "<b>cats" not in report.html
    assert 'lang="es"' in report.html


def test_cli_report_writes_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from polycrowd.engine.language import LanguageDetector
    from polycrowd.engine.store import Database
    from polycrowd.models.rules import RulesChecker

    db_path = tmp_path / "r.db"

    async def seed() -> int:
        db = await Database.open(db_path)
        try:
            clock = FakeClock()
            engine = Engine(db, RulesChecker(), LanguageDetector("script").detect, clock=clock)
            return await small_project(engine, clock)
        finally:
            await db.close()

    pid = asyncio.run(seed())
    out = tmp_path / "out"
    assert main(["report", str(pid), "--output", str(out), "--db", str(db_path), "--json"]) == 0
    printed = capsys.readouterr().out
    assert '"charts": ["progress"' in printed
    assert png_size((out / "progress.png").read_bytes()) == (WIDTH_PX, HEIGHT_PX)
    assert (out / "report.html").stat().st_size > 50_000
    assert main(["report", "999", "--output", str(out), "--db", str(db_path)]) == 2


async def test_human_answers_saved_when_the_model_was_in_the_loop(
    engine: Engine, clock: FakeClock
) -> None:
    pid = await small_project(engine, clock)
    # what the model-in-the-loop writes: results it settled with fewer human answers
    async with engine.db.transaction() as tx:
        await tx.run(
            "UPDATE results SET method = 'model+mv', answers = 1 WHERE project_id = ?", (pid,)
        )
    report = await build_report(engine, pid, Translator(), "pt")
    saved = next(c for c in report.charts if c.name == "saved")
    assert saved.title == "Respostas humanas poupadas pelo modelo"
    assert png_size(saved.png) == (WIDTH_PX, HEIGHT_PX) and len(saved.png) > 10_000
