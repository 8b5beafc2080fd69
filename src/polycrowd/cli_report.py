"""``polycrowd report PROJECT --output DIR``: the requester's charts and HTML summary."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polycrowd.settings import Settings


def add_parser(cmd: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    rp = cmd(
        "report",
        "Write a project's charts (PNG) and a one-page HTML summary to a folder.",
        "polycrowd report 1 --output report/ --db my.db",
    )
    rp.add_argument("project", type=int)
    rp.add_argument("--output", "-o", required=True, help="folder to write (created if needed)")
    rp.add_argument(
        "--lang", help="language of titles and labels (default: POLYCROWD_DEFAULT_LANGUAGE)"
    )
    rp.add_argument("--json", action="store_true", help="print one JSON object")


async def _report(settings: Settings, project_id: int, lang: str) -> Any:
    from polycrowd.engine.core import Engine
    from polycrowd.engine.language import LanguageDetector
    from polycrowd.engine.store import open_store
    from polycrowd.i18n import Translator
    from polycrowd.models.rules import RulesChecker
    from polycrowd.reports import build_report

    # a report only reads
    db = await open_store(settings.db, create=False, readonly=True, **settings.store_options())
    try:
        engine = Engine(db, RulesChecker(), LanguageDetector("script").detect)
        translator = Translator(default=settings.default_language)
        return await build_report(engine, project_id, translator, translator.normalize(lang))
    finally:
        await db.close()


def report_command(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.reports import ReportUnavailable

    try:
        report = asyncio.run(
            _report(settings, args.project, args.lang or settings.default_language)
        )
    except ReportUnavailable as exc:
        raise OSError("install polycrowd[web] for reports (matplotlib, jinja2)") from exc
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for chart in report.charts:
        path = out / chart.filename
        path.write_bytes(chart.png)
        files.append(str(path))
    html = out / "report.html"
    html.write_text(report.html, encoding="utf-8")
    files.append(str(html))
    summary = {
        "project": report.data.status.project.id,
        "charts": [c.name for c in report.charts],
        "files": files,
        "status": report.data.status.as_dict(),
    }
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, default=str))
    else:
        print(f"wrote {len(report.charts)} charts and {html}", file=sys.stdout)
    return 0
