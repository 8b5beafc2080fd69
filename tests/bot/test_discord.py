"""End to end: polycrowd's Discord adapter (real discord.py 2) against the simcord harness.

Everything below the harness is real: the adapter, the dispatcher and handlers, the engine on
a SQLite file in tmp_path, the rules-only checker and the script language detector. Only the
engine's clock is ours, so that answers are never "faster than the task can be read".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import discord
import pytest

from polycrowd.bot.app import App, build_app
from polycrowd.bot.discord import (
    MAX_CONTENT,
    OPTIONS,
    STAFF_PERMISSIONS,
    CatalogTranslator,
    DiscordAdapter,
    Renderer,
    option_args,
    split_text,
)
from polycrowd.bot.memory import MemoryChat, MemoryUser
from polycrowd.engine.checking import CheckRequest, Verdict
from polycrowd.engine.io import load_spec_text
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.types import Role, User
from polycrowd.handlers.types import Button, Reply
from polycrowd.i18n import Msg, Translator
from polycrowd.models.rules import RulesChecker
from polycrowd.settings import Settings
from tests.bot.fakediscord import FakeDiscord, FakeUser, Outcome, Sent

# --------------------------------------------------------------------------- fixtures

GERMAN_PO = r"""
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\n"

msgid "Get the next task"
msgstr "Die nächste Aufgabe holen"

msgid "/task"
msgstr "aufgabe"

msgid "/stats"
msgstr "aufgabe"

msgid "/status"
msgstr "Status Bericht"

msgid "Project number (default: the current project)"
msgstr "Projektnummer (sonst das aktuelle Projekt)"

msgid "Welcome to polycrowd! You label data and earn for every accepted answer."
msgstr "Willkommen bei polycrowd! Du beschriftest Daten und verdienst an jeder Antwort."

msgid "Your balance: %(balance)s"
msgstr "Dein Guthaben: %(balance)s"

msgid "Answer"
msgstr "Antworten"

msgid "Your answer"
msgstr "Deine Antwort"
"""

CHOICE_SPEC = """\
name: cats
type: choice
labels: [yes, no]
instructions: Is it a cat?
languages: [en]
overlap: 1
reward: 5
"""

TEXT_SPEC = """\
name: captions
type: text
instructions: Describe the picture in a few words.
languages: [en]
overlap: 1
reward: 7
"""

MULTI_SPEC = """\
name: tags
type: multi
labels: [red, green, blue, round]
instructions: Pick every tag that fits.
languages: [en]
overlap: 1
reward: 3
"""

ITEMS = b"id,text\ni1,a cat on a mat\ni2,a dog in the fog\ni3,a bird on a wire\n"


class Clock:
    """The engine's time: moves only when a test says so."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class SlowChecker(RulesChecker):
    """The rules, after a (virtual) 10-second model call: Discord's 3 s would be long gone."""

    async def check(self, batch: Sequence[CheckRequest]) -> list[Verdict]:
        await asyncio.sleep(10)
        return await super().check(batch)


@dataclass
class World:
    app: App
    adapter: DiscordAdapter
    clock: Clock
    h: FakeDiscord

    async def project(self, spec: str, items: bytes = ITEMS) -> int:
        engine = self.app.engine
        project = await engine.create_project(None, load_spec_text(spec, "spec.yaml"))
        await engine.import_items(project.id, items, name="items.csv")
        await engine.set_state(None, project.id, "live")
        return project.id

    async def user(self, who: FakeUser) -> User:
        user = await self.app.engine.find_user(f"discord:{who.id}")
        assert user is not None
        return user

    async def grant(self, who: FakeUser, role: Role) -> None:
        user, _ = await self.app.engine.user_for("discord", str(who.id), who.name, "en")
        await self.app.engine.bootstrap_role(user.id, role)

    async def worker(self, name: str, locale: str = "en-US", also: Sequence[str] = ()) -> FakeUser:
        """A member who ran /start, ticked ``also`` and confirmed the languages."""
        who = self.h.add_user(name, locale=locale)
        start = await self.h.slash(who, "start")
        assert start.response is not None
        for code in also:
            await self.h.click(who, start.response, f"pc:l:{code}")
        await self.h.click(who, start.response, "pc:lok")
        return who

    async def answer_first_task(self, who: FakeUser, label: int = 0) -> Outcome:
        task = await self.h.slash(who, "task")
        assert task.response is not None
        aid = task_id(task.response)
        self.clock.advance(30)
        return await self.h.click(who, task.response, f"pc:a:{aid}:{label}")


