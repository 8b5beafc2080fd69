"""A small polycrowd world for the dashboard: two requesters, a moderator, workers who
answered, an appeal and a flag; the dashboard app served over it."""

from __future__ import annotations

import re
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

DASHBOARD_URL = "http://dashboard.test"
SPEC = (
    "name: {name}\ntype: choice\nlabels: [cat, dog]\nlanguages: [en, es]\n"
    "instructions:\n  en: Which pet is it? A cat meows, a dog barks.\n"
    "  es: ¿Qué mascota es?\noverlap: 2\nreward: 5\ngold_ratio: 0.3\n"
)
ITEMS = "id,text,lang,gold\n" + "".join(
    f"{i},pet number {i},{'en' if i % 3 else 'es'},{'cat' if i % 4 == 0 else ''}\n"
    for i in range(1, 13)
)


@dataclass
class DashWorld:
    app: App
    chat: MemoryChat
    clock: FakeClock
    alice: MemoryUser  # requester of project 1
    bob: MemoryUser  # requester of project 2
    moderator: MemoryUser
    workers: list[MemoryUser]
    projects: dict[str, int]

    async def login_link(self, user: MemoryUser) -> str:
        [reply] = await self.chat.command(user, "/dashboard")
        match = re.search(r"(http://\S+/login\?token=[\w-]+)", reply.text)
        assert match, reply.text
        return match.group(1)


async def _project(chat: MemoryChat, user: MemoryUser, name: str) -> None:
    await chat.upload(user, "p.yaml", SPEC.format(name=name).encode())
    await chat.upload(user, "items.csv", ITEMS.encode())
    await chat.command(user, "/launch")


@pytest.fixture
async def dash_world(tmp_path: Path, clock: FakeClock) -> AsyncIterator[DashWorld]:
    settings = Settings(dashboard_url=DASHBOARD_URL, quiet_hours="").with_db(tmp_path / "d.db")
    app = await build_app(settings, checker=RulesChecker(), detector=LanguageDetector("script"))
    app.engine.clock = clock
    chat = MemoryChat(app.dispatcher, app.translator)
    app.add_adapter(chat)  # type: ignore[arg-type]
    alice = MemoryUser("1", "Alice Requester", "en")
    bob = MemoryUser("2", "Bob Requester", "es")
    moderator = MemoryUser("3", "Mo", "en", admin_chat=True)
    for u, role in ((alice, Role.REQUESTER), (bob, Role.REQUESTER), (moderator, Role.ADMIN)):
        user, _ = await app.engine.user_for("memory", u.id, u.name, u.locale)
        await app.engine.bootstrap_role(user.id, role)
    await _project(chat, alice, "Pets <b>of Alice</b>")
    await _project(chat, bob, "Bob's pets")
    workers = []
    for n in range(4):
        w = MemoryUser(str(100 + n), f"worker{n}", "en")
        await chat.command(w, "/start")
        await chat.press(w, "l:es")
        await chat.press(w, "lok")
        workers.append(w)
        for k in range(7):
            msgs = await chat.command(w, "/task")
            task = next((m for m in msgs if m.reply.kind == "task"), None)
            if task is None:
                break
            clock.advance(9)
            label = "dog" if (n == 3 or k % 3 == 0) else "cat"
            await chat.press(w, task.button(label), task.id)
    mod = await app.engine.find_user("memory:3")
    last = await app.engine.find_user("memory:103")
    assert mod is not None and last is not None
    data = await app.engine.my_data(last.id)
    await app.engine.moderate_answer(mod.id, data["answers"][-1]["id"], False, "wrong")
    await chat.command(workers[3], "/appeal I am sure it was a dog")
    projects = {p.name: p.id for p in await app.engine.projects()}
    for pid in projects.values():
        await app.engine.aggregate_project(pid)
    yield DashWorld(app, chat, clock, alice, bob, moderator, workers, projects)
    await app.close()
