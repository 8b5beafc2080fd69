"""Discord scale-out: POLYCROWD_DISCORD_SHARDS/_SHARD_IDS build discord.py's
AutoShardedClient (driven through the fake), and the bot's REST budget is paced and split
between the processes that run the bot (their peer slots on PostgreSQL)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import discord
import pytest

from polycrowd.bot.app import App, build_app
from polycrowd.bot.discord import (
    DISCORD_PER_S,
    DiscordAdapter,
    PolycrowdBot,
    ShardedPolycrowdBot,
)
from polycrowd.engine.language import LanguageDetector
from polycrowd.handlers.types import Reply
from polycrowd.i18n import N_, Msg
from polycrowd.models.rules import RulesChecker
from polycrowd.settings import Settings
from tests.bot.fakediscord import FakeDiscord

from ..conftest import drop_postgres, open_postgres


def _settings(db: str, **values: str) -> Settings:
    env = {"POLYCROWD_DB": db, **{f"POLYCROWD_{k.upper()}": v for k, v in values.items()}}
    return Settings.from_env(env)


async def _app(settings: Settings) -> App:
    return await build_app(settings, checker=RulesChecker(), detector=LanguageDetector("script"))


@contextlib.asynccontextmanager
async def discord_world(
    settings: Settings,
) -> AsyncIterator[tuple[App, DiscordAdapter, FakeDiscord]]:
    app = await _app(settings)
    adapter = DiscordAdapter(app)
    app.add_adapter(adapter)

    def factory(h: FakeDiscord) -> discord.Client:
        adapter.admin_channel = h.admin.id
        return adapter.build_bot()

    try:
        async with FakeDiscord(factory) as h:
            yield app, adapter, h
            await app.flush()
    finally:
        await app.close()


async def test_the_settings_pick_the_client_and_its_shards(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    app = await _app(_settings(db))
    try:
        plain = DiscordAdapter(app).build_bot()
        assert type(plain) is PolycrowdBot and not isinstance(plain, discord.AutoShardedClient)
        for values, count, ids in (
            ({"discord_shards": "auto"}, None, None),  # Discord's recommended count
            ({"discord_shards": "3"}, 3, None),  # all three in this process
            ({"discord_shards": "4", "discord_shard_ids": "3 1"}, 4, [1, 3]),
        ):
            app.settings = _settings(db, **values)
            bot = DiscordAdapter(app).build_bot()
            assert isinstance(bot, ShardedPolycrowdBot)
            assert isinstance(bot, discord.AutoShardedClient)
            assert (bot.shard_count, bot.shard_ids) == (count, ids)
    finally:
        await app.close()


async def test_a_sharded_bot_serves_commands_and_sends_through_its_budget(
    tmp_path: Path,
) -> None:
    settings = _settings(str(tmp_path / "s.db"), discord_shards="2")
    async with discord_world(settings) as (_app, adapter, h):
        bot = h.bot
        assert isinstance(bot, ShardedPolycrowdBot)
        assert bot.shard_count == 2 and sorted(bot.shards) == [0, 1]
        assert "task" in h.commands()  # shard 0 runs here: the commands are synced

        alice = h.add_user("alice")
        out = await h.slash(alice, "task")
        assert out.deferred and out.messages  # the guild's shard delivered the interaction

        assert adapter.budget.calls > 0  # the sync and the follow-ups' setup went through it
        before = adapter.budget.calls
        card = Reply.of(Msg(N_("New tasks are waiting for you. Send /task to start.")))
        await adapter.send(adapter.admin_chat_id, card)
        await h.settle()
        assert adapter.budget.calls > before  # a proactive send takes a slot of the budget
        assert h.messages_in(h.admin)
        assert await adapter.refresh_share() == 1  # a SQLite file: one process, all of it
        assert adapter.budget.share == 1


async def test_only_the_process_with_shard_0_syncs_the_commands(tmp_path: Path) -> None:
    settings = _settings(str(tmp_path / "p.db"), discord_shards="2", discord_shard_ids="1")
    async with discord_world(settings) as (_app, adapter, h):
        bot = h.bot
        assert isinstance(bot, ShardedPolycrowdBot) and bot.shard_ids == [1]
        assert h.commands() == {}  # the process running shard 0 syncs them, once for all
        assert adapter.shards.partial


async def test_processes_running_one_bot_split_its_budget(
    tmp_path: Path, postgres_url: str
) -> None:
    schema = "t_" + uuid.uuid4().hex[:12]
    import asyncpg

    conn = await asyncpg.connect(postgres_url)
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.close()
    url = f"{postgres_url}?search_path={schema}"
    settings = _settings(url, discord_shards="2", discord_shard_ids="0")
    other = await open_postgres(postgres_url)  # the process running shard 1
    try:
        async with discord_world(settings) as (_app, adapter, _h):
            assert await adapter.refresh_share() == 1
            assert adapter.budget.rate == DISCORD_PER_S
            assert await other.peers(adapter.share_group) == 2
            assert await adapter.refresh_share() == 2
            assert (adapter.budget.share, adapter.budget.rate) == (2, DISCORD_PER_S / 2)
            await drop_postgres(other, postgres_url)  # that process stops
            assert await adapter.refresh_share() == 1
            assert adapter.budget.rate == DISCORD_PER_S
    finally:
        await other.close()
        conn = await asyncpg.connect(postgres_url)
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


@pytest.mark.parametrize("shards", ["", "2"])
async def test_every_rest_request_takes_one_slot_also_after_a_restart(
    tmp_path: Path, shards: str
) -> None:
    settings = _settings(str(tmp_path / "w.db"), discord_shards=shards)
    async with discord_world(settings) as (_app, adapter, h):
        alice = h.add_user("alice")
        for _ in range(2):  # the first client, then a fresh one: paced once, never twice
            before = adapter.budget.calls
            user = await h.bot.fetch_user(alice.id)  # one REST request
            assert user.id == alice.id
            assert adapter.budget.calls == before + 1
            await h.restart()
