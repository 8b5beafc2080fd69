"""Matching throughput at scale: picks and answers through the engine on a large database.

Builds (once; ``--db-file`` keeps it for the next run) a database with ``--items`` items in
``--projects`` live choice projects over ``--langs`` languages (each project in three of
them, overlap 3) and ``--workers`` workers (one language each, every fourth two), all through
``Engine.import_items`` / ``Engine.user_for``. Then, through ``Engine.next_task`` /
``Engine.submit`` with the rules-only checker:

- **closed loop**: ``--concurrency`` workers (drawn from all of them) each ask for a task and
  answer it, again and again, ``--answers`` answers in all: ``answers_per_second``.
- **open loop**: answers arrive at a fixed ``--rate`` per second (each arrival a random idle
  worker who asks and answers), ``--open-answers`` of them: the pick latency percentiles
  ``p50_ms`` / ``p99_ms`` include any queueing the arrivals cause. ``--compare-items`` builds
  a second database that size (same projects, languages and workers) and reports its
  ``p99_ms_100k``, to show how the pick scales with the item count.
- **import / export**: ``--io-items`` items imported into one project of a fresh database
  (``import_s``), then that project exported as CSV (``export_s``).

``--store postgresql --db postgresql://...`` runs the load on an (empty) PostgreSQL database
instead, and ``--processes N`` (PostgreSQL only) splits the closed loop over N processes,
each with its own engine and pool, reporting the summed ``answers_per_second``.

Last line: one JSON object with the keys above plus ``items, projects, langs, workers,
cpu_ms_per_answer`` (the closed loop's CPU time, all threads, per answer: what the code
costs, whatever else the machine runs), ``db_mb, duplicate_assignments,
over_assigned_items, duplicate_credits``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT / "src"))

from polycrowd.engine.core import Engine  # noqa: E402
from polycrowd.engine.io import ProjectSpec  # noqa: E402
from polycrowd.engine.language import LanguageDetector  # noqa: E402
from polycrowd.engine.ledger_key import LedgerKeyring  # noqa: E402
from polycrowd.engine.store import Database, Store, is_postgres, open_store  # noqa: E402
from polycrowd.engine.types import TaskType  # noqa: E402
from polycrowd.models.rules import RulesChecker  # noqa: E402

ALL_LANGS = ("en", "es", "ru", "fr", "pt", "zh", "ar", "hi", "id", "tr")
STEP = 0.01  # engine-clock seconds per answer: a worker seems to read for a few seconds


class Clock:
    """The engine's clock: starts now, moves STEP per answer (never faster than real time)."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def tick(self) -> None:
        self.t = max(self.t + STEP, time.time())


def _langs(n: int) -> tuple[str, ...]:
    return ALL_LANGS[: max(1, min(n, len(ALL_LANGS)))]


def _engine(db: Store, clock: Clock, seed: int) -> Engine:
    return Engine(
        db,
        RulesChecker(),
        LanguageDetector("script").detect,
        rng=random.Random(seed),
        clock=clock,
        keyring=LedgerKeyring(),
    )


def _project_langs(p: int, langs: Sequence[str]) -> tuple[str, ...]:
    n = len(langs)
    return tuple(dict.fromkeys(langs[(p + k) % n] for k in (0, 1, 3)))


async def build(
    db: Store, n_items: int, n_projects: int, langs: Sequence[str], n_workers: int
) -> tuple[dict[str, float], list[int]]:
    """Projects, items and workers: the seconds the import and sign-ups took, the user ids."""
    clock = Clock()
    engine = _engine(db, clock, 0)
    import_s = 0.0
    per_project = [n_items // n_projects + (p < n_items % n_projects) for p in range(n_projects)]
    for p, count in enumerate(per_project):
        plangs = _project_langs(p, langs)
        spec = ProjectSpec(
            f"bench {p}",
            TaskType.CHOICE,
            {"en": "Pick one"},
            ("a", "b"),
            plangs,
            overlap=3,
            overlap_max=3,
            reward=1,
        )
        project = await engine.create_project(None, spec)
        rows = "id,text,lang\n" + "".join(
            f"{i},item {p} number {i},{plangs[i % len(plangs)]}\n" for i in range(count)
        )
        t0 = time.perf_counter()
        await engine.import_items(project.id, rows.encode(), name="items.csv")
        import_s += time.perf_counter() - t0
        await engine.set_state(None, project.id, "live")
        print(f"project {p}: {count} items ({import_s:.1f} s so far)", file=sys.stderr)
    t0 = time.perf_counter()

    async def sign_up(w: int) -> int:
        lang = langs[w % len(langs)]
        user, _ = await engine.user_for("bench", str(w), f"w{w}", lang)
        if w % 4 == 0:
            await engine.set_languages(user.id, [lang, langs[(w + 1) % len(langs)]])
        return user.id

    ids: list[int] = []
    for start in range(0, n_workers, 500):
        batch = range(start, min(n_workers, start + 500))
        ids += await asyncio.gather(*(sign_up(w) for w in batch))
    users_s = time.perf_counter() - t0
    print(f"{n_workers} workers in {users_s:.1f} s", file=sys.stderr)
    return {"build_import_s": import_s, "build_users_s": users_s}, ids


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 2)


