"""A real PostgreSQL server for the tests: started once per session, stopped at the end.

``POLYCROWD_TEST_PG=postgresql://...`` uses a running server instead. Otherwise the Debian
server binaries (/usr/lib/postgresql/<version>/bin) or ``initdb``/``pg_ctl`` on PATH start a
throwaway cluster in a temporary folder on a free local port (as root, the cluster runs as
the ``postgres`` system user, since the server refuses to run as root). When none of this
works, :attr:`PostgresServer.error` says why, in one line, and the PostgreSQL half of the
suite is skipped with that line.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return None if initdb is None else Path(initdb).parent


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self) -> None:
        self.url = ""
        self.error = ""
        self._dir: Path | None = None
        self._pg_ctl: list[str] = []

    def start(self) -> None:
        external = os.environ.get("POLYCROWD_TEST_PG", "")
        if external:
            self.url = external
            return
        bindir = _bindir()
        if bindir is None:
            self.error = "no PostgreSQL server binaries (initdb) found"
            return
        as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        run_as: list[str] = []
        if as_root:
            if shutil.which("runuser") is None:
                self.error = "running as root and runuser is missing"
                return
            run_as = ["runuser", "-u", "postgres", "--"]
        folder = Path(tempfile.mkdtemp(prefix="polycrowd-pg-"))
        self._dir = folder
        try:
            if as_root:
                shutil.chown(folder, "postgres")
            port = _free_port()
            initdb = [str(bindir / "initdb"), "-D", str(folder / "data"), "-A", "trust"]
            subprocess.run(
                [*run_as, *initdb, "-U", "pc", "-E", "UTF8", "--no-sync"],
                check=True,
                capture_output=True,
                timeout=120,
            )
            options = (
                f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
                " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            self._pg_ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(folder / "data")]
            subprocess.run(
                [*self._pg_ctl, "-o", options, "-l", str(folder / "log"), "-w", "start"],
                check=True,
                capture_output=True,
                timeout=120,
            )
        except (OSError, subprocess.SubprocessError, LookupError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            line = detail.decode(errors="replace").strip().splitlines()[-1:] or [str(exc)]
            self.error = f"PostgreSQL could not start: {line[0]}"
            self._pg_ctl = []
            return
        self.url = f"postgresql://pc@127.0.0.1:{port}/postgres"

    def stop(self) -> None:
        if self._pg_ctl:
            subprocess.run(
                [*self._pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60
            )
            self._pg_ctl = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
