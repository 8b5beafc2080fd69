"""Benchmark of the language detection backends on short chat replies.

Usage: ``python bench/language.py [--data bench/data/short_sentences.tsv]``

Each backend runs in its own subprocess so that its memory is measured alone:
RSS (from /proc/self/statm) after importing its library, then after building
the detector and detecting every text once (lingua loads its models lazily, on
first use).  Reported per backend:

* ``accuracy_short``: top guess == label on the 3-10-word sentences (no threshold);
* ``accuracy_words``: the same on the one- and two-word replies;
* ``us_per_call``: mean microseconds per ``detect`` over repeated passes;
* ``rss_mib``: resident memory added by building and warming the detector;
* ``coverage_*`` / ``precision_*``: share of texts answered, and share of the
  answered ones that are right, at the module's DEFAULT_MIN_CONFIDENCE.

The chosen backend is the most accurate (mean of the two accuracies) among
those using at most 512 MiB, ties broken by speed.  For it, a worker simulation
feeds random reply streams through ``accumulate``/``trusted_languages`` with the
module's default thresholds and reports how often a wrong language gets trusted
and how fast a genuine second language does.

Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from polycrowd.engine.language import (  # noqa: E402
    DEFAULT_MIN_CONFIDENCE,
    MIN_SHARE,
    SUPPORTED,
    Detection,
    LanguageDetector,
    LanguageEvidence,
    accumulate,
    count_words,
    trusted_languages,
)

CONFIGS: dict[str, dict[str, Any]] = {
    "lingua-high": {"backend": "lingua", "high_accuracy": True},
    "lingua-low": {"backend": "lingua", "high_accuracy": False},
    "langdetect": {"backend": "langdetect"},
    "script": {"backend": "script"},
}
MAX_RSS_MIB = 512.0
MAX_MISSES_SHOWN = 30
SHARES = (0.1, 0.15, 0.2, 0.25, 0.3)
SWEEP = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as handle:
        resident_pages = int(handle.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    for row in rows:
        if row["lang"] not in SUPPORTED or row["kind"] not in ("sentence", "words"):
            raise SystemExit(f"bad row in {path}: {row}")
    return rows


# -- child: one backend ------------------------------------------------------------


def run_one(name: str, rows: list[dict[str, str]]) -> dict[str, Any]:
    config = CONFIGS[name]
    if config["backend"] == "lingua":
        import lingua  # noqa: F401
    elif config["backend"] == "langdetect":
        import langdetect.detector_factory  # noqa: F401
    texts = [row["text"] for row in rows]
    before = rss_mib()
    started = time.perf_counter()
    detector = LanguageDetector(languages=SUPPORTED, min_confidence=0.0, **config)
    detector.warm_up()
    build_s = time.perf_counter() - started
    after_build = rss_mib()
    first = [detector.detect(text) for text in texts]
    after_first = rss_mib()
    calls = 0
    started = time.perf_counter()
    while True:
        for text in texts:
            detector.detect(text)
        calls += len(texts)
        elapsed = time.perf_counter() - started
        if elapsed >= 1.0 and calls >= 3 * len(texts):
            break
    return {
        "detections": [[d.lang, d.confidence] for d in first],
        "us_per_call": elapsed / calls * 1e6,
        "rss_mib": after_first - before,
        "rss_build_mib": after_build - before,
        "build_s": build_s,
    }


# -- parent: metrics -----------------------------------------------------------------


def thresholded(detection: Detection, threshold: float) -> str | None:
    if detection.lang is None or detection.confidence < threshold:
        return None
    return detection.lang


def scores(
    rows: list[dict[str, str]], found: list[Detection], kind: str, threshold: float
) -> tuple[float, float, float]:
    """(accuracy, coverage, precision) on rows of one kind at a threshold."""
    pairs = [
        (row["lang"], thresholded(det, threshold))
        for row, det in zip(rows, found, strict=True)
        if row["kind"] == kind
    ]
    answered = [(want, got) for want, got in pairs if got is not None]
    right = sum(1 for want, got in answered if want == got)
    accuracy = right / len(pairs)
    coverage = len(answered) / len(pairs)
    precision = right / len(answered) if answered else 0.0
    return accuracy, coverage, precision


def simulate(
    rows: list[dict[str, str]], found: list[Detection], threshold: float, min_share: float
) -> dict[str, Any]:
    """Reply streams through accumulate/trusted_languages (default weight/replies rules)."""
    by_lang: dict[str, dict[str, list[int]]] = {
        lang: {"sentence": [], "words": []} for lang in SUPPORTED
    }
    for index, row in enumerate(rows):
        by_lang[row["lang"]][row["kind"]].append(index)
    words = [count_words(row["text"]) for row in rows]
    rng = random.Random(0)

    def reply(lang: str, words_share: float) -> int:
        kind = "words" if rng.random() < words_share else "sentence"
        return rng.choice(by_lang[lang][kind])

    def step(evidence: dict[str, LanguageEvidence], index: int) -> dict[str, LanguageEvidence]:
        det = found[index]
        det = Detection(thresholded(det, threshold), det.confidence)
        return accumulate(evidence, det, words[index])

    # 1. Monolingual workers, 300 replies each, several seeds: any wrong language trusted?
    false_trusted = 0
    streams = 0
    max_wrong_share = 0.0
    end_wrong_share = 0.0
    for words_share in (0.5, 1.0):
        for lang in SUPPORTED:
            for _ in range(5):
                streams += 1
                evidence: dict[str, LanguageEvidence] = {}
                wrong = False
                for _ in range(300):
                    evidence = step(evidence, reply(lang, words_share))
                    if trusted_languages({lang}, evidence, min_share=min_share) != {lang}:
                        wrong = True
                    # Share of a wrong language whenever it passes the other two rules.
                    eligible = trusted_languages({lang}, evidence, min_share=0.0) - {lang}
                    total = sum(item.weight for item in evidence.values())
                    for other in eligible:
                        max_wrong_share = max(max_wrong_share, evidence[other].weight / total)
                false_trusted += wrong
                total = sum(item.weight for item in evidence.values())
                end_wrong_share = max(
                    end_wrong_share,
                    max(
                        (item.weight / total for item in evidence.values() if item.lang != lang),
                        default=0.0,
                    ),
                )
    # 2. Undeclared language, every reply in it: replies until trusted.
    to_trust: dict[str, list[int]] = {"sentence": [], "words": []}
    for lang in SUPPORTED:
        for kind, words_share in (("sentence", 0.0), ("words", 1.0)):
            evidence = {}
            for count in range(1, 201):
                evidence = step(evidence, reply(lang, words_share))
                if lang in trusted_languages((), evidence, min_share=min_share):
                    to_trust[kind].append(count)
                    break
    # 3. Bilingual workers: declared L1, a share p of replies in L2 (half of them words).
    bilingual: dict[str, Any] = {}
    for p in (0.1, 0.15, 0.2, 0.3):
        needed: list[int] = []
        never = 0
        for first in SUPPORTED:
            for second in SUPPORTED:
                if first == second:
                    continue
                evidence = {}
                in_second = 0
                for _ in range(300):
                    lang = second if rng.random() < p else first
                    in_second += lang == second
                    evidence = step(evidence, reply(lang, 0.5))
                    if second in trusted_languages({first}, evidence, min_share=min_share):
                        needed.append(in_second)
                        break
                else:
                    never += 1
        bilingual[f"p{p}"] = {
            "trusted_within_300": len(needed) / (len(needed) + never),
            "median_replies_in_l2": statistics.median(needed) if needed else None,
            "max_replies_in_l2": max(needed) if needed else None,
        }
    return {
        "monolingual_streams": streams,
        "monolingual_wrong_language_trusted": false_trusted,
        "monolingual_max_wrong_share_when_eligible": round(max_wrong_share, 3),
        "monolingual_max_wrong_share_after_300": round(end_wrong_share, 3),
        "undeclared_replies_to_trust_sentences": {
            "median": statistics.median(to_trust["sentence"]),
            "max": max(to_trust["sentence"]),
        },
        "undeclared_replies_to_trust_words": {
            "median": statistics.median(to_trust["words"]) if to_trust["words"] else None,
            "max": max(to_trust["words"]) if to_trust["words"] else None,
            "trusted": len(to_trust["words"]),
        },
        "bilingual": bilingual,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=ROOT / "bench/data/short_sentences.tsv")
    parser.add_argument("--only", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows = load_rows(args.data)
    if args.only:
        print(json.dumps(run_one(args.only, rows)))
        return

    n_short = sum(1 for row in rows if row["kind"] == "sentence")
    log(f"{n_short} sentences, {len(rows) - n_short} one/two-word replies, {len(SUPPORTED)} langs")
    backends: dict[str, dict[str, Any]] = {}
    found_by: dict[str, list[Detection]] = {}
    for name in CONFIGS:
        log(f"[{name}] running ...")
        done = subprocess.run(
            [sys.executable, __file__, "--data", str(args.data), "--only", name],
            check=True,
            capture_output=True,
            text=True,
        )
        raw = json.loads(done.stdout.strip().splitlines()[-1])
        found = [Detection(lang, conf) for lang, conf in raw["detections"]]
        found_by[name] = found
        acc_s, _, _ = scores(rows, found, "sentence", 0.0)
        acc_w, _, _ = scores(rows, found, "words", 0.0)
        _, cov_s, prec_s = scores(rows, found, "sentence", DEFAULT_MIN_CONFIDENCE)
        _, cov_w, prec_w = scores(rows, found, "words", DEFAULT_MIN_CONFIDENCE)
        backends[name] = {
            "accuracy_short": round(acc_s, 4),
            "accuracy_words": round(acc_w, 4),
            "us_per_call": round(raw["us_per_call"], 1),
            "rss_mib": round(raw["rss_mib"], 1),
            "rss_build_mib": round(raw["rss_build_mib"], 1),
            "build_s": round(raw["build_s"], 3),
            "coverage_short": round(cov_s, 4),
            "precision_short": round(prec_s, 4),
            "coverage_words": round(cov_w, 4),
            "precision_words": round(prec_w, 4),
        }
        log(f"[{name}] {backends[name]}")
        log(f"[{name}] threshold sweep: t  short cov/prec  words cov/prec")
        for t in SWEEP:
            _, cs, ps = scores(rows, found, "sentence", t)
            _, cw, pw = scores(rows, found, "words", t)
            log(f"    {t:.1f}  {cs:.3f}/{ps:.3f}  {cw:.3f}/{pw:.3f}")
        misses = [
            (row, det) for row, det in zip(rows, found, strict=True) if det.lang != row["lang"]
        ]
        for row, det in misses[:MAX_MISSES_SHOWN]:
            log(f"    miss {row['lang']} -> {det.lang} ({det.confidence:.2f}) {row['text']}")
        if len(misses) > MAX_MISSES_SHOWN:
            log(f"    ... and {len(misses) - MAX_MISSES_SHOWN} more misses")

    eligible = [name for name, b in backends.items() if b["rss_mib"] <= MAX_RSS_MIB]
    chosen = max(
        eligible,
        key=lambda name: (
            round((backends[name]["accuracy_short"] + backends[name]["accuracy_words"]) / 2, 3),
            -backends[name]["us_per_call"],
        ),
    )
    log(f"chosen: {chosen}; simulating workers ...")
    share_sweep: dict[str, Any] = {}
    for share in SHARES:
        result = simulate(rows, found_by[chosen], DEFAULT_MIN_CONFIDENCE, share)
        log(f"min_share={share}: {result}")
        share_sweep[str(share)] = {
            "wrong_trusted": result["monolingual_wrong_language_trusted"],
            "bilingual_p0.2_trusted": result["bilingual"]["p0.2"]["trusted_within_300"],
            "bilingual_p0.3_trusted": result["bilingual"]["p0.3"]["trusted_within_300"],
        }
    evidence = simulate(rows, found_by[chosen], DEFAULT_MIN_CONFIDENCE, MIN_SHARE)
    evidence["min_share_sweep"] = share_sweep
    print(
        json.dumps(
            {
                "backends": backends,
                "chosen": chosen,
                "sentences": n_short,
                "word_replies": len(rows) - n_short,
                "min_confidence": DEFAULT_MIN_CONFIDENCE,
                "evidence": evidence,
            }
        )
    )


if __name__ == "__main__":
    main()
