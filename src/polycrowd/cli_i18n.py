"""``polycrowd i18n check|extract|update|compile``: the translators' commands.

A thin layer over :mod:`polycrowd.i18n_tools` (stdlib only; nothing is imported from the
scanned sources). ``check`` prints one line per problem and exits 1: a message missing from
a catalog, a fuzzy or untranslated entry, placeholders that differ from the source, a lost
/command, a stale template.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Protocol


class FormatterFactory(Protocol):
    def __call__(self, prog: str) -> argparse.HelpFormatter: ...


EXAMPLES = {
    "check": "polycrowd i18n check",
    "extract": "polycrowd i18n extract",
    "update": "polycrowd i18n update --lang fr",
    "compile": "polycrowd i18n compile",
}
HELP = {
    "check": "Fail (exit 1, one line per problem) on a missing, fuzzy or untranslated message"
    " or on placeholders that differ from the source.",
    "extract": "Write locales/polycrowd.pot from the sources.",
    "update": "Merge the .pot into every catalog (new messages arrive untranslated).",
    "compile": "Write the .mo files beside the .po files.",
}


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], fmt: FormatterFactory
) -> None:
    """Register ``polycrowd i18n`` on the main parser's subcommands."""
    p = sub.add_parser(
        "i18n",
        help="Check, extract and update the interface translations.",
        description="Check, extract and update the gettext catalogs (locales/<lang>/...).",
        epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()),
        formatter_class=fmt,
    )
    actions = p.add_subparsers(dest="i18n_action", metavar="ACTION", required=True)
    for name, text in HELP.items():
        a = actions.add_parser(
            name,
            help=text,
            description=text,
            epilog=f"example:\n  {EXAMPLES[name]}",
            formatter_class=fmt,
        )
        a.add_argument("--package", type=Path, help="sources to scan (default: polycrowd)")
        a.add_argument("--locales", type=Path, help="catalog folder (default: PACKAGE/locales)")
        if name == "update":
            a.add_argument(
                "-l", "--lang", action="append", default=[], help="also create this catalog"
            )
            a.add_argument("--no-obsolete", action="store_true", help="drop removed messages")


def run(args: argparse.Namespace) -> int:
    from polycrowd import i18n_tools as tools

    package_dir: Path = (args.package or tools.PACKAGE_DIR).resolve()
    if not package_dir.is_dir():
        print(f"polycrowd: no such folder: {package_dir}", file=sys.stderr)
        return 2
    locales_dir: Path = (args.locales or package_dir / "locales").resolve()
    action: str = args.i18n_action
    if action == "extract":
        path, catalog, problems, changed = tools.write_pot(
            package_dir, locales_dir / tools.POT_NAME
        )
        plural = sum(1 for m in catalog.messages.values() if m.plural is not None)
        state = "written" if changed else "unchanged"
        print(f"{path}: {len(catalog.messages)} messages ({plural} plural), {state}")
        for problem in problems:
            print(f"warning: {problem}", file=sys.stderr)
        return 0
    if not (locales_dir / tools.POT_NAME).is_file() and action == "update":
        print(f"polycrowd: no {tools.POT_NAME} in {locales_dir}: run extract", file=sys.stderr)
        return 2
    if action == "update":
        langs = [*tools.LANGUAGES, *args.lang]
        written = tools.update(locales_dir, langs, keep_obsolete=not args.no_obsolete)
        for path in written:
            print(f"updated {path}")
        if not written:
            print("all catalogs up to date")
        return 0
    if action == "compile":
        for path in tools.compile_catalogs(locales_dir):
            print(f"compiled {path}")
        return 0
    problems = tools.check(package_dir, locales_dir)
    for problem in problems:
        print(str(problem).replace("\n", "\\n"))
    if problems:
        print(f"polycrowd: {len(problems)} translation problem(s)", file=sys.stderr)
        return 1
    count = len(tools.catalog_paths(locales_dir))
    print(f"ok: {len(tools.extract(package_dir)[0].messages)} messages in {count} catalogs")
    return 0
