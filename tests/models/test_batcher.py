"""MicroBatcher under concurrency and failure, CompositeChecker, ConsistencyTracker.

No test asserts a duration: time limits here are generous upper bounds that only stop a
broken test from hanging.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

import pytest

from polycrowd.engine.checking import Checker, CheckRequest, Decision, Verdict
from polycrowd.models import checker as checker_module
from polycrowd.models import rules
from polycrowd.models.batcher import MicroBatcher
from polycrowd.models.checker import (
    CompositeChecker,
    ConsistencyTracker,
    build_checker,
    stricter,
)
from polycrowd.models.rules import RulesChecker

LIMIT = 60.0  # seconds; only guards against hangs


def req(i: int, answer: str | None = None, task_type: str = "text") -> CheckRequest:
    return CheckRequest(
        project_id=1,
        task_type=task_type,
        labels=("a", "b") if task_type == "choice" else (),
        item_text=f"item number {i}",
        item_lang="en",
        answer=answer if answer is not None else f"answer number {i}",
        seconds=30.0,
    )


class CountingModel:
    """Accepts everything, scoring each request by its index; records batch sizes."""

    def __init__(self, delay: threading.Event | None = None) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.gate = delay
        self.started = threading.Event()

    async def wait_started(self) -> None:
        assert await asyncio.to_thread(self.started.wait, LIMIT)

    def __call__(self, batch: Sequence[CheckRequest]) -> list[Verdict]:
        self.started.set()
        if self.gate is not None:
            self.gate.wait(LIMIT)
        self.sizes.append(len(batch))
        self.threads.add(threading.current_thread().name)
        return [
            Verdict(Decision.ACCEPT, int(r.item_text.split()[-1]) / 1000, "", "fake@1")
            for r in batch
        ]


async def test_concurrent_checks_are_batched_and_answered_in_order() -> None:
    model = CountingModel()
    async with MicroBatcher(model, max_batch=32, max_wait_ms=50) as batcher:
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.check([req(i)]) for i in range(100))), LIMIT
        )
        # a multi-request call keeps its own order too
        many = await asyncio.wait_for(batcher.check([req(i) for i in range(500, 540)]), LIMIT)
    assert [v[0].score for v in results] == [i / 1000 for i in range(100)]
    assert [v.score for v in many] == [i / 1000 for i in range(500, 540)]
    assert sum(model.sizes) == 140
    assert max(model.sizes) > 1
    assert max(model.sizes) <= 32
    assert batcher.stats.largest_batch == max(model.sizes)
    assert batcher.stats.degraded == 0
    assert model.threads == {next(iter(model.threads))}  # one worker thread
    assert threading.current_thread().name not in model.threads


async def test_requests_queue_up_while_the_model_runs() -> None:
    gate = threading.Event()
    model = CountingModel(gate)
    async with MicroBatcher(model, max_batch=8, max_wait_ms=0) as batcher:
        first = asyncio.create_task(batcher.check([req(0)]))
        await model.wait_started()  # the first call is in the worker thread
        rest = [asyncio.create_task(batcher.check([req(i)])) for i in range(1, 21)]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.wait_for(asyncio.gather(first, *rest), LIMIT)
    assert model.sizes[0] == 1
    assert model.sizes[1:] == [8, 8, 4]


async def test_empty_batch() -> None:
    batcher = MicroBatcher(CountingModel())
    assert await batcher.check([]) == []
    await batcher.aclose()


def failing(batch: Sequence[CheckRequest]) -> list[Verdict]:
    raise RuntimeError("CUDA out of memory")


async def test_model_error_degrades_to_fallback_review() -> None:
    batcher = MicroBatcher(failing, fallback=RulesChecker())
    try:
        good, empty = await asyncio.wait_for(batcher.check([req(1), req(2, answer="")]), LIMIT)
    finally:
        await batcher.aclose()
    # a rules acceptance becomes a review, never a silent acceptance
    assert good.decision is Decision.REVIEW
    assert good.reason == rules.R_CHECK_UNAVAILABLE
    assert good.model_version == "rules-1+degraded"
    # what the rules reject stays rejected
    assert empty.decision is Decision.REJECT
    assert empty.reason == rules.R_EMPTY
    assert batcher.stats.failures == 1
    assert batcher.stats.degraded == 2
    assert "out of memory" in batcher.stats.last_error
    assert not batcher.healthy


async def test_model_error_without_fallback_and_wrong_results() -> None:
    def short(batch: Sequence[CheckRequest]) -> list[Verdict]:
        return []

    for fn in (failing, short):
        async with MicroBatcher(fn) as batcher:
            (verdict,) = await asyncio.wait_for(batcher.check([req(1)]), LIMIT)
        assert verdict.decision is Decision.REVIEW
        assert verdict.reason == rules.R_CHECK_UNAVAILABLE
        assert verdict.model_version == "unavailable+degraded"  # not mistaken for a model
        assert batcher.stats.failures == 1


async def test_recovers_after_a_failure() -> None:
    calls = 0

    def flaky(batch: Sequence[CheckRequest]) -> list[Verdict]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("transient")
        return [Verdict(Decision.ACCEPT, 1.0, "", "fake@1") for _ in batch]

    async with MicroBatcher(flaky, fallback=RulesChecker()) as batcher:
        (first,) = await asyncio.wait_for(batcher.check([req(1)]), LIMIT)
        assert not batcher.healthy
        (second,) = await asyncio.wait_for(batcher.check([req(2)]), LIMIT)
        assert batcher.healthy
    assert first.decision is Decision.REVIEW
    assert second.decision is Decision.ACCEPT


async def test_hung_model_times_out_and_the_loop_stays_responsive() -> None:
    release = threading.Event()

    def hangs(batch: Sequence[CheckRequest]) -> list[Verdict]:
        release.wait(LIMIT)
        return [Verdict(Decision.ACCEPT, 1.0, "", "fake@1") for _ in batch]

    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    batcher = MicroBatcher(hangs, timeout_s=0.2, fallback=RulesChecker())
    tick_task = asyncio.create_task(ticker())
    try:
        (verdict,) = await asyncio.wait_for(batcher.check([req(1)]), LIMIT)
        assert ticks > 0  # the event loop kept running while the model hung
        assert verdict.decision is Decision.REVIEW
        assert verdict.reason == rules.R_CHECK_UNAVAILABLE
        assert batcher.stats.timeouts == 1
        assert not batcher.healthy
        # while the worker thread is stuck, new requests go straight to the fallback
        more = await asyncio.wait_for(batcher.check([req(2), req(3)]), LIMIT)
        assert [v.decision for v in more] == [Decision.REVIEW, Decision.REVIEW]
        assert batcher.stats.timeouts == 1
        assert batcher.stats.degraded == 3
        # once the call returns the batcher uses the model again and is healthy
        assert batcher.busy
        release.set()
        while batcher.busy:  # noqa: ASYNC110 - cleared by a callback from the worker thread
            await asyncio.sleep(0.01)
        (after,) = await asyncio.wait_for(batcher.check([req(4)]), LIMIT)
        assert after.decision is Decision.ACCEPT
        assert batcher.healthy
    finally:
        release.set()
        stop.set()
        await tick_task
        await batcher.aclose()


async def test_cancelled_caller_does_not_break_the_batcher() -> None:
    gate = threading.Event()
    model = CountingModel(gate)
    async with MicroBatcher(model, max_batch=4, max_wait_ms=0) as batcher:
        first = asyncio.create_task(batcher.check([req(0)]))
        await model.wait_started()
        doomed = asyncio.create_task(batcher.check([req(1)]))
        kept = asyncio.create_task(batcher.check([req(2)]))
        await asyncio.sleep(0.01)
        doomed.cancel()
        gate.set()
        (v0,), (v2,) = await asyncio.wait_for(asyncio.gather(first, kept), LIMIT)
    assert (v0.score, v2.score) == (0.0, 0.002)
    assert sum(model.sizes) == 2  # the cancelled request never reached the model


async def test_aclose_answers_waiting_requests_and_later_calls() -> None:
    release = threading.Event()
    model = CountingModel(release)
    batcher = MicroBatcher(model, timeout_s=LIMIT, fallback=RulesChecker())
    await batcher.start()
    pending = asyncio.create_task(batcher.check([req(1)]))
    await model.wait_started()
    await batcher.aclose()
    release.set()
    (verdict,) = await asyncio.wait_for(pending, LIMIT)
    assert verdict.decision is Decision.REVIEW
    (late,) = await batcher.check([req(2)])
    assert late.decision is Decision.REVIEW
    assert not batcher.healthy


async def test_warmup_runs_first_in_the_worker_thread() -> None:
    order: list[str] = []

    def warmup() -> None:
        order.append("warmup:" + threading.current_thread().name)

    def fn(batch: Sequence[CheckRequest]) -> list[Verdict]:
        order.append("fn:" + threading.current_thread().name)
        return [Verdict(Decision.ACCEPT, 1.0, "", "fake@1") for _ in batch]

    async with MicroBatcher(fn, warmup=warmup) as batcher:
        await asyncio.wait_for(batcher.check([req(1)]), LIMIT)
    assert [o.split(":")[0] for o in order] == ["warmup", "fn"]
    assert order[0].split(":")[1] == order[1].split(":")[1]


def test_batcher_is_a_checker() -> None:
    assert isinstance(MicroBatcher(CountingModel()), Checker)


# -- CompositeChecker -----------------------------------------------------------------------
class FakeModel:
    """Rejects answers containing "bad", reviews "meh", accepts the rest."""

    def __init__(self) -> None:
        self.seen: list[CheckRequest] = []

    async def check(self, batch: Sequence[CheckRequest]) -> list[Verdict]:
        self.seen += batch
        out = []
        for r in batch:
            if "bad" in r.answer:
                out.append(Verdict(Decision.REJECT, 0.1, rules.R_OFF_TOPIC, "fake@1"))
            elif "meh" in r.answer:
                out.append(Verdict(Decision.REVIEW, 0.4, rules.R_UNSURE, "fake@1"))
            else:
                out.append(Verdict(Decision.ACCEPT, 0.9, "", "fake@1"))
        return out


async def test_composite_runs_rules_first_and_the_stricter_verdict_wins() -> None:
    model = FakeModel()
    composite = CompositeChecker(RulesChecker(), model)
    batch = [
        req(0, answer="a fine answer"),
        req(1, answer=""),  # rules reject
        req(2, answer="a bad answer"),  # model rejects
        req(3, answer="a meh answer"),  # model reviews
        req(4, answer="x", task_type="choice"),  # rules reject: unknown label
        req(5, answer="a", task_type="choice"),
    ]
    verdicts = await composite.check(batch)
    assert [(v.decision, v.model_version) for v in verdicts] == [
        (Decision.ACCEPT, "fake@1"),
        (Decision.REJECT, "rules-1"),
        (Decision.REJECT, "fake@1"),
        (Decision.REVIEW, "fake@1"),
        (Decision.REJECT, "rules-1"),
        (Decision.ACCEPT, "fake@1"),
    ]
    assert verdicts[1].reason == rules.R_EMPTY
    # only what the rules accepted reached the model
    assert [r.item_text for r in model.seen] == [batch[i].item_text for i in (0, 2, 3, 5)]


async def test_composite_keeps_rule_reviews_away_from_the_model() -> None:
    model = FakeModel()
    composite = CompositeChecker(RulesChecker(), model)
    run = CheckRequest(1, "choice", ("a", "b"), "item", "en", "a", 3.0, None, ("a",) * 20)
    (verdict,) = await composite.check([run])
    assert verdict.decision is Decision.REVIEW
    assert verdict.reason == rules.R_SAME_CHOICE
    assert model.seen == []


async def test_composite_applies_filter_and_rules_only() -> None:
    model = FakeModel()
    composite = CompositeChecker(RulesChecker(), model, applies=lambda r: r.task_type == "text")
    text, pick = await composite.check([req(0), req(1, answer="a", task_type="choice")])
    assert text.model_version == "fake@1"
    assert pick.model_version == "rules-1"
    assert len(model.seen) == 1
    (alone,) = await CompositeChecker(RulesChecker()).check([req(0)])
    assert alone == Verdict(Decision.ACCEPT, 1.0, "", "rules-1")


async def test_composite_survives_a_broken_model() -> None:
    class Broken:
        async def check(self, batch: Sequence[CheckRequest]) -> list[Verdict]:
            raise RuntimeError("bug")

    (verdict,) = await CompositeChecker(RulesChecker(), Broken()).check([req(0)])
    assert verdict.decision is Decision.REVIEW
    assert verdict.reason == rules.R_CHECK_UNAVAILABLE


async def test_composite_over_a_failing_batcher_never_accepts() -> None:
    fallback = RulesChecker()
    composite = CompositeChecker(fallback, MicroBatcher(failing, fallback=fallback))
    await composite.start()
    try:
        verdicts = await asyncio.wait_for(composite.check([req(0), req(1, answer="")]), LIMIT)
    finally:
        await composite.aclose()
    assert [v.decision for v in verdicts] == [Decision.REVIEW, Decision.REJECT]
    assert not composite.healthy


def test_stricter() -> None:
    ok = Verdict(Decision.ACCEPT, 1.0, "", "a")
    hmm = Verdict(Decision.REVIEW, 0.5, rules.R_UNSURE, "b")
    no = Verdict(Decision.REJECT, 0.0, rules.R_OFF_TOPIC, "c")
    assert stricter(ok, hmm) is hmm
    assert stricter(no, hmm) is no
    assert stricter(ok, ok.__class__(Decision.ACCEPT, 0.8, "", "d")).model_version == "d"


# -- build_checker --------------------------------------------------------------------------
async def test_build_checker_rules_only_without_a_head() -> None:
    checker = build_checker(None, None)
    assert checker.model is None
    await checker.start()
    (verdict,) = await checker.check([req(0)])
    assert verdict.model_version == "rules-1"
    await checker.aclose()


def test_build_checker_without_torch_warns_and_uses_rules(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(checker_module, "ml_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="polycrowd.models.checker"):
        checker = build_checker("similarity", None)
    assert checker.model is None
    assert "torch" in caplog.text


def test_build_checker_rejects_bad_settings(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="head"):
        build_checker("sentiment", None)
    if checker_module.ml_available():
        with pytest.raises(ValueError, match="does not exist"):
            build_checker("similarity", "/nonexistent/model")


# -- ConsistencyTracker ---------------------------------------------------------------------
def test_consistency_tracker() -> None:
    tracker = ConsistencyTracker(threshold=0.7, min_samples=10, window=20)
    assert tracker.accuracy is None
    assert not tracker.should_review()
    for _ in range(5):
        tracker.observe("pos", "neg")
    assert tracker.accuracy == 0.0
    assert not tracker.should_review()  # too few samples yet
    for _ in range(5):
        tracker.observe("pos", "pos")
    assert tracker.samples == 10
    assert tracker.accuracy == 0.5
    assert tracker.should_review()
    for _ in range(20):  # the window forgets the old mistakes
        tracker.observe("neg", "neg")
    assert tracker.samples == 20
    assert tracker.accuracy == 1.0
    assert not tracker.should_review()
    with pytest.raises(ValueError):
        ConsistencyTracker(threshold=1.5, min_samples=1)
