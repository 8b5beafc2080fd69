"""gettext catalogs: extraction, completeness, placeholders, plurals and the Translator.

If a test here fails because you added a user-visible string, refresh the catalogs and
translate what is new (empty ``msgstr`` in every ``locales/<lang>/LC_MESSAGES/polycrowd.po``)::

    python -m polycrowd.i18n_tools extract
    python -m polycrowd.i18n_tools update
    python -m polycrowd.i18n_tools check
"""

from __future__ import annotations

import gettext
import html
import io
import re
import shutil
from pathlib import Path

import pytest

from polycrowd import i18n_tools as tools
from polycrowd.i18n import (
    FSI,
    LOCALES_DIR,
    LRI,
    PDI,
    Msg,
    Translator,
    compile_mo,
    isolate,
    parse_po,
)
from polycrowd.models.rules import REASONS

SHIPPED = ("es", "fr", "pt", "ru", "zh", "ar", "hi", "id", "tr")
REFRESH = (
    "run: python -m polycrowd.i18n_tools extract && python -m polycrowd.i18n_tools update, "
    "translate the empty msgstr entries, then python -m polycrowd.i18n_tools check"
)


@pytest.fixture(scope="module")
def source() -> tools.Catalog:
    catalog, _ = tools.extract()
    return catalog


@pytest.fixture(scope="module")
def translator() -> Translator:
    return Translator()


def _catalog_text(lang: str) -> str:
    return (LOCALES_DIR / lang / "LC_MESSAGES" / "polycrowd.po").read_text(encoding="utf-8")


_COMMAND_IN_TEXT = re.compile(r"(?<![\w/.])/[a-z][a-z0-9_]*")


def _dummy_params(*texts: str) -> dict[str, object]:
    return {name: f"<{name}>" for t in texts for name in tools.placeholders(t)}


# -- (a) extraction -------------------------------------------------------------------------
def test_extraction_finds_known_messages(source: tools.Catalog) -> None:
    for msgid in (
        "Accepted. Thank you!",
        "Unknown command. Send /help to see what I can do.",
        "This button is no longer valid.",
        "What I can do",  # a command description
        "Your accuracy on check questions is too low for this project, so it is paused for you.",
    ):
        assert msgid in source.messages, msgid
    answer = source.messages["%(n)s answer"]
    assert answer.plural == "%(n)s answers"
    assert "%(n)s answers" not in source.messages  # the plural id is not a msgid of its own
    assert any(ref.startswith("src/polycrowd/handlers/worker.py:") for ref in answer.refs)
    assert "python-format" in answer.flags


def test_extraction_finds_every_checker_reason(source: tools.Catalog) -> None:
    assert set(REASONS) <= set(source.messages)


def test_extraction_skips_placeholder_only_templates(source: tools.Catalog) -> None:
    assert "%(text)s" not in source.messages
    assert "/%(cmd)s — %(desc)s" not in source.messages
    assert all(tools.has_words(m) for m in source.messages)


def test_extraction_patterns(tmp_path: Path) -> None:
    pkg = tmp_path / "src" / "fakepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "consts.py").write_text('ONE = N_("%(n)s apple")\nMANY = "%(n)s apples"\n')
    (pkg / "sub" / "mod.py").write_text(
        "from fakepkg.consts import MANY, ONE\n"
        'TITLE = N_("A title")\n'
        "def f(x, n):\n"
        '    Msg("Plain literal")\n'
        '    Msg(N_("%(n)s pear"), plural=N_("%(n)s pears"), n=n)\n'
        '    Msg("%(n)s plum", {}, "%(n)s plums", n)\n'
        "    Msg(ONE, plural=MANY, n=n)\n"
        '    ngettext("%(n)s fig", "%(n)s figs", n)\n'
        '    Msg.raw("not a message")\n'
        '    Msg("%(text)s", {"text": x})\n'
        '    Msg(f"Hello {x}")\n'
        "    N_(x)\n"
        "    Msg(x.msgid, x.params)\n"
    )
    catalog, problems = tools.extract(pkg, ref_base=tmp_path)
    got = {k: m.plural for k, m in catalog.messages.items()}
    assert got == {
        "A title": None,
        "Plain literal": None,
        "%(n)s apple": "%(n)s apples",
        "%(n)s pear": "%(n)s pears",
        "%(n)s plum": "%(n)s plums",
        "%(n)s fig": "%(n)s figs",
    }
    assert catalog.messages["Plain literal"].refs == ["src/fakepkg/sub/mod.py:4"]
    assert catalog.messages["%(n)s pear"].refs == ["src/fakepkg/sub/mod.py:5"]
    bad = sorted(p.where for p in problems)
    assert bad == ["src/fakepkg/sub/mod.py:11", "src/fakepkg/sub/mod.py:12"]


