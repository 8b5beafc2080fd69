"""The demo's text phase: paraphrase and translation tasks in three languages.

For each language in :data:`TEXT_LANGS` the requester publishes a ``text`` project with that
target language: paraphrase items (a sentence in the language) and translation items (an
English sentence, for workers who also declared English). Simulated workers declare the
language (some English too), and send a mix of good replies and bad ones: off-topic (a
sentence about something else: only a model can tell), copies of the source, replies in
the wrong language (English) and truncated ones. Each verdict the worker sees is recorded,
so the demo reports, per language, how many bad replies the checker caught (rejected or
sent to review) and how many good ones it accepted. The sentences are the held-out items
of the checker bench set (``polycrowd/data/demo_text.json``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from polycrowd.bot.app import App
from polycrowd.bot.memory import ChatMessage, MemoryChat, MemoryUser

TEXT_LANGS = ("es", "ar", "hi")
LANG_NAMES = {"es": "Spanish", "ar": "Arabic", "hi": "Hindi"}
BAD_KINDS = ("off_topic", "copy", "wrong_language", "too_short")
KINDS = ("good", *BAD_KINDS)
# the replies of each language, in turn: half good, every bad kind in every language
SCHEDULE = (
    *("good", "off_topic", "good", "copy", "good", "off_topic"),
    *("good", "too_short", "good", "off_topic", "good", "wrong_language"),
)
WORKERS_PER_LANG = 6
OVERLAP = 2
RULES_ONLY = "rules only"
# the verdict messages the worker sees (msgids of polycrowd.handlers.worker.verdict_reply)
REJECTED = "Not accepted: %(reason)s"
RETRY = "You have one more try: please fix your answer."
REVIEW = "Credited for now; a moderator will double-check this answer."
INSTRUCTIONS = {
    "es": {
        "en": "Rewrite the sentence in your own words in Spanish; "
        "translate English sentences into Spanish.",
        "es": "Reescribe la frase con tus palabras; traduce al español las frases en inglés.",
    },
    "ar": {
        "en": "Rewrite the sentence in your own words in Arabic; "
        "translate English sentences into Arabic.",
        "ar": "أعد صياغة الجملة بكلماتك؛ وترجم الجمل الإنجليزية إلى العربية.",
    },
    "hi": {
        "en": "Rewrite the sentence in your own words in Hindi; "
        "translate English sentences into Hindi.",
        "hi": "वाक्य को अपने शब्दों में दोबारा लिखें; अंग्रेज़ी वाक्यों का हिंदी में अनुवाद करें।",
    },
}


class Clock(Protocol):
    def advance(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class TextItem:
    """One task: ``lang`` is the project's target language, ``source`` the text shown."""

    ext_id: str
    lang: str
    source: str
    source_lang: str
    good: str
    off_topic: str
    wrong_language: str

    def reply(self, kind: str) -> str:
        if kind == "good":
            return self.good
        if kind == "off_topic":
            return self.off_topic
        if kind == "copy":
            return self.source
        if kind == "wrong_language":
            return self.wrong_language
        return " ".join(self.good.split()[:2])  # too_short: sent half-way through


@dataclass(frozen=True)
class TextWorker:
    user: MemoryUser
    langs: tuple[str, ...]


@dataclass(frozen=True)
class Sent:
    lang: str
    kind: str
    outcome: str  # accepted | review | retry | rejected


def load_items(langs: Sequence[str] = TEXT_LANGS) -> dict[str, list[TextItem]]:
    """Per target language: a paraphrase item per sentence, and a translation item for
    every ``len(langs)``-th English sentence (each English sentence in one project only)."""
    path = resources.files("polycrowd") / "data" / "demo_text.json"
    rows: list[dict[str, list[str]]] = json.loads(path.read_text(encoding="utf-8"))["items"]
    out: dict[str, list[TextItem]] = {}
    for k, lang in enumerate(langs):
        items: list[TextItem] = []
        for i, row in enumerate(rows):
            other = rows[(i + 1 + k) % len(rows)][lang][2]  # another item's sentence
            sentence, paraphrase = row[lang][0], row[lang][1]
            items.append(
                TextItem(f"{lang}-p{i}", lang, sentence, lang, paraphrase, other, row["en"][1])
            )
            if i % len(langs) == k:
                items.append(
                    TextItem(
                        f"{lang}-t{i}", lang, row["en"][0], "en", sentence, other, row["en"][1]
                    )
                )
        out[lang] = items
    return out


def _spec(lang: str, reward: int) -> bytes:
    lines = "".join(f'  {k}: "{v}"\n' for k, v in INSTRUCTIONS[lang].items())
    return (
        f"name: Paraphrase and translate into {LANG_NAMES[lang]} (demo)\n"
        "type: text\n"
        f"languages: [{lang}, en]\n"
        f"target_lang: {lang}\n"
        f"instructions:\n{lines}"
        f"overlap: {OVERLAP}\n"
        f"reward: {reward}\n"
        "assignment_ttl: 36000\n"
        "checker: {head: similarity}\n"
    ).encode()


def _items_csv(items: Sequence[TextItem]) -> bytes:
    rows = "".join(f'{it.ext_id},"{it.source}",{it.source_lang}\n' for it in items)
    return ("id,text,lang\n" + rows).encode()


def _workers(langs: Sequence[str]) -> list[TextWorker]:
    out: list[TextWorker] = []
    for k, lang in enumerate(langs):
        for j in range(WORKERS_PER_LANG):
            uid = 5000 + 100 * k + j
            declared = (lang, "en") if j % 2 == 0 else (lang,)
            out.append(TextWorker(MemoryUser(str(uid), f"{lang}-writer{j}", lang), declared))
    return out


