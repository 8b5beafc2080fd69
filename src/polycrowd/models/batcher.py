"""Micro-batching of checker calls from many chats into one model call.

Each :meth:`MicroBatcher.check` call puts its requests in a queue and waits. One
collector task takes up to ``max_batch`` requests, waiting at most ``max_wait_ms`` for
a batch to fill, and runs ``fn`` on them in a dedicated single worker thread, so the
event loop never blocks and the model is only ever used from one thread. While the model
runs, new requests pile up and form the next batch.

When ``fn`` raises, returns the wrong number of verdicts or runs longer than
``timeout_s``, the affected requests get the ``fallback`` checker's verdict (normally the
rules) turned into a review: an accept becomes ``REVIEW`` with
:data:`~polycrowd.models.rules.R_CHECK_UNAVAILABLE`, a reject or review stays, and the
model version gets a ``+degraded`` suffix. Never a silent acceptance, never an exception.
A model call that timed out keeps the worker thread busy; until it returns, later batches
go straight to the fallback instead of queueing behind it. :attr:`MicroBatcher.stats` and
:attr:`MicroBatcher.healthy` record what happened.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from polycrowd.engine.checking import Checker, CheckRequest, Decision, Verdict
from polycrowd.models.rules import R_CHECK_UNAVAILABLE, review

log = logging.getLogger(__name__)

PredictFn = Callable[[Sequence[CheckRequest]], list[Verdict]]
DEGRADED = "+degraded"


@dataclass(slots=True)
class BatcherStats:
    batches: int = 0  # model calls made
    requests: int = 0  # requests sent to the model
    largest_batch: int = 0
    failures: int = 0  # model calls that raised or returned garbage
    timeouts: int = 0  # model calls that ran past timeout_s
    degraded: int = 0  # requests answered by the fallback
    consecutive_failures: int = 0
    last_error: str = ""


def degraded_verdict(verdict: Verdict | None) -> Verdict:
    """The fallback's verdict as the answer when the model could not judge: never
    stricter than needed, never an acceptance."""
    if verdict is None:
        return review(R_CHECK_UNAVAILABLE, model_version="unavailable" + DEGRADED)
    version = verdict.model_version + DEGRADED
    if verdict.decision is Decision.ACCEPT:
        return review(R_CHECK_UNAVAILABLE, verdict.score, version)
    return Verdict(verdict.decision, verdict.score, verdict.reason, version)


_Pending = tuple[CheckRequest, "asyncio.Future[Verdict]"]


class MicroBatcher:
    """A :class:`~polycrowd.engine.checking.Checker` that batches calls to ``fn``.

    ``warmup`` (e.g. ``BertChecker.load``) runs in the worker thread when the batcher
    starts, bounded by ``warmup_timeout_s``; requests arriving meanwhile wait for it.
    """

    def __init__(
        self,
        fn: PredictFn,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        timeout_s: float = 10.0,
        fallback: Checker | None = None,
        *,
        warmup: Callable[[], object] | None = None,
        warmup_timeout_s: float = 120.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max(max_wait_ms, 0.0) / 1000.0
        self.timeout_s = timeout_s
        self.fallback = fallback
        self.warmup = warmup
        self.warmup_timeout_s = warmup_timeout_s
        self.stats = BatcherStats()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._current: list[_Pending] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._busy = False  # a timed-out call still occupies the worker thread
        self._closed = False

    @property
    def healthy(self) -> bool:
        """False while closed, while a timed-out call is still running, or after a failure
        until the next successful batch."""
        return not (self._closed or self._busy or self.stats.consecutive_failures)

    @property
    def busy(self) -> bool:
        """True while a timed-out model call still occupies the worker thread."""
        return self._busy

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is not None or self._closed:
            return
        self._wakeup = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="polycrowd-checker"
        )
        self._task = asyncio.create_task(self._run(), name="polycrowd-micro-batcher")

    async def aclose(self) -> None:
        """Stop collecting; requests still waiting get the degraded fallback verdict."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        leftover = self._current + list(self._pending)
        self._current, self._pending = [], collections.deque()
        await self._resolve_degraded([p for p in leftover if not p[1].done()])
        if self._executor is not None:
            # a hung model call cannot be interrupted; don't wait for it
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def __aenter__(self) -> MicroBatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the Checker protocol ---------------------------------------------------------------
    async def check(self, batch: Sequence[CheckRequest]) -> list[Verdict]:
        if not batch:
            return []
        if self._closed:
            return await self._degrade(batch)
        if not self.running:
            if self._task is not None:  # the collector died: a bug, logged in _run
                return await self._degrade(batch)
            await self.start()
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Verdict]] = [loop.create_future() for _ in batch]
        self._pending.extend(zip(batch, futures, strict=True))
        self._wakeup.set()
        return list(await asyncio.gather(*futures))

    async def run(self, fn: Callable[[], object]) -> object | None:
        """Run ``fn`` (e.g. an embedding call) in the model's worker thread, bounded by
        ``timeout_s``; ``None`` when closed, busy with a hung call, or when ``fn`` raised
        or timed out. Batches and such calls never run at the same time."""
        if self._closed or self._busy:
            return None
        if not self.running:
            await self.start()
        return await self._call(fn, self.timeout_s, "model call")

    # -- the collector ----------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        try:
            if self.warmup is not None:
                await self._call(self.warmup, self.warmup_timeout_s, "warm-up")
            while True:
                while not self._pending:
                    wakeup.clear()
                    await wakeup.wait()
                await self._fill(wakeup)
                n = min(self.max_batch, len(self._pending))
                items = [self._pending.popleft() for _ in range(n)]
                self._current = [p for p in items if not p[1].done()]  # drop cancelled callers
                if self._current:
                    await self._process(self._current)
                self._current = []
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("micro-batcher collector crashed")
            self.stats.last_error = "collector crashed"
            leftover = self._current + list(self._pending)
            self._current, self._pending = [], collections.deque()
            await self._resolve_degraded([p for p in leftover if not p[1].done()])

    async def _fill(self, wakeup: asyncio.Event) -> None:
        """Wait up to max_wait for the batch to fill."""
        if self.max_wait_s <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(self._pending) < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            wakeup.clear()
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except TimeoutError:
                return

    async def _process(self, items: list[_Pending]) -> None:
        requests = [req for req, _ in items]
        verdicts: list[Verdict] | None = None
        if not self._busy:
            self.stats.batches += 1
            self.stats.requests += len(requests)
            self.stats.largest_batch = max(self.stats.largest_batch, len(requests))
            result = await self._call(lambda: self.fn(requests), self.timeout_s, "model call")
            if result is not None:
                if (
                    isinstance(result, list)
                    and len(result) == len(requests)
                    and all(isinstance(v, Verdict) for v in result)
                ):
                    verdicts = result
                    self.stats.consecutive_failures = 0
                else:
                    self._failed("model returned a wrong result")
        if verdicts is None:
            verdicts = await self._degrade(requests)
        for (_, future), verdict in zip(items, verdicts, strict=True):
            if not future.done():
                future.set_result(verdict)

    async def _call(self, fn: Callable[[], object], limit_s: float, what: str) -> object | None:
        """Run ``fn`` in the worker thread; ``None`` when it raised or timed out."""
        assert self._executor is not None
        cf = self._executor.submit(fn)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(cf), limit_s)
        except TimeoutError:
            self.stats.timeouts += 1
            self._failed(f"{what} timed out after {limit_s:g} s")
            self._busy = True
            loop = asyncio.get_running_loop()
            cf.add_done_callback(lambda _: _call_soon(loop, self._not_busy))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._failed(f"{what} failed: {e!r}")
            log.warning("checker %s failed", what, exc_info=True)
        return None

    def _failed(self, message: str) -> None:
        self.stats.failures += 1
        self.stats.consecutive_failures += 1
        self.stats.last_error = message
        log.warning("checker degraded: %s", message)

    def _not_busy(self) -> None:
        self._busy = False
        log.info("checker worker thread is free again")

    # -- degradation --------------------------------------------------------------------------
    async def _degrade(self, requests: Sequence[CheckRequest]) -> list[Verdict]:
        self.stats.degraded += len(requests)
        base: Sequence[Verdict | None] = [None] * len(requests)
        if self.fallback is not None:
            try:
                got = await asyncio.wait_for(self.fallback.check(requests), self.timeout_s)
                if len(got) == len(requests):
                    base = got
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("fallback checker failed")
        return [degraded_verdict(v) for v in base]

    async def _resolve_degraded(self, items: list[_Pending]) -> None:
        if not items:
            return
        verdicts = await self._degrade([req for req, _ in items])
        for (_, future), verdict in zip(items, verdicts, strict=True):
            if not future.done():
                future.set_result(verdict)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop has nobody left to tell
        loop.call_soon_threadsafe(callback)
