"""Crash safety: the real ``polycrowd run`` process, killed with SIGKILL again and again.

The database is made the way a user makes it (``project create``, ``import``, ``project
launch``); the bot runs as its own process against the fake Bot API server of this process,
and 30 simulated workers (``tests/bot/simcrowd.py``) answer through ``getUpdates``. The bot
is killed at random moments while answers flow (at least five times, plus once during
start-up) and started again each time. Then, after a clean stop:

* every answer a worker saw acknowledged is stored, with the label the worker pressed;
* no answer is credited twice (one ledger credit per counted answer);
* ``polycrowd audit`` passes;
* no item is over-assigned or miscounted (the engine's diagnostics).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import polycrowd
from polycrowd.bot.app import build_app
from polycrowd.engine.language import LanguageDetector
from polycrowd.models.rules import RulesChecker
from polycrowd.settings import Settings
from tests.bot.faketelegram import FakeTelegram
from tests.bot.simcrowd import (
    Crowd,
    bot_env,
    create_project,
    polycrowd_cli,
    sentiment_items,
    sentiment_spec,
)

WORKERS = 30
ITEMS = 75
OVERLAP = 3
KILLS = 5
LABELS = ("pos", "neg")
SRC = Path(polycrowd.__file__).resolve().parents[1]


class Bot:
    """The bot's process, started and killed by the test; its output goes to a log file."""

    def __init__(self, fake: FakeTelegram, crowd: Crowd, db: Path, env: Mapping[str, str]):
        self.fake, self.crowd, self.db, self.env = fake, crowd, db, env
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = db.with_suffix(".log")
        self.log: IO[bytes] = self.log_path.open("ab")
        self.starts = 0

    async def start(self, *, wait: bool = True) -> None:
        assert self.proc is None
        self.starts += 1
        self.log.write(f"\n==== start {self.starts} at {time.strftime('%X')}\n".encode())
        self.log.flush()
        mark = len(self.fake.calls)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "polycrowd", "run", "--db", str(self.db),
            env=dict(self.env), cwd=self.db.parent, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        if wait:
            await self.polling(mark)

    async def polling(self, mark: int) -> None:
        await self.fake.wait_for(lambda c: c.method == "getUpdates", 90, since=mark)
        self.crowd.bot_up()

    async def kill(self) -> None:
        assert self.proc is not None
        self.crowd.bot_down()
        self.proc.send_signal(signal.SIGKILL)
        assert await self.proc.wait() == -signal.SIGKILL
        self.proc = None

    async def stop(self) -> int:
        assert self.proc is not None
        self.crowd.bot_down()
        self.proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(self.proc.wait(), 60)
        self.proc = None
        return rc

    def tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.log.close()


async def test_killed_bot_loses_no_acknowledged_answer_and_pays_each_once(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("POLYCROWD_TEST_SEED", "0")) or random.randrange(1, 1 << 30)
    rng = random.Random(seed)
    db = tmp_path / "crowd.db"
    async with FakeTelegram() as fake:
        env = bot_env(fake, tmp_path, SRC, "INFO")
        spec = sentiment_spec("Crash sentiment", LABELS, OVERLAP)
        items = sentiment_items(ITEMS, rng, "c", (4, 4))
        await create_project(env, tmp_path, db, spec, items, limit_s=120)
        crowd = Crowd(fake, WORKERS, think=(0.9, 1.4), retry_s=4.0, seed=seed)
        bot = Bot(fake, crowd, db, env)
        kills = redelivered = 0
        try:
            # once during start-up, at a random moment (the process may not poll yet)
            await bot.start(wait=False)
            await asyncio.sleep(rng.uniform(0.2, 2.0))
            await bot.kill()
            await bot.start()
            crowd.begin()
            while kills < KILLS:
                acked = len(crowd.acks)  # kill while answers flow: after one more is acked
                await fake.wait_until(lambda n=acked: len(crowd.acks) > n, 60)  # type: ignore[misc]
                await asyncio.sleep(rng.uniform(0.0, 2.0))
                killed_at = time.monotonic()
                await bot.kill()
                kills += 1
                print(
                    f"{time.strftime('%X')} kill {kills}: {len(crowd.acks)} acks,"
                    f" {crowd.presses} presses, {crowd.retries} retries, {crowd.done} done"
                )
                await asyncio.sleep(rng.uniform(0.0, 1.0))  # workers keep pressing meanwhile
                await bot.start()
                # and Telegram delivers again what the dead process may not have confirmed
                redelivered += crowd.redeliver(killed_at - rng.uniform(0.5, 2.0))
            await asyncio.wait_for(crowd.all_done.wait(), 90)
            assert await bot.stop() == 0
        except BaseException:
            print(f"seed {seed}; crowd done {crowd.done}/{WORKERS}; log:\n{bot.tail()}")
            raise
        finally:
            await crowd.close()
            await bot.close()

    print(
        f"seed {seed}: {kills} kills, {redelivered} updates delivered twice,"
        f" {len(crowd.acks)} acknowledged answers, {crowd.retries} retries"
    )
    assert kills >= KILLS
    assert crowd.failures == []
    log = await asyncio.to_thread(bot.log_path.read_text, errors="replace")
    assert "Traceback" not in log and " ERROR " not in log, log[-6000:]
    audit = await polycrowd_cli(env, tmp_path, "audit", "--db", str(db), "--json", limit_s=120)
    assert audit.returncode == 0, audit.stdout + audit.stderr

    settings = Settings(db=str(db), language_backend="script")
    app = await build_app(settings, checker=RulesChecker(), detector=LanguageDetector("script"))
    try:
        engine = app.engine
        diag = await engine.diagnostics()
        assert diag.duplicate_assignments == 0
        assert diag.over_assigned_items == 0
        assert diag.miscounted_items == 0
        assert diag.duplicate_credits == 0
        assert diag.answered_assignments == ITEMS * OVERLAP  # every slot filled, once
        assert diag.credits == diag.answers  # one credit per counted answer
        assert len(crowd.acks) <= diag.answered_assignments
        stored = {
            (row["item"], a["worker"], a["answer"])
            for row in await engine.export_rows(1)
            for a in row["worker_answers"]
        }
        for ack in crowd.acks:
            task = await engine.task(ack.assignment)
            user = await engine.find_user(f"telegram:{ack.uid}")
            assert task is not None and user is not None
            assert task.assignment.worker_id == user.id
            assert task.assignment.state == "answered", ack
            assert (task.item.external_id, user.pseudonym, LABELS[ack.choice]) in stored, ack
    finally:
        await app.close()
    report = json.loads(audit.stdout)
    assert report["ok"] is True and report["authenticated"] is True, report
