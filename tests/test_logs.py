"""Tokens never reach a log line (logs.py): the redacting filter on every handler cuts
Telegram and Discord tokens and the configured secret values out of messages, arguments,
exception and stack text."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from polycrowd.logs import RedactingFilter, install_redaction, setup_logging
from polycrowd.settings import Settings

TELEGRAM = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq"  # digits:35 characters
DISCORD = "MTA5OTk4NjQ1NjM0NDQ1MzEyMA.GhIjKl.abcdefghijklmnopqrstuvwxyz0123456789AB"
CONFIGURED = "my-webhook-secret-value"  # no shape to recognise: redacted because configured


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter([CONFIGURED]))
    log = logging.getLogger("polycrowd.test_logs")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.DEBUG)
    try:
        yield log, stream
    finally:
        log.removeHandler(handler)
        log.propagate = True


def _assert_clean(text: str) -> None:
    for secret in (TELEGRAM, TELEGRAM.split(":")[1], DISCORD, CONFIGURED):
        assert secret not in text


def test_message_args_and_exceptions_are_redacted(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = logger
    log.info("GET https://api.telegram.org/bot%s/getMe -> 401", TELEGRAM)
    log.warning("discord login with %s failed", DISCORD)
    log.error("webhook secret %(secret)s refused", {"secret": CONFIGURED})
    try:
        raise RuntimeError(f"InvalidToken: the server rejected {TELEGRAM}")
    except RuntimeError:
        log.exception("start failed")
    log.info("stack with %s", "x", stack_info=True)
    text = stream.getvalue()
    _assert_clean(text)
    assert "discord login with [redacted] failed" in text
    assert "webhook secret [redacted] refused" in text
    assert "https://api.telegram.org/bot[redacted]/getMe -> 401" in text
    assert "RuntimeError: InvalidToken: the server rejected [redacted]" in text
    assert "Traceback" in text  # the exception is kept, only the secret goes


def test_install_redaction_covers_every_root_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    mine = logging.StreamHandler(stream)
    root.addHandler(mine)
    try:
        install_redaction(Settings(webhook_secret=CONFIGURED))
        assert all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in root.handlers)
        logging.getLogger("polycrowd.some.module").warning(
            "token %s secret %s", TELEGRAM, CONFIGURED
        )
    finally:
        root.removeHandler(mine)
    _assert_clean(stream.getvalue())
    assert stream.getvalue().strip() == "token [redacted] secret [redacted]"


@pytest.mark.parametrize("log_json", [False, True])
def test_run_logging_is_redacted_in_both_formats(log_json: bool) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        settings = Settings(telegram_token=TELEGRAM, log_json=log_json)
        setup_logging(settings, stream)
        try:
            raise ValueError(f"bad token {TELEGRAM}")
        except ValueError:
            logging.getLogger("polycrowd.bot").exception("telegram %s", TELEGRAM)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    text = stream.getvalue()
    _assert_clean(text)
    if log_json:
        record = json.loads(text)
        assert record["msg"] == "telegram [redacted]"
        assert "ValueError: bad token [redacted]" in record["exc"]
    else:
        assert "telegram [redacted]" in text and "ValueError: bad token [redacted]" in text
