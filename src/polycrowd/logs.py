"""Logging setup: plain lines, or JSON lines when POLYCROWD_LOG_JSON=1.

Either way, bot tokens, webhook secrets and login tokens are cut out of every record, and
records carry no personal data: polycrowd logs ids and pseudonyms, never names or texts.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

from polycrowd.settings import Settings

# Telegram bot tokens (123456:AA...), Discord tokens (three dot-separated base64 parts),
# and token=/session= query or cookie values.
_SECRETS = (
    re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}"),
    re.compile(r"\b[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{20,}\b"),
    re.compile(r"(?i)((?:token|session|secret)=)[^&\s;\"']+"),
)


REDACTED = "[redacted]"
#: Configured secrets shorter than this are not cut out of text (they would hit words).
MIN_SECRET_LEN = 6


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without bot tokens, secrets and any of the given ``secrets`` values."""
    for value in sorted((s for s in secrets if len(s) >= MIN_SECRET_LEN), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    for pattern in _SECRETS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


def secret_values(settings: Settings | None) -> tuple[str, ...]:
    """The configured values that must never appear in a log line or an error message."""
    if settings is None:
        return ()
    values = (
        settings.telegram_token,
        settings.discord_token,
        settings.webhook_secret,
        settings.ledger_key,
    )
    return tuple(v for v in values if v)


class RedactingFilter(logging.Filter):
    """Cuts tokens out of every record a handler emits: message, arguments, exception and
    stack text. Installed on the handlers (a logger's own filters miss propagated records)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad %-arguments: keep what can be shown
            message = f"{record.msg} {record.args}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (like logging.lastResort)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def install_redaction(settings: Settings | None) -> RedactingFilter:
    """For every command: a warnings-and-up handler on stderr when none is configured, and
    the redacting filter on every handler of the root logger (replacing an older one)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    if not root.handlers:
        stderr = _StderrHandler()
        stderr.setLevel(logging.WARNING)
        stderr.setFormatter(logging.Formatter("polycrowd: %(levelname)s %(name)s: %(message)s"))
        root.addHandler(stderr)
    found = RedactingFilter(secret_values(settings))
    for handler in root.handlers:
        for old_filter in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old_filter)
        handler.addFilter(found)
    return found


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg (+ exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if record.exc_info or record.exc_text:
            text = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
            out["exc"] = redact(text)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(settings: Settings, stream: Any = None) -> logging.Handler:
    """Configure the root logger once for a command; returns the handler it installed."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if settings.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secret_values(settings)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for noisy in ("httpx", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