async def _answer(engine: Engine, clock: Clock, rng: random.Random, uid: int) -> float | None:
    """One pick and one answer; the pick's seconds, or None when nothing fits."""
    t = time.perf_counter()
    task = await engine.next_task(uid)
    took = time.perf_counter() - t
    if task is None:
        return None
    clock.tick()
    await engine.submit(uid, task.assignment.id, rng.choice("ab"))
    return took


async def closed_loop(
    engine: Engine, clock: Clock, workers: Sequence[int], concurrency: int, answers: int, seed: int
) -> dict[str, float]:
    rng = random.Random(seed)
    chosen = rng.sample(list(workers), min(concurrency, len(workers)))
    picks: list[float] = []
    quota = max(1, answers // len(chosen))

    async def loop(uid: int) -> None:
        for _ in range(quota):
            took = await _answer(engine, clock, rng, uid)
            if took is None:
                return
            picks.append(took)

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop(uid) for uid in chosen))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "answers": len(picks),
        "answers_per_second": round(len(picks) / elapsed, 1),
        # CPU seconds of this process (every thread): on a shared machine this, not the
        # wall clock, says what the code costs.
        "cpu_ms_per_answer": round(1000 * cpu / max(1, len(picks)), 2),
        "closed_pick_p50_ms": _pct(picks, 0.5),
        "closed_pick_p99_ms": _pct(picks, 0.99),
    }


async def open_loop(
    engine: Engine, clock: Clock, workers: Sequence[int], rate: float, answers: int, seed: int
) -> dict[str, float]:
    """Arrivals at fixed intervals, whether or not the earlier ones are done."""
    rng = random.Random(seed + 1)
    busy: set[int] = set()
    picks: list[float] = []
    pending: set[asyncio.Task[None]] = set()

    async def arrival(uid: int) -> None:
        try:
            took = await _answer(engine, clock, rng, uid)
            if took is not None:
                picks.append(took)
        finally:
            busy.discard(uid)

    t0 = time.perf_counter()
    for i in range(answers):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        uid = rng.choice(workers)
        while uid in busy:
            uid = rng.choice(workers)
        busy.add(uid)
        task = asyncio.create_task(arrival(uid))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    return {"p50_ms": _pct(picks, 0.5), "p99_ms": _pct(picks, 0.99), "open_answers": len(picks)}


async def io_bench(path: Path, n_items: int) -> dict[str, float]:
    """Import ``n_items`` into one project of a fresh SQLite file, then export it as CSV."""
    db = await open_store(path)
    engine = _engine(db, Clock(), 0)
    spec = ProjectSpec("io", TaskType.CHOICE, {"en": "Pick one"}, ("a", "b"), ("en",))
    project = await engine.create_project(None, spec)
    rows = "id,text,lang\n" + "".join(f"{i},item number {i},en\n" for i in range(n_items))
    t0 = time.perf_counter()
    await engine.import_items(project.id, rows.encode(), name="items.csv")
    import_s = time.perf_counter() - t0
    del rows
    print(f"io: imported {n_items} items in {import_s:.1f} s", file=sys.stderr)
    out_path = path.with_suffix(".csv")
    t0, cpu0 = time.perf_counter(), time.process_time()
    with out_path.open("w", encoding="utf-8", newline="") as out:
        exported = await engine.export(project.id, out, "csv")
    export_s, export_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    print(f"io: exported {exported} rows in {export_s:.1f} s", file=sys.stderr)
    await db.close()
    out_path.unlink()
    return {
        "import_s": round(import_s, 1),
        "export_s": round(export_s, 1),
        "export_cpu_s": round(export_cpu_s, 1),
    }


def _db_mb(path: Path) -> float:
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    return round(size / 2**20, 1)


async def _open(target: str, args: argparse.Namespace) -> Store:
    if is_postgres(target) or args.readers < 0:
        return await open_store(target)
    return await Database.open(target, readers=args.readers)


async def _open_built(
    target: str, args: argparse.Namespace, n_items: int
) -> tuple[Store, dict[str, float], list[int]]:
    """The database at ``target`` (a file or a URL), built unless a matching one is there."""
    langs = _langs(args.langs)
    marker = Path(f"{target}.bench.json") if not is_postgres(target) else None
    want = {"items": n_items, "projects": args.projects, "langs": args.langs}
    want["workers"] = args.workers
    if marker is not None and marker.exists():
        known = json.loads(marker.read_text())
        ids = known.pop("ids", [])
        if known == want:
            print(f"reusing {target}", file=sys.stderr)
            return await _open(target, args), {}, ids
    if marker is not None:
        for p in (Path(target), Path(f"{target}-wal"), Path(f"{target}-shm"), marker):
            p.unlink(missing_ok=True)
    db = await _open(target, args)
    built, ids = await build(db, n_items, args.projects, langs, args.workers)
    if marker is not None:
        marker.write_text(json.dumps({**want, "ids": ids}))
    return db, built, ids


