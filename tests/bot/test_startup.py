"""``polycrowd run``'s start-up checks (bot/startup.py) against the fake Bot API: a rejected
token or an unreachable server is one line without the token, exit 2, no hang; both forms of
POLYCROWD_TELEGRAM_API_URL work."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from polycrowd.bot.app import run
from polycrowd.bot.startup import (
    StartupError,
    check_settings,
    check_telegram,
    explain,
    telegram_api_root,
)
from polycrowd.engine.store import StoreError
from polycrowd.engine.store.sqlite import Database
from polycrowd.settings import Settings, SettingsError
from tests.bot.conftest import TELEGRAM_WAIT
from tests.bot.faketelegram import FakeTelegram

pytest.importorskip("telegram")

REJECTED = "987654321:AAGrejectedTokenForTheStartupTests_0"  # token-shaped, not the fake's
EXIT_WITHIN_S = 60.0  # only bounds a hanging process


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now: connections are refused


async def _cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """The real CLI in a subprocess, awaited so that the fake keeps answering meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "polycrowd",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("POLYCROWD_")}, **env},
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), EXIT_WITHIN_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"polycrowd {' '.join(args)} did not exit") from None
    return proc.returncode or 0, out.decode(), err.decode()


async def _db(path: Path) -> str:
    await (await Database.open(path)).close()
    return str(path)


def _error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("polycrowd: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_the_api_url_is_taken_as_a_root_or_in_ptbs_form() -> None:
    for url in ("http://h:81", "http://h:81/", "http://h:81/bot", "http://h:81/bot/"):
        assert telegram_api_root(url) == "http://h:81"
    assert telegram_api_root("https://example.org/tg/bot") == "https://example.org/tg"
    assert telegram_api_root("https://api.telegram.org") == "https://api.telegram.org"


@pytest.mark.parametrize("form", ["root", "ptb"])
async def test_check_telegram_accepts_both_url_forms(
    telegram_fake: FakeTelegram, telegram_settings: Settings, form: str
) -> None:
    url = telegram_fake.url if form == "root" else telegram_fake.api_url
    settings = replace(telegram_settings, telegram_api_url=url)
    assert await check_telegram(settings) == telegram_fake.bot_username


async def test_a_rejected_token_is_named_without_the_token(telegram_settings: Settings) -> None:
    async with FakeTelegram(token="42:AAthe-only-token-this-server-accepts") as strict:
        settings = replace(telegram_settings, telegram_token=REJECTED, telegram_api_url=strict.url)
        with pytest.raises(StartupError) as caught:
            await check_telegram(settings)
    message = str(caught.value)
    assert message.startswith("Telegram rejected the token (HTTP 401 from 127.0.0.1:")
    assert REJECTED not in message and REJECTED.split(":")[1] not in message


async def test_an_unreachable_api_is_named_by_its_host(telegram_settings: Settings) -> None:
    port = _closed_port()
    settings = replace(telegram_settings, telegram_api_url=f"http://127.0.0.1:{port}/bot")
    with pytest.raises(StartupError) as caught:
        await asyncio.wait_for(check_telegram(settings, limit_s=5), TELEGRAM_WAIT)
    assert f"cannot reach the Telegram Bot API at 127.0.0.1:{port}" in str(caught.value)
    assert settings.telegram_token not in str(caught.value)


async def test_cli_run_with_a_rejected_token_is_one_line_exit_2(tmp_path: Path) -> None:
    async with FakeTelegram(token="42:AAthe-only-token-this-server-accepts") as strict:
        env = {
            "POLYCROWD_DB": await _db(tmp_path / "p.db"),
            "POLYCROWD_TELEGRAM_TOKEN": REJECTED,
            "POLYCROWD_TELEGRAM_API_URL": strict.url,
            "POLYCROWD_LANGUAGE_BACKEND": "script",
        }
        code, out, err = await _cli("run", env=env)
        assert [c.method for c in strict.calls] == ["getMe"]  # nothing else was tried
    assert code == 2
    line = _error_line(err)
    assert "Telegram rejected the token" in line
    assert REJECTED not in err + out and REJECTED.split(":")[1] not in err + out


async def test_cli_run_with_an_unreachable_api_is_one_line_exit_2(tmp_path: Path) -> None:
    port = _closed_port()
    env = {
        "POLYCROWD_DB": await _db(tmp_path / "p.db"),
        "POLYCROWD_TELEGRAM_TOKEN": REJECTED,
        "POLYCROWD_TELEGRAM_API_URL": f"http://127.0.0.1:{port}",
        "POLYCROWD_LANGUAGE_BACKEND": "script",
    }
    code, out, err = await _cli("run", env=env)
    assert code == 2
    assert f"127.0.0.1:{port}" in _error_line(err)
    assert REJECTED not in err + out


@pytest.mark.parametrize("form", ["root", "ptb"])
async def test_run_serves_with_either_url_form(
    telegram_fake: FakeTelegram, telegram_settings: Settings, form: str
) -> None:
    url = telegram_fake.url if form == "root" else telegram_fake.api_url
    settings = replace(telegram_settings, telegram_api_url=url)
    await _db(Path(settings.db))
    stop = asyncio.Event()
    task = asyncio.create_task(run(settings, stop))
    try:
        await telegram_fake.wait_until(lambda: telegram_fake.polls_waiting > 0, TELEGRAM_WAIT)
        ann = telegram_fake.user(900, "Ann")
        ann.say("/help")
        await telegram_fake.wait_for_message(ann.id, contains="Commands:", timeout=TELEGRAM_WAIT)
    finally:
        stop.set()
        await asyncio.wait_for(task, TELEGRAM_WAIT)


async def test_run_refuses_a_missing_database(telegram_settings: Settings) -> None:
    with pytest.raises(StoreError, match="database not found"):
        await run(telegram_settings)
    assert not await asyncio.to_thread(Path(telegram_settings.db).exists)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("language_backend", "fasttext", "POLYCROWD_LANGUAGE_BACKEND: 'fasttext'"),
        ("checker_head", "regression", "POLYCROWD_CHECKER_HEAD: 'regression'"),
        ("checker_device", "gpu0", "POLYCROWD_CHECKER_DEVICE"),
        ("telegram_api_url", "ftp://h", "POLYCROWD_TELEGRAM_API_URL"),
        ("webhook_port", 70000, "POLYCROWD_WEBHOOK_PORT"),
        ("quiet_hours", "25-3", "quiet_hours"),
    ],
)
def test_bad_settings_are_refused_before_anything_starts(
    field: str, value: object, message: str
) -> None:
    settings = replace(Settings(), **{field: value})
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        check_settings(settings)


