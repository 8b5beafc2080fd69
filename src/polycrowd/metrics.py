"""A tiny metrics registry with Prometheus text output (exposition format 0.0.4).

One :class:`Metrics` object is made by the wiring (bot/app.py or ``polycrowd serve``) and
handed to what it measures; there is no module-level registry. In-process instruments
(checker latency and verdicts) are counted as they happen; totals that the database already
knows (answers, credits, picks) and live gauges (outbound queue depth, 429s) are read by
collectors when /metrics is scraped, so a dashboard process beside the bot reports the same
totals.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from polycrowd.engine.checking import Checker, CheckRequest, Verdict

if TYPE_CHECKING:
    from polycrowd.engine.core import Engine

Labels = tuple[tuple[str, str], ...]
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(labels: Labels, extra: Labels = ()) -> str:
    pairs = (*labels, *extra)
    if not pairs:
        return ""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True, slots=True)
class Sample:
    """A value read at scrape time: one metric family with its labelled values."""

    name: str
    kind: str  # counter | gauge
    help: str
    values: Sequence[tuple[Labels, float]]


@dataclass
class Counter:
    name: str
    help: str
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        out += [f"{self.name}{_labels(k)} {_num(v)}" for k, v in sorted(self.values.items())]
        return out


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.n += 1
        self.total += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def lines(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for bound, count in zip(self.buckets, self.counts, strict=True):
            out.append(f'{self.name}_bucket{{le="{_num(bound)}"}} {count}')
        out.append(f'{self.name}_bucket{{le="+Inf"}} {self.n}')
        out.append(f"{self.name}_sum {_num(self.total)}")
        out.append(f"{self.name}_count {self.n}")
        return out


Collector = Callable[[], Awaitable[Iterable[Sample]]]


class Metrics:
    """The registry: instruments by name plus collectors read at scrape time."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.checker_seconds = Histogram(
            "polycrowd_checker_seconds", "Time the checker took per answer."
        )
        self.checker_verdicts = Counter(
            "polycrowd_checker_verdicts_total", "Checker verdicts by decision."
        )
        self.instruments: list[Counter | Histogram] = [
            self.checker_seconds,
            self.checker_verdicts,
        ]
        self.collectors: list[Collector] = []

    def counter(self, name: str, help_: str) -> Counter:
        c = Counter(name, help_)
        self.instruments.append(c)
        return c

    def collect(self, collector: Collector) -> None:
        self.collectors.append(collector)

    async def render(self) -> str:
        lines: list[str] = []
        for inst in self.instruments:
            lines += inst.lines()
        for collector in self.collectors:
            for s in await collector():
                lines.append(f"# HELP {s.name} {s.help}")
                lines.append(f"# TYPE {s.name} {s.kind}")
                lines += [f"{s.name}{_labels(k)} {_num(v)}" for k, v in s.values]
        return "\n".join(lines) + "\n"


class InstrumentedChecker:
    """A checker that times its inner checker and counts the verdicts."""

    def __init__(self, inner: Checker, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def check(self, batch: Sequence[CheckRequest]) -> list[Verdict]:
        start = self.metrics.clock()
        verdicts = await self.inner.check(batch)
        took = self.metrics.clock() - start
        for v in verdicts:
            self.metrics.checker_seconds.observe(took / max(1, len(batch)))
            self.metrics.checker_verdicts.inc(decision=v.decision.value)
        return verdicts

    def __getattr__(self, name: str) -> Any:  # start, aclose, model_version ...
        return getattr(self.inner, name)


def database_collector(engine: Engine) -> Collector:
    """Answers, credits and picks as the store counts them (read through the engine)."""

    async def collect() -> list[Sample]:
        t = await engine.totals()
        return [
            Sample(
                "polycrowd_answers_total",
                "counter",
                "Answers recorded, by status.",
                [((("status", k),), float(v)) for k, v in t.answers_by_status.items()],
            ),
            Sample(
                "polycrowd_credits_total",
                "counter",
                "Credit entries written to the ledger.",
                [((), float(t.credits))],
            ),
            Sample(
                "polycrowd_credited_minor_units_total",
                "counter",
                "Amount credited, in minor units.",
                [((), float(t.credited))],
            ),
            Sample(
                "polycrowd_picks_total", "counter", "Tasks handed out.", [((), float(t.picks))]
            ),
            Sample(
                "polycrowd_assignments_live",
                "gauge",
                "Tasks handed out and not answered yet.",
                [((), float(t.live_assignments))],
            ),
        ]

    return collect


def outbound_collector(queues: Callable[[], Iterable[tuple[str, Any]]]) -> Collector:
    """Queue depth, 429s and calls of each adapter's outbound queue ((platform, stats))."""

    async def collect() -> list[Sample]:
        depth, retried, calls = [], [], []
        for platform, stats in queues():
            key = (("platform", platform),)
            depth.append((key, float(getattr(stats, "pending", 0))))
            retried.append((key, float(getattr(stats, "retried_429", 0))))
            calls.append((key, float(getattr(stats, "calls", 0))))
        return [
            Sample(
                "polycrowd_outbound_queue_depth", "gauge", "Calls waiting or on the wire.", depth
            ),
            Sample(
                "polycrowd_outbound_429_total",
                "counter",
                "Flood waits (HTTP 429) honoured.",
                retried,
            ),
            Sample("polycrowd_outbound_calls_total", "counter", "Platform API calls.", calls),
        ]

    return collect
