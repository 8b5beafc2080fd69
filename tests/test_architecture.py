"""Dependency direction: the engine and handlers never import platforms or model libraries."""

from __future__ import annotations

import ast
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
