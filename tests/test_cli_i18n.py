"""``polycrowd i18n check|extract|update``: one test per kind of failure, on a copy of the
shipped catalogs (the sources scanned are the real ones)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from polycrowd import i18n_tools as tools
from polycrowd.cli import main
from polycrowd.i18n import LOCALES_DIR

MSGID = "Your balance: %(balance)s"


@pytest.fixture
def locales(tmp_path: Path) -> Path:
    copy = tmp_path / "locales"
    shutil.copytree(LOCALES_DIR, copy, ignore=shutil.ignore_patterns("*.mo"))
    return copy


def _edit(locales: Path, lang: str, change: Callable[[tools.Message], None]) -> None:
    path = locales / lang / "LC_MESSAGES" / "polycrowd.po"
    catalog = tools.read_po(path.read_text("utf-8"))
    change(catalog.messages[MSGID])
    path.write_text(tools.format_po(catalog), "utf-8")


def _check(locales: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    rc = main(["i18n", "check", "--locales", str(locales)])
    return rc, capsys.readouterr().out.splitlines()


def test_check_passes_on_the_shipped_catalogs(
    locales: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = _check(locales, capsys)
    assert rc == 0 and out[-1].startswith("ok: ")


def test_check_fails_on_a_missing_entry(locales: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = locales / "zh" / "LC_MESSAGES" / "polycrowd.po"
    catalog = tools.read_po(path.read_text("utf-8"))
    del catalog.messages[MSGID]
    path.write_text(tools.format_po(catalog), "utf-8")
    rc, out = _check(locales, capsys)
    assert rc == 1
    assert out == [f"zh (polycrowd.po): missing msgid {MSGID!r}"]


def test_check_fails_on_a_fuzzy_entry(locales: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(locales, "fr", lambda m: m.flags.add("fuzzy"))
    rc, out = _check(locales, capsys)
    assert rc == 1 and out == [f"fr (polycrowd.po): fuzzy msgid {MSGID!r}"]


def test_check_fails_on_an_untranslated_entry(
    locales: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def clear(m: tools.Message) -> None:
        m.msgstr = [""]

    _edit(locales, "hi", clear)
    rc, out = _check(locales, capsys)
    assert rc == 1 and out == [f"hi (polycrowd.po): untranslated msgid {MSGID!r}"]


def test_check_fails_on_a_plural_with_a_missing_form(
    locales: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plural entry with one of its forms empty is untranslated."""
    path = locales / "fr" / "LC_MESSAGES" / "polycrowd.po"
    catalog = tools.read_po(path.read_text("utf-8"))
    catalog.messages["%(n)s answer"].msgstr[1] = ""
    path.write_text(tools.format_po(catalog), "utf-8")
    rc, out = _check(locales, capsys)
    assert rc == 1 and out == ["fr (polycrowd.po): untranslated msgid '%(n)s answer'"]


@pytest.mark.parametrize(
    ("wrong", "detail"),
    [
        ("Votre solde : %(solde)s", "missing balance; unknown solde"),
        ("Votre solde", "missing balance"),
    ],
)
def test_check_fails_on_placeholders_that_differ(
    locales: Path, capsys: pytest.CaptureFixture[str], wrong: str, detail: str
) -> None:
    def rename(m: tools.Message) -> None:
        m.msgstr = [wrong]

    _edit(locales, "fr", rename)
    rc, out = _check(locales, capsys)
    assert rc == 1
    assert out == [f"fr (polycrowd.po) {MSGID!r}: placeholders differ ({detail}) in {MSGID!r}"]


def test_every_problem_is_one_line(locales: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(locales, "fr", lambda m: m.flags.add("fuzzy"))
    _edit(locales, "zh", lambda m: m.msgstr.__setitem__(0, "余额：%(x)s"))
    rc, out = _check(locales, capsys)
    assert rc == 1 and len(out) == 2
    assert sorted(line.split()[0] for line in out) == ["fr", "zh"]


def test_extract_and_update_serve_translators(
    locales: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["i18n", "extract", "--locales", str(locales)]) == 0
    assert "messages" in capsys.readouterr().out
    assert main(["i18n", "update", "--locales", str(locales), "--lang", "de"]) == 0
    out = capsys.readouterr().out
    assert "de/LC_MESSAGES/polycrowd.po" in out
    german = tools.read_po((locales / "de/LC_MESSAGES/polycrowd.po").read_text("utf-8"))
    assert german.header["Plural-Forms"] == tools.PLURAL_FORMS["de"]
    assert not any(m.translated() for m in german.active())
    rc, lines = _check(locales, capsys)
    assert rc == 1 and all(line.startswith("de ") for line in lines)
    assert len(lines) == len(german.active())


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("check", "extract", "update"):
        with pytest.raises(SystemExit) as exit_:
            main(["i18n", action, "--help"])
        assert exit_.value.code == 0
        assert f"polycrowd i18n {action}" in capsys.readouterr().out


def test_missing_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["i18n", "check", "--package", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("polycrowd: no such folder") and "\n" not in err
