"""Moderators act from the admin chat on cards the engine posts there."""

from __future__ import annotations

from .conftest import World


async def test_spammer_card_reaches_admin_chat_and_block_works(world: World) -> None:
    items = "id,text\n" + "".join(f"{i},picture {i}\n" for i in range(30))
    await world.live_project(items)
    spam = await world.worker(9)
    for _ in range(18):
        [task] = await world.chat.command(spam, "/task")
        world.clock.advance(5)
        await world.chat.press(spam, task.button("cat"), task.id)
    await world.app.flush()
    cards = [m for m in world.chat.history("admin") if "always the same label" in m.text]
    assert cards, [m.text for m in world.chat.history("admin")]
    [done] = await world.chat.press(
        world.moderator, cards[0].button(data_prefix="mod:ub:"), cards[0].id
    )
    assert "is blocked" in done.text
    [refused] = await world.chat.command(spam, "/task")
    assert "blocked" in refused.text


async def test_moderation_only_in_admin_chat_and_by_moderators(world: World) -> None:
    ann = await world.worker(1)
    [r1] = await world.chat.command(ann, "/review")
    assert "Only moderators can do that." in r1.text
    world.moderator.admin_chat = False
    [r2] = await world.chat.command(world.moderator, "/review")
    assert "moderators' chat" in r2.text
    world.moderator.admin_chat = True
    [r3] = await world.chat.command(world.moderator, "/review")
    assert "Nothing to review" in r3.text
    [audit] = await world.chat.command(world.moderator, "/audit")
    assert "Ledger OK" in audit.text


async def test_grant_and_payout_approval(world: World) -> None:
    await world.live_project()
    ann = await world.worker(1)
    [task] = await world.chat.command(ann, "/task")
    world.clock.advance(5)
    await world.chat.press(ann, task.button("dog"), task.id)
    [granted] = await world.chat.command(world.moderator, "/grant memory:101 requester")
    assert "is now requester" in granted.text
    await world.chat.command(ann, "/payout")
    [card] = await world.chat.command(world.moderator, "/payouts")
    [approved] = await world.chat.press(
        world.moderator, card.button(data_prefix="mod:pa:"), card.id
    )
    assert "approved" in approved.text
    assert (await world.app.engine.find_user("memory:101")).balance == 0  # type: ignore[union-attr]
    assert (await world.app.engine.audit()).ok
