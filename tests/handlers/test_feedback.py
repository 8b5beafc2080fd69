"""The feedback loop through the in-memory chat: questions and answers, the FAQ, gold
feedback in two languages, /report, /dashboard, and the digests under a frozen clock."""

from __future__ import annotations

import datetime as dt

from polycrowd.bot.digests import wire_digests

from ..conftest import FakeClock
from .conftest import World

GOLD_ITEMS = "id,text,lang,gold\ng1,it meows,en,cat\ng2,a fluffy one,en,\n"
GOLD_SPEC = (
    "name: pets\ntype: choice\nlabels: [cat, dog]\nlanguages: [en, es]\n"
    "instructions:\n  en: |\n    Which pet is it?\n    If it meows, answer cat.\n"
    "  es: |\n    ¿Qué mascota es?\n    Si maúlla, responde cat.\n"
    "overlap: 2\nreward: 5\ngold_ratio: 0.5\nqualification: 1\n"
)


async def gold_project(world: World) -> None:
    await world.chat.upload(world.requester, "pets.yaml", GOLD_SPEC.encode())
    await world.chat.upload(world.requester, "items.csv", GOLD_ITEMS.encode())
    await world.chat.command(world.requester, "/launch")


async def test_ask_answer_round_trip_and_faq(world: World) -> None:
    chat, req = world.chat, world.requester
    await world.live_project()
    ann = await world.worker(1)
    [task] = await chat.command(ann, "/task")
    assert task.reply.kind == "task"
    ask_button = task.button("Ask a question")
    [hint] = await chat.press(ann, ask_button, task.id)
    assert hint.text == "Send /ask followed by your question about the current task."
    [ack, to_requester, to_admin] = await chat.command(ann, "/ask Is a kitten a cat?")
    assert "question was sent" in ack.text
    assert to_requester.chat_id == "u1"
    assert to_admin.chat_id == "admin" and to_admin.text == to_requester.text
    assert "Question 1 about project “pets”" in to_requester.text
    assert "Is a kitten a cat?" in to_requester.text and "/answer 1" in to_requester.text

    # only the project's requester (or a moderator) may answer
    bea = await world.worker(2)
    [refused] = await chat.command(bea, "/answer 1 no")
    assert "Only requesters can do that." in refused.text
    [sent, to_worker] = await chat.command(req, "/answer 1 Yes, kittens are cats.")
    assert "answer was sent" in sent.text and to_worker.chat_id == "u101"
    assert "Yes, kittens are cats." in to_worker.text and "Is a kitten a cat?" in to_worker.text

    [pinned] = await chat.command(req, "/faq add 1")
    assert "part of the instructions" in pinned.text
    await chat.command(req, "/faq add 1")  # twice pins once
    project = (await world.app.engine.projects())[0]
    assert project.instructions["en"].count("Yes, kittens are cats.") == 1
    [later] = await chat.command(bea, "/task")
    assert "Is a kitten a cat?" in later.text and "Yes, kittens are cats." in later.text


async def test_ask_needs_a_task_and_is_rate_limited(world: World) -> None:
    chat = world.chat
    await world.live_project()
    ann = await world.worker(1)
    [none] = await chat.command(ann, "/ask what?")
    assert "no open task" in none.text
    await chat.command(ann, "/task")
    [usage] = await chat.command(ann, "/ask")
    assert "/ask" in usage.text
    for n in range(5):
        replies = await chat.command(ann, f"/ask question {n}")
        assert "question was sent" in replies[0].text
    [limited] = await chat.command(ann, "/ask one more")
    assert "many questions" in limited.text
    world.clock.advance(3601)
    await chat.command(ann, "/task")  # the first one expired meanwhile
    assert "question was sent" in (await chat.command(ann, "/ask later"))[0].text


