"""Language of a short chat reply, and evidence about which languages a worker writes.

Two halves:

* :class:`LanguageDetector` answers "which language is this reply in?" with a
  :class:`Detection` (``lang=None`` when unsure or when the text carries no
  language at all: empty, digits, emoji, punctuation).
* :func:`accumulate` and :func:`trusted_languages` are pure functions over
  :class:`LanguageEvidence` values that the store persists per user.  Declared
  languages are trusted at once; a detected language only after enough
  evidence, so that one stray word cannot add a language to a worker.

Backends, measured by ``bench/language.py`` on ``bench/data/short_sentences.tsv``
(280 chat sentences of 3-10 words and 80 replies of one or two words, 28 + 8 per
:data:`SUPPORTED` language; 2-core CPU box, Python 3.11):

======================  ==========  =========  ==========  ===========================
backend                 3-10 words  1-2 words  per call    memory, load time
======================  ==========  =========  ==========  ===========================
lingua, high accuracy   99.3 %      92.5 %     35-60 us    +260-272 MiB, 1-3 s
lingua, low accuracy    97.9 %      78.8 %     18-32 us    +16-23 MiB, 0.05 s
langdetect, seeded      98.9 %      77.5 %     290-370 us  +6 MiB (ten profiles only)
script                  40 %        40 %       10-13 us    none (ar/hi/ru/zh only)
======================  ==========  =========  ==========  ===========================

(Ranges are over repeated runs on a shared machine.  lingua caches its models
per process, so a second detector with the same languages costs nothing.)

The default is lingua in high-accuracy mode restricted to the allowed
languages: the only backend that is reliable on one- and two-word replies, the
bulk of crowd answers.  Where memory is tight, ``high_accuracy=False`` keeps
almost all of the sentence accuracy for a thirteenth of the memory.  A call costs tens of
microseconds, so :meth:`LanguageDetector.detect` may be called directly from
async code once the models are loaded; loading them takes seconds, so call
:meth:`LanguageDetector.warm_up` in a worker thread at startup
(``await asyncio.to_thread(detector.warm_up)``).
"""

from __future__ import annotations

import json
import math
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BACKENDS",
    "DEFAULT_MIN_CONFIDENCE",
    "FULL_WEIGHT_WORDS",
    "MIN_REPLIES",
    "MIN_SHARE",
    "MIN_WEIGHT",
    "SUPPORTED",
    "Detection",
    "LanguageDetector",
    "LanguageEvidence",
    "accumulate",
    "count_words",
    "reply_weight",
    "trusted_languages",
]

#: ISO 639-1 codes of the languages polycrowd serves out of the box.
SUPPORTED: tuple[str, ...] = ("en", "es", "ru", "de", "fr", "pt", "ar", "hi", "zh", "tr")

#: Names accepted by :class:`LanguageDetector`.
BACKENDS: tuple[str, ...] = ("lingua", "langdetect", "script")

#: A detection whose best guess scores below this is reported as unsure.
#: From the benchmark's threshold sweep (lingua, high accuracy): at 0.3 every
#: 3-10-word sentence is still answered (99.3 % right) and one- and two-word
#: replies go from 100 % answered / 92.5 % right to 90 % answered / 95.8 % right,
#: dropping near-ties such as "ja" (de) or "vale" (es); at 0.4 sentences start
#: to be dropped with no gain in precision on single words.
DEFAULT_MIN_CONFIDENCE = 0.3

#: A reply of this many words (or more) counts as one full unit of evidence;
#: shorter replies count proportionally less.  In the benchmark one- and
#: two-word replies are wrong ten times as often as sentences (7.5 % vs 0.7 %),
#: so a one-word reply is worth a fifth of a sentence.
FULL_WEIGHT_WORDS = 5

#: Defaults of :func:`trusted_languages` (justified there).
MIN_REPLIES = 3
MIN_WEIGHT = 2.0
MIN_SHARE = 0.2