# -- (b) every message translated in every catalog ----------------------------------------------
def test_all_languages_are_shipped() -> None:
    from polycrowd.handlers.worker import LANGUAGE_NAMES

    assert set(Translator().languages) <= set(LANGUAGE_NAMES)  # workers can pick every one
    assert set(SHIPPED) <= set(tools.catalog_paths(LOCALES_DIR))
    assert (LOCALES_DIR / "polycrowd.pot").is_file()
    assert set(SHIPPED) <= set(Translator().languages)


@pytest.mark.parametrize("lang", SHIPPED)
def test_every_message_is_translated(source: tools.Catalog, lang: str) -> None:
    runtime = parse_po(_catalog_text(lang))  # what Translator actually loads
    nplurals = tools.nplurals_of(runtime[""]) or 0
    missing: list[str] = []
    for msgid, msg in source.messages.items():
        if msg.plural is None:
            if not runtime.get(msgid):
                missing.append(msgid)
        else:
            key = msgid + "\x00" + msg.plural
            if any(not runtime.get((key, i)) for i in range(nplurals)):
                missing.append(f"{msgid} / {msg.plural}")
    assert not missing, f"{lang}: {len(missing)} untranslated; {REFRESH}\n" + "\n".join(missing)


@pytest.mark.parametrize("lang", SHIPPED)
def test_no_english_copies(lang: str) -> None:
    """A message of two or more words is translated, not copied (the interface names such
    as "Telegram" or "/task" may stay as they are inside the translation)."""
    catalog = tools.read_po(_catalog_text(lang))
    copies = [
        m.msgid
        for m in catalog.active()
        if len(re.findall(r"[A-Za-z]{2,}", tools._FORMAT_TOKEN.sub("", m.msgid))) >= 2
        and any(form in (m.msgid, m.plural) for form in m.msgstr)
    ]
    assert not copies, f"{lang}: English copies: {copies}"


def test_tool_check_is_clean() -> None:
    problems = tools.check()
    assert not problems, REFRESH + "\n" + "\n".join(map(str, problems))


