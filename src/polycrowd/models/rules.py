"""Rule-based answer checks: pure Python, fast, no model.

:class:`RulesChecker` runs in front of any model (see :mod:`polycrowd.models.checker`) and
alone when no model is configured. Every rule returns a :class:`~polycrowd.engine.checking.
Verdict` whose ``reason`` is a gettext message id; all of them are listed in
:data:`REASONS`, including those the model backends and the batcher use, so that a test
can check that every catalog translates them.

Thresholds come from :class:`RulesConfig`; a project's checker config (``req.config``)
overrides any of its fields by name, e.g. ``{"max_read_wps": 6, "copy_threshold": 0.95}``.

Spans answers are ``"start-end:LABEL"`` tokens joined by ``";"``; ``start`` and ``end``
index the whitespace tokens of the item text (:func:`span_tokens`), ``end`` exclusive
unless ``span_end_inclusive`` is set. Token indices are independent of writing direction,
so they are safe for right-to-left scripts.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polycrowd.engine.checking import CheckRequest, Decision, Verdict
from polycrowd.i18n import N_

log = logging.getLogger(__name__)

MODEL_VERSION = "rules-1"

#: ``detect(text) -> (ISO 639-1 code or None, confidence 0..1)``
LanguageDetect = Callable[[str], tuple[str | None, float]]


# -- reasons (gettext msgids) ---------------------------------------------------------------
R_EMPTY = N_("Your answer is empty.")
R_TOO_SHORT = N_("Your answer is too short.")
R_WRONG_SCRIPT = N_("Your answer is not written in the requested language.")
R_WRONG_LANGUAGE = N_("Your answer seems to be in a different language from the one requested.")
R_COPY = N_("Your answer is a copy of the original text.")
R_TOO_FAST = N_("You answered faster than the task can be read. Please read it carefully.")
R_REPEATED = N_("You sent the same answer for several different tasks.")
R_SAME_CHOICE = N_(
    "You chose the same option many times in a row; a moderator will look at your answers."
)
R_MACHINE = N_("Your answer looks machine-generated. Please write it yourself.")
R_HIDDEN_CHARS = N_("Your answer contains hidden characters. Please type it again.")
R_MARKUP = N_("Your answer contains formatting code; a moderator will check it.")
R_TYPED_TOO_FAST = N_(
    "Your answer arrived faster than it can be typed; a moderator will check it."
)
R_UNKNOWN_LABEL = N_("That is not one of the offered options.")
R_BAD_FORMAT = N_("Your answer is not in the expected format.")
R_BAD_SPANS = N_("Your marked spans are not in the expected format.")
R_SPAN_RANGE = N_("A marked span lies outside the text.")
# used by the model backends (bert.py), the composite checker and the batcher
R_OFF_TOPIC = N_("Your answer does not seem to match the text.")
R_UNSURE = N_("Your answer will be checked by a moderator.")
R_MODEL_DISAGREES = N_("Your answer differs from what we expected; a moderator will check it.")
R_LOW_QUALITY = N_("Your answer does not look right. Please check it and try again.")
R_SPANS_DISAGREE = N_(
    "Your marked spans differ from what we expected; a moderator will check them."
)
R_CHECK_UNAVAILABLE = N_(
    "Your answer could not be checked automatically; a moderator will check it."
)

REASONS: tuple[str, ...] = (
    R_EMPTY,
    R_TOO_SHORT,
    R_WRONG_SCRIPT,
    R_WRONG_LANGUAGE,
    R_COPY,
    R_TOO_FAST,
    R_REPEATED,
    R_SAME_CHOICE,
    R_MACHINE,
    R_HIDDEN_CHARS,
    R_MARKUP,
    R_TYPED_TOO_FAST,
    R_UNKNOWN_LABEL,
    R_BAD_FORMAT,
    R_BAD_SPANS,
    R_SPAN_RANGE,
    R_OFF_TOPIC,
    R_UNSURE,
    R_MODEL_DISAGREES,
    R_LOW_QUALITY,
    R_SPANS_DISAGREE,
    R_CHECK_UNAVAILABLE,
)

_SEVERITY = {Decision.ACCEPT: 0, Decision.REVIEW: 1, Decision.REJECT: 2}


def severity(decision: Decision) -> int:
    """Order decisions from the most lenient (accept, 0) to the strictest (reject, 2)."""
    return _SEVERITY[decision]


def _clamp(score: float) -> float:
    return min(max(score, 0.0), 1.0) if math.isfinite(score) else 0.0


def accept(model_version: str = MODEL_VERSION, score: float = 1.0) -> Verdict:
    return Verdict(Decision.ACCEPT, _clamp(score), "", model_version)


def review(reason: str, score: float = 0.5, model_version: str = MODEL_VERSION) -> Verdict:
    return Verdict(Decision.REVIEW, _clamp(score), reason, model_version)


def reject(reason: str, score: float = 0.0, model_version: str = MODEL_VERSION) -> Verdict:
    return Verdict(Decision.REJECT, _clamp(score), reason, model_version)


# -- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RulesConfig:
    """Thresholds of the rules; any field can be overridden per project by name."""

    min_chars: int = 2  # text answers shorter than this (after stripping) are too short
    min_length_ratio: float = 0.25  # translations: answer length / source length
    # ... below this a moderator looks (good translations and paraphrases in the ten
    # languages of bench/data/checker_multilingual.json: 0.6 and more; truncated: 0.04-0.58)
    review_length_ratio: float = 0.4
    ratio_min_source_chars: int = 20  # ... checked only for sources at least this long
    script_min_fraction: float = 0.5  # share of letters in the target language's script
    script_min_letters: int = 3
    lang_min_words: int = 3  # the language detector is asked only from this many words
    lang_reject_confidence: float = 0.9
    lang_review_confidence: float = 0.6
    copy_threshold: float = 0.9  # char-trigram Jaccard; above 1 disables the copy rule
    copy_min_chars: int = 12  # sources shorter than this may be copied (names, numbers)
    max_read_wps: float = 10.0  # words per second nobody reads faster than
    speed_min_words: int = 8  # shorter items can be taken in at a glance
    min_seconds: float = 0.0  # absolute floor for every answer
    max_type_cps: float = 12.0  # characters per second nobody types faster than
    typing_min_chars: int = 60
    repeat_window: int = 20  # how many recent answers the repetition rules look at
    repeat_text_min: int = 2  # the same text answer this many times before -> reject
    repeat_choice_run: int = 15  # this many identical choices in a row -> review
    span_end_inclusive: bool = False
    allow_overlapping_spans: bool = False

    def merged(self, overrides: Mapping[str, Any]) -> RulesConfig:
        """A copy with the fields named in ``overrides``; unknown keys and bad values are
        ignored (a project's config also holds keys for the model)."""
        changes: dict[str, Any] = {}
        for f in _CONFIG_FIELDS:
            if f.name not in overrides:
                continue
            value = overrides[f.name]
            kind = type(getattr(self, f.name))
            try:
                if kind is bool:
                    if not isinstance(value, bool):
                        raise TypeError(value)
                    changes[f.name] = value
                elif isinstance(value, bool | str) or value is None:
                    raise TypeError(value)
                else:
                    changes[f.name] = kind(value)
            except (TypeError, ValueError):
                log.debug("ignoring checker config %s=%r", f.name, value)
        return dataclasses.replace(self, **changes) if changes else self


_CONFIG_FIELDS = dataclasses.fields(RulesConfig)

# -- text helpers ---------------------------------------------------------------------------
# Invisible characters that have no business in a typed answer. Zero-width (non-)joiners and
# bidi marks are left alone: Persian, Hindi, emoji sequences and RTL text use them.
_HIDDEN = re.compile("[\u200b\u2060-\u2064\ufeff\u180e\U000e0000-\U000e007f]")
_NON_WORD = re.compile(r"[\W_]+")
_SPAN = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*:\s*(\S(?:.*\S)?)\s*$")

_AI_PHRASES = (
    "as an ai language model",
    "as a language model",
    "as an ai model",
    "as a large language model",
    "as an ai assistant",
    "i am an ai",
    "i'm an ai",
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i cannot fulfill",
    "i can't assist with",
    "regenerate response",
    "here is the translation",
    "here's the translation",
    "here is a paraphrase",
    "here's a paraphrase",
    "here is the rewritten",
    "here's the rewritten",
    "certainly! here",
    "sure! here",
    "chatgpt",
    "knowledge cutoff",
    # the same preambles in the other interface languages
    "como modelo de lenguaje",
    "aquí tienes la traducción",
    "aquí está la traducción",
    "en tant que modèle de langage",
    "voici la traduction",
    "como um modelo de linguagem",
    "como modelo de linguagem",
    "aqui está a tradução",
    "как языковая модель",
    "как модель ии",
    "вот перевод",
    "作为一个人工智能",
    "作为人工智能",
    "作为ai语言模型",
    "以下是翻译",
    "بصفتي نموذج",
    "كنموذج لغوي",
    "إليك الترجمة",
    "एआई भाषा मॉडल",
    "यह रहा अनुवाद",
    "sebagai model bahasa",
    "berikut terjemahannya",
    "berikut adalah terjemahan",
    "yapay zeka dil modeli",
    "işte çeviri",
)
_MARKUP = (
    re.compile(r"\*\*[^*\n]+\*\*"),  # **bold**
    re.compile(r"```"),
    re.compile(r"^\s{0,3}#{1,6}\s+\S", re.MULTILINE),  # # heading
    re.compile(r"\[[^\]\n]+\]\((?:https?://|/)[^)\s]*\)"),  # [link](url)
    re.compile(r"</?(?:br|p|div|span|b|i|u|em|strong|ul|ol|li|h[1-6]|a)\b[^<>]*>", re.I),
    re.compile(r"&(?:nbsp|amp|lt|gt|quot|#\d+);"),
)


def _codes(codes: str) -> list[str]:
    return codes.split()


_LATIN_LANGS = frozenset(
    _codes(
        "af az bs ca cs cy da de en eo es et eu fi fil fr ga gl ha hr ht hu id ig is it jv ku la "
        "lb lt lv mg mi ms mt nl no nb nn oc pl pt ro sk sl so sq sv sw tl tr tk uz vi wo xh yo "
        "zu"
    )
)
_SCRIPTS: dict[str, frozenset[str]] = {
    **{lang: frozenset({"LATIN"}) for lang in _LATIN_LANGS},
    **{lang: frozenset({"CYRILLIC"}) for lang in _codes("ru uk be bg mk kk ky mn tg tt ba cv ce")},
    "sr": frozenset({"CYRILLIC", "LATIN"}),
    **{lang: frozenset({"ARABIC"}) for lang in _codes("ar fa ur ps sd ug ckb")},
    **{lang: frozenset({"DEVANAGARI"}) for lang in _codes("hi mr ne sa")},
    "bn": frozenset({"BENGALI"}),
    "as": frozenset({"BENGALI"}),
    "pa": frozenset({"GURMUKHI"}),
    "gu": frozenset({"GUJARATI"}),
    "or": frozenset({"ORIYA"}),
    "ta": frozenset({"TAMIL"}),
    "te": frozenset({"TELUGU"}),
    "kn": frozenset({"KANNADA"}),
    "ml": frozenset({"MALAYALAM"}),
    "si": frozenset({"SINHALA"}),
    "th": frozenset({"THAI"}),
    "lo": frozenset({"LAO"}),
    "km": frozenset({"KHMER"}),
    "my": frozenset({"MYANMAR"}),
    "ka": frozenset({"GEORGIAN"}),
    "hy": frozenset({"ARMENIAN"}),
    "am": frozenset({"ETHIOPIC"}),
    "ti": frozenset({"ETHIOPIC"}),
    "el": frozenset({"GREEK"}),
    "he": frozenset({"HEBREW"}),
    "yi": frozenset({"HEBREW"}),
    "zh": frozenset({"CJK"}),
    "ja": frozenset({"CJK", "HIRAGANA", "KATAKANA"}),
    "ko": frozenset({"HANGUL", "CJK"}),
}
_DENSE_SCRIPTS = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HANGUL"})


def base_lang(code: str | None) -> str:
    """``"pt-BR"`` -> ``"pt"``; ``None`` -> ``""``."""
    return (code or "").replace("_", "-").split("-")[0].lower()


def char_script(ch: str) -> str:
    """The Unicode script of a letter, from its character name (``"LATIN"``, ``"CJK"``...)."""
    name = unicodedata.name(ch, "")
    if name.startswith(("CJK ", "KANGXI")):
        return "CJK"
    return name.split(" ", 1)[0]


def strip_hidden(text: str) -> str:
    return _HIDDEN.sub("", text)


def normalize(text: str) -> str:
    """Casefolded words without punctuation or hidden characters, single-spaced."""
    text = unicodedata.normalize("NFKC", strip_hidden(text)).casefold()
    return _NON_WORD.sub(" ", text).strip()


def _trigrams(text: str) -> set[str]:
    padded = f" {text} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def similarity(a: str, b: str) -> float:
    """Char-trigram Jaccard similarity of the normalised texts (0..1), linear time."""
    na, nb = normalize(a), normalize(b)
    if na == nb:
        return 1.0
    ga, gb = _trigrams(na), _trigrams(nb)
    return len(ga & gb) / len(ga | gb) if ga and gb else 0.0


def _is_dense(ch: str) -> bool:
    return ch.isalpha() and char_script(ch) in _DENSE_SCRIPTS


def word_count(text: str) -> float:
    """Words to read: whitespace words, with CJK/kana/hangul runs at two characters a word."""
    dense = sum(1 for ch in text if _is_dense(ch))
    if not dense:
        return float(len(text.split()))
    sparse = " ".join("".join(" " if _is_dense(ch) else ch for ch in text).split())
    return len(sparse.split()) + dense / 2


def length_units(text: str) -> float:
    """Length comparable across scripts: a CJK character counts as three Latin ones."""
    return sum(3.0 if _is_dense(ch) else 1.0 for ch in text if not ch.isspace())


def span_tokens(text: str) -> list[str]:
    """The tokens that span indices refer to: the item text split on whitespace."""
    return text.split()


@dataclass(frozen=True, slots=True)
class Span:
    start: int  # first token
    end: int  # one past the last token
    label: str


class SpanError(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_spans(
    answer: str, n_tokens: int, *, end_inclusive: bool = False, allow_overlap: bool = False
) -> list[Span]:
    """Parse ``"0-2:PER;5-6:LOC"`` into half-open token spans, sorted by start.

    Raises :class:`SpanError` (with a reason msgid) on malformed, empty, reversed,
    out-of-range or (unless allowed) overlapping spans. An empty answer means no spans.
    """
    spans: list[Span] = []
    for part in answer.split(";"):
        if not part.strip():
            if answer.strip():
                raise SpanError(R_BAD_SPANS)  # "0-1:A;;2-3:B" or a trailing ";"
            continue
        m = _SPAN.match(part)
        if m is None:
            raise SpanError(R_BAD_SPANS)
        start, end = int(m.group(1)), int(m.group(2)) + (1 if end_inclusive else 0)
        if end <= start:
            raise SpanError(R_BAD_SPANS)
        if end > n_tokens:
            raise SpanError(R_SPAN_RANGE)
        spans.append(Span(start, end, m.group(3)))
    spans.sort(key=lambda s: (s.start, s.end))
    if not allow_overlap:
        for prev, cur in itertools.pairwise(spans):
            if cur.start < prev.end:
                raise SpanError(R_BAD_SPANS)
    return spans


# -- the checker ----------------------------------------------------------------------------
Rule = Callable[[CheckRequest, RulesConfig], Verdict | None]


class RulesChecker:
    """Rule-based checks (``model_version`` ``"rules-1"``).

    ``detect`` is an optional language detector ``text -> (lang, confidence)``, e.g.
    ``lambda t: (d := detector.detect(t)).lang, d.confidence`` around the engine's
    ``LanguageDetector``. It is only asked about text answers with a target language.
    """

    model_version = MODEL_VERSION

    def __init__(
        self, config: RulesConfig | None = None, detect: LanguageDetect | None = None
    ) -> None:
        self.config = config or RulesConfig()
        self.detect = detect

    async def check(self, batch: Sequence[CheckRequest]) -> list[Verdict]:
        return [self.check_safe(req) for req in batch]

    def check_safe(self, req: CheckRequest) -> Verdict:
        """:meth:`check_one`, but a bug in a rule yields a review, never an exception."""
        try:
            return self.check_one(req)
        except Exception:
            log.exception("rules checker failed on project %s", req.project_id)
            return review(R_CHECK_UNAVAILABLE)

    def check_one(self, req: CheckRequest) -> Verdict:
        """The first rejection, else the first review, else acceptance."""
        cfg = self.config.merged(req.config) if req.config else self.config
        first_review: Verdict | None = None
        for rule in self._rules(req.task_type):
            verdict = rule(req, cfg)
            if verdict is None:
                continue
            if verdict.decision is Decision.REJECT:
                return verdict
            if first_review is None and verdict.decision is Decision.REVIEW:
                first_review = verdict
        return first_review or accept()

    def _rules(self, task_type: str) -> Iterator[Rule]:
        if task_type == "text":
            yield _text_empty
            yield _hidden_chars
            yield _text_too_short
            yield self._language
            yield _copy
            yield _machine_phrases
            yield _too_fast
            yield _repeated_text
            yield _typed_too_fast
            yield _markup
        elif task_type in ("choice", "image"):
            yield _choice_label
            yield _too_fast
            yield _same_choice_run
        elif task_type == "multi":
            yield _multi_labels
            yield _too_fast
            yield _same_choice_run
        elif task_type == "spans":
            yield _spans
            yield _too_fast
        else:
            yield _unknown_task

    def _language(self, req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
        target = base_lang(req.target_lang)
        if not target:
            return None
        text = strip_hidden(req.answer)
        scripts = _SCRIPTS.get(target)
        if scripts is not None:
            letters = [char_script(ch) for ch in text if ch.isalpha()]
            if len(letters) >= cfg.script_min_letters:
                share = sum(1 for s in letters if s in scripts) / len(letters)
                if share < cfg.script_min_fraction:
                    return reject(R_WRONG_SCRIPT, share)
        if self.detect is None or len(text.split()) < cfg.lang_min_words:
            return None
        try:
            lang, confidence = self.detect(text)
        except Exception:
            log.warning("language detector failed", exc_info=True)
            return None
        if lang is None or base_lang(lang) == target or math.isnan(confidence):
            return None
        if confidence >= cfg.lang_reject_confidence:
            return reject(R_WRONG_LANGUAGE, 1.0 - confidence)
        if confidence >= cfg.lang_review_confidence:
            return review(R_WRONG_LANGUAGE, 1.0 - confidence)
        return None


# -- individual rules: (request, config) -> Verdict | None (None: nothing to say) -----------
def _text_empty(req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
    return reject(R_EMPTY) if not normalize(req.answer) else None


def _hidden_chars(req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
    if _HIDDEN.search(req.answer) and not _HIDDEN.search(req.item_text):
        return reject(R_HIDDEN_CHARS)
    return None


def _text_too_short(req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
    answer = strip_hidden(req.answer).strip()
    if len(answer) < cfg.min_chars:
        return reject(R_TOO_SHORT)
    if req.target_lang and len(req.item_text.strip()) >= cfg.ratio_min_source_chars:
        ratio = length_units(answer) / max(length_units(req.item_text), 1.0)
        if ratio < cfg.min_length_ratio:
            return reject(R_TOO_SHORT, ratio / cfg.min_length_ratio)
        if ratio < cfg.review_length_ratio:
            return review(R_TOO_SHORT, ratio / cfg.review_length_ratio)
    return None


def _copy(req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
    if len(normalize(req.item_text)) < cfg.copy_min_chars:
        return None
    sim = similarity(req.answer, req.item_text)
    return reject(R_COPY, 1.0 - sim) if sim >= cfg.copy_threshold else None


def _fold(text: str) -> str:
    """Casefolded, curly apostrophes straightened, Turkish "İ" (casefolds to i + U+0307)
    as a plain i."""
    return text.casefold().replace("\u2019", "'").replace("i\u0307", "i")


def _machine_phrases(req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
    answer = _fold(req.answer)
    item = _fold(req.item_text)
    if any(phrase in item for phrase in _AI_PHRASES):
        return None  # the item quotes a machine: its translation may quote it too
    for phrase in _AI_PHRASES:
        if phrase in answer:
            return reject(R_MACHINE)
    return None


def _markup(req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
    for pattern in _MARKUP:
        if pattern.search(req.answer) and not pattern.search(req.item_text):
            return review(R_MARKUP)
    return None


def _valid_seconds(seconds: float) -> bool:
    return math.isfinite(seconds) and seconds > 0


def _too_fast(req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
    if not _valid_seconds(req.seconds):
        return None
    if req.seconds < cfg.min_seconds:
        return reject(R_TOO_FAST, req.seconds / cfg.min_seconds)
    words = word_count(req.item_text)
    if words < cfg.speed_min_words or cfg.max_read_wps <= 0:
        return None
    needed = words / cfg.max_read_wps
    return reject(R_TOO_FAST, req.seconds / needed) if req.seconds < needed else None


def _typed_too_fast(req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
    chars = len(req.answer.strip())
    if chars < cfg.typing_min_chars or not _valid_seconds(req.seconds) or cfg.max_type_cps <= 0:
        return None
    if chars / req.seconds > cfg.max_type_cps:
        return review(R_TYPED_TOO_FAST, 0.3)
    return None


def _repeated_text(req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
    answer = normalize(req.answer)
    recent = req.recent_answers[: cfg.repeat_window]
    same = sum(1 for old in recent if normalize(old) == answer)
    return reject(R_REPEATED) if same >= cfg.repeat_text_min > 0 else None


def _same_choice_run(req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
    run = cfg.repeat_choice_run
    if run <= 1 or len(req.recent_answers) < run - 1:
        return None
    answer = _label_set(req.answer) if req.task_type == "multi" else req.answer.strip()
    for old in req.recent_answers[: run - 1]:
        previous = _label_set(old) if req.task_type == "multi" else old.strip()
        if previous != answer:
            return None
    return review(R_SAME_CHOICE)


def _label_set(answer: str) -> frozenset[str]:
    return frozenset(p.strip() for p in answer.split("|") if p.strip())


def _choice_label(req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
    answer = req.answer.strip()
    if not answer:
        return reject(R_EMPTY)
    if req.labels and answer not in req.labels:
        return reject(R_UNKNOWN_LABEL)
    return None


def _multi_labels(req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
    if not req.answer.strip():
        return reject(R_EMPTY)
    parts = [p.strip() for p in req.answer.split("|")]
    if "" in parts or len(set(parts)) != len(parts):
        return reject(R_BAD_FORMAT)
    if req.labels and any(p not in req.labels for p in parts):
        return reject(R_UNKNOWN_LABEL)
    return None


def _spans(req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
    try:
        spans = parse_spans(
            req.answer,
            len(span_tokens(req.item_text)),
            end_inclusive=cfg.span_end_inclusive,
            allow_overlap=cfg.allow_overlapping_spans,
        )
    except SpanError as e:
        return reject(e.reason)
    if req.labels and any(s.label not in req.labels for s in spans):
        return reject(R_UNKNOWN_LABEL)
    return None


def _unknown_task(req: CheckRequest, cfg: RulesConfig) -> Verdict | None:
    return review(R_CHECK_UNAVAILABLE)