# Tolerance of the weight and share comparisons in trusted_languages.
_EPSILON = 1e-9

# Longest prefix of a reply handed to a detector: enough to decide, bounded cost.
_MAX_CHARS = 1000

# Scripts a language is written in; a language not listed is written in Latin.
_LANG_SCRIPTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ru", ("cyrillic",)),
    ("uk", ("cyrillic",)),
    ("be", ("cyrillic",)),
    ("bg", ("cyrillic",)),
    ("mk", ("cyrillic",)),
    ("sr", ("cyrillic",)),
    ("kk", ("cyrillic",)),
    ("mn", ("cyrillic",)),
    ("ar", ("arabic",)),
    ("fa", ("arabic",)),
    ("ur", ("arabic",)),
    ("hi", ("devanagari",)),
    ("mr", ("devanagari",)),
    ("ne", ("devanagari",)),
    ("zh", ("han",)),
    ("ja", ("han", "kana")),
    ("ko", ("hangul",)),
    ("el", ("greek",)),
    ("he", ("hebrew",)),
    ("th", ("thai",)),
    ("hy", ("armenian",)),
    ("ka", ("georgian",)),
    ("bn", ("bengali",)),
)

# Unicode blocks of the scripts above (inclusive ranges).
_SCRIPT_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0370, 0x03FF, "greek"),
    (0x0400, 0x052F, "cyrillic"),
    (0x0530, 0x058F, "armenian"),
    (0x0590, 0x05FF, "hebrew"),
    (0x0600, 0x06FF, "arabic"),
    (0x0750, 0x077F, "arabic"),
    (0x08A0, 0x08FF, "arabic"),
    (0x0900, 0x097F, "devanagari"),
    (0x0980, 0x09FF, "bengali"),
    (0x0E00, 0x0E7F, "thai"),
    (0x10A0, 0x10FF, "georgian"),
    (0x1100, 0x11FF, "hangul"),
    (0x1C80, 0x1C8F, "cyrillic"),
    (0x1E00, 0x1EFF, "latin"),
    (0x2DE0, 0x2DFF, "cyrillic"),
    (0x3040, 0x30FF, "kana"),
    (0x3130, 0x318F, "hangul"),
    (0x31F0, 0x31FF, "kana"),
    (0x3400, 0x4DBF, "han"),
    (0x4E00, 0x9FFF, "han"),
    (0xA640, 0xA69F, "cyrillic"),
    (0xA8E0, 0xA8FF, "devanagari"),
    (0xAC00, 0xD7AF, "hangul"),
    (0xF900, 0xFAFF, "han"),
    (0xFB1D, 0xFB4F, "hebrew"),
    (0xFB50, 0xFDFF, "arabic"),
    (0xFE70, 0xFEFF, "arabic"),
    (0xFF66, 0xFF9F, "kana"),
    (0x20000, 0x2FA1F, "han"),
)

# Scripts written without spaces between words (see count_words).
_UNSPACED = frozenset({"han", "kana", "thai"})


@dataclass(frozen=True, slots=True)
class Detection:
    """Outcome of one detection.

    ``lang`` is an ISO 639-1 code from the detector's allowed languages, or
    None when the detector is unsure or the text has no letters.  ``confidence``
    (0..1) is the backend's score of its best guess; it is kept for an unsure
    result whose guess fell below the threshold, and is 0.0 for text without
    letters.
    """

    lang: str | None
    confidence: float


_UNSURE = Detection(None, 0.0)


def _script_of(char: str) -> str | None:
    """Script of one letter, or None when the character is not a letter."""
    if not char.isalpha():
        return None
    code = ord(char)
    if code < 0x0250:
        return "latin"
    for low, high, script in _SCRIPT_RANGES:
        if low <= code <= high:
            return script
    return "other"


def _scripts_of(lang: str) -> tuple[str, ...]:
    for code, scripts in _LANG_SCRIPTS:
        if code == lang:
            return scripts
    return ("latin",)