def task_id(message: Sent) -> int:
    """The assignment id behind a task message's buttons."""
    for custom_id in message.custom_ids:
        found = re.fullmatch(r"pc[a-z]?:(?:[as]:)?(\d+)(?::\d+)?", custom_id)
        if found:
            return int(found.group(1))
    raise AssertionError(f"no task buttons in {message.custom_ids}")


def texts(messages: Sequence[Sent]) -> list[str]:
    """Content, or the embed's title and description, of each message."""
    out = []
    for m in messages:
        if m.embeds:
            e = m.embeds[0]
            out.append("\n".join(x for x in (e.title, e.description) if x))
        else:
            out.append(m.content)
    return out


@pytest.fixture
def locales(tmp_path: Path) -> Path:
    folder = tmp_path / "locales" / "de" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "polycrowd.po").write_text(GERMAN_PO, encoding="utf-8")
    return tmp_path / "locales"


@contextlib.asynccontextmanager
async def discord_world(
    tmp_path: Path,
    locales: Path,
    *,
    checker: RulesChecker | None = None,
    guild_sync: bool = False,
) -> AsyncIterator[World]:
    settings = Settings(db=str(tmp_path / "polycrowd.db"))
    app = await build_app(
        settings,
        checker=checker or RulesChecker(),
        detector=LanguageDetector("script"),
        translator=Translator(locales_dir=locales),
    )
    clock = Clock()
    app.engine.clock = clock
    adapter = DiscordAdapter(app)
    app.add_adapter(adapter)

    def factory(h: FakeDiscord) -> discord.Client:
        # what POLYCROWD_DISCORD_ADMIN_CHANNEL / _GUILDS would say for this fake world
        adapter.admin_channel = h.admin.id
        adapter.guilds = (h.guild.id,) if guild_sync else ()
        return adapter.build_bot()

    try:
        async with FakeDiscord(factory) as h:
            yield World(app, adapter, clock, h)
            await app.flush()
    finally:
        await app.close()


# --------------------------------------------------------------------------- commands


async def test_slash_commands_come_from_the_dispatcher_with_localized_descriptions(
    tmp_path: Path, locales: Path
) -> None:
    async with discord_world(tmp_path, locales, guild_sync=True) as w:
        scopes = w.h.env.backend.commands
        assert set(scopes) == {w.h.guild.id}  # POLYCROWD_DISCORD_GUILDS: instant guild sync
        synced = w.h.commands()
        expected = {c.name for c in w.app.dispatcher.command_list(Role.ADMIN)} | {"upload"}
        assert set(synced) == expected

        task = synced["task"]
        assert task["description"] == "Get the next task"
        assert task["description_localizations"] == {"de": "Die nächste Aufgabe holen"}
        assert task["name_localizations"] == {"de": "aufgabe"}
        # a clashing or invalid localized name is left out (Discord would refuse the sync)
        assert not synced["stats"].get("name_localizations")
        assert not synced["status"].get("name_localizations")
        for name, payload in synced.items():
            assert re.fullmatch(r"[a-z]{2,32}", name)
            assert 1 <= len(payload["description"]) <= 100

        options = {c: {o["name"]: o for o in synced[c].get("options", [])} for c in synced}
        assert set(options["start"]) == set()
        assert options["link"]["code"]["required"] is False
        assert options["upload"]["file"]["type"] == discord.AppCommandOptionType.attachment.value
        assert options["upload"]["file"]["required"] is True
        assert [c["value"] for c in options["export"]["format"]["choices"]] == ["csv", "jsonl"]
        assert options["status"]["project"]["description_localizations"] == {
            "de": "Projektnummer (sonst das aktuelle Projekt)"
        }
        assert [c["value"] for c in options["grant"]["role"]["choices"]] == [
            "worker",
            "requester",
            "moderator",
            "admin",
        ]

        # a German client sees and sends the localized name
        anna = w.h.add_user("anna", locale="de")
        out = await w.h.slash(anna, "aufgabe")
        assert out.deferred and texts(out.messages) == [
            "No tasks for you right now. I will remind you when there are."
        ]


