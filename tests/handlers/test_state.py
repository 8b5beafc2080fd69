"""A /newproject conversation and a requester's current project are stored: they survive a
restart (a new app, dispatcher and engine on the same database), and a conversation left
alone for a day expires."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from polycrowd.bot.app import App, build_app
from polycrowd.bot.memory import MemoryChat, MemoryUser
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.services.state import CONVERSATION_TTL
from polycrowd.engine.types import Role
from polycrowd.models.rules import RulesChecker
from polycrowd.settings import Settings

from ..conftest import FakeClock
from .conftest import SPEC

REQ = MemoryUser("1", "req", "en")


class Boots:
    """Starts apps on one database file, one after the other, like restarts of the bot."""

    def __init__(self, path: Path, clock: FakeClock) -> None:
        self.path = path
        self.clock = clock
        self.app: App | None = None
        self._updates = itertools.count(1)

    async def start(self) -> MemoryChat:
        """A fresh app (new dispatcher, engine and connection); the old one is closed."""
        await self.stop()
        settings = Settings().with_db(self.path)
        app = await build_app(
            settings, checker=RulesChecker(), detector=LanguageDetector("script")
        )
        app.engine.clock = self.clock
        # update ids keep counting across restarts (a platform's ids do)
        chat = MemoryChat(app.dispatcher, app.translator, _updates=self._updates)
        app.add_adapter(chat)  # type: ignore[arg-type]
        self.app = app
        return chat

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.close()
            self.app = None


@pytest.fixture
async def boots(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Boots]:
    b = Boots(tmp_path / "state.db", clock)
    chat = await b.start()
    assert b.app is not None
    user, _ = await b.app.engine.user_for("memory", REQ.id, REQ.name, REQ.locale)
    await b.app.engine.bootstrap_role(user.id, Role.REQUESTER)
    del chat
    yield b
    await b.stop()


async def test_a_newproject_conversation_survives_restarts(boots: Boots) -> None:
    chat = await boots.start()
    [intro] = await chat.command(REQ, "/newproject")
    assert "What is the project called?" in intro.text
    [kind] = await chat.say(REQ, "Animals")
    assert "What kind of task" in kind.text

    chat = await boots.start()  # restart before the type button is pressed
    [labels] = await chat.press(REQ, kind.button(data_prefix="np:choice"), kind.id)
    assert "labels" in labels.text
    await chat.say(REQ, "cat, dog")
    await chat.say(REQ, "Which animal?")

    chat = await boots.start()  # and again, three steps from the end
    [overlap] = await chat.say(REQ, "en")
    assert "How many workers" in overlap.text
    await chat.say(REQ, "1")
    [created] = await chat.say(REQ, "5")
    assert "created" in created.text and "Animals" in created.text

    assert boots.app is not None
    [project] = await boots.app.engine.projects()
    assert (project.name, project.task_type, project.labels) == (
        "Animals",
        "choice",
        ("cat", "dog"),
    )
    assert (project.overlap, project.reward) == (1, 5)
    owner = await boots.app.engine.find_user(f"memory:{REQ.id}")
    assert owner is not None and await boots.app.engine.conversation(owner.id) is None
    [after] = await chat.say(REQ, "more text")  # the conversation is over
    assert "Send /task" in after.text


async def test_the_current_project_survives_a_restart(boots: Boots) -> None:
    chat = await boots.start()
    [first] = await chat.upload(REQ, "pets.yaml", SPEC.encode())
    [second] = await chat.upload(REQ, "more.yaml", SPEC.replace("pets", "birds").encode())
    assert "“pets” created" in first.text and "“birds” created" in second.text
    assert boots.app is not None
    pets, birds = await boots.app.engine.projects()
    [used] = await chat.command(REQ, f"/use {pets.id}")
    assert "pets" in used.text

    chat = await boots.start()
    [status] = await chat.command(REQ, "/status")  # no id: the current project
    assert f"Project {pets.id} “pets”" in status.text
    [imported] = await chat.upload(REQ, "items.csv", b"id,text\n1,a cat\n")
    assert f"into project {pets.id}" in imported.text
    await chat.command(REQ, f"/use {birds.id}")

    chat = await boots.start()
    [status] = await chat.command(REQ, "/status")
    assert f"Project {birds.id} “birds”" in status.text
    [refused] = await chat.command(REQ, "/launch")  # birds has no items (pets has one)
    assert "Upload items before" in refused.text


async def test_a_conversation_left_for_a_day_expires(boots: Boots) -> None:
    chat = await boots.start()
    await chat.command(REQ, "/newproject")
    [kind] = await chat.say(REQ, "Animals")
    boots.clock.advance(CONVERSATION_TTL + 1)
    chat = await boots.start()
    [stale] = await chat.press(REQ, kind.button(data_prefix="np:choice"), kind.id)
    assert "no longer valid" in stale.text
    [reply] = await chat.say(REQ, "cat, dog")  # not taken as the next answer
    assert "Send /task" in reply.text
    assert boots.app is not None and await boots.app.engine.projects() == []


async def test_cancel_after_a_restart_ends_the_stored_conversation(boots: Boots) -> None:
    chat = await boots.start()
    await chat.command(REQ, "/newproject")
    chat = await boots.start()
    [cancelled] = await chat.command(REQ, "/cancel")
    assert "Cancelled" in cancelled.text
    [nothing] = await chat.command(REQ, "/cancel")
    assert "Nothing to cancel" in nothing.text
    [reply] = await chat.say(REQ, "Animals")
    assert "Send /task" in reply.text


async def test_another_command_ends_the_conversation_for_good(boots: Boots) -> None:
    chat = await boots.start()
    await chat.command(REQ, "/newproject")
    await chat.command(REQ, "/projects")
    chat = await boots.start()
    [reply] = await chat.say(REQ, "Animals")
    assert "Send /task" in reply.text


async def test_the_scheduler_sweeps_stale_conversations(boots: Boots) -> None:
    chat = await boots.start()
    await chat.command(REQ, "/newproject")
    assert boots.app is not None
    owner = await boots.app.engine.find_user(f"memory:{REQ.id}")
    assert owner is not None
    await boots.app.scheduler.expire()
    async with boots.app.engine.db.read() as tx:
        assert await tx.state.get(owner.id, "conversation") is not None  # fresh: kept
    boots.clock.advance(CONVERSATION_TTL + 1)
    await boots.app.scheduler.expire()
    async with boots.app.engine.db.read() as tx:
        assert await tx.state.get(owner.id, "conversation") is None
