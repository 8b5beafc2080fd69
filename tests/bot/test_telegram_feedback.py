"""Questions, answers and reports through the real Telegram adapter and the fake Bot API."""

from __future__ import annotations

import pytest

pytest.importorskip("telegram")

from tests.bot.conftest import TELEGRAM_ADMIN_CHAT, TelegramHarness
from tests.bot.test_telegram import get_task, live_project, onboard

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


async def test_ask_and_answer_round_trip(telegram_bot: TelegramHarness) -> None:
    h = telegram_bot
    rita = await live_project(h)
    ann = h.user(301, "Ann")
    await onboard(h, ann)
    await get_task(h, ann)

    since = h.mark()
    ann.say("/ask Is sarcasm <negative>?")
    ack = await h.message(ann.id, "Your question was sent", since)
    assert "answer will come here" in ack.plain
    card = await h.message(rita.id, "Question 1 about project", since)
    assert "Is sarcasm <negative>?" in card.plain and "&lt;negative&gt;" in card.text
    assert "/answer 1" in card.plain
    admin = await h.message(TELEGRAM_ADMIN_CHAT, "Question 1", since)
    assert "Is sarcasm <negative>?" in admin.plain

    since = h.mark()
    rita.say("/answer 1 Yes, count sarcasm as neg.")
    await h.message(rita.id, "Your answer was sent", since)
    back = await h.message(ann.id, "An answer to your question", since)
    assert "Yes, count sarcasm as neg." in back.plain and "Is sarcasm <negative>?" in back.plain

    since = h.mark()
    rita.say("/faq add 1")
    await h.message(rita.id, "part of the instructions", since)


async def test_report_arrives_as_documents(telegram_bot: TelegramHarness) -> None:
    pytest.importorskip("matplotlib")
    h = telegram_bot
    rita = await live_project(h)
    ann = h.user(302, "Ann")
    await onboard(h, ann)
    task, answer = await get_task(h, ann)
    h.clock.advance(4)
    since = await h.press(ann, task, answer)
    await h.message(ann.id, "Accepted", since)

    since = h.mark()
    rita.say("/report")
    await h.message(rita.id, "Items done", since)
    seen = since
    while not any(d.filename.endswith("report.html") for d in h.fake.documents(rita.id)):
        await h.wait(lambda c: c.method == "sendDocument", seen)
        seen = len(h.fake.calls)
    docs = {d.filename: d.content for d in h.fake.documents(rita.id)}
    assert docs["p1-progress.png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert b"data:image/png;base64," in docs["p1-report.html"]