async def test_settings_name_the_admin_channel_and_guilds(tmp_path: Path) -> None:
    env = {
        "POLYCROWD_DB": str(tmp_path / "s.db"),
        "POLYCROWD_DISCORD_TOKEN": "token",
        "POLYCROWD_DISCORD_GUILDS": "111, 222",
        "POLYCROWD_DISCORD_ADMIN_CHANNEL": "333",
    }
    app = await build_app(
        Settings.from_env(env), checker=RulesChecker(), detector=LanguageDetector("script")
    )
    try:
        adapter = DiscordAdapter(app)
        assert adapter.name == "discord" and adapter.admin_chat_id == "333"
        assert adapter.guilds == (111, 222) and adapter.token == "token"
        assert adapter.bot is None  # nothing is built or connected before start()
        assert DiscordAdapter(replace_settings(app)).admin_chat_id == ""
    finally:
        await app.close()


def replace_settings(app: App) -> App:
    return dataclasses.replace(app, settings=Settings(db=app.settings.db))


def test_option_values_become_handler_arguments() -> None:
    block = OPTIONS["block"]
    assert option_args(block, {"user": "<@!123456789>", "reason": "copy paste"}) == (
        "discord:123456789",
        "copy",
        "paste",
    )
    assert option_args(OPTIONS["export"], {"project": "#4", "format": "jsonl"}) == ("4", "jsonl")
    assert option_args(OPTIONS["link"], {"code": None}) == ()


# --------------------------------------------------------------------------- workers


async def test_worker_gets_a_task_and_is_credited_through_a_button(
    tmp_path: Path, locales: Path
) -> None:
    async with discord_world(tmp_path, locales) as w:
        await w.project(CHOICE_SPEC)
        h = w.h
        alice = h.add_user("alice")

        start = await h.slash(alice, "start")
        assert start.deferred and start.response is not None
        assert start.response.content.startswith("Welcome to polycrowd!")
        assert "pc:l:en" in start.response.custom_ids and "pc:lok" in start.response.custom_ids
        assert ("✓ English", "pc:l:en") in start.response.buttons

        done = await h.click(alice, start.response, "pc:lok")
        assert done.deferred and done.kind == "deferred_update"  # acknowledged, then edited
        edited = h.refresh(start.response)
        assert edited.content == "Your languages: English\nSend /task to get your first task."
        assert edited.buttons == (("Get a task", "pc:t"),)

        task = await h.slash(alice, "task")
        assert task.deferred and task.response is not None and not task.response.ephemeral
        embed = task.response.embed
        assert embed.title == "Task for project “cats”"
        assert embed.description == "Is it a cat?\n\na cat on a mat"
        aid = task_id(task.response)
        assert task.response.buttons == (
            ("yes", f"pc:a:{aid}:0"),
            ("no", f"pc:a:{aid}:1"),
            ("Skip", f"pc:s:{aid}"),
            ("Ask a question", f"pc:q:{aid}"),
        )

        w.clock.advance(30)
        click = await h.click(alice, task.response, f"pc:a:{aid}:0")
        assert click.deferred and not click.errors
        assert texts(click.followups)[0] == "Accepted. +0.05, balance 0.05."
        assert texts(click.followups)[1].startswith("Task for project “cats”")  # the next one
        answered = h.refresh(task.response)
        assert answered.embed.description is not None
        assert answered.embed.description.endswith("Your answer: yes")
        assert answered.components == ()  # the answered task has no buttons left

        balance = await h.slash(alice, "balance")
        assert balance.ephemeral and balance.response is not None
        assert balance.response.content == "Your balance: 0.05"
        assert balance.response.visible_to == alice.id

        mine = await h.slash(alice, "mydata")
        assert mine.deferred and mine.ephemeral
        (data,) = mine.messages
        assert data.content == "Here is everything stored about you." and data.ephemeral
        assert json.loads(data.file("polycrowd-my-data.json").data)
        assert h.messages_in(h.general, viewer=h.add_user("bob"))[-1].id != data.id


