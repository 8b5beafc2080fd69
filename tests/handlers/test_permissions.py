"""The permission matrix: every registered command and every button prefix, for every role,
from a private chat and from the moderators' chat, through the in-memory chat adapter.

The commands and prefixes are read from the Dispatcher's registries, so a new one is covered
(and must be classified below where the test needs to know what it does) without editing this
file's loops. A refusal must answer with the translated reason, change nothing in the
database and leave exactly one ``refused:`` log line (ids, role and command; no name, no
arguments); an allowed use must not be refused.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from polycrowd.bot.memory import MemoryUser
from polycrowd.engine.types import Role
from polycrowd.handlers.common import ROLE_REFUSALS, WRONG_CHAT, CommandInfo, Dispatcher
from polycrowd.i18n import Msg

from .conftest import World

ROLES = (Role.WORKER, Role.REQUESTER, Role.MODERATOR, Role.ADMIN)
#: Tables every event writes whoever sends it: the redelivery guard and the chat a user was
#: last seen in. Everything else must be exactly as it was after a refusal.
VOLATILE = frozenset({"processed_updates", "identities"})
#: Requester commands that act on a project (by id, else the current one).
PROJECT_COMMANDS = frozenset({"use", "launch", "pause", "status", "export", "report"})
#: Requester commands on a worker's question (by its id).
QUESTION_COMMANDS = frozenset({"answer", "faq"})
#: Requester commands that take no project or question id.
OWN_COMMANDS = frozenset({"newproject", "projects", "dashboard"})
#: Buttons that erase the presser's own account: pressed by a fresh account of each role.
SELF_ERASING = frozenset({"fy"})
REFUSAL_TEXTS = frozenset({*ROLE_REFUSALS.values(), WRONG_CHAT})


def snapshot(db_path: str | Path, skip: frozenset[str] = VOLATILE) -> dict[str, list[Any]]:
    """Every row of every table (but ``skip``), sorted: equal snapshots, unchanged data."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        names = [
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0] not in skip and not r[0].startswith("sqlite_")
        ]
        return {n: sorted(map(repr, con.execute(f'SELECT * FROM "{n}"'))) for n in names}
    finally:
        con.close()


def expected_refusal(role: Role, needs: Role, admin_chat: bool, in_admin_chat: bool) -> str:
    """The reason the dispatcher must give, or "" when the use is allowed."""
    if not role.at_least(needs):
        return ROLE_REFUSALS[needs]
    if admin_chat and not in_admin_chat:
        return WRONG_CHAT
    return ""


@dataclass
class Cast:
    world: World
    users: dict[Role, MemoryUser]
    ids: dict[Role, int]
    worker_ref: str  # "memory:<id>" of a plain worker the moderator commands act on
    project: int  # owned by the REQUESTER of the cast
    other_project: int  # owned by another requester
    question: int  # a worker's question about ``project``

    async def reset(self) -> None:
        """Undo what an allowed command may have done to the cast's accounts."""
        engine = self.world.app.engine
        for role, uid in self.ids.items():
            await engine.bootstrap_role(uid, role)
            await engine.set_status(None, uid, "active")
        target = await engine.find_user(self.worker_ref)
        assert target is not None
        await engine.bootstrap_role(target.id, Role.WORKER)
        await engine.set_status(None, target.id, "active")


async def _cast(world: World) -> Cast:
    engine = world.app.engine
    await world.live_project()  # project 1, the requester's
    target_user = await world.worker(9)
    await world.chat.command(target_user, "/task")
    await world.chat.command(target_user, "/ask is a puppy a dog?")
    other = MemoryUser("50", "other-requester", "en")
    u, _ = await engine.user_for("memory", other.id, other.name, "en")
    await engine.bootstrap_role(u.id, Role.REQUESTER)
    await world.chat.upload(other, "theirs.yaml", SPEC_OTHER.encode())
    [theirs] = await engine.projects(u.id)
    users = {
        Role.WORKER: MemoryUser("60", "Name-Wanda", "es"),
        Role.REQUESTER: MemoryUser(world.requester.id, "Name-Rita", "en"),
        Role.MODERATOR: MemoryUser(world.moderator.id, "Name-Mo", "en", admin_chat=True),
        Role.ADMIN: MemoryUser("70", "Name-Ada", "en"),
    }
    ids: dict[Role, int] = {}
    for role, who in users.items():
        user, _ = await engine.user_for("memory", who.id, who.name, who.locale)
        await engine.bootstrap_role(user.id, role)
        ids[role] = user.id
    mine = await engine.projects(ids[Role.REQUESTER])
    return Cast(world, users, ids, "memory:109", mine[0].id, theirs.id, 1)


SPEC_OTHER = (
    "name: secret birds\ntype: choice\nlabels: [owl, crow]\nlanguages: [en]\n"
    "instructions: Which bird?\noverlap: 1\nreward: 3\n"
)


