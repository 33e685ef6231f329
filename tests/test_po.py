"""Translations as gettext .po catalogs: round trip, msgmerge-like update, the checks CI fails
on, and the one-off conversion from the old JSON files.

Most tests build a tiny course in tmp_path (one notebook source, one lesson page, one module
with t() strings); the last ones read the committed catalogs."""

from __future__ import annotations

from pathlib import Path

import polib
import pytest

from course_tools import po as P
from course_tools import translations as T
from course_tools.sources import LANGUAGES, ROOT, SOURCE_LANG, translatables

OTHERS = [lang for lang in LANGUAGES if lang != SOURCE_LANG]

NOTEBOOK = '''# %% [markdown] id="title"
# # A tiny lesson
#
# See [the figure](../figures/a.png).

# %% id="params" tags=["parameters"]
LANG = "en"

# %% [markdown] id="intro"
# Some "quoted" text, a backslash \\ and a tab\there.
'''
LESSON = """<!-- i18n: head -->
# Page

<!-- i18n: body -->
Open {{notebook 01-tiny}} now.
"""
CODE = """from utils.i18n import t

KEYS = ["Precision"]


def title(key, n):
    return t("Loss") + t("{n} steps", n=n) + t(key)
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A tiny course whose every catalog is complete: '[xx] ' + English (links kept)."""
    _write(tmp_path / "notebooks" / "src" / "01-tiny.py", NOTEBOOK)
    _write(tmp_path / "lessons" / "src" / "page.md", LESSON)
    _write(tmp_path / "utils" / "plots.py", CODE)
    assert T.update_catalogs(tmp_path)  # writes the empty catalogs
    for path in tmp_path.glob("*/i18n/*/*.po"):
        _translate(path, lambda e, lang=path.parent.name: f"[{lang}] {e.msgid}")
    for lang in OTHERS:
        _translate(T.locale_path(lang, tmp_path), lambda e: f"<{e.msgid}>")
    assert T.document_problems(tmp_path) == [] and T.catalog_problems(tmp_path) == []
    return tmp_path


def _translate(path: Path, how, which=lambda e: True) -> None:
    """Fill the msgstr of the active entries `which` picks with how(entry); clear fuzzy."""
    po = P.load_catalog(path)
    for entry in po:
        if not entry.obsolete and which(entry):
            entry.msgstr = how(entry)
            entry.flags = [f for f in entry.flags if f != P.FUZZY]
            entry.previous_msgid = None
    P.write_catalog(po, path)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _catalog(course: Path, folder: str, lang: str, stem: str) -> polib.POFile:
    return P.load_catalog(course / folder / "i18n" / lang / f"{stem}.po")


# ------------------------------------------------------------------ po.py


def test_a_catalog_round_trips_every_field_and_rewrites_identical_bytes(tmp_path):
    po = P.new_catalog("zh", "a note")
    hard = 'Line "one" \\ with\ta tab  \n\n  indented, trailing space \n' + "长" * 120
    po.append(polib.POEntry(msgctxt="a", msgid=hard, msgstr=hard[::-1]))
    fuzzy = polib.POEntry(msgctxt="b", msgid="New English", msgstr="旧的翻译", flags=["fuzzy"],
                          previous_msgid="Old English " * 10, tcomment="translator's note")
    po.append(fuzzy)
    po.append(polib.POEntry(msgctxt="c", msgid="gone", msgstr="走了", obsolete=True))
    path = tmp_path / "zh.po"
    assert P.write_catalog(po, path)
    back = P.load_catalog(path)
    def fields(e):
        return e.msgctxt, e.msgid, e.msgstr, e.flags, e.previous_msgid, e.obsolete, e.tcomment

    assert [fields(e) for e in back] == [fields(e) for e in po]
    assert back.metadata["Language"] == "zh" and "charset=UTF-8" in back.metadata["Content-Type"]
    before = path.read_bytes()
    assert not P.write_catalog(back, path) and path.read_bytes() == before
    assert P.dumps(P.merge(back, [("a", hard), ("b", "New English")])) == before.decode("utf-8")


def test_a_broken_catalog_names_its_file(tmp_path):
    path = _write(tmp_path / "fr.po", 'msgid "a"\nmsgstr "b"\nmsgtxt "c"\n')
    with pytest.raises(ValueError, match="fr.po is not a valid .po file"):
        P.load_catalog(path)


