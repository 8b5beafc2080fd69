"""The ``polycrowd`` command line.

Every command takes ``--db PATH`` (or POLYCROWD_DB). Errors are one line on stderr and exit
code 2; the database is left as it was (every change is one transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from polycrowd import __version__, cli_model
from polycrowd.settings import Settings, SettingsError

EXIT_USAGE = 2
#: ``project`` actions that only read: their database is opened read-only (mode=ro).
READONLY_PROJECT_ACTIONS = frozenset({"list", "status"})


class CliError(Exception):
    """A one-line error for the user."""


def _fmt(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="polycrowd",
        description="Crowdsourcing through chat: projects, workers in Telegram and Discord,"
        " a checker model, quality control and an audited ledger.",
        epilog="examples:\n  polycrowd demo\n  polycrowd project create spec.yaml --db my.db\n"
        "  polycrowd import 1 items.csv --db my.db\n  polycrowd run",
        formatter_class=_fmt,
    )
    p.add_argument("--version", action="version", version=f"polycrowd {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help_: str, example: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=f"example:\n  {example}",
            formatter_class=_fmt,
        )
        sp.add_argument(
            "--db",
            help="SQLite file or postgresql://user@host/db URL"
            " (default: $POLYCROWD_DB or polycrowd.db)",
        )
        return sp

    from polycrowd.cli_db import add_parser as add_db_parser

    add_db_parser(cmd)
    d = cmd("demo", "Run the whole loop offline and print a summary.", "polycrowd demo --json")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.add_argument("--workers", type=int, default=60, help="simulated workers (default 60)")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument(
        "--rules-only",
        action="store_true",
        help="check answers with the rules alone (default: rules + the multilingual-e5-small"
        " model when the [ml] extra is installed)",
    )

    cmd(
        "run",
        "Start the configured bots (Telegram, Discord) and the scheduler.",
        "POLYCROWD_TELEGRAM_TOKEN=123:abc polycrowd run",
    )

    pr = cmd(
        "project",
        "Create, list, launch, pause or inspect projects.",
        "polycrowd project create spec.yaml",
    )
    pr.add_argument("action", choices=["create", "list", "launch", "pause", "status"])
    pr.add_argument("target", nargs="?", help="spec file (create) or project id")
    pr.add_argument("--json", action="store_true", help="print JSON")

    im = cmd(
        "import",
        "Import items (CSV or JSONL) into a project; all rows or none.",
        "polycrowd import 1 items.csv",
    )
    im.add_argument("project", type=int)
    im.add_argument("file")
    im.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file name")
    im.add_argument("--json", action="store_true", help="print JSON")

    ex = cmd(
        "export",
        "Export a project's results with confidence and worker answers.",
        "polycrowd export 1 --format jsonl --output results.jsonl",
    )
    ex.add_argument("project", type=int)
    ex.add_argument(
        "--format", choices=["csv", "jsonl"], help="default: from --output's extension, else csv"
    )
    ex.add_argument("--output", "-o", help="file to write (default: stdout)")
    ex.add_argument("--method", default="auto", help="aggregation method before export")

    ag = cmd(
        "aggregate",
        "Aggregate a TSV of answers (item, worker, label) into labels.",
        "polycrowd aggregate --input labels.tsv --method ds --gold gold.tsv --output results.tsv",
    )
    ag.add_argument("--input", required=True, help="TSV with columns item, worker, label")
    ag.add_argument(
        "--method", default="auto", help="auto (default) or mv, wmv, ds, ocds, bds, glad, mace"
    )
    ag.add_argument("--gold", help="TSV with columns item, label: prints accuracy")
    ag.add_argument("--output", required=True, help="TSV to write: item, label, confidence")
    ag.add_argument(
        "--workers", help="TSV of worker accuracies (default: OUTPUT.workers.tsv next to it)"
    )
    ag.add_argument("--json", action="store_true", help="print JSON")

    au = cmd(
        "audit",
        "Verify the ledger: hash chain, MACs (POLYCROWD_LEDGER_KEY or the key file beside the"
        " database), balances, append-only triggers and the latest signed checkpoint.",
        "polycrowd audit --json",
    )
    au.add_argument("--json", action="store_true", help="print JSON")

    ch = cmd(
        "checker",
        "Train or evaluate a project's checker model.",
        "polycrowd checker train 1 --output models/",
    )
    ch.add_argument("action", choices=["train", "eval"])
    ch.add_argument("project", type=int)
    ch.add_argument("--output", default="checker-models", help="folder for model versions")
    ch.add_argument("--model", help="model folder to evaluate or start from")
    ch.add_argument("--epochs", type=int, default=3)
    ch.add_argument("--json", action="store_true", help="print JSON")

    cli_model.add_parsers(cmd)

    us = cmd(
        "user",
        "Give a user a role, block or unblock them.",
        "polycrowd user grant telegram:12345 requester",
    )
    us.add_argument("action", choices=["grant", "block", "unblock", "show"])
    us.add_argument("user", help="user id, pseudonym, or platform:id")
    us.add_argument("value", nargs="?", help="role (grant) or reason (block)")
    us.add_argument("--json", action="store_true", help="print JSON")

    from polycrowd.cli_db import add_backup_parsers

    add_backup_parsers(cmd)  # backup and restore

    from polycrowd.cli_i18n import add_parser as add_i18n

    add_i18n(sub, _fmt)

    from polycrowd.cli_models import add_models_parser

    add_models_parser(sub, _fmt)

    from polycrowd import cli_report, cli_web

    cli_report.add_parser(cmd)
    cli_web.add_parser(cmd)
    return p


@contextmanager
def _progress(label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on a terminal; nothing when stderr is piped."""
    if not sys.stderr.isatty():
        yield lambda _n: None
        return
    from rich.progress import Progress

    with Progress(transient=True) as prog:
        task = prog.add_task(label, total=total)
        yield lambda n: prog.update(task, completed=n)


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, default=str))


