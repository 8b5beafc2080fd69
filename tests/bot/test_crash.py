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
from tests.bot.simcrowd import Crowd

WORKERS = 30
ITEMS = 75
OVERLAP = 3
KILLS = 5
LABELS = ("pos", "neg")
SRC = Path(polycrowd.__file__).resolve().parents[1]


def spec() -> str:
    return (
        "name: Crash sentiment\n"
        "type: choice\n"
        f"labels: [{', '.join(LABELS)}]\n"
        "languages: [en]\n"
        'instructions: "Is the text positive or negative?"\n'
        f"overlap: {OVERLAP}\n"
        "reward: 5\n"
        "assignment_ttl: 604800\n"
    )


def items(rng: random.Random) -> str:
    words = ["good", "bad", "fine", "awful", "great", "poor", "nice", "meh", "ok", "wow"]
    lines = ["id,text"]
    for i in range(ITEMS):
        lines.append(f"c{i},{' '.join(rng.choice(words) for _ in range(4))} #{i}")
    return "\n".join(lines) + "\n"


def bot_env(fake: FakeTelegram, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYCROWD_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")])),
        XDG_CONFIG_HOME=str(home / "config"),
        POLYCROWD_TELEGRAM_TOKEN=fake.token,
        POLYCROWD_TELEGRAM_API_URL=fake.url,
        POLYCROWD_LANGUAGE_BACKEND="script",
        POLYCROWD_LOG_LEVEL="INFO",
    )
    return env


async def cli(env: Mapping[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "polycrowd", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


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
    (tmp_path / "spec.yaml").write_text(spec())
    (tmp_path / "items.csv").write_text(items(rng))
    async with FakeTelegram() as fake:
        env = bot_env(fake, tmp_path)
        created = await cli(env, tmp_path, "project", "create", "spec.yaml", "--db", str(db))
        assert created.returncode == 0, created.stderr
        pid = "1"
        for args in (("import", pid, "items.csv"), ("project", "launch", pid)):
            done = await cli(env, tmp_path, *args, "--db", str(db))
            assert done.returncode == 0, done.stderr
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
    audit = await cli(env, tmp_path, "audit", "--db", str(db), "--json")
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
            for row in await engine.export_rows(int(pid))
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
