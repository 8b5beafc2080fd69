"""End-to-end tests of the Telegram adapter: real python-telegram-bot against the fake Bot API,
real engine, handlers and rules checker on an SQLite file. No timing assertions."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket

import aiohttp
import pytest

pytest.importorskip("telegram")

from polycrowd.bot.app import run
from polycrowd.bot.outbound import OutboundLimits, OutboundQueue, _Slots, redact
from polycrowd.bot.telegram import (
    MAX_TEXT,
    TelegramAdapter,
    parse_command,
    split_text,
    text_units,
)
from polycrowd.engine.types import Role
from polycrowd.handlers.types import Button, Reply
from polycrowd.i18n import Msg, Translator
from polycrowd.settings import Settings
from tests.bot.conftest import TELEGRAM_ADMIN_CHAT, TELEGRAM_WAIT, TelegramHarness
from tests.bot.faketelegram import FakeTelegram, FakeUser, SentMessage

# PTB 22 warns about RetryAfter.retry_after becoming a timedelta whenever one is raised
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

SPEC = b"""name: Tone <b>&</b> co
type: choice
labels: [pos, neg]
languages: [en]
instructions: "Is the text positive or negative?"
overlap: 3
reward: 5
"""
ITEMS = b"id,text\ns1,I love it <3 & more\ns2,Terrible service\ns3,Great value\n"
# long enough (>= 8 words) for the checker's reading-speed rule
SLOW_ITEMS = b"id,text\nl1,one two three four five six seven eight nine ten eleven twelve\n"


async def live_project(h: TelegramHarness, items: bytes = ITEMS, uid: int = 900) -> FakeUser:
    """A requester publishes a project through the chat and launches it."""
    rita = h.user(uid, "Rita")
    await h.role(rita, Role.REQUESTER)
    await h.upload(rita, "tone.yaml", SPEC, "created")
    await h.upload(rita, "items.csv", items, "Imported")
    await h.say(rita, "/launch", "is live")
    return rita


async def onboard(h: TelegramHarness, worker: FakeUser) -> None:
    welcome = await h.say(worker, "/start", "Welcome", buttons=True)
    assert "lok" in welcome.callback_data
    since = await h.press(worker, welcome, "lok")
    assert welcome.message_id is not None
    done = await h.edit(worker.id, welcome.message_id, since)
    assert "Your languages: English" in done.plain
    assert await h.answered(since) is None


async def get_task(h: TelegramHarness, worker: FakeUser) -> tuple[SentMessage, str]:
    task = await h.say(worker, "/task", "Task for project", buttons=True)
    return task, next(d for d in task.callback_data if d.startswith("a:"))


async def ledger_credits(h: TelegramHarness) -> list[tuple[str, int]]:
    async with h.app.db.read() as tx:
        rows = await tx.all("SELECT ref, COUNT(*) AS n FROM ledger GROUP BY ref")
    return [(r["ref"], r["n"]) for r in rows]


# ------------------------------------------------------------------------------- workers


@pytest.mark.parametrize("telegram_transport", ["aiohttp", "httpx"])
async def test_worker_first_task_to_credit(telegram_bot: TelegramHarness) -> None:
    h = telegram_bot
    await live_project(h)
    ann = h.user(101, "Ann <dev>")
    await onboard(h, ann)

    task, answer = await get_task(h, ann)
    # the item text is user input: escaped for parse_mode HTML, shown as it was written
    assert task.parse_mode == "HTML"
    assert "I love it <3 & more" in task.plain and "&lt;3 &amp; more" in task.text
    assert "Tone <b>&</b> co" in task.plain
    assert answer == task.callback_data[0] and answer.endswith(":0")  # "pos"
    assert all(len(d.encode()) <= 64 for d in task.callback_data)

    h.clock.advance(4)  # reading time
    since = await h.press(ann, task, answer)
    assert task.message_id is not None
    edited = await h.edit(ann.id, task.message_id, since)
    assert "Your answer: pos" in edited.plain and not edited.buttons
    # the verdict arrives together with the next task
    verdict = await h.message(ann.id, "Accepted. +0.05, balance 0.05.", since)
    assert "Task for project" in verdict.plain and verdict.callback_data
    assert await h.answered(since) is None

    balance = await h.say(ann, "/balance", "Your balance")
    assert "0.05" in balance.plain
    assert len(telegram_bot.fake.callback_answers) == 2  # every press answered, once
    credits = await ledger_credits(h)
    assert len(credits) == 1 and credits[0][0].startswith("credit:") and credits[0][1] == 1


async def test_commands_menu_and_bot_mention(telegram_bot: TelegramHarness) -> None:
    h = telegram_bot
    menu = {c["command"]: c["description"] for c in h.fake.commands()}
    assert menu["task"] == "Get the next task" and "grant" not in menu
    admin_scope = {"type": "chat", "chat_id": TELEGRAM_ADMIN_CHAT}
    assert "grant" in {c["command"] for c in h.fake.commands(scope=admin_scope)}

    ann = h.user(102, "Ann")
    reply = await h.say(ann, f"/help@{h.fake.bot_username}", "Commands:")
    assert "/task — Get the next task" in reply.plain
    reply = await h.say(ann, "just chatting", "Send /task")
    assert reply.reply_markup is None


async def test_menus_and_replies_in_every_shipped_language(telegram_bot: TelegramHarness) -> None:
    """setMyCommands runs once per shipped catalog; a user's language_code picks theirs."""
    h, t = telegram_bot, Translator()
    for lang in ("fr", "zh", "hi", "ar", "es"):
        menu = {c["command"]: c["description"] for c in h.fake.commands(language_code=lang)}
        assert menu["task"] == t.gettext(lang, "Get the next task") != "Get the next task"
    welcome = "Welcome to polycrowd! You label data and earn for every accepted answer."
    for uid, code, lang in ((201, "zh-hans", "zh"), (202, "fr-CA", "fr"), (203, "hi", "hi")):
        user = h.user(uid, "Lin", language_code=code)
        reply = await h.say(user, "/start", t.gettext(lang, welcome))
        assert reply.plain.startswith(t.gettext(lang, welcome))