async def test_language_comes_from_the_client_locale_then_from_the_stored_user(
    tmp_path: Path, locales: Path
) -> None:
    async with discord_world(tmp_path, locales) as w:
        anna = w.h.add_user("anna", locale="de")
        start = await w.h.slash(anna, "start")
        assert start.response is not None
        assert start.response.content.startswith("Willkommen bei polycrowd!")
        assert (await w.user(anna)).locale == "de"

        anna.locale = "fr"  # the client changes; the worker's stored language does not
        balance = await w.h.slash(anna, "balance")
        assert balance.response is not None and balance.response.content == "Dein Guthaben: 0.00"

        pedro = w.h.add_user("pedro", locale="pt-BR")  # no Portuguese catalog: English
        out = await w.h.slash(pedro, "balance")
        assert out.response is not None and out.response.content == "Your balance: 0.00"


async def test_multi_label_task_is_a_select_menu(tmp_path: Path, locales: Path) -> None:
    async with discord_world(tmp_path, locales) as w:
        await w.project(MULTI_SPEC)
        alice = await w.worker("alice")
        task = await w.h.slash(alice, "task")
        assert task.response is not None
        aid = task_id(task.response)
        menu = task.response.component(f"pcm:{aid}")
        assert [(o["label"], o["value"]) for o in menu["options"]] == [
            ("red", "0"),
            ("green", "1"),
            ("blue", "2"),
            ("round", "3"),
        ]
        assert menu["min_values"] == 1 and menu["max_values"] == 4
        assert task.response.buttons == (
            ("Skip", f"pc:s:{aid}"),
            ("Ask a question", f"pc:q:{aid}"),
        )

        w.clock.advance(30)
        out = await w.h.select(alice, task.response, f"pcm:{aid}", ["0", "3"])
        assert out.deferred and not out.errors
        assert texts(out.followups)[0] == "Accepted. +0.03, balance 0.03."
        answered = w.h.refresh(task.response)
        assert answered.embed.description is not None
        assert answered.embed.description.endswith("Your answer: red|round")


async def test_text_answer_through_a_modal(tmp_path: Path, locales: Path) -> None:
    async with discord_world(tmp_path, locales) as w:
        await w.project(TEXT_SPEC)
        alice = await w.worker("alice")
        task = await w.h.slash(alice, "task")
        assert task.response is not None
        aid = task_id(task.response)
        assert task.response.buttons == (
            ("Answer", f"pcq:{aid}"),
            ("Skip", f"pc:s:{aid}"),
            ("Ask a question", f"pc:q:{aid}"),
        )

        shown = await w.h.click(alice, task.response, f"pcq:{aid}")
        assert shown.kind == "modal" and shown.modal is not None
        assert shown.modal["custom_id"] == f"pcq:{aid}" and shown.modal["title"] == "Your answer"

        w.clock.advance(40)
        out = await w.h.submit_modal(alice, f"pcq:{aid}", {"answer": "a cat sleeping on a mat"})
        assert out.deferred and not out.errors
        verdict, following = texts(out.followups)
        assert verdict == "Accepted. +0.07, balance 0.07."
        assert following.startswith("Task for project “captions”")

        # the old task's Answer button: the modal opens, but the answer is refused politely
        await w.h.click(alice, task.response, f"pcq:{aid}")
        stale = await w.h.submit_modal(alice, f"pcq:{aid}", {"answer": "another answer"})
        assert [(m.content, m.ephemeral) for m in stale.followups] == [
            ("This button is no longer valid.", True)
        ]
        assert (await w.user(alice)).balance == 7


