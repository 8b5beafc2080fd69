"""The opt-in leaderboard through the in-memory chat: nobody is on it until they choose."""

from __future__ import annotations

from polycrowd.bot.memory import MemoryUser

from .conftest import World


async def answer_one(world: World, user: MemoryUser) -> None:
    [task] = await world.chat.command(user, "/task")
    world.clock.advance(30)
    await world.chat.press(user, task.button(data_prefix="a:"), task.id)


async def test_only_workers_who_opt_in_appear_by_pseudonym(world: World) -> None:
    chat = world.chat
    await world.live_project()
    ann, bob = await world.worker(1), await world.worker(2)
    [first] = await chat.command(ann, "/leaderboard")
    assert first.text == "Answer a task first: the leaderboard is of the project you work on."

    await answer_one(world, ann)
    await answer_one(world, bob)
    [empty] = await chat.command(ann, "/leaderboard")
    assert "Leaderboard of project “pets”" in empty.text
    assert "No one has chosen to appear on this leaderboard yet." in empty.text
    assert "You do not appear on it." in empty.text
    assert empty.button("Show me") == "lb:1"

    engine = world.app.engine
    ann_user = await engine.find_user("memory:101")
    assert ann_user is not None and not await engine.on_leaderboard(ann_user.id)
    [joined] = await chat.press(ann, "lb:1", empty.id)
    assert joined.text == f"You now appear on leaderboards as {ann_user.pseudonym}."

    [seen_by_bob] = await chat.command(bob, "/leaderboard")
    assert f"1. {ann_user.pseudonym}: 1 accepted" in seen_by_bob.text
    assert "worker1" not in seen_by_bob.text and "worker2" not in seen_by_bob.text
    bob_user = await engine.find_user("memory:102")
    assert bob_user is not None and bob_user.pseudonym not in seen_by_bob.text.split("\n")[1]

    [left] = await chat.command(ann, "/leaderboard off")
    assert left.text == "You no longer appear on leaderboards."
    [after] = await chat.command(bob, "/leaderboard")
    assert ann_user.pseudonym not in after.text
    assert "No one has chosen to appear" in after.text


async def test_the_board_ranks_by_accepted_answers(world: World) -> None:
    chat = world.chat
    await world.live_project()
    ann, bob = await world.worker(1), await world.worker(2)
    await answer_one(world, ann)
    await answer_one(world, bob)
    await answer_one(world, bob)
    await chat.command(ann, "/leaderboard on")
    await chat.command(bob, "/leaderboard yes")
    engine = world.app.engine
    names = []
    for ext in ("memory:102", "memory:101"):
        u = await engine.find_user(ext)
        assert u is not None
        names.append(u.pseudonym)
    [board] = await chat.command(ann, "/leaderboard")
    lines = board.text.split("\n")
    assert f"1. {names[0]}: 2 accepted" in lines and f"2. {names[1]}: 1 accepted" in lines
    assert board.button("Hide me") == "lb:0"