# ------------------------------------------------------------------------------- requesters


@pytest.mark.parametrize("telegram_transport", ["aiohttp", "httpx"])
async def test_requester_upload_launch_status_export(telegram_bot: TelegramHarness) -> None:
    h = telegram_bot
    rita = h.user(200, "Rita")
    await h.role(rita, Role.REQUESTER)
    created = await h.upload(rita, "tone.yaml", SPEC, "created")
    assert "Tone <b>&</b> co" in created.plain

    # a bad file changes nothing and comes back with a per-row report
    since = h.mark()
    rita.upload("bad.csv", b"id,text\nx1,\nx2,fine\n")
    await h.wait(lambda c: c.ok and c.method == "sendDocument", since)
    report = h.fake.documents(rita.id)[-1]
    assert report.filename == "import-errors.txt" and b"missing text" in report.content
    assert report.caption is not None and "1 bad row, nothing was imported" in report.caption

    imported = await h.upload(rita, "items.csv", ITEMS, "Imported 3 items")
    assert imported.callback_data == [f"pl:{(await h.app.engine.projects())[0].id}"]
    await h.say(rita, "/launch", "is live")
    status = await h.say(rita, "/status", "Items done: 0 of 3")
    assert "Tone <b>&</b> co" in status.plain

    ann = h.user(201, "Ann")
    await onboard(h, ann)
    task, answer = await get_task(h, ann)
    h.clock.advance(3)
    since = await h.press(ann, task, answer)
    await h.message(ann.id, "Accepted", since)

    since = h.mark()
    rita.say("/export")
    await h.wait(lambda c: c.ok and c.method == "sendDocument", since)
    export = h.fake.documents(rita.id)[-1]
    assert export.filename.endswith("-results.csv")
    assert export.caption is not None and "Results of project" in export.caption
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    assert {r["item"] for r in rows} == {"s1", "s2", "s3"}

    # a worker cannot use requester commands
    denied = await h.say(ann, "/export", "Only requesters can do that.")
    assert denied.reply_markup is None


