"""End-to-end tests of the fake Telegram server with the real python-telegram-bot."""

import asyncio
import hashlib
import html
import importlib.util
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("telegram")

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, Update
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.helpers import escape_markdown

from tests.bot.faketelegram import DEFAULT_TOKEN, Call, FakeTelegram, command_entities, render_text

# PTB 22 warns about RetryAfter.retry_after becoming a timedelta whenever one is raised
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

GROUP = -1001234567890
WAIT = 10.0  # generous: only bounds a failing test


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


def sent_to(chat_id: int, contains: str = "") -> Any:
    def predicate(call: Call) -> bool:
        return (
            call.ok
            and call.method == "sendMessage"
            and call.params.get("chat_id") == chat_id
            and contains in call.result["text"]
        )

    return predicate


# ------------------------------------------------------------------------- an echo bot


async def on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("A", callback_data="pick:a"),
                InlineKeyboardButton("B", callback_data="pick:b"),
            ]
        ]
    )
    await update.effective_message.reply_text(
        "<b>welcome</b>", parse_mode="HTML", reply_markup=keyboard
    )


async def on_link(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(f"linked {' '.join(context.args or [])}")


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None and message.text is not None
    count = context.bot_data.setdefault("texts", 0) + 1
    context.bot_data["texts"] = count
    await context.bot.send_chat_action(message.chat_id, "typing")
    await message.reply_text(f"echo: {message.text}")


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer(f"got {query.data}")
    await query.edit_message_text(f"you picked {query.data.split(':')[1]}")


async def on_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None and message.document is not None
    data = await (await message.document.get_file()).download_as_bytearray()
    digest = hashlib.sha256(data).hexdigest()
    await message.reply_text(f"got {message.document.file_name} {len(data)} {digest}")
    await message.reply_document(
        InputFile(bytes(data).upper(), filename="results.csv"), caption="results"
    )


def build(fake: FakeTelegram, builder: Any = None) -> Application[Any, Any, Any, Any, Any, Any]:
    """The echo bot, wired exactly as production code would wire it."""
    app: Application[Any, Any, Any, Any, Any, Any] = (
        (builder or ApplicationBuilder())
        .token(DEFAULT_TOKEN)
        .base_url(f"{fake.url}/bot")
        .base_file_url(f"{fake.url}/file/bot")
        .build()
    )
    app.add_handler(CommandHandler("start", on_start))
    app.add_handler(CommandHandler("link", on_link))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, on_text))
    app.add_handler(MessageHandler(filters.Document.ALL, on_document))
    app.add_handler(CallbackQueryHandler(on_button, pattern=r"^pick:"))
    return app


@asynccontextmanager
async def running(app: Application[Any, Any, Any, Any, Any, Any]) -> AsyncIterator[None]:
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=1)
        try:
            yield
        finally:
            await app.updater.stop()
            await app.stop()


# ------------------------------------------------------------------------- with an Application


async def test_start_and_echo(fake: FakeTelegram) -> None:
    async with running(build(fake)):
        ann = fake.user(11, "Ann", language_code="de")
        fake.inject_message(ann, ann.id, "/start")
        await fake.wait_for(sent_to(ann.id, "welcome"), WAIT)
        ann.say("hello there")
        await fake.wait_for(sent_to(ann.id, "echo: hello there"), WAIT)

    first, second = fake.sent_messages(ann.id)
    assert first.text == "<b>welcome</b>" and first.plain == "welcome"
    assert first.parse_mode == "HTML"
    assert first.callback_data == ["pick:a", "pick:b"]
    assert [b["text"] for b in first.buttons[0]] == ["A", "B"]
    assert second.plain == "echo: hello there" and second.reply_markup is None
    assert first.message_id is not None and second.message_id is not None
    # user messages and bot messages share the chat's increasing message ids
    assert 1 <= first.message_id < second.message_id
    assert fake.count("getMe") >= 1 and fake.count("deleteWebhook") >= 1
    assert fake.count("sendChatAction") == 1
    reply = fake.calls_of("sendMessage")[1]
    assert reply.result["from"]["is_bot"] is True
    assert isinstance(reply.result["date"], int)


