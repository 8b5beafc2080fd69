"""Load benchmark: many simulated workers answering through the real bot for a while.

Usage::

    python bench/load.py [--workers 200] [--seconds 60] [--rate-scale 100]

The database is made with the CLI as a user would (``project create``, ``import``,
``project launch``). The bot runs in its own process: python-telegram-bot 22 (long polling),
the real :class:`~polycrowd.bot.telegram.TelegramAdapter`, dispatcher, handlers, engine on
the SQLite file and the rules checker, exactly as ``polycrowd run`` wires them. With
``--rate-scale 1`` it *is* ``polycrowd run`` (Telegram's flood limits: about 30 messages/s
overall, so about 15 answers/s); by default the outbound queue and the fake's flood limits
are both ``--rate-scale`` times Telegram's (like ``bench/telegram.py``), so the queue is in
the path but the benchmark measures the processing. This process runs the fake Bot API
server (``tests/bot/faketelegram.py``) and ``--workers`` simulated workers
(``tests/bot/simcrowd.py``): each sends ``/start``, presses *Done*, ``/task``, then presses a
label ``--think`` seconds (a reader's pace, so the fraud rules see humans) after each task
arrives, for ``--seconds`` seconds from the moment every worker has had a first task.

Measured: an answer is *acknowledged* when the bot edits its task message to show the answer
(sent after the answer's transaction committed); the latency is from the press's injection
into the fake to that edit's arrival. After the timed window the workers stop pressing, the
answers in flight are waited for, the bot is stopped (SIGTERM), and the database is checked.

The last stdout line is one JSON object:

* ``answers_per_second``: answers acknowledged in the timed window / its length;
* ``p99_ms`` (and ``p50_ms``): press -> acknowledgement latency;
* ``errors``: failed Bot API calls (429s, which the queue retries, excepted), "Something went
  wrong" replies, and ERROR lines or tracebacks in the bot's log;
* ``lost_answers``: presses never acknowledged plus acknowledged answers not stored (with the
  pressed label) in the database;
* ``duplicate_credits``: ledger credits beyond the first per assignment (engine diagnostics);
* and for context: ``workers``, ``seconds``, ``rate_scale``, ``bot_cpu_share`` (the bot
  process's CPU seconds per second of the window: below 1 with a saturated bot means the
  machine's other load took the rest) and ``load_average``.

Progress goes to stderr. Timings depend on the machine and its load.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# bench/telegram.py would shadow python-telegram-bot's package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import IO, Any  # noqa: E402

LABELS = ("pos", "neg")
OVERLAP = 3
SRC = ROOT / "src"


def load(name: str) -> ModuleType:
    path = ROOT / "tests" / "bot" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


# ------------------------------------------------------------------------------- the bot


async def serve_bot(db: str, rate_scale: float) -> None:
    """``polycrowd run`` with the outbound queue ``rate_scale`` times Telegram's limits."""
    from polycrowd.bot.app import build_app
    from polycrowd.bot.outbound import OutboundLimits
    from polycrowd.bot.telegram import TelegramAdapter
    from polycrowd.logs import setup_logging
    from polycrowd.settings import Settings

    settings = Settings.from_env().with_db(db)
    setup_logging(settings)
    app = await build_app(settings)
    adapter = TelegramAdapter(app, limits=OutboundLimits().scaled(rate_scale))
    app.add_adapter(adapter)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await adapter.start()
        app.scheduler.start()
        await stop.wait()
    finally:
        await adapter.stop()
        await app.close()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux), ``None`` elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def bot_command(db: Path, rate_scale: float) -> list[str]:
    if rate_scale == 1:
        return [sys.executable, "-m", "polycrowd", "run", "--db", str(db)]
    return [sys.executable, __file__, "--serve-bot", str(db), "--rate-scale", str(rate_scale)]


# ------------------------------------------------------------------------------- the run


