"""gettext catalogs (.po) of the course's translations: read, write, and merge like msgmerge.

One catalog per document and language, which Poedit, Weblate or a text editor can open:

    notebooks/i18n/<lang>/NN-name.po   msgctxt = markdown cell id
    lessons/i18n/<lang>/<name>.po      msgctxt = block id (`<!-- i18n: id -->`)
    utils/locales/<lang>.po            strings of `t("...")` (no msgctxt)

msgid is the English, msgstr its translation. When the English changes, `merge` marks the entry
`#, fuzzy` and keeps the English it translates as `#| msgid`; new English comes in untranslated;
English that is gone stays at the end as obsolete (`#~`). The build uses only translated entries
that are not fuzzy (English elsewhere), and `check` fails on fuzzy and untranslated ones.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import polib

WRAP = 78  # polib's and Poedit's usual width; fixed so that rewriting never reflows a file
FUZZY = "fuzzy"


def new_catalog(lang: str, note: str = "") -> polib.POFile:
    """An empty catalog for `lang`; `note` becomes the header comment (for translators)."""
    po = polib.POFile(wrapwidth=WRAP, check_for_duplicates=False)
    po.header = note
    po.metadata = {
        "Project-Id-Version": "multimodal-course",
        "Language": lang,
        "MIME-Version": "1.0",
        "Content-Type": "text/plain; charset=UTF-8",
        "Content-Transfer-Encoding": "8bit",
    }
    return po


def load_catalog(path: str | Path, lang: str = "") -> polib.POFile:
    """The catalog at `path`, or an empty one for `lang` when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return new_catalog(lang or path.stem)
    try:
        return polib.pofile(str(path), wrapwidth=WRAP, check_for_duplicates=False)
    except OSError as err:  # polib reports a syntax error as IOError, with its line
        if "Syntax error" not in str(err):
            raise
        raise ValueError(f"{path} is not a valid .po file ({err}); fix it and rerun.") from None


def dumps(po: polib.POFile) -> str:
    """The text of a catalog: active entries in the order given, then the obsolete ones."""
    return str(po).rstrip("\n") + "\n"


def write_catalog(po: polib.POFile, path: str | Path) -> bool:
    """Write `po` to `path` unless the file already holds these bytes; True when written."""
    path, text = Path(path), dumps(po)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def is_fuzzy(entry: polib.POEntry) -> bool:
    return FUZZY in entry.flags


def load_translations(stem: str, lang: str, base: Path) -> dict[str, polib.POEntry]:
    """{msgctxt: entry} of the active entries of `base/<lang>/<stem>.po`; {} if absent."""
    po = load_catalog(Path(base) / lang / f"{stem}.po", lang)
    return {e.msgctxt: e for e in po if not e.obsolete and e.msgctxt is not None}


def fresh_text(entry: polib.POEntry | None, english: str) -> str | None:
    """The translation in `entry` if it is done, not fuzzy, and translates this very English."""
    if entry is None or entry.obsolete or is_fuzzy(entry) or entry.msgid != english:
        return None
    return entry.msgstr or None


def _key(msgctxt: str | None, msgid: str) -> tuple[str, str]:
    """What identifies an entry across versions: its context, or its English when it has none."""
    return ("ctx", msgctxt) if msgctxt is not None else ("id", msgid)


def _carry(old: polib.POEntry | None, msgctxt: str | None, english: str) -> polib.POEntry:
    """The entry for `english`, keeping the translation, comments and flags of `old`."""
    entry = polib.POEntry(msgctxt=msgctxt, msgid=english, msgstr="")
    if old is None:
        return entry
    entry.msgstr, entry.tcomment = old.msgstr, old.tcomment
    entry.flags = [f for f in old.flags if f != FUZZY]
    if is_fuzzy(old):  # still fuzzy; `#| msgid` stays the English its msgstr translates
        entry.flags.append(FUZZY)
        entry.previous_msgid = old.previous_msgid
    elif old.msgid != english and old.msgstr:
        entry.flags.append(FUZZY)
        entry.previous_msgid = old.msgid
    return entry


def merge(old: polib.POFile, items: list[tuple[str | None, str]],
          guess: bool = False) -> polib.POFile:
    """The catalog of `items` [(msgctxt, English)] in their order, keeping the work in `old`.

    Like msgmerge: new English is added untranslated; a translation whose English changed turns
    fuzzy with `#| msgid` the English it translated; entries no item has any more turn obsolete
    (`#~`, sorted), and come back if their item does. `guess`: new English without msgctxt takes
    the translation of the closest English that left (difflib ratio >= 0.8), fuzzy, as msgmerge
    does."""
    out = new_catalog(old.metadata.get("Language", ""), old.header)
    out.metadata.update(old.metadata)
    by_key = {_key(e.msgctxt, e.msgid): e for e in old if e.obsolete}
    by_key.update({_key(e.msgctxt, e.msgid): e for e in old if not e.obsolete})
    wanted = {_key(ctx, english) for ctx, english in items}
    leaving = {e.msgid: e for k, e in by_key.items()
               if k not in wanted and k[0] == "id" and e.msgstr}
    for ctx, english in items:
        old_entry = by_key.get(_key(ctx, english))
        if old_entry is None and guess and ctx is None:
            close = difflib.get_close_matches(english, list(leaving), n=1, cutoff=0.8)
            old_entry = leaving.pop(close[0]) if close else None
        out.append(_carry(old_entry, ctx, english))
    gone = []
    for key, entry in by_key.items():
        if key not in wanted and entry.msgstr:  # an untranslated entry that left is dropped
            obsolete = _carry(entry, entry.msgctxt, entry.msgid)
            obsolete.obsolete, obsolete.previous_msgid = True, None
            gone.append(obsolete)
    for entry in sorted(gone, key=lambda e: (e.msgctxt or "", e.msgid)):
        out.append(entry)
    return out