def _outcome(msgs: Sequence[ChatMessage]) -> str:
    verdict = next(m for m in msgs if m.reply.kind == "verdict")
    ids = [p.msgid for p in verdict.reply.parts]
    if RETRY in ids:
        return "retry"
    if REJECTED in ids:
        return "rejected"
    return "review" if REVIEW in ids else "accepted"


async def _work(
    chat: MemoryChat,
    w: TextWorker,
    items: Sequence[TextItem],
    rng: random.Random,
    max_tasks: int,
    clock: Clock,
    log: list[Sent],
    schedule: Mapping[str, Iterator[str]],
) -> int:
    done = 0
    msgs = await chat.command(w.user, "/task")
    retry = False
    while done < max_tasks:
        task_msg = next((m for m in msgs if m.reply.kind == "task" and m.reply.expects_text), None)
        if task_msg is None:
            break
        item = next(it for it in items if it.source in task_msg.text)
        done += 1
        if item.lang not in w.langs:  # a translation into a language this worker lacks
            msgs = await chat.command(w.user, "/skip")
            continue
        kind = "good" if retry else next(schedule[item.lang])
        answer = item.reply(kind)
        clock.advance(len(answer) / 4 + rng.uniform(4.0, 10.0))  # reading and typing
        msgs = await chat.say(w.user, answer)
        outcome = _outcome(msgs)
        log.append(Sent(item.lang, kind, outcome))
        retry = outcome == "retry"
        done -= 1 if retry else 0
        await asyncio.sleep(0)
    return done


def catch_rates(log: Sequence[Sent], langs: Sequence[str], model: str) -> dict[str, Any]:
    """Per language: bad replies caught (rejected, retried or sent to review) of those
    sent, good replies accepted of those sent, and the same per kind of reply."""
    out: dict[str, Any] = {}
    for lang in langs:
        sent = [s for s in log if s.lang == lang]
        bad = [s for s in sent if s.kind != "good"]
        good = [s for s in sent if s.kind == "good"]
        bad_caught = sum(1 for s in bad if s.outcome != "accepted")
        good_accepted = sum(1 for s in good if s.outcome == "accepted")
        by_kind = {}
        for kind in KINDS:
            of_kind = [s for s in sent if s.kind == kind]
            ok = sum(1 for s in of_kind if (s.outcome == "accepted") == (kind == "good"))
            by_kind[kind] = {"sent": len(of_kind), "as_expected": ok}
        out[lang] = {
            "bad_sent": len(bad),
            "bad_caught": bad_caught,
            "bad_caught_rate": round(bad_caught / len(bad), 4) if bad else None,
            "good_sent": len(good),
            "good_accepted": good_accepted,
            "good_accepted_rate": round(good_accepted / len(good), 4) if good else None,
            "by_kind": by_kind,
            "model": model,
        }
    return out


async def text_phase(
    app: App,
    chat: MemoryChat,
    requester: MemoryUser,
    rng: random.Random,
    clock: Clock,
    langs: Sequence[str] = TEXT_LANGS,
) -> dict[str, Any]:
    """Run the phase; the demo's ``text_*`` result keys."""
    by_lang = load_items(langs)
    project_ids: list[int] = []
    for lang in langs:
        await chat.upload(requester, f"text-{lang}.yaml", _spec(lang, reward=5))
        await chat.upload(requester, f"text-{lang}.csv", _items_csv(by_lang[lang]))
        await chat.command(requester, "/launch")
        project_ids.append((await app.engine.projects())[-1].id)
    workers = _workers(langs)
    for w in workers:
        await chat.command(w.user, "/start")  # pre-selects the platform locale
        for extra in w.langs[1:]:
            await chat.press(w.user, f"l:{extra}")
        await chat.press(w.user, "lok")
    items = [it for lang in langs for it in by_lang[lang]]
    log: list[Sent] = []
    schedule = {lang: itertools.cycle(SCHEDULE) for lang in langs}
    for _ in range(50):
        counts = await asyncio.gather(
            *(_work(chat, w, items, rng, 4, clock, log, schedule) for w in workers)
        )
        await app.flush()
        if sum(counts) == 0:
            break
    done = answers = rejections = review = 0
    versions: set[str] = set()
    for pid in project_ids:
        diag = await app.engine.diagnostics(pid)
        done += (await app.engine.status(pid)).done_items
        answers += sum(n for s, n in diag.answer_statuses.items() if s != "rejected")
        rejections += diag.answer_statuses.get("rejected", 0)
        review += diag.answer_statuses.get("review", 0)
        versions.update(diag.checker_versions)
    model = next((v for v in sorted(versions) if not v.startswith("rules")), RULES_ONLY)
    return {
        "text_items_done": done,
        "text_answers": answers,
        "text_rejections": rejections,
        "text_review": review,
        "checker_versions": sorted(versions),
        "text_languages": list(langs),
        "text_model": model,
        "text_per_language": catch_rates(log, langs, model),
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The per-language table of the human summary."""
    per = result.get("text_per_language") or {}
    model = result.get("text_model", RULES_ONLY)
    lines = [
        f"  per language, checker model: {model}",
        f"  {'lang':<5}{'bad caught':>18}{'good accepted':>18}   off-topic caught (model)",
    ]
    for lang, r in per.items():
        off = r["by_kind"]["off_topic"]
        off_txt = RULES_ONLY if model == RULES_ONLY else f"{off['as_expected']}/{off['sent']}"
        lines.append(
            f"  {lang:<5}{_rate(r['bad_caught'], r['bad_sent']):>18}"
            f"{_rate(r['good_accepted'], r['good_sent']):>18}   {off_txt}"
        )
    return lines


def _rate(n: int, total: int) -> str:
    return f"{n}/{total} ({100 * n / total:.0f}%)" if total else "0/0"