def _has_letters(text: str) -> bool:
    return any(char.isalpha() for char in text)


def count_words(text: str) -> int:
    """Words in ``text``, for :func:`accumulate`'s ``text_words``.

    Whitespace-separated tokens with at least one letter count one each; runs of
    Han, kana or Thai (written without spaces) count one word per two
    characters, rounded up, which is close to the average word length of
    Chinese.  Digits, emoji and punctuation count nothing.
    """
    words = 0
    for token in text.split():
        unspaced = 0
        spaced = False
        for char in token:
            script = _script_of(char)
            if script is None:
                continue
            if script in _UNSPACED:
                unspaced += 1
            else:
                spaced = True
        if unspaced:
            words += math.ceil(unspaced / 2)
        elif spaced:
            words += 1
    return words


class LanguageDetector:
    """Detects the language of short replies among a set of allowed languages.

    ``backend``:

    * ``"lingua"`` (default): lingua-language-detector restricted to
      ``languages``; ``high_accuracy=True`` (default) uses its full n-gram
      models (right on 92 % of one- and two-word replies; 35-60 us per call;
      about +265 MiB and 1-3 s to load for the ten supported languages);
      ``False`` selects its low-accuracy mode (trigrams only: 79 % on single
      words, 18-32 us, about +20 MiB).  Confidence is lingua's relative
      confidence value.
    * ``"langdetect"``: langdetect 1.0.9 with its own factory, loaded with the
      profiles of the allowed languages only and seeded with 0 so that results
      are reproducible (no global ``DetectorFactory`` is touched).  Confidence
      is the ``detect_langs`` probability; zh-cn and zh-tw both map to zh.
      290-370 us per call with ten profiles (MODELS.md: 2.4 ms with all 55),
      ten times slower than lingua and less accurate on single words.
    * ``"script"``: no dependency.  Counts letters per Unicode script (Cyrillic
      -> ru, Arabic -> ar, Devanagari -> hi, Han -> zh, ...) and answers the
      only allowed language written in the dominant script; Latin text is unsure
      unless exactly one allowed language is written in Latin.  Confidence is
      the dominant script's share of the letters.  About 10 us per call.

    Models are loaded lazily, once per instance, by :meth:`warm_up` or else by
    the first :meth:`detect`; the instance is thread-safe.  Build one per
    process and pass it to whoever needs it.
    """

    def __init__(
        self,
        backend: str = "lingua",
        languages: Sequence[str] = SUPPORTED,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        *,
        high_accuracy: bool = True,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown language backend {backend!r}; choose one of {BACKENDS}")
        langs = tuple(dict.fromkeys(code.strip().lower() for code in languages))
        if not langs:
            raise ValueError("at least one language is required")
        for code in langs:
            if len(code) != 2 or not code.isascii() or not code.isalpha():
                raise ValueError(f"not an ISO 639-1 code: {code!r}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be within [0, 1], got {min_confidence}")
        self.backend = backend
        self.languages = langs
        self.min_confidence = min_confidence
        self.high_accuracy = high_accuracy
        self._lock = threading.Lock()
        self._guess: Callable[[str], Detection] | None = None
        if backend == "lingua":
            self._lingua_codes()
        elif backend == "langdetect":
            self._langdetect_profiles()

    def __repr__(self) -> str:
        mode = f", high_accuracy={self.high_accuracy}" if self.backend == "lingua" else ""
        return (
            f"LanguageDetector(backend={self.backend!r}, languages={self.languages!r}, "
            f"min_confidence={self.min_confidence}{mode})"
        )

    def warm_up(self) -> None:
        """Build the backend and load its models now (call it in a thread at startup)."""
        self._backend()

    def detect(self, text: str) -> Detection:
        """Language of ``text`` among the allowed languages (see the class docstring)."""
        sample = unicodedata.normalize("NFC", text.strip()[:_MAX_CHARS])
        if not _has_letters(sample):
            return _UNSURE
        found = self._backend()(sample)
        if found.lang is None or found.confidence < self.min_confidence:
            return Detection(None, found.confidence)
        return found

    # -- backends ---------------------------------------------------------------

    def _backend(self) -> Callable[[str], Detection]:
        guess = self._guess
        if guess is None:
            with self._lock:
                guess = self._guess
                if guess is None:
                    guess = self._build()
                    self._guess = guess
        return guess

    def _build(self) -> Callable[[str], Detection]:
        if self.backend == "lingua":
            return self._build_lingua()
        if self.backend == "langdetect":
            return self._build_langdetect()
        return self._script_guess

    def _lingua_codes(self) -> list[Any]:
        from lingua import IsoCode639_1, Language

        codes: list[Any] = []
        for code in self.languages:
            try:
                iso = IsoCode639_1.from_str(code)
                Language.from_iso_code_639_1(iso)
            except (ValueError, AttributeError) as exc:
                raise ValueError(f"lingua does not know language {code!r}") from exc
            codes.append(iso)
        return codes

    def _build_lingua(self) -> Callable[[str], Detection]:
        from lingua import LanguageDetectorBuilder

        codes = self._lingua_codes()
        if len(codes) == 1:
            only = self.languages[0]
            return lambda text: Detection(only, 1.0)
        # Preloading moves the model loading (the bulk of the memory) from the first
        # detect() of each language to here, i.e. to warm_up() in a startup thread.
        builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
        builder = builder.with_preloaded_language_models()
        if not self.high_accuracy:
            builder = builder.with_low_accuracy_mode()
        detector = builder.build()

        def guess(text: str) -> Detection:
            values = detector.compute_language_confidence_values(text)
            if not values:
                return _UNSURE
            best = values[0]
            confidence = float(best.value)
            if confidence <= 0.0:
                return _UNSURE
            return Detection(str(best.language.iso_code_639_1.name).lower(), confidence)

        return guess

    def _langdetect_profiles(self) -> list[tuple[str, Path]]:
        from langdetect import detector_factory

        directory = Path(detector_factory.PROFILES_DIRECTORY)
        profiles: list[tuple[str, Path]] = []
        for code in self.languages:
            names = ("zh-cn", "zh-tw") if code == "zh" else (code,)
            for name in names:
                path = directory / name
                if not path.is_file():
                    raise ValueError(f"langdetect has no profile for language {code!r}")
                profiles.append((code, path))
        return profiles

    def _build_langdetect(self) -> Callable[[str], Detection]:
        from langdetect.detector_factory import DetectorFactory
        from langdetect.lang_detect_exception import LangDetectException
        from langdetect.utils.lang_profile import LangProfile

        profiles = self._langdetect_profiles()
        factory = DetectorFactory()
        factory.set_seed(0)
        for index, (_code, path) in enumerate(profiles):
            data = json.loads(path.read_text(encoding="utf-8"))
            factory.add_profile(LangProfile(**data), index, len(profiles))

        def guess(text: str) -> Detection:
            detector = factory.create()
            detector.append(text)
            try:
                ranked = detector.get_probabilities()
            except LangDetectException:
                return _UNSURE
            scores: dict[str, float] = {}
            for item in ranked:
                code = str(item.lang).split("-", 1)[0]
                scores[code] = scores.get(code, 0.0) + float(item.prob)
            if not scores:
                return _UNSURE
            lang = max(scores, key=lambda key: scores[key])
            return Detection(lang, min(1.0, scores[lang]))

        return guess

    def _script_guess(self, text: str) -> Detection:
        counts: dict[str, int] = {}
        letters = 0
        for char in text:
            script = _script_of(char)
            if script is None:
                continue
            letters += 1
            counts[script] = counts.get(script, 0) + 1
        if not letters:
            return _UNSURE
        scored = sorted(
            ((sum(counts.get(s, 0) for s in _scripts_of(code)), code) for code in self.languages),
            reverse=True,
        )
        best, lang = scored[0]
        if best == 0 or (len(scored) > 1 and scored[1][0] == best):
            return Detection(None, best / letters)
        return Detection(lang, best / letters)


# -- evidence ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LanguageEvidence:
    """Accumulated evidence that a worker writes ``lang``.

    ``weight`` is the sum of the per-reply weights of :func:`accumulate` (each at
    most 1.0); ``replies`` is how many replies were detected as ``lang``.
    """

    lang: str
    weight: float
    replies: int


def reply_weight(detection: Detection, text_words: int) -> float:
    """Evidence one reply adds: confidence times min(1, words / FULL_WEIGHT_WORDS).

    Capped at 1.0 per reply, so no single long message can settle a language.
    """
    if detection.lang is None or text_words <= 0:
        return 0.0
    confidence = min(1.0, max(0.0, detection.confidence))
    return confidence * min(1.0, text_words / FULL_WEIGHT_WORDS)


def accumulate(
    evidence: Mapping[str, LanguageEvidence], detection: Detection, text_words: int
) -> dict[str, LanguageEvidence]:
    """Evidence after one more reply; the input mapping is left unchanged.

    An unsure detection (``lang is None``) or a reply without words adds nothing.
    Otherwise the detected language gains :func:`reply_weight` and one reply.
    Use :func:`count_words` for ``text_words``.
    """
    result = dict(evidence)
    weight = reply_weight(detection, text_words)
    lang = detection.lang
    if lang is None or weight <= 0.0:
        return result
    old = result.get(lang)
    if old is None:
        result[lang] = LanguageEvidence(lang, weight, 1)
    else:
        result[lang] = LanguageEvidence(lang, old.weight + weight, old.replies + 1)
    return result


def trusted_languages(
    declared: Iterable[str],
    evidence: Mapping[str, LanguageEvidence],
    min_weight: float = MIN_WEIGHT,
    min_replies: int = MIN_REPLIES,
    min_share: float = MIN_SHARE,
) -> frozenset[str]:
    """Languages a worker can be matched on: declared ones plus well-evidenced ones.

    A detected language is trusted when all three hold:

    * at least ``min_replies`` (3) replies were detected as it, so one or two
      misdetections never add a language, however long the replies;
    * its weight reaches ``min_weight`` (2.0): two full-length confident
      replies, or about ten one-word ones, since a one-word reply weighs at
      most 1/:data:`FULL_WEIGHT_WORDS`;
    * its share of all evidence reaches ``min_share`` (0.2).

    The benchmark's worker simulation (lingua high accuracy, 100 monolingual
    streams of 300 replies, half of them with only one- and two-word replies)
    chose the share: with 0.2 no wrong language was ever trusted (0.15: 4
    streams, 0.1: 11).  The largest share a wrong language reached while
    passing the other two rules was 0.188, in a Portuguese stream of single
    words where "valeu" recurs and is read as French; the share rule is what
    stops such a steady recurring misdetection.  A real second language is
    trusted within 300 replies for 90 % of language pairs when it is a fifth of
    the worker's replies (median: its 4th reply), for all pairs at 30 %, and
    rarely at 10 %.  An undeclared language in which every reply is written is
    trusted after 3-4 sentences or 11-18 one- or two-word replies.

    Evidence never decays here, so a long-standing worker who starts writing a
    new language needs that language to reach the share; declaring it (or the
    store capping old evidence) is the quick way.
    """
    trusted = {code.strip().lower() for code in declared}
    total = sum(max(0.0, item.weight) for item in evidence.values())
    if total <= 0.0:
        return frozenset(trusted)
    for item in evidence.values():
        # The tolerance absorbs float rounding: ten replies of 0.2 make 1.9999999999999998.
        if (
            item.replies >= min_replies
            and item.weight >= min_weight - _EPSILON
            and item.weight / total >= min_share - _EPSILON
        ):
            trusted.add(item.lang)
    return frozenset(trusted)