async def _with_engine(
    settings: Settings,
    fn: Callable[[Any], Awaitable[Any]],
    create: bool = False,
    readonly: bool = False,
) -> Any:
    """Run ``fn(engine)`` on the ``--db`` store. ``create``: a missing or empty file becomes a
    new database; ``readonly``: opened so that nothing can be written (reports, audit)."""
    from polycrowd.engine.core import Engine
    from polycrowd.engine.language import LanguageDetector
    from polycrowd.engine.ledger_key import LedgerKeyring
    from polycrowd.engine.store import open_store
    from polycrowd.models.rules import RulesChecker

    db = await open_store(
        settings.db, create=create, readonly=readonly, **settings.store_options()
    )
    try:
        detector = LanguageDetector("script", settings.languages)
        keyring = LedgerKeyring.for_store(settings.db, settings)
        engine = Engine(db, RulesChecker(), detector.detect, keyring=keyring)
        return await fn(engine)
    finally:
        await db.close()


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.demo import run_demo, summary

    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    from polycrowd.models.checker import ml_available

    use_model = not args.rules_only and ml_available()
    base = Settings.from_env({"POLYCROWD_CHECKER_HEAD": "similarity"} if use_model else {})
    say = (lambda m: print(f"… {m}", file=sys.stderr)) if sys.stderr.isatty() else None
    result = asyncio.run(
        run_demo(
            workers=args.workers, seed=args.seed, settings=base, db_path=args.db, progress=say
        )
    )
    if args.json:
        _print_json(result)
    else:
        print(summary(result))
    ok = (
        result["ledger_ok"]
        and result["duplicate_assignments"] == 0
        and result["over_assigned_items"] == 0
    )
    return 0 if ok else 1


