"""``polycrowd serve``: the read-only web dashboard with /metrics and /healthz."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable

from polycrowd.settings import Settings


def add_parser(cmd: Callable[[str, str, str], argparse.ArgumentParser]) -> None:
    sv = cmd(
        "serve",
        "Serve the web dashboard (login by a one-time link from the bot's /dashboard),"
        " /metrics and /healthz.",
        "POLYCROWD_DASHBOARD_URL=https://dash.example.org polycrowd serve --port 8080",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=8080, help="port (default 8080)")


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.logs import setup_logging
    from polycrowd.web.server import serve

    setup_logging(settings)
    logging.getLogger(__name__).info("dashboard on http://%s:%s", args.host, args.port)
    asyncio.run(serve(settings, args.host, args.port))
    return 0
