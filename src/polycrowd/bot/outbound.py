"""The outbound queue: every Bot API call the Telegram adapter makes goes through here.

:class:`OutboundQueue` is a python-telegram-bot rate limiter (``BaseRateLimiter``), so it sits
under every method of the bot — replies to updates, proactive sends (moderation cards,
reminders), answers to button presses, file downloads' ``getFile`` — and is the one place that
knows Telegram's limits:

* about 30 messages per second overall,
* about 1 message per second in one chat (short bursts allowed),
* about 20 messages per minute in one group or channel.

Each limit is a FIFO slot reservation (the generic cell rate algorithm): a call reserves the
next free slot in its chat, then in its group, then overall, and sleeps until the slot comes.
Messages to one chat therefore leave in the order they were queued, and a busy chat never
holds back another. Only messages count (``send*``, ``copyMessage``, ``forwardMessage``);
edits and other chat calls count against the overall limit only, calls without a chat (button
answers, ``getFile``, ``setMyCommands``) are not throttled.

:class:`AiohttpRequest` is the wire under the queue when aiohttp is installed: a PTB request
backend on an aiohttp session. It costs a fraction of the CPU that PTB's default (httpx) spends
per call, which is most of what a busy bot's process does.

A 429 answer (``RetryAfter``) is honoured: the chat it came from gets no slot before
``retry_after`` has passed, then the call is retried. Network errors are retried with
exponential backoff, except a timed-out message (Telegram may have delivered it; sending it
again could post it twice) and ``BadRequest`` (which PTB files under ``NetworkError``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dtm
import logging
import re
import time
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut
from telegram.ext import BaseRateLimiter
from telegram.request import BaseRequest, RequestData
from telegram.warnings import PTBDeprecationWarning

from polycrowd.bot.budget import Slots as _Slots
from polycrowd.bot.budget import shared_slots

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

JSONDict = dict[str, Any]
Result = bool | JSONDict | list[JSONDict]

_NOT_MESSAGES = frozenset({"sendChatAction", "sendInvoice"})


@dataclass(frozen=True, slots=True)
class OutboundLimits:
    """Telegram's flood limits as the queue applies them (rates per second unless named)."""

    # a little under Telegram's own buckets: requests do not reach it evenly spaced
    overall_per_s: float = 30.0
    overall_burst: float = 20.0
    chat_per_s: float = 1.0
    chat_burst: float = 2.0
    group_per_min: float = 20.0
    group_burst: float = 5.0
    max_retries: int = 3
    backoff_s: float = 0.5  # first network-error retry; doubles each time
    max_retry_after_s: float = 300.0  # a longer flood wait is given up on
    max_in_flight: int = 64  # requests on the wire at once (0: no limit)

    def scaled(self, factor: float) -> OutboundLimits:
        """The same limits ``factor`` times faster (benchmarks against a time-dilated fake)."""
        return dataclasses.replace(
            self,
            overall_per_s=self.overall_per_s * factor,
            overall_burst=self.overall_burst * factor,
            chat_per_s=self.chat_per_s * factor,
            group_per_min=self.group_per_min * factor,
            group_burst=self.group_burst * factor,
        )


@dataclass
class OutboundStats:
    calls: int = 0
    throttled: int = 0  # calls that waited for a slot
    retried_429: int = 0
    retried_network: int = 0
    failed: int = 0
    pending: int = 0  # calls queued for a slot or on the wire now (the queue's depth)


