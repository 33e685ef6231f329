"""Translations of the course, kept in gettext `.po` catalogs, and the checks CI fails on.

Catalogs (see course_tools/po.py): `notebooks/i18n/<lang>/NN-name.po` and
`lessons/i18n/<lang>/<name>.po` hold one entry per markdown cell or lesson block (msgctxt = its
id), `utils/locales/<lang>.po` the strings of `t("...")`. Translators open them in Poedit,
Weblate or a text editor; `python -m course_tools update` brings them up to date with the
English (new entries untranslated, changed ones fuzzy, removed ones obsolete), and `check`
fails while an entry is untranslated or fuzzy, or breaks the links and macros of its English.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import polib

from .po import fresh_text, is_fuzzy, load_catalog, load_translations, merge, write_catalog
from .sources import LANGUAGES, ROOT, SOURCE_LANG, items_of, kept_references, rel, translatables

UPDATE = "python -m course_tools update"


@dataclass(frozen=True)
class Problem:
    """One thing CI fails on. `item` is the cell/block id or t() string concerned."""

    lang: str
    file: str  # repo-relative path of the source (or built file) concerned
    item: str
    message: str
    english: str = ""  # the current English, for translators (`todo`)
    hash: str = ""  # unused since translations are .po catalogs; kept for `todo --json` readers

    def __str__(self) -> str:
        return f"{self.lang}: {self.file}: {self.message}"


def _others(langs: list[str] | None) -> list[str]:
    return [lang for lang in (langs or LANGUAGES) if lang != SOURCE_LANG]


def catalog_path(src: Path, lang: str, root: Path = ROOT) -> Path:
    """Where the `lang` translation of a notebook or lesson source lives."""
    src = Path(src)
    folder = "notebooks" if src.suffix == ".py" else "lessons"
    return root / folder / "i18n" / lang / f"{src.stem}.po"


def _note(src: Path, lang: str, root: Path) -> str:
    return (f"{LANGUAGES[lang]} ({lang}) translation of {rel(src, root)}: msgctxt is the cell or "
            f"block id, msgid its English.\nEdit with Poedit, Weblate or a text editor; "
            f"`{UPDATE}` adds new English and marks changed English fuzzy.")


def fresh_translations(src: Path, lang: str, root: Path = ROOT) -> dict[str, str]:
    """{id: translation} of a source's cells or blocks that are translated, not fuzzy, and
    translate the current English (the build shows English for the others)."""
    if lang == SOURCE_LANG:
        return {}
    found = load_translations(Path(src).stem, lang, catalog_path(src, lang, root).parent.parent)
    out = {}
    for item_id, english in items_of(src):
        text = fresh_text(found.get(item_id), english)
        if text is not None:
            out[item_id] = text
    return out


def _entry_problems(lang: str, file: str, kind: str, item: str, english: str,
                    entry: polib.POEntry | None, po_path: str) -> list[Problem]:
    """What is wrong with the catalog entry of one cell or block (nothing when it is fresh)."""
    what = f"{kind} {item!r}"
    if entry is None or entry.msgid != english:
        why = "is not in" if entry is None else "has an old English in"
        return [Problem(lang, file, item, f"{what} {why} {po_path}: run `{UPDATE} --lang {lang}`, "
                        "then translate it", english)]
    if is_fuzzy(entry):
        return [Problem(lang, file, item, f"{what} is fuzzy (its English changed): review msgctxt "
                        f"{item!r} in {po_path}, then remove its fuzzy flag", english)]
    if not entry.msgstr:
        return [Problem(lang, file, item, f"{what} is not translated: fill msgctxt {item!r} in "
                        f"{po_path}", english)]
    lost = set(kept_references(english)) ^ set(kept_references(entry.msgstr))
    if lost:
        return [Problem(lang, file, item, f"{what} changes the links, images or macros of the "
                        f"English: {sorted(lost)} (msgctxt {item!r} in {po_path})", english)]
    return []


def document_problems(root: Path = ROOT, langs: list[str] | None = None,
                      kinds: tuple[str, ...] = ("cell", "block")) -> list[Problem]:
    """Untranslated, fuzzy, outdated or link-breaking entries of every notebook and lesson
    catalog, and entries for cells or blocks the English no longer has."""
    problems = []
    for kind, src, _, items in translatables(root):
        if kind not in kinds:
            continue
        for lang in _others(langs):
            path = catalog_path(src, lang, root)
            po, po_path = load_catalog(path, lang), rel(path, root)
            found = {e.msgctxt: e for e in po if not e.obsolete}
            for item_id, english in items:
                problems += _entry_problems(lang, rel(src, root), kind, item_id, english,
                                            found.get(item_id), po_path)
            for item_id in sorted(set(found) - {item_id for item_id, _ in items}, key=str):
                problems.append(Problem(lang, rel(src, root), str(item_id), f"{po_path} translates "
                                        f"{kind} {item_id!r}, which the English no longer has: "
                                        f"run `{UPDATE} --lang {lang}` (it keeps it as obsolete)"))
    return problems


# ------------------------------------------------------------------ t() catalogs


def _t_names(tree: ast.AST) -> set[str]:
    """Names under which a file imports `t` from utils.i18n (`t`, or an alias)."""
    return {alias.asname or alias.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("i18n")
            for alias in node.names if alias.name == "t"}


def t_strings(path: Path) -> list[tuple[str | None, int]]:
    """(literal, line) of every `t(...)` call in a Python file; literal None for an f-string.

    Counts `t(...)` where the file imports `t` from `utils.i18n` (or its alias), and
    `i18n.t(...)`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = _t_names(tree) | ({"t"} if path.name == "i18n.py" else set())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        named_t = (isinstance(func, ast.Name) and func.id in names) or (
            isinstance(func, ast.Attribute) and func.attr == "t"
            and isinstance(func.value, ast.Name) and func.value.id == "i18n")
        if not named_t:
            continue
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            found.append((node.lineno, node.col_offset, arg.value))
        elif isinstance(arg, ast.JoinedStr):
            found.append((node.lineno, node.col_offset, None))
    return [(literal, line) for line, _, literal in sorted(found, key=lambda f: f[:2])]


