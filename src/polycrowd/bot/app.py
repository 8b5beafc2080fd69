"""Wiring: settings -> database -> checker -> engine -> dispatcher -> adapters + scheduler.

This is the one place where the parts meet. Nothing is created at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from polycrowd.engine.checking import Checker
from polycrowd.engine.core import Engine, EngineHooks, Flag
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.ledger_key import LedgerKeyring
from polycrowd.engine.scheduler import Scheduler
from polycrowd.engine.services.prelabels import Predictor
from polycrowd.engine.store import Store, open_store
from polycrowd.engine.types import Project
from polycrowd.handlers.common import Dispatcher
from polycrowd.handlers.moderator import flag_card
from polycrowd.handlers.types import Reply
from polycrowd.i18n import N_, Msg, Translator
from polycrowd.metrics import InstrumentedChecker, Metrics, database_collector, outbound_collector
from polycrowd.settings import Settings

log = logging.getLogger(__name__)


class Adapter(Protocol):
    """A chat platform: started and stopped by the app, able to send proactively."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, chat_id: str, reply: Reply, lang: str = "en") -> None: ...

    @property
    def admin_chat_id(self) -> str: ...


@dataclass
class App:
    settings: Settings
    db: Store
    engine: Engine
    translator: Translator
    dispatcher: Dispatcher
    checker: Checker
    scheduler: Scheduler
    adapters: list[Adapter] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def add_adapter(self, adapter: Adapter) -> None:
        self.adapters.append(adapter)
        self.dispatcher.admin_chat_of = self.admin_chat_of

    def admin_chat_of(self, platform: str) -> str:
        """The admin chat of ``platform`` as its adapter knows it ("" when none)."""
        for adapter in self.adapters:
            if adapter.name == platform:
                return adapter.admin_chat_id
        return self.dispatcher.admin_chat_from_settings(platform)

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_flag(self, flag: Flag) -> None:
        """Post a moderation card to every platform's admin chat (after commit)."""
        card = flag_card(flag)
        for adapter in self.adapters:
            if adapter.admin_chat_id:
                self.spawn(self._send_safe(adapter, adapter.admin_chat_id, card))

    async def _send_safe(self, adapter: Adapter, chat_id: str, reply: Reply) -> None:
        try:
            await adapter.send(chat_id, reply, self.settings.default_language)
        except Exception:
            log.exception("could not send to %s chat %s", adapter.name, chat_id)

    async def remind(self, user_ids: list[int]) -> None:
        reply = Reply.of(Msg(N_("New tasks are waiting for you. Send /task to start.")))
        by_name = {a.name: a for a in self.adapters}
        for uid in user_ids:
            user = await self.engine.get_user(uid)
            for platform, chat in await self.engine.chats_of(uid):
                adapter = by_name.get(platform)
                if adapter is not None:
                    await adapter.send(chat, reply, self.translator.normalize(user.locale))

    async def post_checkpoint(self, record: dict[str, Any]) -> None:
        """Post a signed ledger checkpoint to every admin chat: a copy off this machine."""
        reply = Reply.of(
            Msg(
                N_(
                    "Ledger checkpoint %(number)s: %(entries)s entries,"
                    " head %(head)s, MAC %(mac)s."
                ),
                {
                    "number": record["n"],
                    "entries": record["entries"],
                    "head": str(record["head_hash"])[:16],
                    "mac": str(record["mac"])[:16],
                },
            )
        )
        for adapter in self.adapters:
            if adapter.admin_chat_id:
                self.spawn(self._send_safe(adapter, adapter.admin_chat_id, reply))

    async def flush(self) -> None:
        """Wait for proactive sends started so far (tests, demo)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        await self.flush()
        self.scheduler.shutdown()
        try:  # a clean shutdown leaves a checkpoint of the ledger's head
            await self.engine.checkpoint_ledger()
        except Exception:
            log.exception("could not write the ledger checkpoint")
        close = getattr(self.checker, "aclose", None)
        if close is not None:
            await close()
        await self.db.close()


def build_checker(settings: Settings, detector: LanguageDetector) -> Checker:
    """Rules always; a transformer model on top when configured and installed."""
    from polycrowd.models.checker import build_checker as build

    def detect(text: str) -> tuple[str | None, float]:
        d = detector.detect(text)
        return d.lang, d.confidence

    return build(
        head=settings.checker_head or None,
        model_path=settings.checker_model or None,
        device=settings.checker_device,
        detect=detect,
        # each model knows what it reads: MiniLM English only, e5 and trained folders more
        languages=None,
        max_batch=settings.checker_batch,
        max_wait_ms=settings.checker_wait_ms,
    )


async def build_app(
    settings: Settings,
    *,
    checker: Checker | None = None,
    detector: LanguageDetector | None = None,
    translator: Translator | None = None,
    engine_factory: Callable[..., Engine] = Engine,
    create: bool = True,
) -> App:
    """The app on ``settings.db`` (``create``: a missing file becomes a new database). A
    failure part way closes what was opened: a live database thread keeps a process alive."""
    db = await open_store(settings.db, create=create, **settings.store_options())
    try:
        return await _build(db, settings, checker, detector, translator, engine_factory)
    except BaseException:
        await db.close()
        raise


async def _build(
    db: Store,
    settings: Settings,
    checker: Checker | None,
    detector: LanguageDetector | None,
    translator: Translator | None,
    engine_factory: Callable[..., Engine],
) -> App:
    if detector is None:
        detector = LanguageDetector(settings.language_backend, settings.languages)
        await asyncio.to_thread(detector.warm_up)  # loading models would block the loop
    if checker is None:
        checker = build_checker(settings, detector)
        start = getattr(checker, "start", None)
        if start is not None:
            await start()  # loads the model in its worker thread
    metrics = Metrics()
    checker = InstrumentedChecker(checker, metrics)
    hooks = EngineHooks()
    keyring = LedgerKeyring.for_store(settings.db, settings)
    engine = engine_factory(db, checker, detector.detect, hooks=hooks, keyring=keyring)
    translator = translator or Translator(default=settings.default_language)
    dispatcher = Dispatcher(engine, settings, translator)
    app = App(
        settings,
        db,
        engine,
        translator,
        dispatcher,
        checker,
        Scheduler(engine, settings),
        metrics=metrics,
    )
    hooks.on_flag.append(app.on_flag)
    app.scheduler.on_idle = app.remind
    metrics.collect(database_collector(engine))
    metrics.collect(
        outbound_collector(
            lambda: [(a.name, a.queue.stats) for a in app.adapters if hasattr(a, "queue")]
        )
    )
    from polycrowd.bot.digests import wire_digests

    wire_digests(app)
    app.scheduler.on_checkpoint = app.post_checkpoint
    app.scheduler.predictor_for = project_models(settings)
    return app


def project_models(settings: Settings) -> Callable[[Project], Predictor]:
    """The retrain job's project models, one per task type (an encoder loads once): pixels
    plus logistic regression for image projects, the checker's encoder (the configured model
    folder, MiniLM otherwise) plus logistic regression for the rest. Called in the
    scheduler's worker thread, never on the event loop."""
    models: dict[str, Predictor] = {}
    lock = threading.Lock()

    def predictor(project: Project) -> Predictor:
        from polycrowd.models import prelabel

        kind = project.task_type.value
        with lock:
            if kind not in models:
                folder = settings.checker_model
                models[kind] = prelabel.for_task_type(
                    kind, folder if folder and Path(folder).is_dir() else None
                )
            return models[kind]

    return predictor