async def test_file_over_the_limit_is_refused_without_download(
    telegram_bot: TelegramHarness,
) -> None:
    h = telegram_bot
    rita = h.user(210, "Rita")
    await h.role(rita, Role.REQUESTER)
    big = b"id,text\n" + b"x,y\n" * (h.app.settings.max_upload_bytes // 4 + 10)
    refused = await h.upload(rita, "items.csv", big, "The file is too large")
    assert "0.0625 MB" in refused.plain
    assert h.fake.downloads == [] and h.fake.count("getFile") == 0
    assert await h.app.engine.projects() == []


async def test_mydata_is_a_json_file(telegram_bot: TelegramHarness) -> None:
    h = telegram_bot
    ann = h.user(220, "Ann")
    since = h.mark()
    ann.say("/mydata")
    await h.wait(lambda c: c.ok and c.method == "sendDocument", since)
    doc = h.fake.documents(ann.id)[-1]
    data = json.loads(doc.content)
    assert data["identities"][0]["external_id"] == str(ann.id)


# ------------------------------------------------------------------------------- moderators


async def test_moderator_blocks_a_worker_from_the_admin_chat(
    telegram_bot: TelegramHarness,
) -> None:
    h = telegram_bot
    await live_project(h, SLOW_ITEMS)
    bob = h.user(300, "Bob")
    await onboard(h, bob)
    # answered at once, twice: too fast to have read twelve words -> rejected
    task, answer = await get_task(h, bob)
    since = await h.press(bob, task, answer)
    again = await h.message(bob.id, "one more try", since, buttons=True)
    since = await h.press(bob, again, again.callback_data[0])
    await h.message(bob.id, "/appeal", since)
    since = h.mark()
    bob.say("/appeal I did read it")
    await h.message(bob.id, "sent to the moderators", since)
    card = await h.message(TELEGRAM_ADMIN_CHAT, "Appeal", since)
    block = next(d for d in card.callback_data if d.startswith("mod:ub:"))

    # a worker in the admin chat may not use the card
    eve = h.user(301, "Eve")
    since = await h.press(eve, card, block, chat_id=TELEGRAM_ADMIN_CHAT)
    assert await h.answered(since) == "Only moderators can do that."
    # a moderator outside the admin chat may not either
    mod = h.user(302, "Mo")
    await h.role(mod, Role.MODERATOR)
    since = await h.press(mod, card, block)
    assert await h.answered(since) == "Use this in the moderators' chat."
    user = await h.app.engine.find_user(f"telegram:{bob.id}")
    assert user is not None and user.status == "active"

    since = await h.press(mod, card, block, chat_id=TELEGRAM_ADMIN_CHAT)
    assert card.message_id is not None
    edited = await h.edit(TELEGRAM_ADMIN_CHAT, card.message_id, since)
    assert "is blocked" in edited.plain
    user = await h.app.engine.find_user(f"telegram:{bob.id}")
    assert user is not None and user.status == "blocked"
    await h.say(bob, "/task", "Your account is blocked")

    review = await h.say(mod, "/review", "Flag", chat_id=TELEGRAM_ADMIN_CHAT)
    assert review.callback_data


# ------------------------------------------------------------------------------- robustness


async def test_forged_and_stale_presses_change_nothing(telegram_bot: TelegramHarness) -> None:
    h = telegram_bot
    await live_project(h)
    ann, mallory = h.user(400, "Ann"), h.user(401, "Mallory")
    await onboard(h, ann)
    await onboard(h, mallory)
    task, answer = await get_task(h, ann)
    own, _ = await get_task(h, mallory)
    h.clock.advance(5)
    before = await ledger_credits(h)
    for data in (answer, "a:999999:0", "zz:1", "a:x:y", "mod:ub:1", "\u00e9" * 30):
        since = await h.press(mallory, own, data)
        assert await h.answered(since) in (
            "This button is no longer valid.",
            "Only moderators can do that.",
            "Use this in the moderators' chat.",
        )
    assert await ledger_credits(h) == before
    # Ann's task is still hers and still open
    since = await h.press(ann, task, answer)
    await h.message(ann.id, "Accepted", since)
    # pressing the same answer again (a stale keyboard) is refused politely
    since = await h.press(ann, task, answer)
    assert await h.answered(since) in ("This button is no longer valid.",)
    assert len(await ledger_credits(h)) == len(before) + 1


async def test_429_is_retried_and_the_message_arrives(telegram_bot: TelegramHarness) -> None:
    h = telegram_bot
    ann = h.user(500, "Ann")
    h.fake.fail_next("sendMessage", status=429, retry_after=1)
    since = h.mark()
    ann.say("/help")
    await h.message(ann.id, "Commands:", since)
    assert h.fake.http_429 == 1
    assert h.adapter.queue.stats.retried_429 == 1
    assert len(h.fake.sent_messages(ann.id)) == 1


@pytest.mark.parametrize("telegram_transport", ["aiohttp", "httpx"])
async def test_network_errors_are_retried(telegram_bot: TelegramHarness) -> None:
    h = telegram_bot
    ann = h.user(510, "Ann")
    h.fake.fail_next("sendMessage", drop_connection=True)
    h.fake.fail_next("sendMessage", status=502)
    since = h.mark()
    ann.say("/help")
    await h.message(ann.id, "Commands:", since)
    assert h.adapter.queue.stats.retried_network == 2
    assert len(h.fake.sent_messages(ann.id)) == 1


async def test_redelivered_update_does_not_double_credit(telegram_bot: TelegramHarness) -> None:
    h = telegram_bot
    await live_project(h)
    ann = h.user(600, "Ann")
    await onboard(h, ann)
    task, answer = await get_task(h, ann)
    h.clock.advance(3)
    assert task.message_id is not None
    since = h.mark()
    press = h.fake.inject_callback(ann, ann.id, task.message_id, answer)
    h.fake.inject_raw(press)  # Telegram delivers the same update twice
    await h.message(ann.id, "Accepted", since)
    h.fake.inject_raw(press)  # ... and once more, later
    await h.say(ann, "/balance", "Your balance: 0.05")
    credits = await ledger_credits(h)
    assert len(credits) == 1 and all(n == 1 for _, n in credits)
    assert sum(1 for c in h.fake.calls[since:] if c.method == "editMessageText") == 1


async def test_long_texts_are_split_and_proactive_sends_escape(
    telegram_bot: TelegramHarness,
) -> None:
    h = telegram_bot
    line = "line <with> & markup " * 9
    long = Reply.of(
        *(Msg.raw(f"{n} {line}") for n in range(60)),
        buttons=((Button(Msg.raw("ok"), "t"),),),
    )
    since = h.mark()
    await h.adapter.send("700", long)
    await h.wait(lambda c: c.ok and c.method == "sendMessage" and c.params.get("reply_markup"))
    sent = h.fake.sent_messages(700)
    assert len(sent) > 1 and all(text_units(m.text) <= MAX_TEXT for m in sent)
    assert [bool(m.buttons) for m in sent] == [False] * (len(sent) - 1) + [True]
    assert "\n".join(m.plain for m in sent) == "\n".join(f"{n} {line}" for n in range(60))
    assert since < len(h.fake.calls)


async def test_webhook_mode_checks_the_secret(
    telegram_fake: FakeTelegram, telegram_app: object
) -> None:
    from dataclasses import replace

    from polycrowd.bot.app import App

    assert isinstance(telegram_app, App)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    telegram_app.settings = replace(
        telegram_app.settings,
        webhook_url=f"http://127.0.0.1:{port}/tg-hook",
        webhook_secret="s3cret_token",
        webhook_listen="127.0.0.1",
        webhook_port=port,
    )
    adapter = TelegramAdapter(telegram_app, limits=OutboundLimits().scaled(10))
    await adapter.start()
    try:
        assert telegram_fake.webhook_url.endswith("/tg-hook")
        assert telegram_fake.webhook_secret == "s3cret_token"
        ann = telegram_fake.user(800, "Ann")
        update = {
            "update_id": 1,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": ann.id, "type": "private", "first_name": "Ann"},
                "from": ann.to_dict(),
                "text": "/help",
                "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
            },
        }
        url = f"http://127.0.0.1:{port}/tg-hook"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=update) as resp:
                assert resp.status == 403  # no secret
            headers = {"X-Telegram-Bot-Api-Secret-Token": "s3cret_token"}
            async with http.post(url, json=update, headers=headers) as resp:
                assert resp.status == 200
        await telegram_fake.wait_for_message(ann.id, contains="Commands:", timeout=10)
        assert len(telegram_fake.sent_messages(ann.id)) == 1
    finally:
        await adapter.stop()


