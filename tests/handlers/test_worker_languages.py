"""A worker's whole flow in Arabic, Chinese and Hindi through the in-memory chat adapter.

Every reply is compared with the catalog's own translation (formatted here, not by the
Translator), never with English; Arabic replies carry Unicode isolates around numbers.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from polycrowd.bot.memory import ChatMessage, MemoryUser
from polycrowd.i18n import FSI, LRI, PDI, Translator
from polycrowd.i18n import isolate as iso

from .conftest import World

SPEC = """
name: sentiment
type: choice
labels: [positive, negative]
languages: [en, ar, zh, hi]
instructions:
  en: Is the sentence positive or negative?
  ar: هل الجملة إيجابية أم سلبية؟
  zh: 这句话是正面的还是负面的？
label_names:
  ar: {positive: إيجابي, negative: سلبي}
  zh: {positive: 正面, negative: 负面}
  hi: {positive: सकारात्मक, negative: नकारात्मक}
overlap: 1
reward: 5
"""
ITEMS = "id,text,lang\n1,الطقس جميل اليوم,ar\n2,今天天气很好,zh\n3,आज मौसम अच्छा है,hi\n"
NAMES = {
    "ar": ("إيجابي", "سلبي"),
    "zh": ("正面", "负面"),
    "hi": ("सकारात्मक", "नकारात्मक"),
}
_COMMAND = re.compile(r"(?<![\w/.])/[a-z][a-z0-9_]*")


def catalog_text(t: Translator, lang: str, msgid: str, **params: Any) -> str:
    """The catalog's translation of ``msgid``, formatted as a reader in ``lang`` sees it."""
    text = t.catalog(lang).gettext(msgid)
    assert text != msgid, f"{lang}: {msgid!r} is not translated"
    if lang == "ar":
        text = _COMMAND.sub(lambda m: LRI + m.group(0) + PDI, text)
        params = {k: iso(v) for k, v in params.items()}
    return text % params if params else text


def lines(msg: ChatMessage) -> list[str]:
    return msg.text.split("\n")


async def _project(world: World) -> None:
    await world.chat.upload(world.requester, "sentiment.yaml", SPEC.encode())
    await world.chat.upload(world.requester, "items.csv", ITEMS.encode())
    await world.chat.command(world.requester, "/launch")


@pytest.mark.parametrize(
    ("locale", "lang", "content"),
    [
        ("ar", "ar", "الطقس جميل اليوم"),
        ("zh-hans", "zh", "今天天气很好"),
        ("hi-IN", "hi", "आज मौसम"),
    ],
)
async def test_worker_flow_in_the_platform_language(
    world: World, locale: str, lang: str, content: str
) -> None:
    await _project(world)
    t = world.app.translator
    user = MemoryUser("300", "worker", locale)

    def tr(msgid: str, **params: Any) -> str:
        return catalog_text(t, lang, msgid, **params)

    # /start with the platform's language code: welcome in that language
    [start] = await world.chat.command(user, "/start")
    assert lines(start) == [
        tr("Welcome to polycrowd! You label data and earn for every accepted answer."),
        tr("Which languages do you work in? Tap to select, then press Done."),
    ]
    assert start.buttons[-1] == [(tr("Done"), "lok")]
    [done] = await world.chat.press(user, "lok", start.id)
    native = {"ar": "العربية", "zh": "中文", "hi": "हिन्दी"}[lang]
    assert lines(done) == [
        tr("Your languages: %(langs)s", langs=native),
        tr("Send /task to get your first task."),
    ]
    assert done.buttons == [[(tr("Get a task"), "t")]]

    # /task: title, instructions in the worker's language (else English with a note)
    [task] = await world.chat.command(user, "/task")
    head = [tr("Task for project “%(name)s”", name="sentiment")]
    if lang == "hi":  # no Hindi instructions: the source language, with a translated note
        head.append(
            tr(
                "The instructions are not available in your language; here they are in"
                " %(language)s.",
                language="English",
            )
        )
        head.append("Is the sentence positive or negative?")
    else:
        head.append(
            {"ar": "هل الجملة إيجابية أم سلبية؟", "zh": "这句话是正面的还是负面的？"}[lang]
        )
    assert lines(task)[: len(head)] == head
    assert content in task.text
    # label buttons in the worker's language; the data carries the canonical label's index
    labels = [(lab, data.rsplit(":", 1)[1]) for lab, data in task.buttons[0]]
    assert labels == [(NAMES[lang][0], "0"), (NAMES[lang][1], "1")]
    assert task.buttons[-1][0][0] == tr("Skip")

    # answer with a translated button: accepted, credited, in the worker's language
    world.clock.advance(6)
    replies = await world.chat.press(user, task.button(NAMES[lang][1]), task.id)
    assert task.edited and lines(task)[-1] == tr("Your answer: %(answer)s", answer=NAMES[lang][1])
    verdict, nothing = replies[-2:]
    assert verdict.text == tr(
        "Accepted. +%(amount)s, balance %(balance)s.", amount="0.05", balance="0.05"
    )
    assert nothing.text == tr("No tasks for you right now. I will remind you when there are.")
    me = await world.app.engine.find_user("memory:300")
    assert me is not None and me.locale == lang
    data = await world.app.engine.my_data(me.id)
    assert [a["payload"] for a in data["answers"]] == ["negative"]  # the canonical label

    # more replies, all from the catalog
    [balance] = await world.chat.command(user, "/balance")
    assert balance.text == tr("Your balance: %(balance)s", balance="0.05")
    [unknown] = await world.chat.command(user, "/dance")
    assert unknown.text == tr("Unknown command. Send /help to see what I can do.")
    [helptext] = await world.chat.command(user, "/help")
    assert lines(helptext)[0] == tr("Commands:")
    task_line = tr("Get the next task")
    assert any(line.endswith(task_line) and "/task" in line for line in lines(helptext))

    if lang == "ar":  # numbers, ids and user text stand in isolates; the catalog has none
        assert verdict.text.count(LRI + "0.05" + PDI) == 2
        assert LRI + "/task" + PDI in done.text
        assert FSI + "sentiment" + PDI in task.text
        assert FSI + native + PDI in done.text
        raw = t.catalog("ar").gettext("Accepted. +%(amount)s, balance %(balance)s.")
        assert not re.search("[\u2066-\u2069]", raw)
    else:
        assert not re.search(
            "[\u2066-\u2069]", "".join(m.text for m in (start, done, task, verdict))
        )


async def test_choice_of_language_wins_over_the_platform(world: World) -> None:
    """A worker whose platform says German (no catalog) reads English, until they pick a
    shipped language as their first language; the platform's code is the fallback."""
    await _project(world)
    t = world.app.translator
    user = MemoryUser("301", "worker", "de-DE")
    [start] = await world.chat.command(user, "/start")
    assert start.text.startswith("Welcome to polycrowd!")
    await world.chat.press(user, "l:zh")
    await world.chat.press(user, "l:de")  # German off: Chinese is the first language now
    [done] = await world.chat.press(user, "lok")
    assert done.text.startswith(catalog_text(t, "zh", "Your languages: %(langs)s", langs="中文"))
    user.locale = "hi"  # the client changes language: the worker's choice stays
    [bal] = await world.chat.command(user, "/balance")
    assert bal.text == catalog_text(t, "zh", "Your balance: %(balance)s", balance="0.00")