def _process_main(
    url: str, args: argparse.Namespace, workers: list[int], share: int, index: int, q: Any
) -> None:
    async def go() -> dict[str, float]:
        db = await open_store(url)
        clock = Clock()
        engine = _engine(db, clock, args.seed + index)
        mine = workers[index :: args.processes]
        res = await closed_loop(
            engine, clock, mine, share, args.answers // args.processes, args.seed + index
        )
        await db.close()
        return res

    q.put(asyncio.run(go()))


def _processes(url: str, args: argparse.Namespace, workers: list[int]) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    share = max(1, args.concurrency // args.processes)
    procs = [
        ctx.Process(target=_process_main, args=(url, args, workers, share, i, q))
        for i in range(args.processes)
    ]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0
    answers = sum(int(r["answers"]) for r in results)
    return {
        "processes": args.processes,
        "answers": answers,
        "answers_per_second": round(sum(float(r["answers_per_second"]) for r in results), 1),
        "answers_per_second_wall": round(answers / wall, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "store": "postgresql" if args.db and is_postgres(args.db) else "sqlite",
        "items": args.items,
        "projects": args.projects,
        "langs": args.langs,
        "workers": args.workers,
    }
    with tempfile.TemporaryDirectory() as tmp:
        target = args.db or str(Path(tmp) / "bench.db")
        db, built, workers = await _open_built(target, args, args.items)
        out.update({k: round(v, 1) for k, v in built.items()})
        clock = Clock()
        engine = _engine(db, clock, args.seed)
        if args.processes > 1:
            if not is_postgres(target):
                raise SystemExit("--processes needs --db postgresql://...")
            await db.close()
            out.update(_processes(target, args, workers))
            db = await open_store(target)
        else:
            out.update(
                await closed_loop(
                    engine, clock, workers, args.concurrency, args.answers, args.seed
                )
            )
        print(f"closed loop: {out['answers_per_second']} answers/s", file=sys.stderr)
        if args.open_answers:
            out.update(await open_loop(engine, clock, workers, args.rate, args.open_answers, 1))
            print(f"open loop: p99 {out['p99_ms']} ms", file=sys.stderr)
        diag = await db.diagnostics()
        out["duplicate_assignments"] = diag.duplicate_assignments
        out["over_assigned_items"] = diag.over_assigned_items
        out["duplicate_credits"] = diag.duplicate_credits
        await db.close()
        if not is_postgres(target):
            out["db_mb"] = _db_mb(Path(target))
        if args.compare_items:
            small = args.compare_file or str(Path(tmp) / "bench_small.db")
            db, _, small_workers = await _open_built(small, args, args.compare_items)
            clock = Clock()
            engine = _engine(db, clock, args.seed)
            res = await open_loop(engine, clock, small_workers, args.rate, args.open_answers, 2)
            out["p99_ms_100k" if args.compare_items == 100_000 else "p99_ms_compare"] = res[
                "p99_ms"
            ]
            await db.close()
        if args.io_items:
            io = await io_bench(Path(tmp) / "io.db", args.io_items)
            out["io_items"] = args.io_items
            out["import_s"] = io["import_s"]
            out["export_s"] = io["export_s"]
            out["export_cpu_s"] = io["export_cpu_s"]
    return out


KEYS = ("answers_per_second", "p50_ms", "p99_ms", "p99_ms_100k", "db_mb")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--projects", type=int, default=20)
    ap.add_argument("--langs", type=int, default=8, help=f"languages (<= {len(ALL_LANGS)})")
    ap.add_argument("--workers", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=200, help="closed-loop workers at once")
    ap.add_argument("--answers", type=int, default=6000, help="closed-loop answers")
    ap.add_argument("--rate", type=float, default=300.0, help="open-loop arrivals per second")
    ap.add_argument("--open-answers", type=int, default=3000, help="open-loop answers (0: none)")
    ap.add_argument("--compare-items", type=int, default=0, help="open loop at this size too")
    ap.add_argument("--compare-file", default="", help="keep the comparison database here")
    ap.add_argument("--io-items", type=int, default=0, help="import/export this many items")
    ap.add_argument("--db-file", default="", help="SQLite file to build once and reuse")
    ap.add_argument("--db", default="", help="an empty postgresql:// database")
    ap.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        default="",
        help="postgresql: the --db URL, or POLYCROWD_DB (default: from --db)",
    )
    ap.add_argument("--processes", type=int, default=1, help="closed-loop processes (PostgreSQL)")
    ap.add_argument(
        "--readers", type=int, default=-1, help="SQLite reader connections (default: the store's)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.db = args.db or args.db_file
    if args.store == "postgresql":
        args.db = args.db or os.environ.get("POLYCROWD_DB", "")
        if not is_postgres(args.db):
            ap.error("--store postgresql needs --db postgresql://... (or POLYCROWD_DB)")
    if args.db and not is_postgres(args.db):
        args.db = os.path.abspath(args.db)
    result = asyncio.run(run(args))
    # the last stdout line has exactly the keys; the rest of the run goes to stderr
    keys = [k for k in KEYS if k in result]
    print(json.dumps({k: v for k, v in result.items() if k not in keys}), file=sys.stderr)
    print(json.dumps({k: result[k] for k in keys}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