async def test_errors_are_logged_and_reach_the_admin_chat(
    telegram_bot: TelegramHarness, caplog: pytest.LogCaptureFixture
) -> None:
    h = telegram_bot
    ann = h.user(520, "Ann")
    h.fake.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
    since = h.mark()
    ann.say("/help")
    alert = await h.message(TELEGRAM_ADMIN_CHAT, "The Telegram bot hit an error", since)
    assert "BadRequest: Chat not found" in alert.plain
    assert any("failed" in r.message and r.levelname == "ERROR" for r in caplog.records)
    # the bot keeps serving
    await h.say(ann, "/help", "Commands:")


async def test_a_ledger_checkpoint_is_posted_to_the_admin_chat(
    telegram_bot: TelegramHarness,
) -> None:
    """The scheduled job signs the ledger's head and leaves a copy off the machine."""
    h = telegram_bot
    since = h.mark()
    record = await h.app.scheduler.checkpoint()
    posted = await h.message(TELEGRAM_ADMIN_CHAT, f"Ledger checkpoint {record['n']}:", since)
    assert str(record["mac"])[:16] in posted.plain
    assert (await h.app.engine.audit()).checkpoint == record["n"]


async def test_a_rejected_token_fails_start_cleanly(
    telegram_app: object, tmp_path: object
) -> None:
    from dataclasses import replace

    from telegram.error import InvalidToken

    from polycrowd.bot.app import App

    assert isinstance(telegram_app, App)
    async with FakeTelegram(token="42:the-only-token") as strict:
        telegram_app.settings = replace(
            telegram_app.settings, telegram_token="42:another", telegram_api_url=strict.url
        )
        adapter = TelegramAdapter(telegram_app)
        with pytest.raises(InvalidToken):
            await adapter.start()
        await adapter.stop()  # nothing to stop
        assert all(r._session is None for r in adapter._requests)