async def check_database(db: Path, crowd: Any) -> dict[str, int]:
    """Diagnostics, and every acknowledged answer looked up in the database."""
    from polycrowd.bot.app import build_app
    from polycrowd.engine.language import LanguageDetector
    from polycrowd.models.rules import RulesChecker
    from polycrowd.settings import Settings

    settings = Settings(db=str(db), language_backend="script")
    app = await build_app(settings, checker=RulesChecker(), detector=LanguageDetector("script"))
    try:
        engine = app.engine
        diag = await engine.diagnostics()
        stored = {
            (row["item"], a["worker"], a["answer"])
            for row in await engine.export_rows(1)
            for a in row["worker_answers"]
        }
        pseudonyms: dict[int, tuple[int, str]] = {}
        missing = 0
        for ack in crowd.acks:
            if ack.uid not in pseudonyms:
                user = await engine.find_user(f"telegram:{ack.uid}")
                assert user is not None
                pseudonyms[ack.uid] = (user.id, user.pseudonym)
            user_id, pseudonym = pseudonyms[ack.uid]
            task = await engine.task(ack.assignment)
            if (
                task is None
                or task.assignment.worker_id != user_id
                or task.assignment.state != "answered"
                or (task.item.external_id, pseudonym, LABELS[ack.choice]) not in stored
            ):
                missing += 1
        return {
            "missing": missing,
            "duplicate_credits": diag.duplicate_credits,
            "duplicate_assignments": diag.duplicate_assignments,
            "over_assigned_items": diag.over_assigned_items,
            "credits": diag.credits,
            "answers": diag.answers,
            "answered_assignments": diag.answered_assignments,
        }
    finally:
        await app.close()


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    fake_mod, crowd_mod = load("faketelegram"), load("simcrowd")
    rng = random.Random(args.seed)
    db = tmp / "load.db"
    n_items = math.ceil(args.workers * args.seconds / args.think[0] / OVERLAP * 1.3)
    n_items += 2 * args.workers
    fake = fake_mod.FakeTelegram()
    await fake.start()
    if args.rate_scale > 0:
        scale = args.rate_scale  # Telegram's limits as the fake models them, scaled
        fake.set_flood_limits(
            per_chat=1.0 * scale,
            chat_burst=3.0,
            group_per_minute=20.0 * scale,
            overall=30.0 * scale,
        )
    env = crowd_mod.bot_env(fake, tmp, SRC, "WARNING")
    say(f"creating the project with {n_items} items")
    spec = crowd_mod.sentiment_spec("Load sentiment", LABELS, OVERLAP)
    items = crowd_mod.sentiment_items(n_items, rng, "l", (3, 6))
    await crowd_mod.create_project(env, tmp, db, spec, items)
    crowd = crowd_mod.Crowd(
        fake, args.workers, think=tuple(args.think), retry_s=args.retry, seed=args.seed
    )
    log_path = tmp / "bot.log"
    log: IO[bytes] = log_path.open("wb")
    mark = len(fake.calls)
    proc = await asyncio.create_subprocess_exec(
        *bot_command(db, args.rate_scale), env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        await fake.wait_for(lambda c: c.method == "getUpdates", 120, since=mark)
        crowd.bot_up()
        say(f"bot polling; {args.workers} workers /start")
        crowd.begin()
        workers = list(crowd.workers.values())
        await fake.wait_until(lambda: all(w.tasks for w in workers), args.timeout)
        t0 = time.monotonic()
        cpu0 = cpu_seconds(proc.pid)
        acks0, presses0 = len(crowd.acks), crowd.presses
        say(f"every worker has a task: timing {args.seconds:g} s")
        while (left := t0 + args.seconds - time.monotonic()) > 0:
            await asyncio.sleep(min(5.0, left))
            dt = time.monotonic() - t0
            say(f"  {dt:5.1f} s: {len(crowd.acks) - acks0} acknowledged, {crowd.presses} presses")
        t1 = time.monotonic()
        cpu1 = cpu_seconds(proc.pid)
        crowd.stop_pressing()
        say(f"draining {crowd.waiting} answers in flight")
        try:
            await fake.wait_until(lambda: crowd.waiting == 0, args.drain)
        except TimeoutError:
            say(f"{crowd.waiting} presses still unacknowledged after {args.drain:g} s")
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
        await crowd.close()
        await fake.stop()
    window = [a for a in crowd.acks if t0 <= a.arrived <= t1]
    latencies = [a.latency for a in window]
    unacknowledged = crowd.waiting
    bot_log = log_path.read_text(errors="replace")
    log_errors = bot_log.count("Traceback") + sum(
        1 for line in bot_log.splitlines() if " ERROR " in line or line.startswith("ERROR")
    )
    say("checking the database")
    checked = await check_database(db, crowd)
    audit = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "polycrowd", "audit", "--db", str(db)],
        env=env,
        capture_output=True,
        text=True,
    )
    say(
        f"{len(crowd.acks)} acknowledged ({len(window)} in the window) of"
        f" {crowd.presses} presses ({crowd.presses - presses0} after t0); bot exit {rc};"
        f" audit: {audit.stdout.strip() or audit.stderr.strip()}; database: {checked};"
        f" failures {crowd.failures[:5]}; log errors {log_errors}; retries {crowd.retries}"
    )
    if log_errors:
        say(bot_log[-4000:])
    return {
        "answers_per_second": round(len(window) / (t1 - t0), 1),
        "p50_ms": round(1000 * percentile(latencies, 0.5), 1),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "errors": len(crowd.failures) + log_errors + (audit.returncode != 0) + (rc != 0),
        "lost_answers": unacknowledged + checked["missing"],
        "duplicate_credits": checked["duplicate_credits"],
        "workers": args.workers,
        "seconds": round(t1 - t0, 1),
        "rate_scale": args.rate_scale,
        "bot_cpu_share": (
            None if cpu0 is None or cpu1 is None else round((cpu1 - cpu0) / (t1 - t0), 2)
        ),
        "load_average": round(os.getloadavg()[0], 1),
    }


KEYS = ("answers_per_second", "p99_ms", "errors", "lost_answers", "duplicate_credits")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--workers", type=int, default=200, help="simulated workers (default 200)")
    p.add_argument("--seconds", type=float, default=60.0, help="timed window (default 60)")
    p.add_argument(
        "--rate-scale",
        type=float,
        default=100.0,
        help="flood limits x this (default 100; 1: Telegram's own, through `polycrowd run`)",
    )
    p.add_argument(
        "--think", type=float, nargs=2, default=[0.9, 1.4], metavar=("MIN", "MAX"),
        help="seconds a worker reads a task before pressing (default 0.9 1.4)",
    )  # fmt: skip
    p.add_argument("--retry", type=float, default=60.0, help="ask again after this silence")
    p.add_argument("--drain", type=float, default=60.0, help="wait for answers in flight")
    p.add_argument("--timeout", type=float, default=300.0, help="onboarding limit (s)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--serve-bot", metavar="DB", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_bot:
        asyncio.run(serve_bot(args.serve_bot, args.rate_scale))
        return 0
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="polycrowd-bench-load-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    # the context of the run on stderr; the last stdout line has exactly the keys
    print(json.dumps({k: v for k, v in result.items() if k not in KEYS}), file=sys.stderr)
    print(json.dumps({k: result[k] for k in KEYS}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