async def run(
    settings: Settings, stop: asyncio.Event | None = None, *, create: bool = False
) -> None:
    """Start every configured platform and the scheduler; stop on SIGINT/SIGTERM.

    Start-up checks first (bot/startup.py): settings, the Telegram token against the Bot
    API, then the database, which must exist unless ``create`` (``polycrowd run`` never
    makes one: "database not found", like every other command). Each failure is a
    :class:`~polycrowd.bot.startup.StartupError` (or SettingsError/StoreError) in one line."""
    from polycrowd.bot import startup

    startup.check_settings(settings)
    if settings.telegram_token:
        await startup.check_telegram(settings)
    app = await build_app(settings, create=create)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if settings.telegram_token:
        from polycrowd.bot.telegram import TelegramAdapter

        app.add_adapter(TelegramAdapter(app))
    if settings.discord_token:
        from polycrowd.bot.discord import DiscordAdapter

        app.add_adapter(DiscordAdapter(app))
    if not app.adapters:
        log.warning(
            "no chat platform configured: set POLYCROWD_TELEGRAM_TOKEN or"
            " POLYCROWD_DISCORD_TOKEN; running the scheduler only"
        )
    started: list[Adapter] = []
    ops: Any = None
    try:
        for adapter in app.adapters:
            try:
                await adapter.start()
            except Exception as exc:
                explained = startup.explain(adapter.name, exc, settings)
                if explained is None:
                    raise
                raise explained from None
            started.append(adapter)
            log.info("%s started", adapter.name)
        app.scheduler.start()
        ops = await _start_ops(app)
        await stop.wait()
    finally:
        if ops is not None:
            await ops.cleanup()
        for adapter in reversed(started):
            try:
                await adapter.stop()
            except Exception:
                log.exception("stopping %s failed", adapter.name)
        await app.close()


async def _start_ops(app: App) -> Any:
    """The dashboard app with /metrics and /healthz beside the bots (POLYCROWD_METRICS_PORT)."""
    if app.settings.metrics_port <= 0:
        return None
    from polycrowd.web.server import make_app, start_site

    web_app = make_app(app.engine, app.settings, app.translator, app.metrics)
    runner = await start_site(web_app, app.settings.webhook_listen, app.settings.metrics_port)
    log.info("metrics on port %s", app.settings.metrics_port)
    return runner
