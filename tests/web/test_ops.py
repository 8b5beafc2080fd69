"""Operations: /metrics and /healthz beside `polycrowd run`, JSON logs without secrets,
the schema migration that adds the feedback tables, `polycrowd serve` errors."""

from __future__ import annotations

import io
import json
import logging
import socket
from pathlib import Path

import aiohttp

from polycrowd.bot.app import _start_ops, build_app
from polycrowd.cli import main
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.store import SCHEMA_VERSION, Database
from polycrowd.logs import setup_logging
from polycrowd.models.rules import RulesChecker
from polycrowd.settings import Settings
from tests.engine.store.test_migrations import DOWNGRADE_TO_V1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_metrics_port_beside_the_bots(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    settings = Settings(metrics_port=port).with_db(tmp_path / "ops.db")
    app = await build_app(settings, checker=RulesChecker(), detector=LanguageDetector("script"))
    runner = await _start_ops(app)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200 and (await r.json()) == {"status": "ok", "db": True}
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                text = await r.text()
            async with http.get(f"http://127.0.0.1:{port}/") as r:
                assert r.status == 401
    finally:
        await runner.cleanup()
        await app.close()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"polycrowd_checker_seconds", "polycrowd_answers", "polycrowd_picks"} <= names
    assert "polycrowd_outbound_429" in names


async def test_no_metrics_port_no_server(tmp_path: Path) -> None:
    settings = Settings().with_db(tmp_path / "ops.db")
    app = await build_app(settings, checker=RulesChecker(), detector=LanguageDetector("script"))
    try:
        assert await _start_ops(app) is None
    finally:
        await app.close()


def test_json_logs_carry_no_tokens() -> None:
    stream = io.StringIO()
    handler = setup_logging(Settings(log_json=True), stream)
    try:
        log = logging.getLogger("polycrowd.test")
        log.info(
            "calling https://api.telegram.org/bot123456789:AAHk9v0abcdefghijklmnopqrstuvwxyz12/x"
        )
        log.warning("GET /login?token=s3cr3t-tok3n-value HTTP/1.1")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["level"] for r in lines] == ["INFO", "WARNING"]
    assert all(r["logger"] == "polycrowd.test" and "ts" in r for r in lines)
    text = stream.getvalue()
    assert "AAHk9v0" not in text and "s3cr3t" not in text and "[redacted]" in text


async def test_a_version_1_database_gets_the_feedback_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = await Database.open(path)
    async with db.transaction() as tx:
        for statement in DOWNGRADE_TO_V1:  # back to what version 1 made
            await tx.run(statement)
    await db.close()
    db = await Database.open(path)
    try:
        assert await db.schema_version() == SCHEMA_VERSION >= 2
        async with db.read() as tx:
            rows = await tx.all("SELECT name FROM sqlite_master WHERE type = 'table'")
        assert {"questions", "dashboard_sessions", "digest_runs"} <= {r[0] for r in rows}
    finally:
        await db.close()


def test_serve_refuses_a_missing_database(tmp_path: Path, capsys: object) -> None:
    assert main(["serve", "--db", str(tmp_path / "missing.db"), "--port", "1"]) == 2