async def test_polycrowd_run_serves_telegram_and_stops(
    telegram_fake: FakeTelegram, telegram_settings: Settings
) -> None:
    """``polycrowd run``'s entry point: the bot beside the scheduler, stopped by an event."""
    stop = asyncio.Event()
    task = asyncio.create_task(run(telegram_settings, stop, create=True))
    await telegram_fake.wait_until(lambda: telegram_fake.polls_waiting > 0, TELEGRAM_WAIT)
    ann = telegram_fake.user(900, "Ann")
    ann.say("/help")
    await telegram_fake.wait_for_message(ann.id, contains="Commands:", timeout=TELEGRAM_WAIT)
    stop.set()
    await asyncio.wait_for(task, TELEGRAM_WAIT)
    assert telegram_fake.polls_waiting == 0


# ------------------------------------------------------------------------------- units


def test_parse_command() -> None:
    assert parse_command("/task", "pc_bot") == ("task", ())
    assert parse_command("/Grant@PC_bot 12 moderator", "pc_bot") == ("grant", ("12", "moderator"))
    assert parse_command("/link@other_bot ABC", "pc_bot") == ("", ())
    assert parse_command("hello /task", "pc_bot") is None
    assert parse_command("/ task", "pc_bot") is None


def test_split_text_keeps_lines_and_entities() -> None:
    assert split_text("short") == ["short"]
    lines = [f"{n}: " + "é" * 100 for n in range(100)]
    parts = split_text("\n".join(lines))
    assert all(text_units(p) <= MAX_TEXT for p in parts)
    assert "\n".join(parts) == "\n".join(lines)
    one_line = "a&amp;b " * 1500
    parts = split_text(one_line)
    assert all(text_units(p) <= MAX_TEXT for p in parts) and "".join(parts) == one_line
    assert all(p.count("&") == p.count("&amp;") for p in parts)
    emoji = "😀" * 5000  # two UTF-16 units each
    parts = split_text(emoji)
    assert all(text_units(p) <= MAX_TEXT for p in parts) and "".join(parts) == emoji


def test_tokens_are_redacted() -> None:
    url = "https://api.telegram.org/bot123456789:AAFakeTokenForPolycrowdTests_0123456789/getMe"
    assert (
        redact(f"cannot reach {url}") == "cannot reach https://api.telegram.org/bot<token>/getMe"
    )


def test_slots_are_first_come_first_served() -> None:
    slots = _Slots(per_s=1.0, burst=3)
    assert [slots.reserve(100.0) for _ in range(5)] == [100.0, 100.0, 100.0, 101.0, 102.0]
    slots.hold(110.0)
    assert slots.reserve(100.0) == 110.0
    assert OutboundQueue(OutboundLimits().scaled(2)).limits.chat_per_s == 2.0