def _project(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.engine.io import load_spec

    async def go(engine: Any) -> Any:
        if args.action == "create":
            if not args.target:
                raise CliError("give the spec file: polycrowd project create spec.yaml")
            project = await engine.create_project(None, load_spec(args.target))
            return {"project": project.id, "name": project.name, "state": project.state}
        if args.action == "list":
            return [
                {"project": p.id, "name": p.name, "state": p.state, "type": p.task_type}
                for p in await engine.projects()
            ]
        pid = _project_id(args.target)
        if args.action == "status":
            from polycrowd.engine.services import prelabels

            project = await engine.get_project(pid)
            async with engine.db.read() as tx:
                loop = await prelabels.status(tx, project)
            return {
                **(await engine.status(pid)).as_dict(),
                "checker": await engine.checker_stats(pid),
                "loop": loop.as_dict(),
            }
        state = "live" if args.action == "launch" else "paused"
        project = await engine.set_state(None, pid, state)
        return {"project": project.id, "state": project.state}

    create, readonly = args.action == "create", args.action in READONLY_PROJECT_ACTIONS
    out = asyncio.run(_with_engine(settings, go, create=create, readonly=readonly))
    if args.json:
        _print_json(out)
    elif isinstance(out, list):
        for row in out:
            print(f"#{row['project']}\t{row['state']}\t{row['type']}\t{row['name']}")
        if not out:
            print("no projects")
    else:
        print("  ".join(f"{k}={v}" for k, v in out.items()))
    return 0


def _project_id(raw: str | None) -> int:
    if raw is None or not raw.isdigit():
        raise CliError("give a project id, e.g. polycrowd project status 1")
    return int(raw)


def _import(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.engine.io import ImportLimits

    limits = ImportLimits(settings.max_import_rows, settings.max_upload_bytes)

    async def go(engine: Any) -> Any:
        with _progress("importing") as bar:
            return await engine.import_items(
                args.project, Path(args.file), args.format, progress=bar, limits=limits
            )

    report = asyncio.run(_with_engine(settings, go))
    out = {"project": report.project_id, "imported": report.imported, "gold": report.gold}
    if args.json:
        _print_json(out)
    else:
        print(
            f"imported {report.imported} items ({report.gold} gold) into project"
            f" {report.project_id}"
        )
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.engine.aggregation import METHODS
    from polycrowd.engine.io import write_results

    methods = ("auto", *METHODS)
    if args.method not in methods:
        raise CliError(f"unknown method '{args.method}': use one of {', '.join(methods)}")
    # the target is checked before anything is aggregated: a refusal changes nothing
    target = _export_target(args.output) if args.output else None
    fmt = args.format or _export_format(args.output)

    async def go(engine: Any) -> Any:
        await engine.get_project(args.project)
        with _progress("aggregating"):
            await engine.aggregate_project(args.project, args.method)
        return await engine.export_rows(args.project)

    rows = asyncio.run(_with_engine(settings, go))
    if target is None:
        write_results(rows, sys.stdout, fmt)
        return 0
    n = _write_export(target, args.output, rows, fmt)
    print(f"wrote {n} results to {args.output}", file=sys.stderr)
    return 0


def _export_format(output: str | None) -> str:
    """--format left out: from the output's extension (stdout: CSV)."""
    if output is None:
        return "csv"
    suffix = Path(output).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise CliError(
        f"cannot tell the format of {output} from its extension: name it .csv or .jsonl,"
        " or give --format csv|jsonl"
    )


def _export_target(output: str) -> Path:
    """The file the export replaces. A symlink is followed (the link stays a link and its
    target gets the results); a FIFO, a device or a folder is refused: export writes regular
    files only (to pipe the results, leave out --output and redirect stdout)."""
    import os
    import stat

    real = Path(output).resolve() if Path(output).is_symlink() else Path(output)
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise CliError(
            f"{output} is not a regular file; export writes files only"
            " (leave out --output to write to stdout)"
        )
    if not real.parent.is_dir():
        raise CliError(f"cannot write {output}: the folder {real.parent} does not exist")
    return real


def _write_export(target: Path, output: str, rows: Any, fmt: str) -> int:
    """Write beside the target, then rename over it: a reader never sees half a file. The
    temporary file is an implementation detail: errors name the output, never it."""
    import os
    import tempfile

    from polycrowd.engine.io import write_results

    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            n = write_results(rows, fh, fmt)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        tmp = ""
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
    return n


def _aggregate(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.engine.aggregation import aggregate_tsv

    with _progress("aggregating"):
        out = aggregate_tsv(args.input, args.method, args.output, args.gold, args.workers)
    if args.json:
        _print_json(out)
    else:
        acc = out.get("accuracy")
        line = f"{out['items']} items aggregated with {out['method']} -> {args.output}"
        if acc is not None:
            line += f"; accuracy {acc:.4f}, calibration error {out['ece']:.4f}"
        print(line)
        print(f"worker accuracies -> {out['workers_output']}")
    return 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    async def go(engine: Any) -> Any:
        return await engine.audit()

    from polycrowd.i18n import Translator

    report = asyncio.run(_with_engine(settings, go, readonly=True))
    translator = Translator(default=settings.default_language)
    lang = translator.normalize(settings.default_language)
    if args.json:
        _print_json(report.as_dict())
    elif report.ok:
        signed = "MACs verified" if report.authenticated else "unauthenticated"
        checkpoint = f"checkpoint {report.checkpoint}" if report.checkpoint else "no checkpoint"
        print(f"ledger OK: {report.entries} entries, total {report.total}; {signed}, {checkpoint}")
    if not args.json:
        for warning in report.warnings:
            print(f"polycrowd: warning: {translator.render(warning, lang)}", file=sys.stderr)
    if not report.ok:
        for problem in report.problems:  # one line each
            line = translator.render(problem, lang).replace("\n", " ")
            print(f"polycrowd: ledger broken: {line}", file=sys.stderr)
        return 1
    return 0


USER_PLATFORMS = ("telegram", "discord")  # numeric platform user ids


def _user(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.engine.types import Role

    if args.action == "grant" and args.value not in {r.value for r in Role}:
        raise CliError("role must be worker, requester, moderator or admin")
    ref = args.user.strip()
    platform, sep, ext = ref.partition(":")
    if sep and platform not in USER_PLATFORMS:
        raise CliError(f"unknown platform '{platform}': use {' or '.join(USER_PLATFORMS)}")
    if sep and not (ext.isascii() and ext.isdigit() and len(ext) <= 20):
        raise CliError(f"a {platform} user id is a number, e.g. {platform}:12345")
    if not sep and ref.isdigit() and len(ref) > 18:
        raise CliError(f"no such user: {args.user}")

    async def go(engine: Any) -> Any:
        user = await engine.find_user(ref)
        if user is None:
            if not sep or args.action != "grant":
                raise CliError(f"no such user: {args.user}")
            user, _ = await engine.user_for(platform, ext)
        if args.action == "grant":
            await engine.bootstrap_role(user.id, Role(args.value))
        elif args.action == "block":
            await engine.set_status(None, user.id, "blocked", args.value or "blocked")
        elif args.action == "unblock":
            await engine.set_status(None, user.id, "active")
        u = await engine.get_user(user.id)
        return {
            "user": u.id,
            "pseudonym": u.pseudonym,
            "role": u.role.value,
            "status": u.status,
            "balance": u.balance,
        }

    out = asyncio.run(_with_engine(settings, go))
    if args.json:
        _print_json(out)
    else:
        print("  ".join(f"{k}={v}" for k, v in out.items()))
    return 0


def _backup(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.cli_db import backup_command

    return backup_command(args, settings, CliError)


def _restore(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.cli_db import restore_command

    return restore_command(args, settings, CliError)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.bot.app import run
    from polycrowd.bot.startup import StartupError, check_settings
    from polycrowd.logs import setup_logging

    check_settings(settings)  # before the log level is used
    setup_logging(settings)
    try:
        asyncio.run(run(settings))
    except StartupError as exc:
        raise CliError(str(exc)) from None
    return 0


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.cli_db import db_command

    return db_command(args, settings, CliError)


def _checker(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.checker_cli import checker_command

    return checker_command(args, settings)


def _i18n(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.cli_i18n import run

    return run(args)


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from polycrowd.cli_models import models_command

    return models_command(args, settings)


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "demo": _demo,
    "run": _run,
    "project": _project,
    "import": _import,
    "export": _export,
    "aggregate": _aggregate,
    "audit": _audit,
    "user": _user,
    "backup": _backup,
    "restore": _restore,
    "checker": _checker,
    "i18n": _i18n,
    "models": _models,
    "db": _db,
    "report": lambda a, s: _lazy("polycrowd.cli_report", "report_command")(a, s),
    "serve": lambda a, s: _lazy("polycrowd.cli_web", "serve_command")(a, s),
}
COMMANDS.update(cli_model.COMMANDS)


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace, Settings], int]:
    import importlib

    fn: Callable[[argparse.Namespace, Settings], int] = getattr(
        importlib.import_module(module), name
    )
    return fn


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run one command, and turn every failure into one line on stderr (exit 2)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    settings: Settings | None = None
    try:
        from polycrowd.engine.aggregation import AggregationInputError
        from polycrowd.engine.core import EngineError
        from polycrowd.engine.io import InputError
        from polycrowd.engine.store import StoreError
        from polycrowd.logs import install_redaction

        known = (CliError, SettingsError, InputError, EngineError, StoreError)
        try:
            settings = Settings.from_env().with_db(getattr(args, "db", None))
            install_redaction(settings)
            return COMMANDS[args.command](args, settings)
        except (*known, AggregationInputError) as exc:
            _fail(str(exc), settings)
            return EXIT_USAGE
    except KeyboardInterrupt:
        _fail("interrupted", settings)
        return 130
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), settings)
        return EXIT_USAGE
    except Exception as exc:  # the boundary: never a traceback unless asked for
        if settings is not None and settings.debug:
            import traceback

            _fail("".join(traceback.format_exception(exc)), settings, one_line=False)
        _fail(
            f"internal error: {type(exc).__name__}: {exc}"
            " (set POLYCROWD_DEBUG=1 for the traceback)",
            settings,
        )
        return EXIT_USAGE


def _fail(message: str, settings: Settings | None, *, one_line: bool = True) -> None:
    """``polycrowd: <message>`` on stderr, tokens cut out, on one line unless told."""
    from polycrowd.logs import redact, secret_values

    text = redact(message, secret_values(settings))
    if one_line:
        text = " ".join(text.split("\n")).strip()
        print(f"polycrowd: {text}", file=sys.stderr)
    else:
        print(text.rstrip("\n"), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
