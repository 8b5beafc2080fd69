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
from typing import Any

from polycrowd.settings import Settings

# Telegram bot tokens (123456:AA...), Discord tokens (three dot-separated base64 parts),
# and token=/session= query or cookie values.
_SECRETS = (
    re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}"),
    re.compile(r"\b[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{20,}\b"),
    re.compile(r"(?i)((?:token|session|secret)=)[^&\s;\"']+"),
)


def redact(text: str) -> str:
    for pattern in _SECRETS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[redacted]", text)
    return text


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
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


def setup_logging(settings: Settings, stream: Any = None) -> logging.Handler:
    """Configure the root logger once for a command; returns the handler it installed."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if settings.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for noisy in ("httpx", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
