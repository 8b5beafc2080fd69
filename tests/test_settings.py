"""Pool sizes and Discord sharding from the environment: parsed once, bad values one line."""

from __future__ import annotations

import pytest

from polycrowd.bot.startup import check_settings
from polycrowd.engine.store.sqlite.database import default_readers
from polycrowd.settings import Settings, SettingsError, ShardPlan


def _env(**values: str) -> Settings:
    return Settings.from_env({f"POLYCROWD_{k.upper()}": v for k, v in values.items()})


def test_store_options_default_to_the_core_count_rule_and_asyncpg_defaults() -> None:
    options = Settings().store_options()
    assert options == {"readers": None, "pool_min": 1, "pool_max": 10}
    assert default_readers() >= 0  # what readers=None opens


def test_store_options_come_from_the_environment() -> None:
    options = _env(db_readers="3", pg_pool_min="2", pg_pool_max="24").store_options()
    assert options == {"readers": 3, "pool_min": 2, "pool_max": 24}
    assert _env(db_readers="0").store_options()["readers"] == 0  # reads through the writer
    assert _env(db_readers="AUTO").store_options()["readers"] is None


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ({"db_readers": "-1"}, "bad value for POLYCROWD_DB_READERS: '-1' (auto or 0..64)"),
        ({"db_readers": "many"}, "bad value for POLYCROWD_DB_READERS: 'many' (auto or 0..64)"),
        ({"db_readers": "65"}, "bad value for POLYCROWD_DB_READERS: '65' (auto or 0..64)"),
        ({"pg_pool_max": "0"}, "bad value for POLYCROWD_PG_POOL_MAX: 0 (1 or more)"),
        (
            {"pg_pool_min": "11"},
            "bad value for POLYCROWD_PG_POOL_MIN: 11 (0..POLYCROWD_PG_POOL_MAX (10))",
        ),
        (
            {"pg_pool_min": "-1", "pg_pool_max": "4"},
            "bad value for POLYCROWD_PG_POOL_MIN: -1 (0..POLYCROWD_PG_POOL_MAX (4))",
        ),
    ],
)
def test_bad_pool_sizes_are_one_line(values: dict[str, str], line: str) -> None:
    settings = _env(**values)
    for check in (settings.store_options, lambda: check_settings(settings)):
        with pytest.raises(SettingsError) as err:
            check()
        assert str(err.value) == line


def test_a_pool_size_that_is_no_number_is_refused_when_read() -> None:
    with pytest.raises(SettingsError, match="bad value for pg_pool_max: 'ten'"):
        _env(pg_pool_max="ten")


def test_shard_plans() -> None:
    assert Settings().shard_plan() == ShardPlan()  # one plain client, no sharding
    assert _env(discord_shards="auto").shard_plan() == ShardPlan(sharded=True)
    assert _env(discord_shards="4").shard_plan() == ShardPlan(sharded=True, count=4)
    plan = _env(discord_shards="4", discord_shard_ids="3, 1").shard_plan()
    assert plan == ShardPlan(sharded=True, count=4, ids=(1, 3)) and plan.partial
    whole = _env(discord_shards="2", discord_shard_ids="0 1").shard_plan()
    assert whole.ids == (0, 1) and not whole.partial


@pytest.mark.parametrize(
    ("values", "line"),
    [
        (
            {"discord_shards": "lots"},
            "bad value for POLYCROWD_DISCORD_SHARDS: 'lots' (auto or a shard count 1 or more)",
        ),
        (
            {"discord_shards": "0"},
            "bad value for POLYCROWD_DISCORD_SHARDS: '0' (auto or a shard count 1 or more)",
        ),
        (
            {"discord_shard_ids": "1"},
            "bad value for POLYCROWD_DISCORD_SHARD_IDS: '1' (needs POLYCROWD_DISCORD_SHARDS=N)",
        ),
        (
            {"discord_shards": "auto", "discord_shard_ids": "0"},
            "bad value for POLYCROWD_DISCORD_SHARD_IDS: '0'"
            " (needs a shard count in POLYCROWD_DISCORD_SHARDS, not auto)",
        ),
        (
            {"discord_shards": "2", "discord_shard_ids": "0 2"},
            "bad value for POLYCROWD_DISCORD_SHARD_IDS: '0 2' (distinct shard ids 0..1)",
        ),
        (
            {"discord_shards": "3", "discord_shard_ids": "1 1"},
            "bad value for POLYCROWD_DISCORD_SHARD_IDS: '1 1' (distinct shard ids 0..2)",
        ),
    ],
)
def test_bad_shard_settings_are_one_line(values: dict[str, str], line: str) -> None:
    settings = _env(**values)
    for check in (settings.shard_plan, lambda: check_settings(settings)):
        with pytest.raises(SettingsError) as err:
            check()
        assert str(err.value) == line and "\n" not in line


def test_some_shards_per_process_need_postgresql() -> None:
    partial = {"discord_shards": "4", "discord_shard_ids": "0 1"}
    with pytest.raises(SettingsError) as err:
        check_settings(_env(db="crowd.db", **partial))
    assert str(err.value).startswith(
        "bad value for POLYCROWD_DISCORD_SHARD_IDS: '0 1' (the other shards' processes need"
    )
    check_settings(_env(db="postgresql://pc@db.example/crowd", **partial))
    check_settings(_env(db="crowd.db", discord_shards="4"))  # every shard in this process