def code_files(root: Path = ROOT) -> list[Path]:
    """The Python files whose `t()` strings must be translated: utils/ and notebooks/src/."""
    notebooks = sorted((root / "notebooks" / "src").glob("[0-9][0-9]-*.py"))
    return sorted((root / "utils").rglob("*.py")) + notebooks


def _fields(text: str) -> set[str]:
    return set(re.findall(r"\{(\w*)[^{}]*\}", text))


def _code_strings(root: Path) -> tuple[dict[str, list[str]], set[str], list[Problem]]:
    """({t() literal: [file:line, ...]}, every string literal of the code, t(f"...") problems).

    A string passed to t() through a variable is not a t() literal, but a literal somewhere."""
    wanted: dict[str, list[str]] = {}
    constants: set[str] = set()
    problems = []
    for path in code_files(root):
        if path.name == "i18n.py" and path.parent.name == "utils":
            continue  # its docstrings show t() examples, not strings students see
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        constants |= {node.value for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        for literal, line in t_strings(path):
            where = f"{rel(path, root)}:{line}"
            if literal is None:
                problems.append(Problem("all", where, "", "t(f\"...\") cannot be translated; write "
                                        "t(\"... {name} ...\", name=value) instead"))
            else:
                wanted.setdefault(literal, []).append(where)
    return wanted, constants, problems


def locale_path(lang: str, root: Path = ROOT) -> Path:
    return root / "utils" / "locales" / f"{lang}.po"


def catalog_problems(root: Path = ROOT, langs: list[str] | None = None) -> list[Problem]:
    """t("...") strings untranslated or fuzzy in utils/locales/<lang>.po, or translated with
    other {placeholders}; t(f"...") calls, which can never be translated; and translations of
    strings that no code holds any more (left behind when the English changed)."""
    wanted, constants, problems = _code_strings(root)
    for lang in _others(langs):
        path = locale_path(lang, root)
        po, po_path = load_catalog(path, lang), rel(path, root)
        found = {e.msgid: e for e in po if not e.obsolete}
        for english, where in sorted(wanted.items()):
            entry, call = found.get(english), f"t({english!r}) (used at {where[0]})"
            if entry is None:
                message = (f"{call} is not in {po_path}: run `{UPDATE} --lang {lang}`, "
                           "then translate it")
            elif is_fuzzy(entry):
                message = (f"the translation of {call} in {po_path} is fuzzy: review it, then "
                           "remove its fuzzy flag")
            elif not entry.msgstr:
                message = f"{call} is not translated in {po_path}"
            elif _fields(entry.msgstr) != _fields(english):
                message = (f"the translation of t({english!r}) in {po_path} has placeholders "
                           f"{sorted(_fields(entry.msgstr))}, the English "
                           f"{sorted(_fields(english))}")
            else:
                continue
            problems.append(Problem(lang, po_path, english, message, english))
        for english in sorted(set(found) - constants):
            problems.append(Problem(lang, po_path, english, f"t({english!r}) is translated but no "
                                    f"code uses it any more: run `{UPDATE} --lang {lang}`"))
    return problems


# ------------------------------------------------------------------ update and conversion


def _locale_items(po: polib.POFile, wanted: dict[str, list[str]], constants: set[str]):
    """(msgctxt None, English) of a t() catalog, sorted: every t() literal, and the entries
    already there whose English the code still holds (passed to t() through a variable)."""
    kept = {e.msgid for e in po if e.msgstr and e.msgid in constants}
    return [(None, english) for english in sorted(set(wanted) | kept)]


def merged_locale(lang: str, root: Path = ROOT, code=None,
                  po: polib.POFile | None = None) -> polib.POFile:
    """utils/locales/<lang>.po (or `po`) merged with the t() strings of the code, each with the
    files that use it as `#:` (no line numbers, so that moving code does not touch the catalog)."""
    wanted, constants, _ = code or _code_strings(root)
    po = po if po is not None else load_catalog(locale_path(lang, root), lang)
    po.header = po.header or (f"{LANGUAGES[lang]} ({lang}) translation of the strings that code "
                              f"shows with t(\"...\").\n`{UPDATE}` adds new ones.")
    new = merge(po, _locale_items(po, wanted, constants), guess=True)
    for entry in new:
        if not entry.obsolete:
            entry.occurrences = [(f, "") for f in sorted({w.rsplit(":", 1)[0]
                                                          for w in wanted.get(entry.msgid, [])})]
    return new


def merged_document(src: Path, lang: str, root: Path = ROOT,
                    items: list[tuple[str, str]] | None = None) -> polib.POFile:
    """The `lang` catalog of a notebook or lesson source merged with its current English."""
    po = load_catalog(catalog_path(src, lang, root), lang)
    po.header = po.header or _note(src, lang, root)
    return merge(po, items if items is not None else items_of(src))


def update_catalogs(root: Path = ROOT, langs: list[str] | None = None) -> list[Path]:
    """Merge every catalog with the current English (see po.merge); returns the files written."""
    written = []
    for _, src, _, items in translatables(root):
        for lang in _others(langs):
            if write_catalog(merged_document(src, lang, root, items), catalog_path(src, lang, root)):
                written.append(catalog_path(src, lang, root))
    code = _code_strings(root)
    for lang in _others(langs):
        if write_catalog(merged_locale(lang, root, code), locale_path(lang, root)):
            written.append(locale_path(lang, root))
    return written
