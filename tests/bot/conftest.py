"""Fixtures for the Telegram adapter's end-to-end tests: the real bot against the fake Bot API.

Everything is real except Telegram: python-telegram-bot, the adapter, the dispatcher and
handlers, the engine on an SQLite file in ``tmp_path``, the rules checker. Fixture names start
with ``telegram_`` (the Discord tests live beside these).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from polycrowd.bot.app import App, build_app
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.types import Role
from polycrowd.models.rules import RulesChecker
from polycrowd.settings import Settings
from tests.bot.faketelegram import Call, FakeTelegram, FakeUser, SentMessage

if TYPE_CHECKING:  # python-telegram-bot is imported by the fixtures that need it only
    from polycrowd.bot.telegram import TelegramAdapter

TELEGRAM_ADMIN_CHAT = -1001000000001
TELEGRAM_WAIT = 10.0  # only bounds a failing test


class ManualClock:
    """A clock that moves only when the code under test sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class TelegramClock:
    """The engine's clock: real time plus whatever a test lets pass (a worker's reading time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class TelegramHarness:
    """The bot, the fake server and the app, with helpers that speak as users and wait."""

    fake: FakeTelegram
    app: App
    adapter: TelegramAdapter
    clock: TelegramClock
    users: dict[int, FakeUser] = field(default_factory=dict)

    def user(self, uid: int, name: str, language_code: str | None = "en") -> FakeUser:
        self.users[uid] = self.fake.user(uid, name, language_code=language_code)
        return self.users[uid]

    def mark(self) -> int:
        return len(self.fake.calls)

    async def wait(self, predicate: Callable[[Call], bool], since: int = 0) -> Call:
        return await self.fake.wait_for(predicate, TELEGRAM_WAIT, since=since)

    async def message(
        self, chat_id: int, contains: str = "", since: int = 0, *, buttons: bool | None = None
    ) -> SentMessage:
        """The next sendMessage to ``chat_id`` whose plain text holds ``contains``."""

        def match(call: Call) -> bool:
            if not (call.ok and call.method == "sendMessage"):
                return False
            if call.params.get("chat_id") != chat_id or contains not in call.result["text"]:
                return False
            has = bool(call.params.get("reply_markup"))
            return buttons is None or has is buttons

        call = await self.wait(match, since)
        return self.sent(call)

    async def edit(self, chat_id: int, message_id: int, since: int = 0) -> SentMessage:
        call = await self.wait(
            lambda c: (
                c.ok
                and c.method == "editMessageText"
                and c.params.get("chat_id") == chat_id
                and c.params.get("message_id") == message_id
            ),
            since,
        )
        return self.sent(call)

    def sent(self, call: Call) -> SentMessage:
        key = (call.params["chat_id"], call.result["message_id"])
        for msg in reversed(self.fake.sent_messages()):
            if msg.method == call.method and (msg.chat_id, msg.message_id) == key:
                return msg
        raise LookupError(key)

    async def say(
        self,
        user: FakeUser,
        text: str,
        contains: str = "",
        *,
        chat_id: int | None = None,
        buttons: bool | None = None,
    ) -> SentMessage:
        since = self.mark()
        user.say(text, chat_id)
        return await self.message(chat_id or user.id, contains, since, buttons=buttons)

    async def press(
        self, user: FakeUser, message: SentMessage, data: str, *, chat_id: int | None = None
    ) -> int:
        """Press a button; returns the call index to wait from."""
        since = self.mark()
        assert message.message_id is not None
        self.fake.inject_callback(user, chat_id or user.id, message.message_id, data)
        return since

    async def answered(self, since: int) -> Any:
        call = await self.wait(lambda c: c.method == "answerCallbackQuery", since)
        return call.params.get("text")

    async def upload(self, user: FakeUser, filename: str, content: bytes, contains: str) -> Any:
        since = self.mark()
        user.upload(filename, content)
        return await self.message(user.id, contains, since)

    async def role(self, user: FakeUser, role: Role) -> None:
        """Give a Telegram user a role (creating them as on first contact)."""
        u, _ = await self.app.engine.user_for("telegram", str(user.id), user.first_name)
        await self.app.engine.bootstrap_role(u.id, role)


@pytest.fixture
async def telegram_fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def telegram_clock() -> TelegramClock:
    return TelegramClock()


@pytest.fixture
def telegram_settings(telegram_fake: FakeTelegram, tmp_path: Any) -> Settings:
    return Settings(
        db=str(tmp_path / "polycrowd.db"),
        telegram_token=telegram_fake.token,
        telegram_api_url=telegram_fake.url,
        admin_chat=str(TELEGRAM_ADMIN_CHAT),
        language_backend="script",
        max_upload_bytes=64 * 1024,
    )


@pytest.fixture
async def telegram_app(
    telegram_settings: Settings, telegram_clock: TelegramClock
) -> AsyncIterator[App]:
    app = await build_app(
        telegram_settings, checker=RulesChecker(), detector=LanguageDetector("script")
    )
    app.engine.clock = telegram_clock
    try:
        yield app
    finally:
        await app.close()


@pytest.fixture
def telegram_transport() -> str:
    """The HTTP backend under PTB (a test parametrizes it to cover both)."""
    return "auto"


@pytest.fixture
async def telegram_bot(
    telegram_fake: FakeTelegram,
    telegram_app: App,
    telegram_clock: TelegramClock,
    telegram_transport: str,
) -> AsyncIterator[TelegramHarness]:
    """The adapter started (long polling) against the fake; stopped after the test."""
    pytest.importorskip("telegram")
    from polycrowd.bot.outbound import OutboundLimits
    from polycrowd.bot.telegram import TelegramAdapter

    # Telegram's limits, ten times faster, so that the tests do not wait on the 1 msg/s rule
    adapter = TelegramAdapter(
        telegram_app,
        limits=OutboundLimits().scaled(10),
        poll_timeout=5,
        transport=telegram_transport,
    )
    telegram_app.add_adapter(adapter)
    await adapter.start()
    try:
        yield TelegramHarness(telegram_fake, telegram_app, adapter, telegram_clock)
    finally:
        await adapter.stop()