async def test_group_command_with_args_and_bot_mention(fake: FakeTelegram) -> None:
    async with running(build(fake)):
        bob = fake.user(12, "Bob", username="bob")
        fake.inject_message(bob, GROUP, "/link ABC123")
        await fake.wait_for(sent_to(GROUP, "linked ABC123"), WAIT)
        fake.inject_message(bob, GROUP, f"/link@{fake.bot_username} XYZ")
        await fake.wait_for(sent_to(GROUP, "linked XYZ"), WAIT)
        # a command for another bot is ignored; the echo afterwards proves ordering
        fake.inject_message(bob, GROUP, "/link@other_bot NOPE")
        bob.say("after", GROUP)
        await fake.wait_for(sent_to(GROUP, "echo: after"), WAIT)
    texts = [m.plain for m in fake.sent_messages(GROUP)]
    assert texts == ["linked ABC123", "linked XYZ", "echo: after"]
    first = fake.calls_of("sendMessage")[0]
    assert first.result["chat"]["type"] == "supergroup"
    # in groups reply_text quotes the command: the fake links the replied-to message
    assert first.params["reply_parameters"]["message_id"] == first.result["message_id"] - 1
    assert first.result["reply_to_message"]["text"] == "/link ABC123"


async def test_inline_button_press(fake: FakeTelegram) -> None:
    async with running(build(fake)):
        ann = fake.user(11, "Ann")
        ann.say("/start")
        call = await fake.wait_for(sent_to(ann.id, "welcome"), WAIT)
        message_id = call.result["message_id"]
        fake.inject_callback(ann, ann.id, message_id, "pick:b")
        await fake.wait_for(lambda c: c.ok and c.method == "editMessageText", WAIT)

    assert len(fake.callback_answers) == 1
    assert fake.callback_answers[0].text == "got pick:b"
    edit = fake.sent_messages(ann.id)[-1]
    assert (edit.method, edit.message_id, edit.text) == (
        "editMessageText",
        message_id,
        "you picked b",
    )
    assert edit.reply_markup is None  # editMessageText without markup drops the keyboard
    current = fake.message(ann.id, message_id)
    assert current is not None and current["text"] == "you picked b"
    assert "reply_markup" not in current and "edit_date" in current


async def test_document_download_and_send_document(fake: FakeTelegram) -> None:
    content = "id,text\n1,héllo\n".encode() * 50
    async with running(build(fake)):
        ann = fake.user(11, "Ann")
        fake.inject_document(ann, ann.id, "items.csv", content, caption="my items")
        await fake.wait_for(lambda c: c.ok and c.method == "sendDocument", WAIT)

    digest = hashlib.sha256(content).hexdigest()
    assert fake.sent_messages(ann.id)[-1].plain == f"got items.csv {len(content)} {digest}"
    assert fake.count("getFile") == 1 and len(fake.downloads) == 1
    (doc,) = fake.documents(ann.id)
    assert doc.filename == "results.csv" and doc.content == content.upper()
    assert doc.caption == "results" and doc.source == "upload"
    assert fake.documents(999) == []


async def test_429_is_retried_by_the_rate_limiter(fake: FakeTelegram) -> None:
    app = build(fake, ApplicationBuilder().rate_limiter(AIORateLimiter(max_retries=2)))
    fake.fail_next("sendMessage", status=429, retry_after=1)
    async with running(app):
        ann = fake.user(11, "Ann")
        ann.say("/start")
        await fake.wait_for(sent_to(ann.id, "welcome"), WAIT)
    assert fake.http_429 == 1
    statuses = [c.status for c in fake.calls_of("sendMessage")]
    assert statuses == [429, 200]
    assert len(fake.sent_messages(ann.id)) == 1


async def test_duplicate_update_is_delivered_again(fake: FakeTelegram) -> None:
    async with running(build(fake)):
        ann = fake.user(11, "Ann")
        update = ann.say("same")
        await fake.wait_for(sent_to(ann.id, "echo: same"), WAIT)
        since = len(fake.calls)
        fake.inject_raw(update)
        await fake.wait_for(sent_to(ann.id, "echo: same"), WAIT, since=since)
        later = ann.say("later")
        assert later["update_id"] == update["update_id"] + 1
        await fake.wait_for(sent_to(ann.id, "echo: later"), WAIT)
    assert [m.plain for m in fake.sent_messages(ann.id)] == [
        "echo: same",
        "echo: same",
        "echo: later",
    ]


# ------------------------------------------------------------------------- with a bare Bot


