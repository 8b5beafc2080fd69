"""Simulated crowd workers for the crash test and the load benchmark.

A :class:`Crowd` drives ``n`` Telegram users through polycrowd's worker flow against a
:class:`~tests.bot.faketelegram.FakeTelegram`, reacting to what the bot sends the way a person
would: ``/start``, *Done* on the language keyboard, ``/task``, then a label button a moment
after each task arrives (``think`` seconds: long enough for the fraud rules to see a reader),
until the bot says there are no tasks left. A worker who waits ``retry_s`` seconds for an
answer while the bot is up asks again (``/start`` or ``/task``), as a person whose message got
lost would; :meth:`Crowd.bot_down` / :meth:`Crowd.bot_up` tell it when the bot is away.

An answer is *acknowledged* when the bot edits the task message to show "Your answer" (sent
after the answer's transaction committed): :attr:`Crowd.acks` holds one :class:`Ack` per
acknowledged (worker, assignment) with the button the worker pressed and the latency from
the press to the acknowledgement.

The module also makes the project both use the way a user would, through the CLI
(:func:`create_project`), and the environment the bot's process runs in (:func:`bot_env`).

Like the fake, this module imports neither python-telegram-bot nor pytest, so benchmarks can
load it by path. Every callback runs on the fake's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "Ack",
    "Crowd",
    "SimWorker",
    "bot_env",
    "create_project",
    "polycrowd_cli",
    "sentiment_items",
    "sentiment_spec",
]

ACK_TEXT: Final = "Your answer"
LANGUAGES_DONE: Final = "Your languages:"
NO_TASKS: Final = "No tasks for you"
FAILURE: Final = "Something went wrong"


@dataclass(frozen=True, slots=True)
class Ack:
    """An answer the worker saw acknowledged."""

    uid: int
    assignment: int
    choice: int  # the label index the worker pressed (button data ``a:<assignment>:<choice>``)
    latency: float  # seconds from the press's injection to the acknowledgement's arrival
    arrived: float  # ``time.monotonic()`` of the acknowledgement's arrival


@dataclass(slots=True)
class SimWorker:
    uid: int
    user: Any
    state: str = "new"  # new, onboarding, work, think, pressed, done
    waiting_since: float | None = None  # an update of ours waits for the bot's reply
    pending: int | None = None  # the assignment of the press awaiting its acknowledgement
    tasks: dict[int, int] = field(default_factory=dict)  # task message id -> assignment
    pressed: dict[int, tuple[int, float]] = field(default_factory=dict)  # aid -> (choice, t)
    acked: set[int] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None
    retries: int = 0


def _buttons(call: Any) -> list[str]:
    markup = call.params.get("reply_markup") or {}
    if not isinstance(markup, dict):
        return []
    return [
        str(b["callback_data"])
        for row in markup.get("inline_keyboard") or []
        for b in row
        if isinstance(b, dict) and "callback_data" in b
    ]


class Crowd:
    """``n`` simulated workers (user ids ``first_uid`` on) listening to ``fake``."""

    def __init__(
        self,
        fake: Any,
        n: int,
        *,
        first_uid: int = 100_000,
        think: tuple[float, float] = (0.9, 1.4),
        retry_s: float = 5.0,
        seed: int = 0,
        language_code: str = "en",
    ) -> None:
        self.fake = fake
        self.think = think
        self.retry_s = retry_s
        self.rng = random.Random(seed)
        self.workers: dict[int, SimWorker] = {
            uid: SimWorker(uid, fake.user(uid, f"Worker {i}", language_code=language_code))
            for i, uid in enumerate(range(first_uid, first_uid + n))
        }
        self.acks: list[Ack] = []
        self.presses = 0
        self.failures: list[str] = []  # "Something went wrong" replies and failed calls
        self.up = False
        self.stopping = False  # no new presses (a benchmark draining its last answers)
        self.all_done = asyncio.Event()
        self._queries: dict[str, int] = {}  # callback query id -> worker
        self._sent: list[tuple[float, dict[str, Any]]] = []  # (time, update) we injected
        self._watchdog: asyncio.Task[None] | None = None
        fake.listeners.append(self.on_call)

    # -- control

    def begin(self) -> None:
        """Every worker sends ``/start``; the watchdog starts."""
        for w in self.workers.values():
            self._say(w, "/start")
            w.state = "onboarding"
        if self._watchdog is None:
            self._watchdog = asyncio.ensure_future(self._watch())

    async def close(self) -> None:
        if self.on_call in self.fake.listeners:
            self.fake.listeners.remove(self.on_call)
        for w in self.workers.values():
            if w.timer is not None:
                w.timer.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None

    def bot_down(self) -> None:
        self.up = False

    def bot_up(self) -> None:
        """The bot polls again: waiting workers give it ``retry_s`` before asking again."""
        self.up = True
        now = time.monotonic()
        for w in self.workers.values():
            if w.waiting_since is not None:
                w.waiting_since = now

    def redeliver(self, since: float) -> int:
        """Deliver again every update injected at or after ``since`` (``time.monotonic()``),
        with its ``update_id``: what Telegram does when the bot's confirmation of a batch
        (its next ``getUpdates`` offset) was lost with the process. Returns how many."""
        again = [update for at, update in self._sent if at >= since]
        for update in again:
            self.fake.inject_raw(update)
        return len(again)

    def stop_pressing(self) -> None:
        self.stopping = True

    @property
    def retries(self) -> int:
        return sum(w.retries for w in self.workers.values())

    @property
    def done(self) -> int:
        return sum(1 for w in self.workers.values() if w.state == "done")

    @property
    def waiting(self) -> int:
        """Presses not acknowledged yet (of workers still waiting for them)."""
        return sum(1 for w in self.workers.values() if w.pending is not None)

    # -- acting

    def _say(self, w: SimWorker, text: str) -> None:
        self._inject(self.fake.inject_message(w.user, w.uid, text))
        w.waiting_since = time.monotonic()

    def _inject(self, update: dict[str, Any]) -> dict[str, Any]:
        self._sent.append((time.monotonic(), update))
        return update

    def _press(self, w: SimWorker, message_id: int, aid: int, data: list[str]) -> None:
        w.timer = None
        if w.state != "think" or w.tasks.get(message_id) != aid:
            return
        if self.stopping:
            self._finish(w)
            return
        choice = self.rng.randrange(len(data))
        update = self._inject(self.fake.inject_callback(w.user, w.uid, message_id, data[choice]))
        self._queries[str(update["callback_query"]["id"])] = w.uid
        now = time.monotonic()
        w.pressed[aid] = (int(data[choice].split(":")[2]), now)
        w.pending = aid
        w.state = "pressed"
        w.waiting_since = now
        self.presses += 1

    def _finish(self, w: SimWorker) -> None:
        w.state = "done"
        w.waiting_since = None
        w.pending = None
        if all(x.state == "done" for x in self.workers.values()):
            self.all_done.set()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            if not self.up:
                continue
            now = time.monotonic()
            for w in self.workers.values():
                since = w.waiting_since
                if since is None or now - since < self.retry_s or w.state == "done":
                    continue
                w.retries += 1
                if w.state == "onboarding":
                    self._say(w, "/start")
                else:
                    w.state = "work"
                    self._say(w, "/task")

    # -- reacting

    def on_call(self, call: Any) -> None:
        uid = call.params.get("chat_id")
        if call.method == "answerCallbackQuery":
            self._on_answer(call)
            return
        w = self.workers.get(uid) if isinstance(uid, int) else None
        if w is None:
            return
        if not call.ok:
            if call.status != 429:  # a 429 is retried by the bot's queue
                self.failures.append(f"{call.method} {call.status} {call.description}")
            return
        if call.method not in ("sendMessage", "editMessageText"):
            return
        result: dict[str, Any] = call.result if isinstance(call.result, dict) else {}
        text = str(result.get("text", ""))
        message_id = int(result.get("message_id") or 0)
        if FAILURE in text:
            self.failures.append(text)
        if call.method == "editMessageText" and ACK_TEXT in text:
            self._ack(w, int(call.params["message_id"]), call.time)
        data = _buttons(call)
        if w.state == "onboarding":
            if "lok" in data and call.method == "sendMessage":
                self._inject(self.fake.inject_callback(w.user, w.uid, message_id, "lok"))
                w.waiting_since = time.monotonic()
            elif LANGUAGES_DONE in text:
                w.state = "work"
                self._say(w, "/task")
            return
        tasks = [d for d in data if d.startswith("a:")]
        if call.method == "sendMessage" and tasks and w.state != "done":
            aid = int(tasks[0].split(":")[1])
            if aid in w.acked:
                return
            w.tasks[message_id] = aid
            if w.timer is not None:
                w.timer.cancel()
            w.state = "think"
            w.waiting_since = None
            delay = self.rng.uniform(*self.think)
            loop = asyncio.get_running_loop()
            w.timer = loop.call_later(delay, self._press, w, message_id, aid, tasks)
        elif NO_TASKS in text and w.state in ("work", "pressed"):
            self._finish(w)

    def _ack(self, w: SimWorker, message_id: int, at: float) -> None:
        aid = w.tasks.get(message_id)
        if aid is None or aid in w.acked or aid not in w.pressed:
            return
        choice, pressed_at = w.pressed[aid]
        w.acked.add(aid)
        self.acks.append(Ack(w.uid, aid, choice, at - pressed_at, at))
        if w.pending == aid:
            w.pending = None
            if w.state == "pressed":
                w.state = "work"  # the next task follows the acknowledgement

    def _on_answer(self, call: Any) -> None:
        """A press refused with an alert (a stale button after a restart): ask for the task."""
        uid = self._queries.pop(str(call.params.get("callback_query_id")), None)
        w = self.workers.get(uid) if uid is not None else None
        if w is None or not call.ok or not call.params.get("text"):
            return
        if w.state == "pressed":
            w.pending = None
            w.state = "work"
            self._say(w, "/task")


# ----------------------------------------------------------------- the project and the bot


def sentiment_spec(name: str, labels: Sequence[str], overlap: int) -> str:
    """A choice project in English whose assignments never expire during a run."""
    return (
        f"name: {name}\n"
        "type: choice\n"
        f"labels: [{', '.join(labels)}]\n"
        "languages: [en]\n"
        'instructions: "Is the text positive or negative?"\n'
        f"overlap: {overlap}\n"
        "reward: 5\n"
        "assignment_ttl: 604800\n"
    )


def sentiment_items(n: int, rng: random.Random, prefix: str, words: tuple[int, int]) -> str:
    """``n`` items ``<prefix><i>`` of ``words`` (min, max) random sentiment words, as CSV."""
    vocabulary = ["good", "bad", "fine", "awful", "great", "poor", "nice", "meh", "ok", "wow"]
    lines = ["id,text"]
    for i in range(n):
        text = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(*words)))
        lines.append(f"{prefix}{i},{text} #{i}")
    return "\n".join(lines) + "\n"


def bot_env(fake: Any, home: Path, src: Path, log_level: str) -> dict[str, str]:
    """This process's environment without any POLYCROWD_ setting, pointed at ``fake``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYCROWD_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")])),
        XDG_CONFIG_HOME=str(home / "config"),
        POLYCROWD_TELEGRAM_TOKEN=fake.token,
        POLYCROWD_TELEGRAM_API_URL=fake.url,
        POLYCROWD_LANGUAGE_BACKEND="script",
        POLYCROWD_LOG_LEVEL=log_level,
    )
    return env


async def polycrowd_cli(
    env: Mapping[str, str], cwd: Path, *args: str, limit_s: float = 300.0
) -> subprocess.CompletedProcess[str]:
    """``python -m polycrowd ARGS`` in a worker thread (the event loop keeps serving)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "polycrowd", *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=limit_s,
    )


async def create_project(
    env: Mapping[str, str], cwd: Path, db: Path, spec: str, items: str, limit_s: float = 300.0
) -> None:
    """Project 1 from ``spec`` with ``items``, live, made with the CLI as a user would."""
    (cwd / "spec.yaml").write_text(spec)
    (cwd / "items.csv").write_text(items)
    for args in (
        ("project", "create", "spec.yaml"),
        ("import", "1", "items.csv"),
        ("project", "launch", "1"),
    ):
        done = await polycrowd_cli(env, cwd, *args, "--db", str(db), limit_s=limit_s)
        if done.returncode != 0:
            raise RuntimeError(f"polycrowd {' '.join(args)}: {done.stderr.strip()}")
