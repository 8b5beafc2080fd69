"""Benchmark: polycrowd's Telegram bot against a bare python-telegram-bot echo bot.

Usage::

    python bench/telegram.py [--workers 500] [--tasks 4] [--overlap 3] [--rate-scale 100]

Both bots run for real (python-telegram-bot 22, long polling) against the fake Bot API
server of ``tests/bot/faketelegram.py``. The fake and the simulated users run in a second
process (a *load generator*, like Telegram's servers and the users' phones would be), so the
bot's process holds only the bot; ``--fake-in-process`` puts them in the bot's event loop.

1. **polycrowd**: the real :class:`~polycrowd.bot.telegram.TelegramAdapter`, dispatcher,
   handlers, engine on an SQLite file and rules checker. A requester uploads a spec and a CSV
   with enough items (``workers * tasks / overlap`` and a quarter more) and launches the
   project through the chat; ``--workers`` workers send ``/start`` and press *Done*
   (not timed). Then every worker sends ``/task`` and answers each task by pressing a label
   button the moment the task message reaches the fake, ``--tasks`` times. Every
   ``--dup-every``-th press is delivered twice (the same ``update_id``), as Telegram does
   after a lost ``getUpdates`` answer.
2. **echo**: a bare PTB application (``ApplicationBuilder().token().base_url().build()``:
   PTB's defaults, one update at a time; ``--echo-concurrency`` changes that) that answers a
   message with a message with one button, and a press with ``answerCallbackQuery`` plus a
   message with one button. As many simulated users as workers send the same number of
   updates the same way: one message, then presses, each as soon as the previous answer
   arrives.

Telegram's flood limits (30 msg/s overall, 1 msg/s per chat with bursts of 3, 20/min per
group) are applied by the fake to polycrowd (429 with ``retry_after``, counted in
``http_429``) and respected by our outbound queue, both ``--rate-scale`` times faster than
Telegram's, so that the queue is in the path but does not bound a benchmark of the
processing; ``--rate-scale 1`` shows what Telegram's real limits do to polycrowd (about 30
messages/s). The bare echo bot has no rate limiter, and its fake applies no limits.

The engine's clock runs ``--dilation`` times faster than the wall clock, so that a worker
who presses within milliseconds looks like one who read the task for a second or two (the
fraud rules would flag inhumanly fast workers otherwise).

Latency is measured per original update: from its injection into the fake to the moment
the fake records the message the user was waiting for (the next task, or the echo). Updates
per second count every update injected in the timed phase (duplicates included) over the
time from the first injection to the last awaited message.

The bot's process runs on one CPU and the load generator on another (``--no-pin`` lets the
OS place them; on two cores the bot's database thread and the generator otherwise compete,
and the numbers swing by a third from run to run).

Progress goes to stderr; the last stdout line is one JSON object with the keys
``polycrowd_updates_per_second, echo_updates_per_second, ratio, p50_ms, p99_ms, http_429,
duplicate_credits`` (``duplicate_credits``: ledger credits beyond the first per
assignment, counted through the answers they pay for).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# this file is called telegram.py: keep it from shadowing python-telegram-bot's package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any  # noqa: E402

ADMIN_CHAT = -1009000000001
REQUESTER_ID = 9_000_001
FIRST_WORKER = 100_000


def load_fake() -> ModuleType:
    path = ROOT / "tests" / "bot" / "faketelegram.py"
    spec = importlib.util.spec_from_file_location("bench_faketelegram", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


FAKE = load_fake()


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class RecordingFake(FAKE.FakeTelegram):  # type: ignore[name-defined,misc]
    """The fake, calling ``on_call`` for every recorded Bot API call (no polling waiters)."""

    def __init__(self, on_call: Callable[[Any], None]) -> None:
        super().__init__()
        self.on_call = on_call

    async def _record(self, call: Any) -> None:
        await super()._record(call)
        self.on_call(call)


def callback_data(call: Any) -> list[str]:
    markup = call.params.get("reply_markup") or {}
    return [
        b["callback_data"]
        for row in markup.get("inline_keyboard") or []
        for b in row
        if "callback_data" in b
    ]


@dataclass
class Sim:
    """Simulated users driven by the calls the fake records."""

    fake: Any = None
    users: dict[int, Any] = field(default_factory=dict)
    state: dict[int, str] = field(default_factory=dict)
    answered: dict[int, int] = field(default_factory=dict)
    waiting_since: dict[int, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    injected: int = 0
    completed: int = 0
    duplicates: int = 0
    first: float = 0.0
    last: float = 0.0
    active: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def on_call(self, call: Any) -> None:
        """React to a recorded Bot API call (subclasses)."""

    def begin(self, uid: int) -> None:
        self.active += 1
        self.answered[uid] = 0

    def finish(self, uid: int) -> None:
        self.state[uid] = "done"
        self.active -= 1
        if self.active == 0:
            self.done.set()

    def sent(self, uid: int, kind: str, *args: Any) -> dict[str, Any]:
        """Inject an update for user ``uid`` (timed from now)."""
        now = time.monotonic()
        if not self.first:
            self.first = now
        self.injected += 1
        self.waiting_since[uid] = now
        user = self.users[uid]
        if kind == "say":
            return dict(self.fake.inject_message(user, uid, args[0]))
        return dict(self.fake.inject_callback(user, uid, args[0], args[1]))

    def arrived(self, uid: int, at: float) -> None:
        since = self.waiting_since.pop(uid, None)
        if since is not None:
            self.latencies.append(at - since)
            self.completed += 1
            self.last = at


class PolycrowdSim(Sim):
    def __init__(self, tasks: int, dup_every: int, rng: random.Random) -> None:
        super().__init__()
        self.tasks = tasks
        self.dup_every = dup_every
        self.rng = rng
        self.presses = 0
        self.onboarded = 0
        self.onboard_done = asyncio.Event()
        self.n_workers = 0
        self.requester_calls: list[Any] = []

    def on_call(self, call: Any) -> None:
        if not call.ok:
            return
        uid = call.params.get("chat_id")
        if uid == REQUESTER_ID:
            self.requester_calls.append(call)
            return
        state = self.state.get(uid) if isinstance(uid, int) else None
        if state is None:
            return
        if state == "start" and call.method == "sendMessage" and "lok" in callback_data(call):
            self.state[uid] = "lok"
            self.fake.inject_callback(self.users[uid], uid, call.result["message_id"], "lok")
        elif state == "lok" and call.method == "editMessageText":
            self.state[uid] = "ready"
            self.onboarded += 1
            if self.onboarded == self.n_workers:
                self.onboard_done.set()
        elif state == "work" and call.method == "sendMessage":
            self.on_work_message(uid, call)

    def on_work_message(self, uid: int, call: Any) -> None:
        data = [d for d in callback_data(call) if d.startswith("a:")]
        text = call.result.get("text", "")
        if not data:
            if "No tasks" in text or "blocked" in text or "paused" in text:
                self.arrived(uid, call.time)
                self.finish(uid)
            return  # e.g. a verdict on its own (with --no-coalesce)
        self.arrived(uid, call.time)
        if self.answered[uid] >= self.tasks:
            self.finish(uid)
            return
        self.answered[uid] += 1
        self.presses += 1
        choice = data[0] if self.rng.random() < 0.5 else data[-1]
        update = self.sent(uid, "press", call.result["message_id"], choice)
        if self.dup_every and self.presses % self.dup_every == 0:
            self.fake.inject_raw(update)
            self.injected += 1
            self.duplicates += 1


class EchoSim(Sim):
    def __init__(self, target: int) -> None:
        super().__init__()
        self.target = target

    def on_call(self, call: Any) -> None:
        if not (call.ok and call.method == "sendMessage"):
            return
        uid = call.params.get("chat_id")
        if self.state.get(uid) != "work":
            return
        self.arrived(uid, call.time)
        if self.injected >= self.target:
            self.finish(uid)
            return
        self.sent(uid, "press", call.result["message_id"], callback_data(call)[0])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[k]


async def progress(sim: Sim, label: str, stop: asyncio.Event) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 2.0)
        except TimeoutError:
            dt = time.monotonic() - t0
            say(f"  {label}: {sim.completed} answered, {sim.injected} injected, {dt:.0f} s")


# ------------------------------------------------------------------------------- load generator


def spec(overlap: int) -> bytes:
    return (
        "name: Bench sentiment\n"
        "type: choice\n"
        "labels: [pos, neg]\n"
        "languages: [en]\n"
        'instructions: "Is the text positive or negative?"\n'
        f"overlap: {overlap}\n"
        "reward: 5\n"
        "assignment_ttl: 604800\n"
    ).encode()


def items(n: int, rng: random.Random) -> bytes:
    words = ["good", "bad", "fine", "awful", "great", "poor", "nice", "meh", "ok", "wow"]
    lines = ["id,text"]
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 7)))
        lines.append(f"b{i},{text} #{i}")
    return ("\n".join(lines) + "\n").encode()


class LoadGenerator:
    """The fake Bot API server and the simulated users of one run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sim: Sim = Sim()
        self.fake: Any = None

    def _on_call(self, call: Any) -> None:
        self.sim.on_call(call)

    async def start(self) -> dict[str, str]:
        self.fake = RecordingFake(self._on_call)
        await self.fake.start()
        if getattr(self.args, "flood", True):
            scale = self.args.rate_scale  # Telegram's limits, as the fake models them, scaled
            self.fake.set_flood_limits(
                per_chat=1.0 * scale,
                chat_burst=3.0,
                group_per_minute=20.0 * scale,
                overall=30.0 * scale,
            )
        return {"url": self.fake.url, "token": self.fake.token}

    async def stop(self) -> None:
        if self.fake is not None:
            await self.fake.stop()

    async def _timed(self, sim: Sim, label: str) -> dict[str, Any]:
        for uid in sim.users:
            sim.state[uid] = "work"
            sim.begin(uid)
        http_429 = self.fake.http_429
        calls = len(self.fake.calls)
        for uid in list(sim.users):
            sim.sent(uid, "say", "/task")
        stop = asyncio.Event()
        ticker = asyncio.create_task(progress(sim, label, stop))
        try:
            await asyncio.wait_for(sim.done.wait(), self.args.timeout)
        except TimeoutError:
            say(f"{label}: timed out with {sim.active} users still busy")
        finally:
            stop.set()
            await ticker
        await asyncio.sleep(0.5)  # redelivered duplicates: let them be processed
        methods: dict[str, int] = {}
        for c in self.fake.calls[calls:]:
            methods[c.method] = methods.get(c.method, 0) + 1
        return {
            "updates": sim.injected,
            "duplicates_injected": sim.duplicates,
            "seconds": max(1e-9, sim.last - sim.first),
            "latencies": sim.latencies,
            "http_429": self.fake.http_429 - http_429,
            "calls": methods,
            "timed_out": sim.active,
        }

    async def prepare(self) -> dict[str, Any]:
        """The requester publishes the project; the workers start and pick a language."""
        args = self.args
        sim = PolycrowdSim(args.tasks, args.dup_every, random.Random(args.seed))
        sim.fake, self.sim = self.fake, sim
        n_items = math.ceil(args.workers * args.tasks / args.overlap * 1.25) + 10
        say(f"polycrowd: the requester uploads {n_items} items and launches")
        await self._requester(sim, n_items)
        say(f"polycrowd: {args.workers} workers /start and press Done")
        sim.n_workers = args.workers
        for i in range(args.workers):
            uid = FIRST_WORKER + i
            sim.users[uid] = self.fake.user(uid, f"W{i}", language_code="en")
            sim.state[uid] = "start"
            self.fake.inject_message(sim.users[uid], uid, "/start")
        await asyncio.wait_for(sim.onboard_done.wait(), args.timeout)
        await asyncio.sleep(0.2)
        return {"workers": sim.onboarded}

    async def polycrowd(self) -> dict[str, Any]:
        """The timed phase: every worker answers ``--tasks`` tasks."""
        sim = self.sim
        assert isinstance(sim, PolycrowdSim)
        say(f"polycrowd: workers answer {self.args.tasks} tasks each")
        result = await self._timed(sim, "polycrowd")
        result["presses"] = sim.presses
        return result

    async def _requester(self, sim: PolycrowdSim, n_items: int) -> None:
        rita = self.fake.user(REQUESTER_ID, "Rita")
        for step, check in (
            (lambda: rita.upload("bench.yaml", spec(self.args.overlap)), "created"),
            (lambda: rita.upload("items.csv", items(n_items, sim.rng)), "Imported"),
            (lambda: rita.say("/launch"), "is live"),
        ):
            n = len(sim.requester_calls)
            step()
            deadline = time.monotonic() + 60
            while not any(
                c.method == "sendMessage" and check in c.result.get("text", "")
                for c in sim.requester_calls[n:]
            ):
                if time.monotonic() > deadline:
                    texts = [c.result.get("text") for c in sim.requester_calls[n:]]
                    raise RuntimeError(f"requester setup: no {check!r} in {texts}")
                await asyncio.sleep(0.01)

    async def echo(self, target: int) -> dict[str, Any]:
        sim = EchoSim(target)
        sim.fake, self.sim = self.fake, sim
        say(f"echo: {self.args.workers} users send {target} updates")
        for i in range(self.args.workers):
            uid = FIRST_WORKER + i
            sim.users[uid] = self.fake.user(uid, f"E{i}", language_code="en")
        return await self._timed(sim, "echo")