def test_check_fails_when_a_new_string_is_not_translated(tmp_path: Path) -> None:
    pkg = tmp_path / "polycrowd"
    shutil.copytree(tools.PACKAGE_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__", "*.mo"))
    (pkg / "newfeature.py").write_text(
        'from polycrowd.i18n import N_\nHELLO = N_("A brand new greeting")\n'
    )
    problems = tools.check(pkg)
    assert {p.where.split()[0] for p in problems if "A brand new greeting" in p.text} >= set(
        SHIPPED
    )
    assert tools.main(["--package", str(pkg), "check"]) == 1
    # update adds it untranslated, so check still fails until someone translates it
    assert tools.main(["--package", str(pkg), "extract"]) == 0
    assert tools.main(["--package", str(pkg), "update"]) == 0
    po = read_catalog(pkg / "locales" / "ru" / "LC_MESSAGES" / "polycrowd.po")
    assert po.messages["A brand new greeting"].msgstr == [""]
    assert any("untranslated" in p.text for p in tools.check(pkg))


def read_catalog(path: Path) -> tools.Catalog:
    return tools.read_po(path.read_text(encoding="utf-8"))


# -- (c) placeholders, commands, headers ---------------------------------------------------------
@pytest.mark.parametrize("lang", SHIPPED)
def test_placeholders_match(lang: str) -> None:
    catalog = tools.read_po(_catalog_text(lang))
    wrong: list[str] = []
    for msg in catalog.active():
        source_names = tools.placeholders(msg.msgid)
        for form in filter(None, msg.msgstr):
            names = tools.placeholders(form)
            if msg.plural is None:
                ok = names == source_names
            else:
                allowed = source_names | tools.placeholders(msg.plural)
                required = allowed if "n" in source_names else allowed - {"n"}
                ok = required <= names <= allowed
            if not ok or (tools.format_errors(form) and "%" in msg.msgid):
                wrong.append(f"{msg.msgid!r} -> {form!r}")
    assert not wrong, "\n".join(wrong)
    assert not [
        p for m in catalog.active() for p in tools.check_translation(m, f"{lang} {m.msgid!r}")
    ]


@pytest.mark.parametrize("lang", SHIPPED)
def test_every_translation_renders(
    source: tools.Catalog, translator: Translator, lang: str
) -> None:
    """Every translation formats with the msgid's parameters (no silent English fallback)."""
    cat = translator.catalog(lang)
    for msgid, msg in source.messages.items():
        params = _dummy_params(msgid, msg.plural or "")
        params.pop("n", None)
        for n in (0, 1, 2, 3, 5, 11, 21, 100, 102) if msg.plural else (1,):
            if msg.plural is None:
                template = cat.gettext(msgid)
            else:
                template = cat.ngettext(msgid, msg.plural, n)
            values = {**params, "n": n}
            if translator.is_rtl(lang):
                values = {k: isolate(v) for k, v in values.items()}
                template = _COMMAND_IN_TEXT.sub(lambda m: LRI + m.group(0) + PDI, template)
            expected = template % values if "%" in msgid else template
            assert translator.render(Msg(msgid, params, msg.plural, n), lang) == expected
            if "n" in tools.placeholders(msgid):
                assert str(n) in expected, (lang, msgid, n)


@pytest.mark.parametrize("lang", SHIPPED)
def test_commands_and_rtl_marks(lang: str) -> None:
    catalog = tools.read_po(_catalog_text(lang))
    for msg in catalog.active():
        for form in filter(None, msg.msgstr):
            assert tools.commands(msg.msgid) <= tools.commands(form), (msg.msgid, form)
            assert not re.search("[\u200e\u200f\u202a-\u202e\u2066-\u2069]", form), form


@pytest.mark.parametrize("lang", SHIPPED)
def test_plural_forms_header(lang: str) -> None:
    catalog = tools.read_po(_catalog_text(lang))
    assert catalog.header["Plural-Forms"] == tools.PLURAL_FORMS[lang]
    assert catalog.header["Content-Type"] == "text/plain; charset=UTF-8"
    assert catalog.header["Language"] == lang
    nplurals = {"es": 2, "fr": 2, "pt": 2, "ru": 3, "zh": 1, "ar": 6, "hi": 2, "id": 1, "tr": 2}[
        lang
    ]
    for msg in catalog.active():
        if msg.plural is not None:
            assert len(msg.msgstr) == nplurals, msg.msgid


# -- (d) plurals through the Translator ----------------------------------------------------------
def test_russian_plurals(translator: Translator) -> None:
    def answers(n: int) -> str:
        return translator.render(Msg("%(n)s answer", plural="%(n)s answers", n=n), "ru")

    assert answers(1) == "1 ответ"
    assert answers(3) == "3 ответа"
    assert answers(5) == "5 ответов"
    assert answers(11) == "11 ответов"
    assert answers(21) == "21 ответ"
    assert answers(22) == "22 ответа"
    imported = Msg(
        "Imported %(n)s item into project %(id)s.",
        {"id": 7},
        plural="Imported %(n)s items into project %(id)s.",
        n=4,
    )
    assert translator.render(imported, "ru") == "В проект 7 импортировано 4 элемента."


def test_arabic_plurals(translator: Translator) -> None:
    def answers(n: int) -> str:
        return translator.render(Msg("%(n)s answer", plural="%(n)s answers", n=n), "ar")

    def num(n: int) -> str:
        return LRI + str(n) + PDI

    assert answers(3) == f"{num(3)} إجابات"  # 3..10: plural
    assert answers(10) == f"{num(10)} إجابات"
    assert answers(11) == f"{num(11)} إجابةً"  # 11..99: accusative singular
    assert answers(100) == f"{num(100)} إجابة"  # hundreds: genitive singular
    cat = translator.catalog("ar")
    forms = [cat.ngettext("%(n)s answer", "%(n)s answers", n) for n in (0, 1, 2, 3, 11, 100)]
    assert len(set(forms)) == 3 and forms[3] != forms[4] != forms[5]


def test_spanish_and_portuguese_plurals(translator: Translator) -> None:
    one, many = "Results of project %(id)s: %(n)s item.", "Results of project %(id)s: %(n)s items."
    assert translator.render(Msg(one, {"id": 2}, many, 1), "es") == (
        "Resultados del proyecto 2: 1 elemento."
    )
    assert translator.render(Msg(one, {"id": 2}, many, 3), "pt") == (
        "Resultados do projeto 2: 3 itens."
    )


# -- (e) broken translations fall back to English ------------------------------------------------
def _write_po(root: Path, lang: str, body: str, plural_forms: str) -> None:
    po = root / lang / "LC_MESSAGES" / "polycrowd.po"
    po.parent.mkdir(parents=True)
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
        f'"Plural-Forms: {plural_forms}\\n"\n\n{body}',
        encoding="utf-8",
    )