async def test_a_german_worker_gets_a_german_modal(tmp_path: Path, locales: Path) -> None:
    async with discord_world(tmp_path, locales) as w:
        await w.project(TEXT_SPEC)
        anna = await w.worker("anna", locale="de", also=["en"])
        task = await w.h.slash(anna, "aufgabe")
        assert task.response is not None
        aid = task_id(task.response)
        assert ("Antworten", f"pcq:{aid}") in task.response.buttons
        shown = await w.h.click(anna, task.response, f"pcq:{aid}")
        assert shown.modal is not None and shown.modal["title"] == "Deine Antwort"


async def test_every_interaction_is_acknowledged_before_a_slow_checker_answers(
    tmp_path: Path, locales: Path
) -> None:
    async with discord_world(tmp_path, locales, checker=SlowChecker()) as w:
        await w.project(CHOICE_SPEC)
        alice = await w.worker("alice")
        out = await w.answer_first_task(alice)
        assert out.acknowledged and out.deferred  # before the checker said anything
        assert out.followups == () and not out.errors

        await w.h.advance_time(10)  # the checker answers (virtual time)
        later = w.h.messages_in(w.h.general, viewer=alice)
        assert "Accepted. +0.05, balance 0.05." in texts(later)


async def test_direct_messages_answer_text_tasks(tmp_path: Path, locales: Path) -> None:
    async with discord_world(tmp_path, locales) as w:
        await w.project(TEXT_SPEC)
        alice = w.h.add_user("alice")
        await w.h.send_message(alice, None, "/start")
        task = await w.h.send_message(alice, None, "/task")
        assert texts(task.sent)[0].startswith("Task for project “captions”")
        assert task.sent[0].dm_user_id == alice.id

        w.clock.advance(40)
        out = await w.h.send_message(alice, None, "a cat sleeping on a mat")
        assert texts(out.sent)[0] == "Accepted. +0.07, balance 0.07."
        assert all(s.dm_user_id == alice.id for s in out.sent)

        await w.app.remind([(await w.user(alice)).id])  # proactive: adapter.send to the DM
        reminder = w.h.dms_to(alice)[-1].content
        assert reminder == "New tasks are waiting for you. Send /task to start."


# --------------------------------------------------------------------------- requesters


