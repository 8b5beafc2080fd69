"""A whole app over a real SQLite file, driven through the in-memory chat adapter."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from polycrowd.bot.app import App, build_app
from polycrowd.bot.memory import MemoryChat, MemoryUser
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.types import Role
from polycrowd.models.rules import RulesChecker
from polycrowd.settings import Settings

from ..conftest import FakeClock

SPEC = (
    "name: pets\ntype: choice\nlabels: [cat, dog]\nlanguages: [en, es]\n"
    "instructions:\n  en: Which pet is it?\n  es: ¿Qué mascota es?\n"
    "overlap: 2\nreward: 5\n"
)


@dataclass
class World:
    app: App
    chat: MemoryChat
    clock: FakeClock
    requester: MemoryUser
    moderator: MemoryUser

    async def worker(self, n: int, locale: str = "en") -> MemoryUser:
        user = MemoryUser(str(100 + n), f"worker{n}", locale)
        await self.chat.command(user, "/start")
        await self.chat.press(user, "lok")
        return user

    async def live_project(
        self, items: str = "id,text,lang\n1,a fluffy one,en\n2,barks,en\n"
    ) -> None:
        await self.chat.upload(self.requester, "pets.yaml", SPEC.encode())
        await self.chat.upload(self.requester, "items.csv", items.encode())
        await self.chat.command(self.requester, "/launch")


@contextlib.asynccontextmanager
async def open_world(settings: Settings, clock: FakeClock) -> AsyncIterator[World]:
    """The app on ``settings``, with a requester and a moderator; closed on exit."""
    app = await build_app(settings, checker=RulesChecker(), detector=LanguageDetector("script"))
    app.engine.clock = clock
    chat = MemoryChat(app.dispatcher, app.translator)
    app.add_adapter(chat)  # type: ignore[arg-type]
    requester = MemoryUser("1", "req", "en")
    moderator = MemoryUser("2", "mod", "en", admin_chat=True)
    for u, role in ((requester, Role.REQUESTER), (moderator, Role.MODERATOR)):
        user, _ = await app.engine.user_for("memory", u.id, u.name, u.locale)
        await app.engine.bootstrap_role(user.id, role)
    try:
        yield World(app, chat, clock, requester, moderator)
    finally:
        await app.close()


@pytest.fixture
async def world(tmp_path: Path, clock: FakeClock) -> AsyncIterator[World]:
    async with open_world(Settings().with_db(tmp_path / "chat.db"), clock) as w:
        yield w