async def _serve(conn: Any, args: argparse.Namespace) -> None:
    gen = LoadGenerator(args)
    conn.send(await gen.start())
    try:
        while True:
            name, params = await asyncio.to_thread(conn.recv)
            if name == "stop":
                break
            try:
                conn.send(await getattr(gen, name)(*params))
            except Exception as exc:  # report, keep serving the stop
                conn.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        await gen.stop()
        conn.send("stopped")


def pin(cpu: int) -> None:
    """Run this process on one CPU (bot on one, load generator on another: repeatable)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[cpu % len(cpus)]})


def generator_process(conn: Any, options: dict[str, Any]) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if options.get("pin"):
        pin(1)
    asyncio.run(_serve(conn, argparse.Namespace(**options)))


class Generator:
    """The bot process's handle on the load generator (another process, or this one)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.local: LoadGenerator | None = None
        self.conn: Any = None
        self.proc: Any = None

    async def start(self) -> dict[str, str]:
        if self.args.fake_in_process:
            self.local = LoadGenerator(self.args)
            return await self.local.start()
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=generator_process, args=(child, vars(self.args)), daemon=True
        )
        self.proc.start()
        info: dict[str, str] = await asyncio.to_thread(self.conn.recv)
        return info

    async def call(self, name: str, *params: Any) -> dict[str, Any]:
        if self.local is not None:
            result: dict[str, Any] = await getattr(self.local, name)(*params)
            return result
        self.conn.send((name, params))
        reply: dict[str, Any] = await asyncio.to_thread(self.conn.recv)
        if "error" in reply:
            raise RuntimeError(f"load generator: {reply['error']}")
        return reply

    async def stop(self) -> None:
        if self.local is not None:
            await self.local.stop()
            return
        if self.proc is not None:
            self.conn.send(("stop", ()))
            with contextlib.suppress(EOFError):
                await asyncio.to_thread(self.conn.recv)
            await asyncio.to_thread(self.proc.join, 10)