async def test_requester_uploads_a_spec_and_items_launches_and_exports(
    tmp_path: Path, locales: Path
) -> None:
    async with discord_world(tmp_path, locales) as w:
        h = w.h
        bob = h.add_user("bob")
        refused = await h.slash(bob, "upload", file=("cats.yaml", CHOICE_SPEC.encode()))
        assert texts(refused.messages) == ["Only requesters can do that."]
        await w.grant(bob, Role.REQUESTER)

        spec = await h.slash(bob, "upload", file=("cats.yaml", CHOICE_SPEC.encode()))
        assert spec.deferred and spec.ephemeral
        assert texts(spec.messages)[0].startswith("Project 1 “cats” created.")

        bad = await h.slash(bob, "upload", file=("notes.txt", b"hello"))
        assert texts(bad.messages) == [
            "Send items as a .csv or .jsonl file, or a project spec as .yaml or .json."
        ]

        items = await h.slash(bob, "upload", file=("items.csv", ITEMS))
        (msg,) = items.messages
        assert msg.content == "Imported 3 items into project 1.\nGold questions: 0"
        assert msg.buttons == (("Launch", "pc:pl:1"),) and msg.ephemeral

        launched = await h.click(bob, msg, "pc:pl:1")  # a button on an ephemeral message
        assert [(m.content, m.ephemeral) for m in launched.followups] == [
            ("Project 1 is live.", True)
        ]

        alice = await w.worker("alice")
        for _ in range(3):
            await w.answer_first_task(alice)

        status = await h.slash(bob, "status", project="1")
        assert texts(status.messages)[0].startswith("Project 1 “cats”: done")

        export = await h.slash(bob, "export", format="jsonl")
        assert export.deferred and export.ephemeral
        (done,) = export.messages
        assert done.content == "Results of project 1: 3 items."
        data = done.file("project-1-results.jsonl").data
        rows = [json.loads(line) for line in data.splitlines()]
        assert len(rows) == 3 and all(f'"i{n}"'.encode() in data for n in (1, 2, 3))
        csv = (await h.slash(bob, "export", project="#1")).messages[0]
        assert b"i1" in csv.file("project-1-results.csv").data


async def test_newproject_conversation_answers_through_a_modal(
    tmp_path: Path, locales: Path
) -> None:
    async with discord_world(tmp_path, locales) as w:
        bob = w.h.add_user("bob")
        await w.grant(bob, Role.REQUESTER)
        out = await w.h.slash(bob, "newproject")
        (question,) = out.messages
        assert question.content.endswith("What is the project called?")
        assert question.buttons == (("Answer", "pcq:"),)  # guild messages cannot be read

        await w.h.click(bob, question, "pcq:")
        named = await w.h.submit_modal(bob, "pcq:", {"answer": "Birds"})
        (kind,) = named.followups
        assert kind.content == "What kind of task is it?"
        assert kind.custom_ids == ("pc:np:choice", "pc:np:multi", "pc:np:text")

        # in a DM the same conversation goes on as plain messages
        picked = await w.h.click(bob, kind, "pc:np:text")
        assert w.h.refresh(kind).content == "Send the instructions workers will read."
        assert not picked.errors
        await w.h.send_message(bob, None, "Name the bird.")
        await w.h.send_message(bob, None, "en")
        await w.h.send_message(bob, None, "2")
        done = await w.h.send_message(bob, None, "4")
        assert texts(done.sent)[0].startswith("Project 1 “Birds” created.")


# --------------------------------------------------------------------------- moderators


async def test_moderator_blocks_a_worker_from_the_admin_channel(
    tmp_path: Path, locales: Path
) -> None:
    async with discord_world(tmp_path, locales) as w:
        h = w.h
        await w.project(TEXT_SPEC)
        # moderator commands are hidden from members without the staff permissions
        staff = h.guild.create_role("moderators", permissions=STAFF_PERMISSIONS)
        mod = h.add_user("mod", roles=[staff])
        await w.grant(mod, Role.MODERATOR)
        alice = await w.worker("alice")
        uid = (await w.user(alice)).id

        task = await h.slash(alice, "task")
        assert task.response is not None
        aid = task_id(task.response)
        await h.click(alice, task.response, f"pcq:{aid}")
        w.clock.advance(40)
        out = await h.submit_modal(alice, f"pcq:{aid}", {"answer": "a **fat** cat"})
        assert texts(out.followups)[0] == (
            "Credited for now; a moderator will double-check this answer."
        )
        await w.app.flush()

        (card,) = h.messages_in(h.admin)  # the moderation card, sent by adapter.send()
        assert card.embed.title == "Flag 1: Answer to review"
        assert f"pc:mod:ub:{uid}" in card.custom_ids and "pc:mod:aa:1" in card.custom_ids

        elsewhere = await h.slash(mod, "block", user=f"discord:{alice.id}")
        assert texts(elsewhere.messages) == ["Use this in the moderators' chat."]
        not_mod = await h.click(alice, card, f"pc:mod:ub:{uid}")
        assert [(m.content, m.ephemeral) for m in not_mod.followups] == [
            ("Only moderators can do that.", True)
        ]

        blocked = await h.click(mod, card, f"pc:mod:ub:{uid}")
        assert blocked.deferred and not blocked.errors
        after = h.refresh(card)
        pseudonym = (await w.user(alice)).pseudonym
        assert after.content == f"User {pseudonym} is blocked." and after.components == ()
        assert after.embeds == ()

        refused = await h.slash(alice, "task")
        assert texts(refused.messages) == ["Your account is blocked: fraud"]

        back = await h.slash(mod, "unblock", channel=h.admin, user=f"<@{alice.id}>")
        assert texts(back.messages) == [f"User {pseudonym} is active again."]
        again = await h.slash(mod, "block", channel=h.admin, user=pseudonym, reason="spam bot")
        assert texts(again.messages) == [f"User {pseudonym} is blocked."]
        assert (await w.user(alice)).status_reason == "spam bot"