def retry_after_seconds(exc: RetryAfter) -> float:
    """``RetryAfter.retry_after`` in seconds, without PTB 22's int/timedelta deprecation noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: int | dtm.timedelta = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def is_group(chat_id: object) -> bool:
    """Groups, supergroups and channels have negative ids (or an ``@username``)."""
    if isinstance(chat_id, str):
        return not chat_id.lstrip("-").isdigit() or chat_id.startswith("-")
    return isinstance(chat_id, int) and chat_id < 0


def is_message(endpoint: str) -> bool:
    return (endpoint.startswith("send") and endpoint not in _NOT_MESSAGES) or endpoint in (
        "copyMessage",
        "copyMessages",
        "forwardMessage",
        "forwardMessages",
    )


class OutboundQueue(BaseRateLimiter[int]):
    """Throttles and retries every Bot API call (see the module docstring).

    ``rate_limit_args`` (an int) overrides the number of retries for one call.
    """

    __slots__ = (
        "_chats",
        "_clock",
        "_groups",
        "_overall",
        "_share",
        "_sleep",
        "_wire",
        "limits",
        "stats",
    )

    def __init__(
        self,
        limits: OutboundLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Coroutine[Any, Any, None]] = asyncio.sleep,
    ) -> None:
        self.limits = limits or OutboundLimits()
        self.stats = OutboundStats()
        self._clock = clock
        self._sleep = sleep
        self._overall = _Slots(self.limits.overall_per_s, self.limits.overall_burst)
        self._share = 1
        n = self.limits.max_in_flight
        self._wire: asyncio.Semaphore | None = asyncio.Semaphore(n) if n > 0 else None
        self._chats: dict[object, _Slots] = {}
        self._groups: dict[object, _Slots] = {}

    @property
    def share(self) -> int:
        """Processes the overall budget is split between (1: this one has all of it)."""
        return self._share

    def set_share(self, processes: int) -> None:
        """Use 1/``processes`` of the overall budget: that many processes send with this bot.

        The per-chat and per-group budgets stay whole: updates of one chat go to one process
        (one webhook listener per bot, or sticky routing by chat in front of several)."""
        processes = max(1, processes)
        if processes == self._share:
            return
        self._share = processes
        lim = self.limits
        overall = self._overall
        self._overall = shared_slots(lim.overall_per_s, lim.overall_burst, processes, overall)

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        self._chats.clear()
        self._groups.clear()

    def _slots(
        self, table: dict[object, _Slots], key: object, per_s: float, burst: float
    ) -> _Slots:
        slots = table.get(key)
        if slots is None:
            if len(table) > 4096:  # forget chats whose slots are all free again
                now = self._clock()
                for k in [k for k, s in table.items() if s.idle(now)]:
                    del table[k]
            slots = table[key] = _Slots(per_s, burst)
        return slots

    async def _turn(self, chat_id: object, message: bool) -> None:
        """Wait for this call's slots: its chat's, its group's, then the overall one."""
        lim = self.limits
        key = str(chat_id)
        if message:
            chat = self._slots(self._chats, key, lim.chat_per_s, lim.chat_burst)
            await self._until(chat.reserve(self._clock()))
            if is_group(chat_id):
                group = self._slots(self._groups, key, lim.group_per_min / 60.0, lim.group_burst)
                await self._until(group.reserve(self._clock()))
        else:
            held = self._chats.get(key)
            if held is not None and held.tat - held.tolerance > self._clock():
                await self._until(held.tat - held.tolerance)  # the chat is held after a 429
        await self._until(self._overall.reserve(self._clock()))

    async def _until(self, at: float) -> None:
        delay = at - self._clock()
        if delay > 0:
            self.stats.throttled += 1
            await self._sleep(delay)

    def _hold(self, chat_id: object, seconds: float) -> None:
        until = self._clock() + seconds
        if chat_id is None:
            self._overall.hold(until)
            return
        lim = self.limits
        self._slots(self._chats, str(chat_id), lim.chat_per_s, lim.chat_burst).hold(until)

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Result:
        self.stats.pending += 1
        try:
            return await self._process(callback, args, kwargs, endpoint, data, rate_limit_args)
        finally:
            self.stats.pending -= 1

    async def _process(
        self,
        callback: Callable[..., Coroutine[Any, Any, Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> Result:
        retries = self.limits.max_retries if rate_limit_args is None else rate_limit_args
        chat_id = data.get("chat_id")
        message = chat_id is not None and is_message(endpoint)
        self.stats.calls += 1
        attempt = 0
        while True:
            if chat_id is not None:
                await self._turn(chat_id, message)
            try:
                if self._wire is None:
                    return await callback(*args, **kwargs)
                async with self._wire:
                    return await callback(*args, **kwargs)
            except RetryAfter as exc:
                wait = retry_after_seconds(exc) + 0.05
                if attempt >= retries or wait > self.limits.max_retry_after_s:
                    self.stats.failed += 1
                    raise
                self.stats.retried_429 += 1
                log.info(
                    "%s to %s: flood wait %.1f s (retry %d)", endpoint, chat_id, wait, attempt
                )
                self._hold(chat_id, wait)
                if chat_id is None:
                    await self._sleep(wait)
            except BadRequest:
                self.stats.failed += 1
                raise
            except TimedOut:
                if attempt >= retries or message:
                    self.stats.failed += 1
                    raise  # a message may have arrived although the answer did not
                self.stats.retried_network += 1
                await self._sleep(self.limits.backoff_s * 2**attempt)
            except NetworkError as exc:
                if attempt >= retries:
                    self.stats.failed += 1
                    raise
                self.stats.retried_network += 1
                log.info("%s to %s: %s; retrying (%d)", endpoint, chat_id, exc, attempt)
                await self._sleep(self.limits.backoff_s * 2**attempt)
            attempt += 1


# The wire -------------------------------------------------------------------------------------


_TOKEN = re.compile(r"\d{3,}:[A-Za-z0-9_-]{20,}")


def redact(text: str) -> str:
    """``text`` with anything that looks like a bot token replaced (URLs carry the token)."""
    return _TOKEN.sub("<token>", text)


def aiohttp_available() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


class AiohttpRequest(BaseRequest):
    """A python-telegram-bot request backend on one aiohttp session (keep-alive connections).

    Timeouts follow PTB's meaning: ``connect_timeout`` to open a connection, ``pool_timeout``
    more to wait for a free one, ``read_timeout`` between bytes of the answer (PTB lengthens it
    for long polls); aiohttp has no write timeout, ``write_timeout`` is accepted and unused.
    Proxies come from the environment (``HTTPS_PROXY``).
    """

    __slots__ = ("_connect", "_pool", "_pool_size", "_read", "_session")

    def __init__(
        self,
        connection_pool_size: int = 32,
        read_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._read = read_timeout
        self._connect = connect_timeout
        self._pool = pool_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read

    async def initialize(self) -> None:
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self.USER_AGENT},
                trust_env=True,
            )

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        import aiohttp

        session = self._session
        if session is None or session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        read = self._read if isinstance(read_timeout, DefaultValue) else read_timeout
        connect = self._connect if isinstance(connect_timeout, DefaultValue) else connect_timeout
        pool = self._pool if isinstance(pool_timeout, DefaultValue) else pool_timeout
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=read,
        )
        data: aiohttp.FormData | dict[str, str] | None = None
        if request_data is not None:
            if request_data.contains_files:
                form = aiohttp.FormData()
                for name, value in request_data.json_parameters.items():
                    form.add_field(name, value)
                for name, (filename, content, mime) in request_data.multipart_data.items():
                    form.add_field(name, content, filename=filename, content_type=mime)
                data = form
            else:
                data = request_data.json_parameters
        try:
            async with session.request(method, url, data=data, timeout=timeout) as response:
                return response.status, await response.read()
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(redact(f"aiohttp.{type(exc).__name__}: {exc}")) from exc
