"""Matching throughput on a large project: picks and answers per second through the engine.

Creates a project with N items in three languages on a fresh SQLite file, then W workers
(each in one or two languages) repeatedly ask for a task and answer it, with overlap 3,
all through ``Engine.next_task`` / ``Engine.submit`` (rules-only checker). Reports import
speed, answers per second, the pick latency percentiles (with every worker asking at once,
so they include the wait for the single SQLite writer), and the invariants (no duplicate
assignments, no over-filled items).

Last line: {"items", "workers", "import_items_per_second", "answers", "answers_per_second",
"pick_p50_ms", "pick_p99_ms", "duplicate_assignments", "over_assigned_items"}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from polycrowd.engine.core import Engine
from polycrowd.engine.io import ProjectSpec
from polycrowd.engine.language import LanguageDetector
from polycrowd.engine.store import Database, open_store
from polycrowd.engine.types import TaskType
from polycrowd.models.rules import RulesChecker

LANGS = ("en", "es", "ru")


async def run(
    n_items: int, n_workers: int, answers: int, seed: int, db_url: str = ""
) -> dict[str, object]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        # --db postgresql://... runs the same load on an (empty) PostgreSQL database.
        db = await open_store(db_url) if db_url else await Database.open(Path(tmp) / "bench.db")
        clock_t = [time.time()]
        engine = Engine(
            db, RulesChecker(), LanguageDetector("script").detect, clock=lambda: clock_t[0]
        )
        spec = ProjectSpec(
            "bench",
            TaskType.CHOICE,
            {"en": "Pick one"},
            ("a", "b"),
            LANGS,
            overlap=3,
            overlap_max=3,
            reward=1,
        )
        project = await engine.create_project(None, spec)
        rows = "id,text,lang\n" + "".join(
            f"{i},item number {i},{LANGS[i % 3]}\n" for i in range(n_items)
        )
        t0 = time.perf_counter()
        await engine.import_items(project.id, rows.encode(), name="items.csv")
        import_s = time.perf_counter() - t0
        print(f"imported {n_items} items in {import_s:.1f} s", file=sys.stderr)
        await engine.set_state(None, project.id, "live")
        workers = []
        for w in range(n_workers):
            user, _ = await engine.user_for("bench", str(w), f"w{w}", LANGS[w % 3])
            if w % 4 == 0:
                await engine.set_languages(user.id, [LANGS[w % 3], LANGS[(w + 1) % 3]])
            workers.append(user.id)
        picks: list[float] = []
        done = 0

        async def worker(uid: int, quota: int) -> None:
            nonlocal done
            for _ in range(quota):
                t = time.perf_counter()
                task = await engine.next_task(uid)
                picks.append(time.perf_counter() - t)
                if task is None:
                    return
                clock_t[0] += 0.01
                await engine.submit(uid, task.assignment.id, rng.choice("ab"))
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(uid, answers // n_workers) for uid in workers))
        elapsed = time.perf_counter() - t0
        diag = await db.diagnostics()
        dup, over = diag.duplicate_assignments, diag.over_assigned_items
        await db.close()
    picks.sort()
    return {
        "items": n_items,
        "workers": n_workers,
        "import_items_per_second": round(n_items / import_s),
        "answers": done,
        "answers_per_second": round(done / elapsed, 1),
        "pick_p50_ms": round(1000 * statistics.median(picks), 2),
        "pick_p99_ms": round(1000 * picks[int(0.99 * (len(picks) - 1))], 2),
        "duplicate_assignments": int(dup),
        "over_assigned_items": int(over),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--workers", type=int, default=200)
    ap.add_argument("--answers", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--db", default="", help="an empty postgresql:// database (default: SQLite)")
    args = ap.parse_args()
    result = asyncio.run(run(args.items, args.workers, args.answers, args.seed, args.db))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