def command_args(cast: Cast, info: CommandInfo) -> str:
    """Arguments that make each command do something real (and harmful if misallowed)."""
    samples = {
        "grant": f"{cast.worker_ref} requester",
        "block": f"{cast.worker_ref} spam",
        "unblock": cast.worker_ref,
        "answer": f"{cast.question} Yes it is.",
        "faq": f"add {cast.question}",
        "ask": "what is this?",
        "appeal": "it was right",
        "export": f"{cast.project} jsonl",
    }
    if info.name in PROJECT_COMMANDS:
        return samples.get(info.name, str(cast.project))
    return samples.get(info.name, "")


def button_data(cast: Cast, prefix: str) -> str:
    samples = {
        "mod": "mod:ub:{worker}",
        "pl": f"pl:{cast.project}",
        "np": "np:choice",
        "l": "l:es",
        "a": "a:1:0",
        "m": "m:1:1",
        "ms": "ms:1:1",
        "s": "s:1",
        "fy": "fy:1",
    }
    return samples.get(prefix, prefix)


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("refused:")]


async def _try(
    cast: Cast,
    caplog: pytest.LogCaptureFixture,
    role: Role,
    in_admin_chat: bool,
    kind: str,
    name: str,
    send: str,
    expected: str,
    stand_in: MemoryUser | None = None,
) -> None:
    world = cast.world
    who = stand_in or cast.users[role]
    who.admin_chat = in_admin_chat
    if stand_in is not None:  # a fresh account of that role
        user, _ = await world.app.engine.user_for("memory", who.id, who.name, who.locale)
        await world.app.engine.bootstrap_role(user.id, role)
        uid = user.id
    else:
        uid = cast.ids[role]
    world.clock.advance(60)  # flood control is not what this test is about
    db = world.app.settings.db
    before = snapshot(db)
    caplog.clear()
    if kind == "command":
        replies = await world.chat.command(who, send)
    else:
        replies = await world.chat.press(who, send)
    texts = [m.text for m in replies]
    where = f"{role.value} {kind} {send!r} in {'admin' if in_admin_chat else 'private'} chat"
    if expected:
        translator = world.app.translator
        reason = translator.render(Msg(expected), translator.pick(who.locale, who.locale))
        assert texts == [reason], where
        assert snapshot(db) == before, where
        [line] = refusals(caplog)
        message = line.getMessage()
        assert f"user={uid} " in message and f"role={role.value} " in message
        assert f"command={name} " in message, (where, message)
        assert "Name-" not in message and "memory:" not in message, message
    else:
        assert not REFUSAL_TEXTS & set(texts), where
        assert not any("Something went wrong" in t for t in texts), (where, texts)
        assert not refusals(caplog), where
    await cast.reset()


def _registered(d: Dispatcher) -> tuple[list[CommandInfo], list[str]]:
    return list(d.commands.values()), list(d.buttons)


async def test_every_command_for_every_role_in_both_chats(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="polycrowd")
    cast = await _cast(world)
    commands, _ = _registered(world.app.dispatcher)
    assert {c.name for c in commands} >= {"task", "launch", "review", "grant"}
    tried = 0
    for info in commands:
        for role in ROLES:
            for in_admin_chat in (False, True):
                expected = expected_refusal(role, info.role, info.admin_chat, in_admin_chat)
                text = f"/{info.name} {command_args(cast, info)}".strip()
                await _try(cast, caplog, role, in_admin_chat, "command", info.name, text, expected)
                tried += 1
    assert tried == len(commands) * len(ROLES) * 2


async def test_every_button_prefix_for_every_role_in_both_chats(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="polycrowd")
    cast = await _cast(world)
    target = await world.app.engine.find_user(cast.worker_ref)
    assert target is not None
    _, prefixes = _registered(world.app.dispatcher)
    assert {"a", "mod", "pl", "np"} <= set(prefixes)
    fresh = itertools.count()
    for prefix in prefixes:
        info = world.app.dispatcher.buttons[prefix]
        data = button_data(cast, prefix).format(worker=target.id)
        for role in ROLES:
            for in_admin_chat in (False, True):
                expected = expected_refusal(role, info.role, info.admin_chat, in_admin_chat)
                stand_in = None
                if prefix in SELF_ERASING:
                    n = next(fresh)
                    stand_in = MemoryUser(str(900 + n), f"Name-{n}", "en")
                await _try(
                    cast, caplog, role, in_admin_chat, "button", prefix, data, expected, stand_in
                )


