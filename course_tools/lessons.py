"""Build the lesson pages `lessons/<lang>/<name>.md` and the glossary pages.

A page is the language line (with a link to the glossary), then the blocks of
`lessons/src/<name>.md`, each in its fresh translation or in English. Two macros keep links
right in every language: `{{notebook 01-contrastive-learning}}` links that notebook in the
page's language with its Colab and Binder badges; `{{quiz overview pre}}` gives the quiz
command and a link to `quiz/overview.json`; `{{claim KEY:.1f}}` writes a measured number of
`reports/claims.json` in the page language's format (course_tools/claims.py). Translations
write them unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path

from utils.i18n import SOURCE_LANG

from .claims import expand_claims, load_claims
from .notebooks import badges, language_line
from .sources import MACRO, ROOT, parse_lesson

LESSON_I18N = ROOT / "lessons" / "i18n"


def expand_macros(text: str, lang: str, up: str = "../..") -> str:
    """Replace `{{notebook NN-name}}` and `{{quiz LESSON pre|post}}` for a page in `lang`.

    `up` is the path from the page's folder to the repository root."""
    from .exercises import lesson_link  # the student version, solutions beside it

    def replace(match: re.Match) -> str:
        what, name, stage = match.groups()
        if what == "notebook":
            path = f"notebooks/{lang}/{name}.ipynb"
            return lesson_link(name, lang, up) or f"[`{name}.ipynb`]({up}/{path}) {badges(path)}"
        command = f"python -m utils quiz {name} --stage {stage or 'pre'}"
        if lang != SOURCE_LANG:
            command += f" --lang {lang}"
        return f"`{command}` ([`quiz/{name}.json`]({up}/quiz/{name}.json))"

    return MACRO.sub(replace, text)


def generated_note(sources: list[str]) -> str:
    return (f"<!-- Written by `python -m course_tools build` from {' and '.join(sources)}: "
            "edit those, not this file. -->")


def build_lesson(src: Path, lang: str, base: Path = LESSON_I18N) -> str:
    """The page `lessons/<lang>/<name>.md` of the source `src` (English where untranslated).

    It starts with the language line and a link to the glossary in the same language."""
    from .glossary import load_glossary
    from .po import fresh_text, load_translations

    src = Path(src)
    found = load_translations(src.stem, lang, base) if lang != SOURCE_LANG else {}
    glossary = load_glossary(Path(base).parent.parent)["page"].get("title", {})
    links = language_line(src.stem, lang, ext=".md")
    if glossary:
        links += f" · [{glossary.get(lang, glossary.get(SOURCE_LANG))}](glossary.md)"
    sources = [f"lessons/src/{src.name}"]
    if lang != SOURCE_LANG:
        sources.append(f"lessons/i18n/{lang}/{src.stem}.po")
    parts = [generated_note(sources), links]
    claims = load_claims()
    for block in parse_lesson(src):
        text = fresh_text(found.get(block.id), block.text) or block.text
        where = f"lessons/src/{src.name}, block {block.id!r} ({lang}): "
        parts.append(expand_claims(expand_macros(text, lang), lang, claims, where))
    return "\n\n".join(parts) + "\n"