async def test_gold_feedback_in_english_and_spanish(world: World) -> None:
    chat = world.chat
    await gold_project(world)
    ann = await world.worker(1, "en")
    [task] = await chat.command(ann, "/task")
    assert "it meows" in task.text
    world.clock.advance(5)
    replies = await chat.press(ann, task.button("dog"), task.id)
    texts = [m.text for m in replies]
    wrong = next(t for t in texts if "check question" in t)
    assert "The expected answer was “cat”." in wrong
    assert "From the instructions: If it meows, answer cat." in wrong

    eva = await world.worker(2, "es")
    await chat.press(eva, "l:en")  # reads English items too
    [task] = await chat.command(eva, "/task")
    world.clock.advance(5)
    replies = await chat.press(eva, task.button("dog"), task.id)
    wrong_es = next(m.text for m in replies if "pregunta de control" in m.text)
    assert "La respuesta esperada era «cat»." in wrong_es
    # the line from the instructions the task showed (the item is in English)
    assert "De las instrucciones: If it meows, answer cat." in wrong_es

    cleo = await world.worker(3, "es")
    await chat.press(cleo, "l:en")
    [task] = await chat.command(cleo, "/task")
    world.clock.advance(5)
    replies = await chat.press(cleo, task.button("cat"), task.id)
    assert any("tu respuesta fue correcta" in m.text for m in replies)


async def test_report_sends_charts_as_files(world: World) -> None:
    chat = world.chat
    await world.live_project()
    for n in (1, 2):
        w = await world.worker(n)
        [task] = await chat.command(w, "/task")
        world.clock.advance(5)
        await chat.press(w, task.button("cat"), task.id)
    replies = await chat.command(world.requester, "/report")
    assert "Items done" in replies[0].text
    files = [m.document for m in replies if m.document is not None]
    names = [f.filename for f in files]
    assert "p1-progress.png" in names and names[-1] == "p1-report.html"
    assert all(f.content[:8] == b"\x89PNG\r\n\x1a\n" for f in files[:-1])
    ann = await world.worker(3)
    [refused] = await chat.command(ann, "/report")
    assert "Only requesters can do that." in refused.text


async def test_dashboard_link_needs_a_url_and_a_role(world: World) -> None:
    [off] = await world.chat.command(world.requester, "/dashboard")
    assert "not set up" in off.text
    ann = await world.worker(1)
    [refused] = await world.chat.command(ann, "/dashboard")
    assert "Only requesters can do that." in refused.text


async def test_digests_with_a_frozen_clock(world: World, clock: FakeClock) -> None:
    # Monday 2026-03-02 12:00 UTC, outside quiet hours (22-8 UTC by default)
    clock.t = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC).timestamp()
    app, chat = world.app, world.chat
    wire_digests(app)
    digests = app.scheduler.digests
    await world.live_project()
    ann = await world.worker(1, "es")
    await chat.press(ann, "l:en")
    [task] = await chat.command(ann, "/task")
    clock.advance(5)
    await chat.press(ann, task.button("cat"), task.id)
    before = len(chat.history("u101"))

    assert await digests.workers() == [(await app.engine.find_user("memory:101")).id]  # type: ignore[union-attr]
    weekly = chat.history("u101")[before]
    assert "Tu semana en polycrowd:" in weekly.text and "1 respuesta" in weekly.text
    assert "Ganado esta semana: 0.05" in weekly.text
    assert await digests.workers() == []  # once a week
    clock.advance(6 * 24 * 3600)
    assert await digests.workers() == []  # a week has not passed, and no answers since

    assert await digests.moderators() is True
    daily = chat.history("admin")[-1]
    assert "Daily summary for moderators:" in daily.text and "Appeals waiting: 0" in daily.text
    assert await digests.moderators() is False  # once a day
    clock.advance(10 * 3600)  # 22:00 on Sunday: quiet hours
    assert digests.is_quiet()
    clock.advance(24 * 3600)
    assert await digests.moderators() is False  # quiet even though a day has passed
    clock.advance(12 * 3600)  # 10:00
    assert await digests.moderators() is True
    assert await app.engine.digest_sent("moderators", "all") == clock.t


async def test_worker_digest_reads_this_week_and_the_one_before(
    world: World, clock: FakeClock
) -> None:
    await gold_project(world)
    ann = await world.worker(1)
    [task] = await world.chat.command(ann, "/task")
    clock.advance(5)
    await world.chat.press(ann, task.button("cat"), task.id)  # right: week one, 100%
    user = await world.app.engine.find_user("memory:101")
    assert user is not None
    clock.advance(7 * 24 * 3600 + 10)
    d = await world.app.engine.worker_digest(user.id)
    assert d.answers == 0 and d.accuracy is None and d.previous == 1.0
