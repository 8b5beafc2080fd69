"""Dependency direction: the engine and handlers never import platforms or model libraries."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import polycrowd

PACKAGE = Path(polycrowd.__file__).parent
FORBIDDEN = {
    "engine": {
        "telegram",
        "discord",
        "torch",
        "transformers",
        "polycrowd.models",
        "polycrowd.bot",
        "polycrowd.handlers",
    },
    "handlers": {"telegram", "discord", "torch", "transformers", "polycrowd.bot"},
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_layers_do_not_import_what_they_must_not() -> None:
    bad = []
    for layer, forbidden in FORBIDDEN.items():
        for path in (PACKAGE / layer).rglob("*.py"):
            for name in _imports(path):
                if any(name == f or name.startswith(f + ".") for f in forbidden):
                    bad.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert bad == []


def test_importing_polycrowd_does_not_import_torch_or_platforms() -> None:
    code = (
        "import sys, polycrowd.cli, polycrowd.bot.app, polycrowd.models.checker,"
        " polycrowd.handlers.common\n"
        "bad = [m for m in ('torch', 'transformers', 'telegram', 'discord') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


# The store rule: SQL and database drivers live only in the store packages. -----------------

ROOT = PACKAGE.parents[1]
STORE_DIRS = (PACKAGE / "engine" / "store" / "sqlite", PACKAGE / "engine" / "store" / "postgres")
DRIVERS = ("sqlite3", "aiosqlite", "asyncpg", "psycopg", "psycopg2")
SQL = re.compile(
    r"\bSELECT\b[\s\S]+?\bFROM\b|\bINSERT\s+(?:OR\s+[A-Z]+\s+)?INTO\b|\bUPDATE\s+\w+\s+SET\b"
    r"|\bDELETE\s+FROM\b|\bCREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX|TRIGGER)\b|\bPRAGMA\b"
)


def _outside_store() -> list[Path]:
    """Our own code outside the store packages: the package and bench/, without the hidden
    folders a run leaves there (bench/.venv-bench holds crowd-kit and its dependencies)."""
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "bench").rglob("*.py")]
    return [
        f
        for f in files
        if not any(f.is_relative_to(d) for d in STORE_DIRS)
        and not any(part.startswith(".") for part in f.relative_to(ROOT).parts)
    ]


def _string_literals(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                v.value
                for v in node.values
                if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
            out.append((node.lineno, text))
    return out


def test_sql_lives_only_in_the_store_packages() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {SQL.search(text).group(0)[:40]!r}"  # type: ignore[union-attr]
        for path in _outside_store()
        for line, text in _string_literals(path)
        if SQL.search(text)
    ]
    assert bad == []


def test_database_drivers_are_imported_only_by_the_store_packages() -> None:
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _outside_store()
        for name in _imports(path)
        if name.split(".")[0] in DRIVERS
    ]
    assert bad == []


def test_the_store_rule_catches_sql_and_drivers() -> None:
    """The detectors above are not vacuous."""
    assert SQL.search("SELECT id FROM users WHERE id = ?")
    assert SQL.search("INSERT OR IGNORE INTO processed_updates(platform) VALUES (?)")
    assert SQL.search("UPDATE users SET balance = 0")
    assert SQL.search("DELETE FROM tokens")
    assert not SQL.search("Select at least one label.")
    assert not SQL.search("Reply with your answer as a message.")
    tree = "import aiosqlite\nfrom sqlite3 import connect\n"
    names = {
        a.name for n in ast.walk(ast.parse(tree)) if isinstance(n, ast.Import) for a in n.names
    }
    assert names & set(DRIVERS)


def test_the_engine_talks_to_stores_only_through_the_protocol() -> None:
    """Services, core, ledger and matching import store.base, never a store package."""
    concrete = ("polycrowd.engine.store.sqlite", "polycrowd.engine.store.postgres")
    bad = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in (PACKAGE / "engine").rglob("*.py")
        if not path.is_relative_to(PACKAGE / "engine" / "store")
        for name in _imports(path)
        if name.startswith(concrete)
    ]
    assert bad == []