def test_broken_translation_falls_back_to_source(tmp_path: Path) -> None:
    _write_po(
        tmp_path,
        "xx",
        'msgid "Hello %(name)s"\nmsgstr "Hola %(nombre)s"\n\n'
        'msgid "Rate: %(p)s%%"\nmsgstr "Taux : %(p)s %"\n\n'
        'msgid "Good %(name)s"\nmsgstr "Bueno %(name)s"\n\n'
        'msgid "%(n)s cat"\nmsgid_plural "%(n)s cats"\n'
        'msgstr[0] "%(n)s gato"\nmsgstr[1] "%(m)s gatos"\n',
        "nplurals=2; plural=(n != 1);",
    )
    t = Translator(tmp_path)
    assert "xx" in t.languages
    assert t.render(Msg("Hello %(name)s", {"name": "Ana"}), "xx") == "Hello Ana"
    assert t.render(Msg("Rate: %(p)s%%", {"p": 5}), "xx") == "Rate: 5%"
    assert t.render(Msg("Good %(name)s", {"name": "Ana"}), "xx") == "Bueno Ana"
    assert t.render(Msg("%(n)s cat", plural="%(n)s cats", n=1), "xx") == "1 gato"
    assert t.render(Msg("%(n)s cat", plural="%(n)s cats", n=4), "xx") == "4 cats"
    # and the check reports all three broken entries
    catalog = tools.read_po((tmp_path / "xx/LC_MESSAGES/polycrowd.po").read_text("utf-8"))
    broken = [p for m in catalog.active() for p in tools.check_translation(m, m.msgid)]
    assert sorted(p.where.split(" ")[0] for p in broken) == [
        "%(n)s",
        "Hello",
        "Rate:",
    ]


def test_unknown_language_and_missing_entry_use_source(translator: Translator) -> None:
    assert translator.render(Msg("Accepted. Thank you!"), "en") == "Accepted. Thank you!"
    assert translator.render(Msg("Not in any catalog"), "ru") == "Not in any catalog"
    assert translator.normalize("pt-BR") == "pt"
    assert translator.render(Msg("Accepted. Thank you!"), "ru") == "Принято. Спасибо!"