# --------------------------------------------------------------------------- linking


def link_code(messages: Sequence[Sent]) -> str:
    found = re.search(r"link code is ([A-Z0-9]{8})", texts(messages)[0])
    assert found, texts(messages)
    return found.group(1)


async def memory_worker(chat: MemoryChat, clock: Clock, user: MemoryUser) -> None:
    """The same person on another platform (the in-memory one) earns 0.05 there."""
    await chat.command(user, "/start")
    await chat.press(user, "lok")
    (task,) = await chat.command(user, "/task")
    clock.advance(30)
    await chat.press(user, task.button(data_prefix="a:"), task.id)


async def test_linking_discord_with_another_platform_merges_one_person(
    tmp_path: Path, locales: Path
) -> None:
    async with discord_world(tmp_path, locales) as w:
        await w.project(CHOICE_SPEC)
        chat = MemoryChat(w.app.dispatcher, w.app.translator)
        alice = await w.worker("alice")
        await w.answer_first_task(alice)
        other = MemoryUser("77", "alice-elsewhere")
        await memory_worker(chat, w.clock, other)

        # a wrong code merges nothing
        (wrong,) = await chat.command(other, "/link ZZZZZZZZ")
        assert wrong.text == "That code is not valid."

        out = await w.h.slash(alice, "link")
        assert out.ephemeral and out.response is not None and out.response.visible_to == alice.id
        code = link_code(out.messages)

        w.clock.advance(11 * 60)  # codes live 10 minutes
        (late,) = await chat.command(other, f"/link {code}")
        assert late.text == "That code has expired. Ask for a new one."
        assert (await w.user(alice)).balance == 5

        code = link_code((await w.h.slash(alice, "link")).messages)
        (linked,) = await chat.command(other, f"/link {code}")
        assert linked.text == "Accounts linked. Your balance: 0.10"
        balance = await w.h.slash(alice, "balance")
        assert texts(balance.messages) == ["Your balance: 0.10"]
        merged = await w.app.engine.find_user("memory:77")
        assert merged is not None and merged.id == (await w.user(alice)).id

        # a used code cannot be redeemed again
        stranger = MemoryUser("78", "stranger")
        (reused,) = await chat.command(stranger, f"/link {code}")
        assert reused.text == "That code is not valid."
        assert (await w.app.engine.find_user("memory:78")) is not None
        assert (await w.user(alice)).balance == 10

        # the other direction: the code comes from the other platform, entered in Discord
        (offer,) = await chat.command(stranger, "/link")
        other_code = re.search(r"link code is ([A-Z0-9]{8})", offer.text)
        assert other_code
        bob = w.h.add_user("bob")
        done = await w.h.slash(bob, "link", code=other_code.group(1).lower())
        assert texts(done.messages) == ["Accounts linked. Your balance: 0.00"]
        elsewhere = await w.app.engine.find_user("memory:78")
        assert elsewhere is not None and elsewhere.id == (await w.user(bob)).id


