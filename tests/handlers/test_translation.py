"""Translation tasks through the whole app: the answer must be in the target language and
must not copy the source; the worker reads why in their own language."""

from __future__ import annotations

from collections.abc import AsyncIterator
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
    "name: translate\ntype: text\nlanguages: [en, es, ru]\ntarget_lang: {target}\n"
    "instructions:\n  en: Translate the sentence.\n  es: Traduce la frase.\n"
    "  ru: Переведите предложение.\noverlap: 3\nreward: 5\n"
)
SOURCE = "The meeting has been moved to Thursday afternoon because the manager is travelling."
ITEMS = f'id,text,lang\n1,"{SOURCE}",en\n'


@pytest.fixture
async def app(tmp_path: Path, clock: FakeClock) -> AsyncIterator[App]:
    detector = LanguageDetector("lingua", ("en", "es", "ru"), high_accuracy=False)

    def detect(text: str) -> tuple[str | None, float]:
        d = detector.detect(text)
        return d.lang, d.confidence

    settings = Settings().with_db(tmp_path / "chat.db")
    app = await build_app(settings, checker=RulesChecker(detect=detect), detector=detector)
    app.engine.clock = clock
    yield app
    await app.close()


async def setup(app: App, target: str, locale: str) -> tuple[MemoryChat, MemoryUser]:
    chat = MemoryChat(app.dispatcher, app.translator)
    app.add_adapter(chat)  # type: ignore[arg-type]
    requester = MemoryUser("1", "req", "en")
    user, _ = await app.engine.user_for("memory", requester.id, requester.name, "en")
    await app.engine.bootstrap_role(user.id, Role.REQUESTER)
    await chat.upload(requester, "t.yaml", SPEC.format(target=target).encode())
    await chat.upload(requester, "items.csv", ITEMS.encode())
    await chat.command(requester, "/launch")
    worker = MemoryUser("100", "ana", locale)
    await chat.command(worker, "/start")
    await chat.press(worker, "lok")
    await chat.command(worker, "/language")
    await chat.press(worker, "l:en")  # reads the source language too
    return chat, worker


async def answer(chat: MemoryChat, worker: MemoryUser, clock: FakeClock, text: str) -> str:
    [task] = await chat.command(worker, "/task")
    assert SOURCE in task.text
    clock.advance(60)
    return "\n".join(m.text for m in await chat.say(worker, text))


async def test_wrong_language_is_rejected_with_a_translated_reason(
    app: App, clock: FakeClock
) -> None:
    chat, worker = await setup(app, "es", "es")
    reply = await answer(chat, worker, clock, "The meeting is now on Thursday afternoon.")
    assert "Tu respuesta parece estar en un idioma distinto del solicitado." in reply
    # the second try, in Spanish, is accepted
    good = "La reunión se ha trasladado al jueves por la tarde porque el gerente está de viaje."
    reply = await answer(chat, worker, clock, good)
    assert "idioma distinto" not in reply
    status = await app.engine.worker_stats((await app.engine.user_for("memory", "100"))[0].id)
    assert status.accepted == 1


async def test_wrong_script_and_copies_are_rejected_in_the_workers_language(
    app: App, clock: FakeClock
) -> None:
    chat, worker = await setup(app, "ru", "ru")
    reply = await answer(chat, worker, clock, "The meeting was moved to Thursday, I think.")
    assert "Ваш ответ написан не на нужном языке." in reply
    reply = await answer(chat, worker, clock, SOURCE)  # a copy of the source
    assert "Ваш ответ написан не на нужном языке." in reply