# -- (f) compiled catalogs ------------------------------------------------------------------------
@pytest.mark.parametrize("lang", SHIPPED)
def test_compile_mo_matches_parse_po(lang: str) -> None:
    entries = parse_po(_catalog_text(lang))
    cat = gettext.GNUTranslations(io.BytesIO(compile_mo(entries)))
    assert cat.info()["plural-forms"] == tools.PLURAL_FORMS[lang]
    plurals: dict[str, int] = {}
    for key, value in entries.items():
        if isinstance(key, tuple):
            plurals[key[0]] = max(plurals.get(key[0], 0), key[1] + 1)
        elif key:
            assert cat.gettext(key) == value
    nplurals = tools.nplurals_of(tools.PLURAL_FORMS[lang]) or 0
    # find, for every form index, an n that selects it, and compare
    n_for_form: dict[int, int] = {}
    for n in range(0, 200):
        index = gettext.c2py(tools.PLURAL_FORMS[lang].split("plural=")[1].rstrip(";"))(n)
        n_for_form.setdefault(index, n)
    assert sorted(n_for_form) == list(range(nplurals))
    for key_id, count in plurals.items():
        one, many = key_id.split("\x00")
        assert count == nplurals
        for index, n in n_for_form.items():
            assert cat.ngettext(one, many, n) == entries[(key_id, index)]


def test_compile_command_writes_loadable_mo(tmp_path: Path) -> None:
    locales = tmp_path / "locales"
    shutil.copytree(LOCALES_DIR, locales, ignore=shutil.ignore_patterns("*.mo"))
    written = tools.compile_catalogs(locales)
    assert {p.parent.parent.name for p in written} >= set(SHIPPED)
    ru_mo = locales / "ru" / "LC_MESSAGES" / "polycrowd.mo"
    with ru_mo.open("rb") as fh:
        cat = gettext.GNUTranslations(fh)
    assert cat.gettext("Accepted. Thank you!") == "Принято. Спасибо!"
    # Translator prefers a .mo that is not older than the .po
    assert Translator(locales).render(Msg("Accepted. Thank you!"), "ru") == "Принято. Спасибо!"


# -- (g) direction ------------------------------------------------------------------------------
def test_rtl(translator: Translator) -> None:
    assert translator.is_rtl("ar")
    for lang in ("ru", "es", "fr", "zh", "hi", "en"):
        assert not translator.is_rtl(lang)


def test_rtl_messages_isolate_numbers_ids_user_text_and_commands(translator: Translator) -> None:
    """Arabic: parameters keep their own order inside Unicode isolates; catalogs stay clean."""
    balance = translator.render(Msg("Your balance: %(balance)s", {"balance": "12.50"}), "ar")
    assert balance == "رصيدك: " + LRI + "12.50" + PDI
    name = "My project"
    task = translator.render(Msg("Task for project “%(name)s”", {"name": name}), "ar")
    assert FSI + name + PDI in task and LRI not in task
    created = translator.render(
        Msg("Project %(id)s “%(name)s” created.", {"id": 7, "name": "تصنيف"}), "ar"
    )
    assert LRI + "7" + PDI in created and FSI + "تصنيف" + PDI in created
    code = translator.render(
        Msg(
            "Your link code is %(code)s. Within 10 minutes, send"
            " /link %(code)s from your other account.",
            {"code": "AB12CD"},
        ),
        "ar",
    )
    assert code.count(LRI + "AB12CD" + PDI) == 2 and LRI + "/link" + PDI in code
    # a nested message is Arabic already: only its own parameters are isolated
    reason = Msg(
        "Your account is paused or blocked: %(reason)s", {"reason": Msg("Your answer is empty.")}
    )
    assert not re.search("[\u2066-\u2069]", translator.render(reason, "ar"))
    # escaping happens inside the isolate; raw text and other languages are untouched
    esc = translator.render(
        Msg("Your answer: %(answer)s", {"answer": "<b>"}), "ar", escape=html.escape
    )
    assert esc.endswith(FSI + "&lt;b&gt;" + PDI)
    assert translator.render(Msg.raw("42 cats"), "ar") == "42 cats"
    assert translator.render(Msg("Your balance: %(balance)s", {"balance": "1.00"}), "fr") == (
        "Votre solde\u00a0: 1.00"
    )
    assert isolate(3) == LRI + "3" + PDI and isolate("u17") == LRI + "u17" + PDI
    assert isolate("Ana María") == FSI + "Ana María" + PDI and isolate("") == ""


