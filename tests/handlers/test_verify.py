"""Create-then-verify through the chat: a paraphrase is checked by two other workers with
Yes/No buttons (in their language) before it is the result and its credit is final."""

from __future__ import annotations

from polycrowd.bot.memory import MemoryUser

from .conftest import World

SPEC = (
    "name: rewrite\ntype: text\nlanguages: [en]\ninstructions: Rewrite the sentence.\n"
    "overlap: 1\nreward: 5\nverify: {overlap: 2, reward: 1}\n"
)
SOURCE = "The meeting has been moved to Thursday afternoon."
ANSWER = "The meeting now takes place on Thursday afternoon."


async def launch(world: World) -> None:
    await world.chat.upload(world.requester, "rewrite.yaml", SPEC.encode())
    await world.chat.upload(world.requester, "items.csv", f'id,text\n1,"{SOURCE}"\n'.encode())
    await world.chat.command(world.requester, "/launch")


async def check(world: World, worker: MemoryUser, button: str) -> str:
    [task] = await world.chat.command(worker, "/task")
    assert SOURCE in task.text and ANSWER in task.text  # the original and the answer
    world.clock.advance(20)
    return "\n".join(m.text for m in await world.chat.press(worker, task.button(button), task.id))


async def balance(world: World, worker: MemoryUser) -> int:
    user, _ = await world.app.engine.user_for("memory", worker.id)
    return user.balance


async def test_two_yes_make_the_answer_the_result(world: World) -> None:
    chat = world.chat
    await launch(world)
    creator = await world.worker(1)
    [task] = await chat.command(creator, "/task")
    assert SOURCE in task.text
    world.clock.advance(30)
    await chat.say(creator, ANSWER)
    assert await balance(world, creator) == 5  # pending until verified
    [shown] = await chat.command(creator, "/balance")
    assert "0.05" in shown.text and "waits for other workers' check" in shown.text
    [payout] = await chat.command(creator, "/payout")
    assert "nothing to pay out" in payout.text  # not before the check
    # the creator is not asked to check their own answer
    [none] = await chat.command(creator, "/task")
    assert ANSWER not in none.text
    ana = await world.worker(2, "es")
    await chat.press(ana, "l:en")  # reads English too: the buttons are in Spanish
    await check(world, ana, "Sí")
    await check(world, await world.worker(3), "Yes")
    assert await balance(world, creator) == 5  # final
    [shown] = await chat.command(creator, "/balance")
    assert "0.05" in shown.text and "waits" not in shown.text
    assert await balance(world, ana) == 1
    projects = await world.app.engine.projects()
    source = next(p for p in projects if p.name == "rewrite")
    [row] = await world.app.engine.export_rows(source.id)
    assert row["label"] == ANSWER
    assert source.state == "done"
    # the requester sees the verify project named after its source project
    [listed] = await chat.command(world.requester, "/projects")
    assert "rewrite · verify" in listed.text


async def test_two_no_reverse_the_credit(world: World) -> None:
    chat = world.chat
    await launch(world)
    creator = await world.worker(1)
    await chat.command(creator, "/task")
    world.clock.advance(30)
    await chat.say(creator, ANSWER)
    await check(world, await world.worker(2), "No")
    await check(world, await world.worker(3), "No")
    assert await balance(world, creator) == 0
    # the reason is theirs to read and contest: an appeal reaches the moderators
    await chat.command(creator, "/appeal It is a faithful rewrite.")
    [flag] = await world.app.engine.open_flags()
    assert flag.kind == "appeal" and "did not confirm" in flag.evidence["reason"]
