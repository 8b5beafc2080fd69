"""Start-up checks for ``polycrowd run``: fail in one line, before anything starts.

``run`` calls, in this order, :func:`check_settings` (every enumerated or ranged setting,
pool sizes and Discord shards included, so a bad ``POLYCROWD_LANGUAGE_BACKEND`` or
``POLYCROWD_CHECKER_HEAD`` is one line instead of a traceback and a process that never
exits), :func:`check_telegram` (one ``getMe`` with a
short timeout: a rejected token or an unreachable Bot API is one line naming the host, never
the token), then opens the database (``database not found`` like every other command).
:func:`explain` turns the platform libraries' start errors into the same kind of line.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from polycrowd.logs import redact, secret_values
from polycrowd.settings import Settings, SettingsError

__all__ = [
    "StartupError",
    "check_settings",
    "check_telegram",
    "explain",
    "telegram_api_root",
]

#: Seconds the start-up ``getMe`` may take, connection included.
TELEGRAM_CHECK_TIMEOUT = 5.0
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_LANG = re.compile(r"[a-z]{2,3}")


class StartupError(Exception):
    """``run`` cannot start; the message is one line for the user and holds no secret."""


def telegram_api_root(url: str) -> str:
    """The Bot API server's root from ``POLYCROWD_TELEGRAM_API_URL``: both the server root
    (``http://host:port``) and python-telegram-bot's ``base_url`` form (``.../bot``)."""
    root = url.strip().rstrip("/")
    if root.endswith("/bot"):
        root = root[: -len("/bot")].rstrip("/")
    return root


def _where(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or url


def check_settings(settings: Settings) -> None:
    """Every setting ``run`` depends on, checked before anything opens; SettingsError."""
    from polycrowd.engine.language import BACKENDS
    from polycrowd.models.bert import HEADS

    def bad(name: str, value: object, expected: str) -> SettingsError:
        return SettingsError(f"bad value for POLYCROWD_{name.upper()}: {value!r} ({expected})")

    s = settings
    if s.language_backend not in BACKENDS:
        raise bad("language_backend", s.language_backend, "one of " + ", ".join(BACKENDS))
    if s.checker_head and s.checker_head not in HEADS:
        expected = "empty for rules only, or one of " + ", ".join(HEADS)
        raise bad("checker_head", s.checker_head, expected)
    if not _DEVICE.fullmatch(s.checker_device):
        raise bad("checker_device", s.checker_device, "auto, cpu, mps, cuda or cuda:N")
    if not isinstance(logging.getLevelName(s.log_level.upper()), int):
        raise bad("log_level", s.log_level, "DEBUG, INFO, WARNING or ERROR")
    for code in (*s.languages, s.default_language):
        if not _LANG.fullmatch(code):
            raise bad("languages", code, "ISO 639-1 codes such as en, es, ru")
    if not s.languages:
        raise bad("languages", "", "at least one language")
    api = urlsplit(telegram_api_root(s.telegram_api_url))
    if api.scheme not in ("http", "https") or not api.hostname:
        raise bad("telegram_api_url", s.telegram_api_url, "an http:// or https:// URL")
    if s.webhook_url and urlsplit(s.webhook_url).scheme != "https":
        raise bad("webhook_url", s.webhook_url, "an https:// URL")
    ports = (("webhook_port", s.webhook_port, 1), ("metrics_port", s.metrics_port, 0))
    for name, port, low in ports:
        if not low <= port <= 65535:
            raise bad(name, port, f"a port number {low}..65535")
    for name, number in (
        ("checker_batch", s.checker_batch),
        ("expire_every_s", s.expire_every_s),
        ("checkpoint_every_s", s.checkpoint_every_s),
        ("max_upload_bytes", s.max_upload_bytes),
    ):
        if number <= 0:
            raise bad(name, number, "a positive number")
    if s.checker_wait_ms < 0:
        raise bad("checker_wait_ms", s.checker_wait_ms, "0 or more")
    from polycrowd.engine.digests import quiet_hours

    quiet_hours(s.quiet_hours)
    s.store_options()  # POLYCROWD_DB_READERS, POLYCROWD_PG_POOL_MIN/MAX
    plan = s.shard_plan()  # POLYCROWD_DISCORD_SHARDS, POLYCROWD_DISCORD_SHARD_IDS
    from polycrowd.engine.store import is_postgres

    if plan.partial and not is_postgres(s.db):
        raise bad(
            "discord_shard_ids",
            " ".join(map(str, plan.ids or ())),
            "the other shards' processes need one PostgreSQL database; a SQLite file is"
            " served by one process, which then runs every shard",
        )


async def check_telegram(settings: Settings, *, limit_s: float = TELEGRAM_CHECK_TIMEOUT) -> str:
    """One ``getMe`` against the configured Bot API; the bot's username, or StartupError."""
    import aiohttp

    root = telegram_api_root(settings.telegram_api_url)
    where = _where(root)
    url = f"{root}/bot{settings.telegram_token}/getMe"
    try:
        client_timeout = aiohttp.ClientTimeout(total=limit_s)
        async with (
            aiohttp.ClientSession(timeout=client_timeout, trust_env=True) as session,
            session.get(url) as response,
        ):
            status = response.status
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = None
    except TimeoutError:
        raise StartupError(
            f"cannot reach the Telegram Bot API at {where}: no answer within {limit_s:g} s"
            " (check POLYCROWD_TELEGRAM_API_URL and the network)"
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        reason = redact(str(exc) or type(exc).__name__, secret_values(settings))
        raise StartupError(
            f"cannot reach the Telegram Bot API at {where}: {reason}"
            " (check POLYCROWD_TELEGRAM_API_URL and the network)"
        ) from None
    if status in (401, 404):
        raise StartupError(
            f"Telegram rejected the token (HTTP {status} from {where}):"
            " check POLYCROWD_TELEGRAM_TOKEN"
        )
    ok = isinstance(body, dict) and body.get("ok") is True
    if status != 200 or not ok:
        raise StartupError(
            f"the Telegram Bot API at {where} answered HTTP {status} to getMe; is"
            " POLYCROWD_TELEGRAM_API_URL a Bot API server?"
        )
    result = body.get("result") if isinstance(body, dict) else None
    return str(result.get("username", "")) if isinstance(result, dict) else ""


def explain(platform: str, exc: BaseException, settings: Settings) -> StartupError | None:
    """A one-line StartupError for a platform library's start failure, None if unknown."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if platform == "telegram":
        where = _where(telegram_api_root(settings.telegram_api_url))
        if "InvalidToken" in names:
            return StartupError(
                f"Telegram rejected the token ({where}): check POLYCROWD_TELEGRAM_TOKEN"
            )
        if names & {"NetworkError", "TimedOut"}:
            reason = redact(str(exc), secret_values(settings))
            return StartupError(f"cannot reach the Telegram Bot API at {where}: {reason}")
    if platform == "discord":
        if "LoginFailure" in names:
            return StartupError("Discord rejected the token: check POLYCROWD_DISCORD_TOKEN")
        if names & {"ClientConnectorError", "GatewayNotFound", "ConnectionClosed"}:
            reason = redact(str(exc), secret_values(settings))
            return StartupError(f"cannot reach Discord: {reason}")
    return None