@asynccontextmanager
async def bot_for(fake: FakeTelegram, token: str = DEFAULT_TOKEN) -> AsyncIterator[Bot]:
    async with Bot(token, base_url=fake.api_url, base_file_url=fake.file_url) as bot:
        yield bot


async def test_get_updates_long_poll_and_offsets(fake: FakeTelegram) -> None:
    async with bot_for(fake) as bot:
        ann = fake.user(11, "Ann")
        assert await bot.get_updates(timeout=0) == ()
        poll = asyncio.create_task(bot.get_updates(timeout=30, read_timeout=40))
        await fake.wait_until(lambda: fake.polls_waiting == 1, WAIT)  # parked on the server
        first = ann.say("one")
        updates = await asyncio.wait_for(poll, WAIT)  # woken by the injection, not the timeout
        assert [u.update_id for u in updates] == [first["update_id"]]
        # not confirmed yet: delivered again
        again = await bot.get_updates(timeout=0)
        assert [u.update_id for u in again] == [first["update_id"]]
        second = ann.say("two")
        updates = await bot.get_updates(offset=first["update_id"] + 1, timeout=0)
        assert [u.update_id for u in updates] == [second["update_id"]]
        assert updates[0].message is not None and updates[0].message.text == "two"
        assert await bot.get_updates(offset=second["update_id"] + 1, timeout=0) == ()
        assert fake.pending_updates == 0


async def test_limit_and_negative_offset(fake: FakeTelegram) -> None:
    async with bot_for(fake) as bot:
        ann = fake.user(11, "Ann")
        ids = [ann.say(str(i))["update_id"] for i in range(5)]
        got = await bot.get_updates(limit=2, timeout=0)
        assert [u.update_id for u in got] == ids[:2]
        got = await bot.get_updates(offset=-1, timeout=0)
        assert [u.update_id for u in got] == ids[-1:]


async def test_markup_validation(fake: FakeTelegram) -> None:
    async with bot_for(fake) as bot:
        msg = await bot.send_message(1, "<b>bold</b> &amp; <i>it</i>", parse_mode="HTML")
        assert msg.text == "bold & it"
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
            await bot.send_message(1, "1 < 2", parse_mode="HTML")
        with pytest.raises(BadRequest, match=r"(?i)unsupported start tag"):
            await bot.send_message(1, "a<br>b", parse_mode="HTML")
        with pytest.raises(BadRequest, match="reserved"):
            await bot.send_message(1, "Done.", parse_mode="MarkdownV2")
        msg = await bot.send_message(
            1, "*Done*\\. [link](http://x.org/a_b)", parse_mode="MarkdownV2"
        )
        assert msg.text == "Done. link"
        with pytest.raises(BadRequest, match="too long"):
            await bot.send_message(1, "x" * 4097)
        with pytest.raises(BadRequest, match="empty"):
            await bot.send_message(1, "")
        too_long = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="d" * 65)]])
        with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
            await bot.send_message(1, "hi", reply_markup=too_long)
        # 4096 UTF-16 units: emoji count twice
        await bot.send_message(1, "😀" * 2048)
        with pytest.raises(BadRequest, match="too long"):
            await bot.send_message(1, "😀" * 2049)


async def test_edits(fake: FakeTelegram) -> None:
    async with bot_for(fake) as bot:
        kb = InlineKeyboardMarkup([[InlineKeyboardButton("ok", callback_data="ok")]])
        msg = await bot.send_message(GROUP, "task", reply_markup=kb)
        with pytest.raises(BadRequest, match="not modified"):
            await bot.edit_message_text("task", GROUP, msg.message_id, reply_markup=kb)
        edited = await bot.edit_message_reply_markup(GROUP, msg.message_id, reply_markup=None)
        assert isinstance(edited, type(msg)) and edited.reply_markup is None
        with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
            await bot.edit_message_text("x", GROUP, 999)
        assert await bot.delete_message(GROUP, msg.message_id)
        kinds = [m.method for m in fake.sent_messages(GROUP)]
        assert kinds == ["sendMessage", "editMessageReplyMarkup"]


