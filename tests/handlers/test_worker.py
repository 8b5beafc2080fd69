"""Worker flows through the handlers, as a chat platform drives them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

from .conftest import World


async def test_first_task_to_credit(world: World) -> None:
    await world.live_project()
    ann = await world.worker(1)
    [task] = await world.chat.command(ann, "/task")
    assert "Which pet is it?" in task.text and task.reply.kind == "task"
    assert [lab for row in task.buttons for lab, _ in row][:2] == ["cat", "dog"]
    world.clock.advance(5)
    replies = await world.chat.press(ann, task.button("cat"), task.id)
    assert task.edited and "Your answer: cat" in task.text  # the task message shows the answer
    assert any("Accepted. +0.05, balance 0.05." in m.text for m in replies)
    [balance] = await world.chat.command(ann, "/balance")
    assert "0.05" in balance.text


async def test_forged_and_stale_buttons_change_nothing(world: World) -> None:
    await world.live_project()
    ann, bob = await world.worker(1), await world.worker(2)
    [task] = await world.chat.command(ann, "/task")
    data = task.button("cat")
    for forged in (data, "a:999:0", "a:x:y", "zz:1", "mod:ub:1"):
        [reply] = await world.chat.press(bob, forged)
        assert reply.reply.alert or "not allowed" in reply.text or "moderators" in reply.text
    assert (await world.app.engine.find_user("memory:101")).balance == 0  # type: ignore[union-attr]
    world.clock.advance(5)
    await world.chat.press(ann, data, task.id)
    [again] = await world.chat.press(ann, data, task.id)  # a double tap
    assert again.reply.alert
    assert (await world.app.engine.find_user("memory:101")).balance == 5  # type: ignore[union-attr]


async def test_redelivered_update_is_ignored(world: World) -> None:
    await world.live_project()
    ann = await world.worker(1)
    [task] = await world.chat.command(ann, "/task")
    world.clock.advance(5)
    await world.chat.press(ann, task.button("dog"), task.id)
    assert await world.chat.redeliver(world.chat.last_event) == []
    assert (await world.app.engine.find_user("memory:101")).balance == 5  # type: ignore[union-attr]


async def test_an_update_whose_handling_died_is_handled_on_redelivery(world: World) -> None:
    """A process killed half way through an update has not recorded it: the platform's
    redelivery runs it again, and an answer that did commit is still credited once."""
    await world.live_project()
    ann = await world.worker(1)
    [task] = await world.chat.command(ann, "/task")
    world.clock.advance(5)
    real = world.app.dispatcher.buttons["a"]
    calls = {"n": 0}

    async def dies_first(ctx: Any, event: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise asyncio.CancelledError  # killed before the answer's transaction
        if calls["n"] == 2:
            await real.handler(ctx, event)
            raise asyncio.CancelledError  # killed after it committed, before the reply
        return await real.handler(ctx, event)

    world.app.dispatcher.buttons["a"] = dataclasses.replace(real, handler=dies_first)
    with pytest.raises(asyncio.CancelledError):
        await world.chat.press(ann, task.button("dog"), task.id)
    event = world.chat.last_event
    with pytest.raises(asyncio.CancelledError):
        await world.chat.redeliver(event)  # handled this time, then killed again
    again = await world.chat.redeliver(event)
    assert again, "the third delivery gets an answer"
    assert await world.chat.redeliver(event) == []  # handled to the end: now a duplicate
    user = await world.app.engine.find_user("memory:101")
    assert user is not None and user.balance == 5  # credited once


async def test_languages_by_buttons_route_tasks(world: World) -> None:
    await world.live_project("id,text,lang\n1,gato,es\n")
    ann = await world.worker(1)  # English only
    [none] = await world.chat.command(ann, "/task")
    assert "No tasks" in none.text
    await world.chat.command(ann, "/language")
    await world.chat.press(ann, "l:es")
    [task] = await world.chat.command(ann, "/task")
    assert "gato" in task.text


async def test_spanish_worker_reads_spanish(world: World) -> None:
    await world.live_project("id,text,lang\n1,gato,es\n")
    eva = await world.worker(3, locale="es")
    [task] = await world.chat.command(eva, "/task")
    assert "¿Qué mascota es?" in task.text


async def test_unknown_command_and_help(world: World) -> None:
    ann = await world.worker(1)
    [reply] = await world.chat.command(ann, "/dance")
    assert "Unknown command" in reply.text
    [helptext] = await world.chat.command(ann, "/help")
    assert "/task" in helptext.text and "/launch" not in helptext.text
    [denied] = await world.chat.command(ann, "/launch")
    assert "Only requesters can do that." in denied.text


async def test_mydata_forgetme_and_stats(world: World) -> None:
    await world.live_project()
    ann = await world.worker(1)
    [task] = await world.chat.command(ann, "/task")
    world.clock.advance(5)
    await world.chat.press(ann, task.button("cat"), task.id)
    [stats] = await world.chat.command(ann, "/stats")
    assert "1 answer" in stats.text
    [data] = await world.chat.command(ann, "/mydata")
    assert data.document is not None
    dump = json.loads(data.document.content)
    assert dump["user"]["display_name"] == "worker1" and len(dump["answers"]) == 1
    [confirm] = await world.chat.command(ann, "/forgetme")
    await world.chat.press(ann, confirm.button(data_prefix="fy"), confirm.id)
    assert "erased" in confirm.text
    assert (await world.app.engine.audit()).ok


async def test_skip_gives_the_next_task(world: World) -> None:
    await world.live_project()
    ann = await world.worker(1)
    [first] = await world.chat.command(ann, "/task")
    replies = await world.chat.press(ann, first.button(data_prefix="s:"), first.id)
    assert any(m.reply.kind == "task" and m.text != first.text for m in replies)


async def test_paused_worker_reads_why(world: World) -> None:
    items = "id,text,gold\n" + "".join(
        f"{i},picture {i},{'cat' if i % 2 else ''}\n" for i in range(30)
    )
    spec = (
        "name: pets\ntype: choice\nlabels: [cat, dog]\ninstructions: Which pet?\n"
        "overlap: 2\nreward: 5\ngold_ratio: 0.5\nqualification: 8\nmin_skill: 0.7\n"
    )
    await world.chat.upload(world.requester, "p.yaml", spec.encode())
    await world.chat.upload(world.requester, "items.csv", items.encode())
    await world.chat.command(world.requester, "/launch")
    ann = await world.worker(1)
    for _ in range(8):
        [task] = await world.chat.command(ann, "/task")
        if not task.buttons:
            break
        world.clock.advance(5)
        await world.chat.press(ann, task.button("dog"), task.id)  # always wrong on gold
    [reply] = await world.chat.command(ann, "/task")
    assert "No tasks" in reply.text
    assert "too low for this project" in reply.text
