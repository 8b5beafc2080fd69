"""Every rendered user text is escaped for the platform and cleaned of bidi overrides and
control characters: checked on what the fake servers received (Telegram through real
python-telegram-bot, Discord through real discord.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from polycrowd.bot.escaping import clean, telegram_html
from polycrowd.engine.io import load_spec_text
from polycrowd.engine.types import Role
from tests.bot.conftest import TELEGRAM_ADMIN_CHAT, TelegramHarness
from tests.bot.test_discord import discord_world, locales, texts

__all__ = ["locales"]  # the fixture, used by name

BOLD = "<b>x</b>"
RLO = "\u202egnp.exe"  # shows as "exe.png" where the override is obeyed
EVERYONE = "@everyone"
UNSAFE = ("\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069")
CONTROL = "\x07\x1b[31m"  # a bell and an ANSI escape

NAME = f"Nasty {BOLD} {RLO} {EVERYONE}"
SPEC = (
    f'name: "{NAME}"\ntype: choice\nlabels: ["cat", "\u202edog"]\nlanguages: [en]\n'
    'instructions: "Which one?"\noverlap: 2\nreward: 5\n'
)
ITEMS = f"id,text\ni1,{BOLD} {RLO} {EVERYONE}{CONTROL}\n".encode()
QUESTION = f"is {BOLD} {RLO} {EVERYONE} \u2067ok\u2069?"


def test_clean_strips_overrides_isolates_and_controls_but_keeps_lines() -> None:
    assert clean("a\u202eb\u2066c\u2069\x00d\x7fe\x9ff\tg\nh") == "abcdef\tg\nh"
    assert clean("שלום עולם مرحبا") == "שלום עולם مرحبا"  # right-to-left text itself stays
    assert telegram_html(f"{BOLD}{RLO}") == "&lt;b&gt;x&lt;/b&gt;gnp.exe"


def _no_unsafe(text: str) -> bool:
    return not any(c in text for c in UNSAFE) and "\x07" not in text and "\x1b" not in text


# --------------------------------------------------------------------------- Telegram


async def test_telegram_receives_escaped_clean_html(telegram_bot: TelegramHarness) -> None:
    h = telegram_bot
    rita = h.user(900, "Rita")
    await h.role(rita, Role.REQUESTER)
    created = await h.upload(rita, "nasty.yaml", SPEC.encode(), "created")
    assert created.parse_mode == "HTML"
    assert "Nasty &lt;b&gt;x&lt;/b&gt; gnp.exe @everyone" in created.text  # as sent
    assert "Nasty <b>x</b> gnp.exe @everyone" in created.plain  # as shown
    await h.upload(rita, "items.csv", ITEMS, "Imported")
    await h.say(rita, "/launch", "is live")

    ann = h.user(201, "Ann")
    welcome = await h.say(ann, "/start", "Welcome", buttons=True)
    since = await h.press(ann, welcome, "lok")
    assert welcome.message_id is not None
    await h.edit(ann.id, welcome.message_id, since)
    task = await h.say(ann, "/task", "Task for project", buttons=True)
    assert "&lt;b&gt;x&lt;/b&gt; gnp.exe @everyone[31m" in task.text
    assert f"{BOLD} gnp.exe {EVERYONE}" in task.plain
    labels = [b["text"] for row in task.buttons for b in row]
    assert "dog" in labels and all(_no_unsafe(lab) for lab in labels)

    # a worker's question, shown to the requester and in the moderators' chat
    since = h.mark()
    ann.say(f"/ask {QUESTION}")
    card = await h.message(TELEGRAM_ADMIN_CHAT, "Question", since)
    assert "&lt;b&gt;x&lt;/b&gt; gnp.exe @everyone ok?" in card.text
    assert f"is {BOLD} gnp.exe {EVERYONE} ok?" in card.plain
    await h.message(rita.id, "Question", since)

    sent = h.fake.sent_messages()
    assert sent and all(_no_unsafe(m.text) for m in sent), [m.text for m in sent]
    for call in h.fake.calls:
        if call.method in ("sendMessage", "editMessageText") and BOLD in str(call.params):
            pytest.fail(f"raw HTML from a user reached Telegram: {call.params}")


# --------------------------------------------------------------------------- Discord


def _payloads(requests: list[Any]) -> list[dict[str, Any]]:
    """JSON bodies of every message the bot posted or edited."""
    out = []
    for r in requests:
        body = r.json
        is_message = isinstance(body, dict) and ("content" in body or "embeds" in body)
        if r.method in ("POST", "PATCH") and is_message:
            out.append(body)
    return out


async def test_discord_receives_escaped_clean_text_and_pings_no_one(
    tmp_path: Path, locales: Path
) -> None:
    async with discord_world(tmp_path, locales) as w:
        h = w.h
        spec = load_spec_text(SPEC, "nasty.yaml")
        engine = w.app.engine
        project = await engine.create_project(None, spec)
        await engine.import_items(project.id, ITEMS, name="items.csv")
        await engine.set_state(None, project.id, "live")
        alice = await w.worker("alice")
        task = await h.slash(alice, "task")
        assert task.response is not None
        [shown] = texts([task.response])
        assert _no_unsafe(shown), shown
        assert "gnp.exe" in shown and "<b>x</b>" in shown  # Discord shows no HTML
        assert "@\u200beveryone" in shown and EVERYONE not in shown  # no ping, even unparsed
        labels = [lab or "" for lab, _ in task.response.buttons]
        assert "dog" in labels and all(_no_unsafe(lab) for lab in labels)

        # questions go to the admin channel the settings name (the fixture sets the adapter's)
        d = w.app.dispatcher
        d.settings = dataclasses.replace(d.settings, discord_admin_channel=str(h.admin.id))
        asked = await h.slash(alice, "ask", text=QUESTION)
        assert not asked.errors
        [card] = h.messages_in(h.admin)  # the question, posted by adapter.send()
        [card_text] = texts([card])
        assert _no_unsafe(card_text) and "@\u200beveryone" in card_text

        bodies = _payloads(h.requests)
        assert bodies
        for body in bodies:
            assert body.get("allowed_mentions", {}).get("parse") == [], body
            assert _no_unsafe(str(body)), body
