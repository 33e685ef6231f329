"""The glossary: `lessons/glossary.json` keeps terms consistent across languages.

    {"page": {"title": {lang: ...}, "intro": {lang: ...}},
     "terms": {term id: {lang: "term" or ["term", other accepted forms...]}}}

The build writes it as `lessons/<lang>/glossary.md`; `check` fails on a term or page text
missing in a language; `terms` advises where a translation does not use the glossary's term.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

from utils.i18n import LANGUAGES, SOURCE_LANG

from .lessons import generated_note
from .notebooks import language_line
from .sources import ROOT, rel, translatables


def load_glossary(root: Path = ROOT) -> dict:
    """`lessons/glossary.json`: {"page": {...}, "terms": {id: {lang: str | [str, ...]}}}."""
    path = root / "lessons" / "glossary.json"
    if not path.exists():
        return {"page": {}, "terms": {}}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix it and rerun.") from None


def term_forms(entry: dict, lang: str) -> list[str]:
    """Accepted forms of a glossary term in `lang`: the first is the preferred one."""
    value = entry.get(lang, [])
    return [value] if isinstance(value, str) else list(value)


def glossary_problems(root: Path = ROOT, langs: list[str] | None = None) -> list:
    """Page texts and terms that a language lacks."""
    from .translations import Problem

    glossary, problems = load_glossary(root), []
    for lang in langs or LANGUAGES:
        for key in ("title", "intro"):
            if lang not in glossary.get("page", {}).get(key, {}):
                problems.append(Problem(lang, "lessons/glossary.json", key,
                                        f"the glossary page has no {key!r} in {lang}"))
        for term_id, entry in glossary.get("terms", {}).items():
            if not term_forms(entry, lang):
                problems.append(Problem(lang, "lessons/glossary.json", term_id,
                                        f"term {term_id!r} has no {lang} translation"))
    return problems


def terms_advice(root: Path = ROOT, langs: list[str] | None = None) -> list[str]:
    """Fresh translations whose English uses a glossary term that the translation does not.

    Advice, not an error: a translator may rightly use a pronoun instead of repeating a term."""
    from .translations import fresh_translations

    glossary, advice = load_glossary(root).get("terms", {}), []
    for lang in langs or [c for c in LANGUAGES if c != SOURCE_LANG]:
        for kind, src, _, items in translatables(root):
            found = fresh_translations(src, lang, root)
            for item_id, english in items:
                if not found.get(item_id):
                    continue
                text = " ".join(found[item_id].lower().split())
                for entry in glossary.values():
                    en_forms, forms = term_forms(entry, SOURCE_LANG), term_forms(entry, lang)
                    used = any(re.search(rf"\b{re.escape(f)}", english, re.I) for f in en_forms)
                    # The English term itself is fine too: a loanword, or a cited title.
                    if used and forms and not any(f.lower() in text for f in forms + en_forms):
                        advice.append(f"{lang}: {rel(src, root)}: {kind} {item_id!r} uses "
                                      f"{en_forms[0]!r}; the glossary says {forms[0]!r}")
    return advice


def _sort_key(term: str) -> str:
    """Dictionary order: accents do not count ("índice" sorts with "indice", not after "z")."""
    return unicodedata.normalize("NFD", term).encode("ascii", "ignore").decode().lower() or term


def build_glossary(lang: str, root: Path = ROOT) -> str:
    """`lessons/<lang>/glossary.md`: the terms in this language first, then the others."""
    glossary = load_glossary(root)
    page = glossary.get("page", {})
    order = [lang] + [code for code in LANGUAGES if code != lang]
    rows = ["| " + " | ".join(LANGUAGES[code] for code in order) + " |", "|" + "---|" * len(order)]
    for entry in sorted(glossary.get("terms", {}).values(),
                        key=lambda e: _sort_key((term_forms(e, lang) or term_forms(e, SOURCE_LANG))[0])):
        cells = [(term_forms(entry, code) or ["?"])[0] for code in order]
        cells[0] = f"**{cells[0]}**"
        rows.append("| " + " | ".join(cells) + " |")
    parts = [
        generated_note(["lessons/glossary.json"]),
        language_line("glossary", lang, ext=".md"),
        "# " + page.get("title", {}).get(lang, "Glossary"),
        page.get("intro", {}).get(lang, ""),
        "\n".join(rows),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"