def test_locale_choice_then_platform_then_english(translator: Translator) -> None:
    assert translator.pick("fr", "es") == "fr"  # the user's choice wins
    assert translator.pick("de", "zh-Hans") == "zh"  # no German catalog: the platform's code
    assert translator.pick(None, "zh-CN") == "zh"
    assert translator.pick("", "pt-BR") == "pt"
    assert translator.pick("de", "xx") == "en"
    assert translator.pick(None, None) == "en"
    assert translator.normalize("hi-IN") == "hi" and translator.normalize("fr_CA") == "fr"


# -- the tool's merge ---------------------------------------------------------------------------
def test_update_merges_keeps_and_obsoletes(tmp_path: Path) -> None:
    pot = tools.Catalog()
    pot.messages = {
        "Kept": tools.Message("Kept"),
        "New one": tools.Message("New one"),
        "%(n)s dog": tools.Message("%(n)s dog", "%(n)s dogs", ["", ""]),
    }
    (tmp_path / "polycrowd.pot").write_text(tools.format_po(tools.make_pot(pot)), "utf-8")
    _write_po(
        tmp_path,
        "ru",
        '# translator note\nmsgid "Kept"\nmsgstr "Сохранено"\n\n'
        'msgid "Gone away"\nmsgstr "Ушло"\n\n'
        'msgid "%(n)s dog"\nmsgid_plural "%(n)s dogs"\nmsgstr[0] "%(n)s пёс"\n',
        "nplurals=2; plural=(n != 1);",
    )
    written = tools.update(tmp_path, ["ar"])
    assert len(written) == 2
    ru = read_catalog(tmp_path / "ru" / "LC_MESSAGES" / "polycrowd.po")
    assert ru.header["Plural-Forms"] == tools.PLURAL_FORMS["ru"]
    assert ru.messages["Kept"].msgstr == ["Сохранено"]
    assert ru.messages["Kept"].comments == ["translator note"]
    assert ru.messages["New one"].msgstr == [""]
    assert ru.messages["Gone away"].obsolete
    assert ru.messages["%(n)s dog"].msgstr == ["%(n)s пёс", "", ""]
    text = (tmp_path / "ru" / "LC_MESSAGES" / "polycrowd.po").read_text("utf-8")
    assert '#~ msgid "Gone away"' in text
    assert "Gone away" not in parse_po(text)
    ar = read_catalog(tmp_path / "ar" / "LC_MESSAGES" / "polycrowd.po")
    assert ar.header["Plural-Forms"] == tools.PLURAL_FORMS["ar"]
    assert len(ar.messages["%(n)s dog"].msgstr) == 6
    # idempotent, and a message that comes back revives its old translation
    assert tools.update(tmp_path) == []
    pot.messages["Gone away"] = tools.Message("Gone away")
    (tmp_path / "polycrowd.pot").write_text(tools.format_po(tools.make_pot(pot)), "utf-8")
    tools.update(tmp_path, keep_obsolete=False)
    ru = read_catalog(tmp_path / "ru" / "LC_MESSAGES" / "polycrowd.po")
    assert ru.messages["Gone away"].msgstr == ["Ушло"] and not ru.messages["Gone away"].obsolete


@pytest.mark.parametrize("lang", SHIPPED)
def test_po_round_trip(lang: str) -> None:
    text = _catalog_text(lang)
    again = tools.format_po(tools.read_po(text))
    assert parse_po(again) == parse_po(text)
    assert tools.read_po(again).messages == tools.read_po(text).messages
