"""The permission matrix on the real platforms: every registered command and button prefix a
role may not use, from a private chat and from the moderators' chat, through real
python-telegram-bot against the fake Bot API and real discord.py against the fake Discord.

What each allowed use does is the in-memory matrix's business (tests/handlers/
test_permissions.py, same dispatcher); here every refusal must reach the user translated, with
its reason, and change nothing in the database. On Discord, moderator commands are also hidden
from members by ``default_member_permissions``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import simcord

from polycrowd.bot.discord import OPTIONS, STAFF_PERMISSIONS, UPLOAD_COMMAND
from polycrowd.engine.types import Role
from polycrowd.handlers.common import ROLE_REFUSALS
from polycrowd.i18n import Msg
from tests.bot.conftest import TELEGRAM_ADMIN_CHAT, TelegramHarness
from tests.bot.fakediscord import FakeUser
from tests.bot.test_discord import TEXT_SPEC, discord_world, locales, texts
from tests.handlers.test_permissions import ROLES, expected_refusal, snapshot

__all__ = ["locales"]  # the fixture, used by name

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

# --------------------------------------------------------------------------- Telegram

TELEGRAM_USERS = {
    Role.WORKER: (401, "Wanda", "es"),
    Role.REQUESTER: (402, "Rita", "en"),
    Role.MODERATOR: (403, "Mo", "en"),
    Role.ADMIN: (404, "Ada", "fr"),
}


async def test_telegram_refuses_every_command_and_button_a_role_may_not_use(
    telegram_bot: TelegramHarness,
) -> None:
    h = telegram_bot
    d = h.app.dispatcher
    tr = h.app.translator
    users = {}
    for role, (uid, name, lang) in TELEGRAM_USERS.items():
        users[role] = h.user(uid, name, language_code=lang)
        u, _ = await h.app.engine.user_for("telegram", str(uid), name, lang)
        await h.app.engine.bootstrap_role(u.id, role)
    engine = h.app.engine
    target = await engine.find_user(f"telegram:{TELEGRAM_USERS[Role.WORKER][0]}")
    assert target is not None
    # a message in each chat to press buttons on
    anchors = {
        chat: await h.say(users[Role.ADMIN], "/help", chat_id=chat)
        for chat in (TELEGRAM_ADMIN_CHAT, None)
    }
    before = snapshot(h.app.settings.db)
    commands = tried = buttons = 0
    for info in d.commands.values():
        commands += 1
        for role in ROLES:
            for chat in (None, TELEGRAM_ADMIN_CHAT):
                reason = expected_refusal(role, info.role, info.admin_chat, chat is not None)
                if not reason:
                    continue
                h.clock.advance(5)  # not a flood
                lang = TELEGRAM_USERS[role][2]
                shown = tr.render(Msg(reason), lang)
                reply = await h.say(users[role], f"/{info.name} 1", shown, chat_id=chat)
                assert reply.reply_markup is None
                tried += 1
    for prefix, button in d.buttons.items():
        data = f"{prefix}:{target.id}" if prefix != "mod" else f"mod:ub:{target.id}"
        for role in ROLES:
            for chat in (None, TELEGRAM_ADMIN_CHAT):
                reason = expected_refusal(role, button.role, button.admin_chat, chat is not None)
                if not reason:
                    continue
                h.clock.advance(5)
                anchor = anchors[chat] if chat is not None else anchors[None]
                since = await h.press(users[role], anchor, data, chat_id=chat)
                answered = await h.answered(since)
                assert answered == tr.render(Msg(reason), TELEGRAM_USERS[role][2]), (prefix, role)
                buttons += 1
    assert snapshot(h.app.settings.db) == before
    # every command needing more than a worker, refused to a worker in both chats
    staff_only = sum(1 for c in d.commands.values() if c.role is not Role.WORKER)
    assert tried >= 2 * staff_only and commands == len(d.commands)
    assert buttons >= 2 * sum(1 for b in d.buttons.values() if b.role is not Role.WORKER)
    # and what the same users may do still works
    h.clock.advance(5)
    await h.say(users[Role.MODERATOR], "/review", "Nothing to review", chat_id=TELEGRAM_ADMIN_CHAT)
    await h.say(users[Role.REQUESTER], "/projects", "no projects")


# --------------------------------------------------------------------------- Discord


def _options(name: str) -> dict[str, Any]:
    """A value for every required option of ``/name``."""
    values: dict[str, Any] = {}
    for opt in OPTIONS.get(name, ()):
        if not opt.required:
            continue
        if opt.kind == "file":
            values[opt.name] = ("items.csv", b"id,text\n1,a\n")
        elif opt.kind == "role":
            values[opt.name] = "admin"
        elif opt.kind == "user":
            values[opt.name] = "discord:1"
        elif opt.name == "action":
            values[opt.name] = "add"
        else:
            values[opt.name] = "1"
    return values


async def test_discord_hides_staff_commands_and_refuses_every_command_a_role_may_not_use(
    tmp_path: Path, locales: Path
) -> None:
    async with discord_world(tmp_path, locales) as w:
        h = w.h
        d = w.app.dispatcher
        tr = w.app.translator
        synced = h.commands()
        for info in d.commands.values():
            perms = synced[info.name].get("default_member_permissions")
            if info.role.at_least(Role.MODERATOR):
                assert str(perms) == str(STAFF_PERMISSIONS.value), info.name
            else:
                assert perms is None, info.name
        assert synced[UPLOAD_COMMAND].get("default_member_permissions") is None

        # a member without the staff permissions cannot even run them
        member = h.add_user("member")
        staff_commands = [c.name for c in d.commands.values() if c.role.at_least(Role.MODERATOR)]
        assert staff_commands
        for name in staff_commands:
            with pytest.raises(simcord.SetupError, match="not visible"):
                await h.slash(member, name, channel=h.admin, **_options(name))

        # Discord staff who are not polycrowd moderators see them, and are refused
        staff = h.guild.create_role("staff", permissions=STAFF_PERMISSIONS)
        people: dict[Role, FakeUser] = {}
        for role in ROLES:
            people[role] = h.add_user(f"{role.value}-person", locale="es-ES", roles=[staff])
            await w.grant(people[role], role)
        before = snapshot(w.app.settings.db)
        tried = 0
        for info in d.commands.values():
            for role in ROLES:
                for channel in (h.general, h.admin):
                    reason = expected_refusal(role, info.role, info.admin_chat, channel is h.admin)
                    if not reason:
                        continue
                    w.clock.advance(5)
                    options = _options(info.name)
                    out = await h.slash(people[role], info.name, channel=channel, **options)
                    assert not out.errors
                    assert texts(out.messages) == [tr.render(Msg(reason), "es")], (
                        info.name,
                        role,
                        channel.name,
                    )
                    tried += 1
        upload = await h.slash(people[Role.WORKER], UPLOAD_COMMAND, **_options(UPLOAD_COMMAND))
        assert texts(upload.messages) == [tr.render(Msg(ROLE_REFUSALS[Role.REQUESTER]), "es")]
        assert snapshot(w.app.settings.db) == before
        assert tried >= 2 * sum(1 for c in d.commands.values() if c.role is not Role.WORKER)


async def test_discord_worker_pressing_a_moderation_card_changes_nothing(
    tmp_path: Path, locales: Path
) -> None:
    async with discord_world(tmp_path, locales) as w:
        h = w.h
        await w.project(TEXT_SPEC)
        staff = h.guild.create_role("staff", permissions=STAFF_PERMISSIONS)
        mod = h.add_user("mod", roles=[staff])
        await w.grant(mod, Role.MODERATOR)
        alice = await w.worker("alice")
        task = await h.slash(alice, "task")
        assert task.response is not None
        aid = next(c for c in task.response.custom_ids if c.startswith("pcq:"))
        await h.click(alice, task.response, aid)
        w.clock.advance(40)
        await h.submit_modal(alice, aid, {"answer": "a **fat** cat"})
        await w.app.flush()
        (card,) = h.messages_in(h.admin)
        buttons = [c for c in card.custom_ids if c.startswith("pc:mod:")]
        assert buttons
        eve = h.add_user("eve", locale="fr")
        await w.grant(eve, Role.WORKER)
        before = snapshot(w.app.settings.db)
        for custom_id in buttons:
            w.clock.advance(5)
            out = await h.click(eve, card, custom_id)
            assert [(m.content, m.ephemeral) for m in out.followups] == [
                (w.app.translator.render(Msg(ROLE_REFUSALS[Role.MODERATOR]), "fr"), True)
            ]
        assert snapshot(w.app.settings.db) == before
        assert h.refresh(card).custom_ids == card.custom_ids  # the card is still open