def test_merge_marks_changed_english_fuzzy_adds_new_and_keeps_removed_as_obsolete():
    old = P.new_catalog("fr")
    old.append(polib.POEntry(msgctxt="keep", msgid="Same", msgstr="Pareil"))
    old.append(polib.POEntry(msgctxt="edit", msgid="Old text", msgstr="Vieux texte"))
    old.append(polib.POEntry(msgctxt="drop", msgid="Bye", msgstr="Au revoir"))
    old.append(polib.POEntry(msgctxt="empty", msgid="Never done", msgstr=""))
    old.append(polib.POEntry(msgctxt="zulu", msgid="Z", msgstr="Z", obsolete=True))
    new = P.merge(old, [("new", "Hello"), ("keep", "Same"), ("edit", "New text")])
    by = {e.msgctxt: e for e in new}
    assert [e.msgctxt for e in new if not e.obsolete] == ["new", "keep", "edit"]  # source order
    assert by["new"].msgstr == "" and not P.is_fuzzy(by["new"])
    assert P.fresh_text(by["keep"], "Same") == "Pareil"
    assert P.is_fuzzy(by["edit"]) and by["edit"].previous_msgid == "Old text"
    assert by["edit"].msgstr == "Vieux texte" and P.fresh_text(by["edit"], "New text") is None
    assert by["drop"].obsolete and by["drop"].msgstr == "Au revoir"
    assert [e.msgctxt for e in new if e.obsolete] == ["drop", "zulu"]  # sorted: stable diffs
    assert "empty" not in by  # nothing to keep
    assert "#| msgid \"Old text\"" in P.dumps(new) and '#~ msgctxt "drop"' in P.dumps(new)
    # Edited again before anyone reviewed it: `#| msgid` stays the English that was translated.
    again = {e.msgctxt: e for e in P.merge(new, [("edit", "Newer text"), ("drop", "Bye")])}
    assert again["edit"].previous_msgid == "Old text" and P.is_fuzzy(again["edit"])
    assert not again["drop"].obsolete and P.fresh_text(again["drop"], "Bye") == "Au revoir"


def test_merge_guesses_a_reworded_t_string_as_fuzzy():
    old = P.new_catalog("it")
    old.append(polib.POEntry(msgid="Training the tiny CLIP", msgstr="Addestramento del CLIP"))
    new = P.merge(old, [(None, "Training the tiny CLIP..."), (None, "Loss")], guess=True)
    by = {e.msgid: e for e in new}
    assert P.is_fuzzy(by["Training the tiny CLIP..."])
    assert by["Training the tiny CLIP..."].msgstr == "Addestramento del CLIP"
    assert by["Loss"].msgstr == "" and by["Training the tiny CLIP"].obsolete


# ------------------------------------------------------------------ update and check


def test_editing_english_makes_update_mark_it_fuzzy_and_check_fail_in_every_language(course):
    src = course / "notebooks" / "src" / "01-tiny.py"
    _edit(src, "# Some \"quoted\" text", "# Some \"quoted\" words")
    problems = [str(p) for p in T.document_problems(course)]
    assert len(problems) == 5 and all("'intro'" in p and "update" in p for p in problems), problems
    assert "intro" not in T.fresh_translations(src, "fr", course)  # the build shows English
    written = T.update_catalogs(course)
    assert sorted(p.parent.name for p in written) == sorted(OTHERS)
    assert T.update_catalogs(course) == []  # nothing left to do: same bytes
    problems = [str(p) for p in T.document_problems(course)]
    assert len(problems) == 5, problems
    assert {p.split(":")[0] for p in problems} == set(OTHERS)
    assert all("notebooks/src/01-tiny.py" in p and "cell 'intro' is fuzzy" in p
               and "notebooks/i18n/" in p and "remove its fuzzy flag" in p for p in problems)
    entry = next(e for e in _catalog(course, "notebooks", "pt", "01-tiny") if e.msgctxt == "intro")
    assert entry.previous_msgid.startswith('Some "quoted" text')
    assert entry.msgstr.startswith('[pt] Some "quoted" text')
    for lang in OTHERS:  # a translator reviews it
        _translate(course / "notebooks" / "i18n" / lang / "01-tiny.po", lambda e: "Revu",
                   lambda e: e.msgctxt == "intro")
    assert T.document_problems(course) == []
    assert T.fresh_translations(src, "fr", course)["intro"] == "Revu"


def test_new_and_removed_blocks_are_named_until_update_then_untranslated_fails(course):
    src = course / "lessons" / "src" / "page.md"
    _edit(src, "<!-- i18n: head -->", "<!-- i18n: top -->")
    problems = [str(p) for p in T.document_problems(course, kinds=("block",))]
    assert len(problems) == 10, problems
    assert sum("block 'top' is not in lessons/i18n/" in p for p in problems) == 5
    assert sum("translates block 'head'" in p and "no longer has" in p for p in problems) == 5
    T.update_catalogs(course, ["fr"])
    fr = [str(p) for p in T.document_problems(course, ["fr"], ("block",))]
    assert fr == ["fr: lessons/src/page.md: block 'top' is not translated: fill msgctxt 'top' in "
                  "lessons/i18n/fr/page.po"]
    fr_po = _catalog(course, "lessons", "fr", "page")
    assert any(e.obsolete and e.msgctxt == "head" for e in fr_po)