# ------------------------------------------------------------------------------- the bots


async def ledger_check(app: Any) -> tuple[int, int, int]:
    """(duplicate credits, credits, answered assignments)."""
    diag = await app.db.diagnostics()
    return diag.duplicate_credits, diag.credits, diag.answered_assignments


async def run_polycrowd(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    from polycrowd.bot.app import build_app
    from polycrowd.bot.outbound import OutboundLimits
    from polycrowd.bot.telegram import TelegramAdapter
    from polycrowd.engine.language import LanguageDetector
    from polycrowd.engine.types import Role
    from polycrowd.models.rules import RulesChecker
    from polycrowd.settings import Settings

    gen = Generator(args)
    info = await gen.start()
    settings = Settings(
        db=str(Path(tmp) / "bench.db"),
        telegram_token=info["token"],
        telegram_api_url=info["url"],
        admin_chat=str(ADMIN_CHAT),
        language_backend="script",
    )
    app = await build_app(settings, checker=RulesChecker(), detector=LanguageDetector("script"))
    t0 = time.time()
    app.engine.clock = lambda: t0 + (time.time() - t0) * args.dilation
    limits = OutboundLimits().scaled(args.rate_scale)
    if args.in_flight is not None:
        limits = dataclasses.replace(limits, max_in_flight=args.in_flight)
    adapter = TelegramAdapter(
        app,
        limits=limits,
        concurrency=args.concurrency,
        coalesce=not args.no_coalesce,
        transport=args.transport,
    )
    app.add_adapter(adapter)
    profiler = None
    try:
        await adapter.start()
        rita, _ = await app.engine.user_for("telegram", str(REQUESTER_ID), "Rita")
        await app.engine.bootstrap_role(rita.id, Role.REQUESTER)
        await gen.call("prepare")
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
        cpu = time.process_time()
        if profiler is None:
            result = await gen.call("polycrowd")
        else:
            result = await _profiled(gen, profiler)
        result["cpu"] = time.process_time() - cpu
        await app.flush()
        dup, credits, answered = await ledger_check(app)
        result.update(
            duplicate_credits=dup,
            credits=credits,
            answered=answered,
            queue=adapter.queue.stats,
            transport=adapter.transport,
        )
    finally:
        await adapter.stop()
        await app.close()
        await gen.stop()
    if profiler is not None:
        import pstats

        profiler.dump_stats(args.profile)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
        say(f"profile of the bot process written to {args.profile}")
    return result


async def _profiled(gen: Generator, profiler: Any) -> dict[str, Any]:
    """The timed phase under cProfile."""
    profiler.enable()
    try:
        return await gen.call("polycrowd")
    finally:
        profiler.disable()


async def run_echo(args: argparse.Namespace, target: int) -> dict[str, Any]:
    from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
    from telegram.ext import (
        ApplicationBuilder,
        CallbackQueryHandler,
        ContextTypes,
        MessageHandler,
        filters,
    )

    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("again", callback_data="e:1")]])

    async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None and update.effective_chat is not None
        text = f"echo: {update.message.text}"
        await context.bot.send_message(update.effective_chat.id, text, reply_markup=keyboard)

    async def on_press(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.message is not None
        await query.answer()
        text = f"echo: {query.data}"
        await context.bot.send_message(query.message.chat.id, text, reply_markup=keyboard)

    gen = Generator(argparse.Namespace(**{**vars(args), "flood": False}))  # no limiter: no limits
    info = await gen.start()
    builder = ApplicationBuilder().token(info["token"])
    builder = builder.base_url(f"{info['url']}/bot").base_file_url(f"{info['url']}/file/bot")
    if args.echo_concurrency > 1:
        builder = builder.concurrent_updates(args.echo_concurrency)
    if args.echo_transport == "aiohttp":
        from polycrowd.bot.outbound import AiohttpRequest

        builder = builder.request(AiohttpRequest()).get_updates_request(AiohttpRequest(2))
    bot = builder.build()
    bot.add_handler(MessageHandler(filters.TEXT, on_text))
    bot.add_handler(CallbackQueryHandler(on_press))
    try:
        await bot.initialize()
        await bot.start()
        assert bot.updater is not None
        await bot.updater.start_polling(poll_interval=0.0, timeout=10)
        cpu = time.process_time()
        result = await gen.call("echo", target)
        result["cpu"] = time.process_time() - cpu
        return result
    finally:
        if bot.updater is not None and bot.updater.running:
            await bot.updater.stop()
        if bot.running:
            await bot.stop()
        await bot.shutdown()
        await gen.stop()


# ------------------------------------------------------------------------------- main


def ms(seconds: float) -> float:
    return round(1000 * seconds, 1)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="polycrowd-bench-tg-") as tmp:
        ours = await run_polycrowd(args, tmp)
    ups = ours["updates"] / ours["seconds"]
    lat = ours["latencies"]
    say(
        f"polycrowd: {ours['updates']} updates ({ours['duplicates_injected']} duplicates,"
        f" {ours['presses']} presses) in {ours['seconds']:.2f} s = {ups:.1f}/s;"
        f" latency p50 {ms(percentile(lat, 0.5))} ms, p99 {ms(percentile(lat, 0.99))} ms"
        f" (mean {ms(statistics.fmean(lat)) if lat else 'nan'});"
        f" credits {ours['credits']} for {ours['answered']} answered assignments;"
        f" bot process CPU {ours['cpu']:.1f} s ({1000 * ours['cpu'] / ours['updates']:.2f} ms"
        " per update);"
        f" Bot API calls {ours['calls']}; queue {ours['queue']}; transport {ours['transport']}"
    )
    echo = await run_echo(args, ours["updates"])
    echo_ups = echo["updates"] / echo["seconds"]
    elat = echo["latencies"]
    say(
        f"echo: {echo['updates']} updates in {echo['seconds']:.2f} s = {echo_ups:.1f}/s;"
        f" latency p50 {ms(percentile(elat, 0.5))} ms, p99 {ms(percentile(elat, 0.99))} ms;"
        f" Bot API calls {echo['calls']}; 429s {echo['http_429']}; {args.echo_transport};"
        f" bot process CPU {echo['cpu']:.1f} s ({1000 * echo['cpu'] / echo['updates']:.2f} ms"
        " per update)"
    )
    if ours["timed_out"] or echo["timed_out"]:
        say("WARNING: a phase timed out; the numbers cover the part that finished")
    return {
        "polycrowd_updates_per_second": round(ups, 1),
        "echo_updates_per_second": round(echo_ups, 1),
        "ratio": round(ups / echo_ups, 3) if echo_ups else None,
        "p50_ms": ms(percentile(lat, 0.5)),
        "p99_ms": ms(percentile(lat, 0.99)),
        "http_429": ours["http_429"],
        "duplicate_credits": ours["duplicate_credits"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--workers", type=int, default=500, help="simulated workers (default 500)")
    p.add_argument("--tasks", type=int, default=4, help="answers per worker (default 4)")
    p.add_argument("--overlap", type=int, default=3, help="answers per item (default 3)")
    p.add_argument("--dup-every", type=int, default=20, help="redeliver every n-th press")
    p.add_argument(
        "--rate-scale", type=float, default=100.0, help="flood limits x this (default 100)"
    )
    p.add_argument("--dilation", type=float, default=100.0, help="engine clock speed-up")
    p.add_argument(
        "--concurrency", type=int, default=256, help="polycrowd: concurrent updates (256)"
    )
    p.add_argument(
        "--echo-concurrency", type=int, default=1, help="echo: concurrent updates (PTB's 1)"
    )
    p.add_argument(
        "--echo-transport",
        choices=("httpx", "aiohttp"),
        default="httpx",
        help="echo: HTTP backend (PTB's default httpx; aiohttp: the one polycrowd uses)",
    )
    p.add_argument("--in-flight", type=int, help="polycrowd: requests on the wire at once")
    p.add_argument(
        "--transport", choices=("auto", "aiohttp", "httpx"), default="auto", help="polycrowd"
    )
    p.add_argument("--no-coalesce", action="store_true", help="verdict and next task apart")
    p.add_argument("--fake-in-process", action="store_true", help="fake in the bot's loop")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per phase")
    p.add_argument("--profile", metavar="FILE", help="cProfile the bot process into FILE")
    p.add_argument(
        "--no-pin", dest="pin", action="store_false", help="let the OS place the two processes"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.pin and not args.fake_in_process:
        pin(0)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from telegram.warnings import PTBDeprecationWarning

    warnings.filterwarnings("ignore", category=PTBDeprecationWarning)
    result = asyncio.run(main_async(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