async def test_a_worker_pressing_a_moderators_card_changes_nothing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The card the engine posted to the admin chat, pressed by a worker who is in that chat."""
    items = "id,text\n" + "".join(f"{i},picture {i}\n" for i in range(30))
    await world.live_project(items)
    spam = await world.worker(9)
    for _ in range(18):
        [task] = await world.chat.command(spam, "/task")
        world.clock.advance(5)
        await world.chat.press(spam, task.button("cat"), task.id)
    await world.app.flush()
    [card] = [m for m in world.chat.history("admin") if "always the same label" in m.text][:1]
    snoop = MemoryUser("77", "snoop", "en", admin_chat=True)
    before = snapshot(world.app.settings.db)
    caplog.set_level(logging.INFO, logger="polycrowd")
    for data in card.button_data:
        world.clock.advance(5)
        caplog.clear()
        [refused] = await world.chat.press(snoop, data, card.id)
        assert refused.text == "Only moderators can do that." and refused.reply.alert
        assert len(refusals(caplog)) == 1
    after = snapshot(world.app.settings.db, VOLATILE | {"users", "user_languages"})
    assert after == {k: v for k, v in before.items() if k not in {"users", "user_languages"}}
    assert (await world.app.engine.find_user("memory:109")).status == "active"  # type: ignore[union-attr]


async def test_requesters_only_touch_their_own_projects(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="polycrowd")
    cast = await _cast(world)
    d = world.app.dispatcher
    requester_commands = {c.name for c in d.commands.values() if c.role is Role.REQUESTER}
    # a new requester command must be sorted into one of these (and so be tried below)
    assert requester_commands == PROJECT_COMMANDS | QUESTION_COMMANDS | OWN_COMMANDS
    intruder = MemoryUser("50", "other-requester", "en")
    theirs_name = "pets"
    db = world.app.settings.db
    attempts = [f"/{name} {cast.project}" for name in sorted(PROJECT_COMMANDS)]
    attempts += [f"/answer {cast.question} no", f"/faq add {cast.question}"]
    for text in attempts:
        world.clock.advance(60)
        before = snapshot(db)
        caplog.clear()
        replies = await world.chat.command(intruder, text)
        assert [m.text for m in replies] == [f"Project {cast.project} is not yours."], text
        assert snapshot(db) == before, text
        [line] = refusals(caplog)
        assert f"command={text.split()[0][1:]} " in line.getMessage()
    # the launch button of someone else's project
    before = snapshot(db)
    [pressed] = await world.chat.press(intruder, f"pl:{cast.project}")
    assert pressed.text == f"Project {cast.project} is not yours."
    assert snapshot(db) == before
    # /projects lists only one's own
    [listing] = await world.chat.command(intruder, "/projects")
    assert "secret birds" in listing.text and theirs_name not in listing.text
    # /use of someone else's project does not make it current
    await world.chat.command(intruder, f"/use {cast.project}")
    [status] = await world.chat.command(intruder, "/status")
    assert "secret birds" in status.text


async def test_moderators_cannot_touch_staff_accounts(world: World) -> None:
    engine = world.app.engine
    admin = MemoryUser("70", "the-admin", "en", admin_chat=True)
    u, _ = await engine.user_for("memory", admin.id, admin.name, "en")
    await engine.bootstrap_role(u.id, Role.ADMIN)
    other_mod = MemoryUser("71", "mod-two", "en", admin_chat=True)
    m, _ = await engine.user_for("memory", other_mod.id, other_mod.name, "en")
    await engine.bootstrap_role(m.id, Role.MODERATOR)
    await world.worker(9)
    db = world.app.settings.db
    before = snapshot(db)
    for text in (
        "/grant memory:70 worker",  # demote the admin
        "/block memory:70 bye",
        "/block memory:71 bye",  # another moderator
        "/grant memory:109 moderator",  # make a moderator
        "/grant memory:109 admin",
        "/block memory:2 me",  # oneself
    ):
        world.clock.advance(60)
        [refused] = await world.chat.command(world.moderator, text)
        assert refused.text in ("Only admins can do that.", "You are not allowed to do that."), (
            text
        )
    assert snapshot(db) == before
    [ok] = await world.chat.command(admin, "/grant memory:109 moderator")
    assert "is now moderator" in ok.text
    [ok] = await world.chat.command(admin, "/block memory:71 gone")
    assert "is blocked" in ok.text


async def test_a_blocked_account_can_still_erase_its_data(world: World) -> None:
    ann = await world.worker(1)
    engine = world.app.engine
    user = await engine.find_user("memory:101")
    assert user is not None
    await engine.set_status(None, user.id, "blocked", "spam")
    [refused] = await world.chat.command(ann, "/task")
    assert "blocked" in refused.text
    [refused] = await world.chat.press(ann, "t")
    assert "blocked" in refused.text
    [ask] = await world.chat.command(ann, "/forgetme")
    [erased] = await world.chat.press(ann, ask.button(data_prefix="fy"), ask.id)
    assert "erased" in erased.text
    found = await engine.find_user("memory:101")
    assert found is None or found.id != user.id  # the identity is gone


async def test_a_refused_command_leaves_the_conversation_alone(world: World) -> None:
    req = world.requester
    [first] = await world.chat.command(req, "/newproject")
    assert "What is the project called?" in first.text
    [refused] = await world.chat.command(req, "/review")
    assert refused.text == "Only moderators can do that."
    [kind] = await world.chat.say(req, "Birds")  # still the answer to the first question
    assert "What kind of task is it?" in kind.text