async def test_failures(fake: FakeTelegram) -> None:
    async with bot_for(fake) as bot:
        fake.fail_next("sendMessage", status=500)
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(1, "a")
        fake.fail_next("sendMessage", drop_connection=True)
        with pytest.raises(NetworkError):
            await bot.send_message(1, "b")
        fake.fail_next("*", status=429, retry_after=7)
        with pytest.raises(RetryAfter) as info:
            await bot.send_chat_action(1, "typing")
        assert "Retry in 7 seconds" in str(info.value)
        fake.block(5)
        with pytest.raises(Forbidden, match="blocked"):
            await bot.send_message(5, "c")
        assert (await bot.send_message(1, "d")).text == "d"
        assert [c.status for c in fake.calls_of("sendMessage")] == [500, 0, 403, 200]
        assert fake.http_429 == 1


async def test_flood_limits(fake: FakeTelegram) -> None:
    fake.set_flood_limits(per_chat=0.001, chat_burst=2, overall=None)
    async with bot_for(fake) as bot:
        await bot.send_message(1, "a")
        await bot.send_message(1, "b")
        with pytest.raises(RetryAfter):
            await bot.send_message(1, "c")
        await bot.send_message(2, "other chat is fine")
    assert fake.http_429 == 1


async def test_unknown_methods_webhook_and_commands(fake: FakeTelegram) -> None:
    async with bot_for(fake) as bot:
        assert await bot.set_my_description("hi") is True
        assert fake.calls[-1].method == "setMyDescription"
        await bot.set_my_commands([("start", "Start"), ("task", "Next task")], language_code="de")
        cmds = await bot.get_my_commands(language_code="de")
        assert [c.command for c in cmds] == ["start", "task"]
        assert await bot.get_my_commands() == ()
        await bot.delete_my_commands(language_code="de")
        assert fake.commands("de") == []

        await bot.set_webhook("https://example.org/hook", secret_token="s3")
        info = await bot.get_webhook_info()
        assert info.url == "https://example.org/hook" and fake.webhook_secret == "s3"
        with pytest.raises(Conflict):
            await bot.get_updates(timeout=0)
        await bot.delete_webhook()
        assert await bot.get_updates(timeout=0) == ()

    async with FakeTelegram(strict=True) as strict, bot_for(strict) as bot:
        with pytest.raises(InvalidToken, match="method not found"):  # PTB maps 404 to this
            await bot.set_my_description("hi")

    async with FakeTelegram(token=DEFAULT_TOKEN) as only:
        with pytest.raises(InvalidToken, match="rejected"):
            async with bot_for(only, "1:wrong"):  # Bot.initialize calls getMe
                pass
        async with bot_for(only) as bot:
            assert bot.username == only.bot_username


async def test_wait_for_times_out_and_sees_past_calls(fake: FakeTelegram) -> None:
    async with bot_for(fake) as bot:
        await bot.get_me()
        call = await fake.wait_for(lambda c: c.method == "getMe", 1.0)
        assert call.result["username"] == fake.bot_username
        with pytest.raises(TimeoutError, match="no matching"):
            await fake.wait_for(lambda c: c.method == "getMe", 0.05, since=len(fake.calls))
        waiter = asyncio.create_task(fake.wait_for_message(3, contains="later"))
        await bot.send_message(3, "later on")
        sent = await asyncio.wait_for(waiter, WAIT)
        assert sent.plain == "later on"


def test_escaped_text_round_trips_through_the_markup_parsers() -> None:
    rnd = random.Random(7)
    alphabet = "ab _*[]()~`>#+-=|{}.!\\<>&\"'\né😀/"
    for _ in range(2000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 24)))
        assert render_text(escape_markdown(text, version=2), "MarkdownV2") == text
        assert render_text(f"_{escape_markdown(text, version=2)}_", "MarkdownV2") == text
        assert render_text(f"<i>{html.escape(text)}</i>", "HTML") == text
    assert render_text("*b* _i_ `c` [l](http://x)", "Markdown") == "b i c l"
    with pytest.raises(ValueError, match="end of"):
        render_text("*open", "MarkdownV2")


def test_command_entities_use_utf16_offsets() -> None:
    assert command_entities("/start") == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert command_entities("😀 /task@bot x") == [
        {"type": "bot_command", "offset": 3, "length": 9}
    ]
    assert command_entities("a/b and http://x/y") == []


def test_importable_by_path() -> None:
    path = Path(__file__).with_name("faketelegram.py")
    spec = importlib.util.spec_from_file_location("faketelegram_by_path", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not registered in sys.modules on purpose
    assert module.FakeTelegram.__name__ == "FakeTelegram"