# --------------------------------------------------------------------------- restarts


async def test_buttons_keep_working_after_a_restart(tmp_path: Path, locales: Path) -> None:
    async with discord_world(tmp_path, locales) as w:
        await w.project(CHOICE_SPEC)
        h = w.h
        alice = await w.worker("alice")
        task = await h.slash(alice, "task")
        copy = await h.slash(alice, "task")  # the same open task, shown twice
        assert task.response is not None and copy.response is not None
        aid = task_id(task.response)
        assert task_id(copy.response) == aid
        general = h.bot.get_channel(h.general.id)
        assert isinstance(general, discord.TextChannel)
        legacy_view = discord.ui.View(timeout=None).add_item(
            discord.ui.Button(label="old", custom_id="task:legacy:1")
        )
        legacy = await general.send("from an older version", view=legacy_view)

        old_bot = h.bot
        await h.restart()
        assert h.bot is not old_bot and w.adapter.bot is h.bot

        w.clock.advance(30)
        out = await h.click(alice, task.response, f"pc:a:{aid}:1")
        assert not out.errors
        assert texts(out.followups)[0] == "Accepted. +0.05, balance 0.05."

        again = await h.click(alice, copy.response, f"pc:a:{aid}:0")  # answered already
        assert [(m.content, m.ephemeral) for m in again.followups] == [
            ("This button is no longer valid.", True)
        ]

        stale = await h.click(alice, legacy, "task:legacy:1")
        assert stale.response is not None and stale.ephemeral
        assert stale.response.content == "This button is no longer valid."


# --------------------------------------------------------------------------- rendering


def test_long_messages_are_split_under_2000_characters() -> None:
    text = "\n".join(f"line {i} " + "x" * 150 for i in range(40)) + "\n" + "y" * 4500
    chunks = split_text(text)
    assert all(0 < len(c) <= MAX_CONTENT for c in chunks)
    assert "\n".join(chunks).replace("\n", "") == text.replace("\n", "")
    assert split_text("") == [""]


async def test_components_stay_within_discord_limits() -> None:
    renderer = Renderer(Translator())
    labels = [f"label {i} " + "w" * 90 for i in range(40)]
    rows = [
        tuple(Button(Msg.raw(labels[k]), f"a:123456:{k}") for k in range(i, min(i + 3, 40)))
        for i in range(0, 40, 3)
    ]
    rows.append((Button(Msg.raw("Skip"), "s:123456"),))
    reply = Reply(parts=(Msg.raw("a task"),), buttons=tuple(rows), kind="task")
    (out,) = renderer.render(reply, "en")
    assert 1 <= len(out.rows) <= 5
    ids = [c.custom_id for row in out.rows for c in row]
    assert len(ids) == len(set(ids))
    for row in out.rows:
        assert len(row) <= 5
        for c in row:
            assert len(c.custom_id) <= 100 and len(c.label) <= 80
            assert len(c.options) <= 25 and all(len(lab) <= 100 for lab, _ in c.options)
    values = [v for row in out.rows for c in row for _, v in c.options]
    assert values == [f"a:123456:{k}" for k in range(40)][: len(values)]
    assert len(values) >= 25
    assert out.rows[0][0].custom_id == "pc:s:123456"
    view = out.view()  # discord.py itself accepts the layout
    assert view is not None and len(view.children) == sum(len(r) for r in out.rows)


def test_catalog_translator_maps_discord_locales(locales: Path) -> None:
    t = CatalogTranslator(Translator(locales_dir=locales))
    assert t.language_of(discord.Locale.german) == "de"
    assert t.language_of(discord.Locale.american_english) is None
    assert t.language_of(discord.Locale.japanese) is None