def test_a_translation_that_breaks_a_link_or_macro_is_reported(course):
    _translate(course / "lessons" / "i18n" / "es" / "page.po", lambda e: "Abre el notebook.",
               lambda e: e.msgctxt == "body")
    _translate(course / "notebooks" / "i18n" / "es" / "01-tiny.po", lambda e: "[la figura](a.png)",
               lambda e: e.msgctxt == "title")
    problems = [str(p) for p in T.document_problems(course)]
    assert len(problems) == 2, problems
    assert any("'body'" in p and "notebook 01-tiny" in p and "es/page.po" in p for p in problems)
    assert any("'title'" in p and "../figures/a.png" in p for p in problems)


def test_t_catalog_problems_name_the_string_the_file_and_what_to_do(course):
    _write(course / "utils" / "plots.py", CODE.replace('t("Loss")', 't("Loss!")')
           + "\n\ndef bad(n):\n    return t(f\"{n} bad\")\n")
    fr = T.locale_path("fr", course)
    _translate(fr, lambda e: "{m} étapes", lambda e: e.msgid == "{n} steps")
    problems = [str(p) for p in T.catalog_problems(course)]
    assert sum("t('Loss!') (used at utils/plots.py:7) is not in utils/locales/" in p
               for p in problems) == 5
    assert sum("t('Loss') is translated but no code uses it" in p for p in problems) == 5
    assert any(p.startswith("fr:") and "placeholders ['m']" in p for p in problems)
    assert any("utils/plots.py:11" in p and 't(f"...")' in p for p in problems)
    assert len(problems) == 12, problems
    po = P.load_catalog(fr)  # "Precision" reaches t() through a variable: it is used
    po.append(polib.POEntry(msgid="Precision", msgstr="Précision"))
    P.write_catalog(po, fr)
    assert not [p for p in T.catalog_problems(course, ["fr"]) if "Precision" in str(p)]
    T.update_catalogs(course)  # "Loss!" takes the translation of "Loss", fuzzy
    entry = next(e for e in P.load_catalog(fr) if e.msgid == "Loss!")
    assert P.is_fuzzy(entry) and entry.msgstr == "<Loss>" and entry.previous_msgid == "Loss"
    assert entry.occurrences == [("utils/plots.py", "")]
    precision = next(e for e in P.load_catalog(fr) if e.msgid == "Precision")
    assert precision.translated() and not precision.occurrences  # kept, active
    assert sum("is fuzzy" in str(p) for p in T.catalog_problems(course)) == 5


# ------------------------------------------------------------------ the repository


def test_every_source_has_a_catalog_per_language_and_no_json_is_left():
    missing = [T.catalog_path(src, lang).relative_to(ROOT).as_posix()
               for _, src, _, _ in translatables() for lang in OTHERS
               if not T.catalog_path(src, lang).exists()]
    missing += [T.locale_path(lang).relative_to(ROOT).as_posix() for lang in OTHERS
                if not T.locale_path(lang).exists()]
    left = [p.relative_to(ROOT).as_posix()
            for folder in ("notebooks/i18n", "lessons/i18n", "utils/locales")
            for p in (ROOT / folder).rglob("*.json")]
    assert not missing and not left, (f"run `python -m course_tools update`: {len(missing)} "
                                      f".po missing ({missing[:3]}...), {len(left)} JSON left "
                                      f"({left[:3]}...)")


def test_committed_catalogs_are_as_update_writes_them():
    """A rebuild of an unchanged catalog rewrites identical bytes, so diffs stay small."""
    differ = []
    for _, src, _, items in translatables():
        for lang in OTHERS:
            path = T.catalog_path(src, lang)
            merged = P.dumps(T.merged_document(src, lang, ROOT, items))
            if path.exists() and merged != path.read_text(encoding="utf-8"):
                differ.append(path.relative_to(ROOT).as_posix())
    for lang in OTHERS:
        path = T.locale_path(lang)
        if path.exists() and P.dumps(T.merged_locale(lang)) != path.read_text(encoding="utf-8"):
            differ.append(path.relative_to(ROOT).as_posix())
    assert not differ, f"run `{T.UPDATE}`: {differ}"