async def test_cli_run_with_shards_split_over_a_sqlite_file_is_one_line_exit_2(
    tmp_path: Path,
) -> None:
    db = await _db(tmp_path / "shards.db")
    env = {
        "POLYCROWD_DB": db,
        "POLYCROWD_DISCORD_TOKEN": "not-used",  # refused before any connection
        "POLYCROWD_DISCORD_SHARDS": "2",
        "POLYCROWD_DISCORD_SHARD_IDS": "1",
        "POLYCROWD_LANGUAGE_BACKEND": "script",
    }
    code, _out, err = await _cli("run", env=env)
    assert code == 2
    assert _error_line(err).startswith(
        "polycrowd: bad value for POLYCROWD_DISCORD_SHARD_IDS: '1' (the other shards'"
    )


def test_the_default_settings_pass() -> None:
    check_settings(Settings())


def test_platform_start_errors_become_one_line(telegram_settings: Settings) -> None:
    from telegram.error import InvalidToken, NetworkError

    settings = replace(telegram_settings, telegram_token=REJECTED)
    rejected = explain("telegram", InvalidToken(f"token {REJECTED} was rejected"), settings)
    assert rejected is not None and "Telegram rejected the token" in str(rejected)
    assert REJECTED not in str(rejected)
    offline = explain("telegram", NetworkError(f"GET /bot{REJECTED}/getMe failed"), settings)
    assert offline is not None and REJECTED not in str(offline)
    assert explain("telegram", ValueError("something else"), settings) is None

    from discord import LoginFailure

    refused = explain("discord", LoginFailure("Improper token has been passed."), settings)
    assert refused is not None and "Discord rejected the token" in str(refused)
