"""The glossary is used: lessons and quizzes say the same thing with the same words, per language.

`lessons/glossary.json` lists each term and the word every language uses for it ("terms"),
and the words a translation must not use ("avoid": "modèle de prompt", "perte adverse"...).
This file checks the lesson pages, the quizzes and the markdown of the built notebooks
(`notebooks/<lang>/*.ipynb`) against it, and checks that the lesson pages write numbers the
way each language writes them (0,3 and 50 000 in French)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from course_tools.glossary import load_glossary, term_forms
from course_tools.sources import parse_lesson
from course_tools.translations import fresh_translations
from utils.i18n import LANGUAGES, SOURCE_LANG

ROOT = Path(__file__).resolve().parent.parent
TRANSLATED = [lang for lang in LANGUAGES if lang != SOURCE_LANG]
GLOSSARY = load_glossary(ROOT)

# Terms whose translation the reviewers found inconsistent, or that carry the lesson: each
# translated text whose English uses one of them must use the glossary's word for it.
CHECKED_TERMS = ["caption", "embedding", "embedding-space", "contrastive-loss", "prompt-template",
                 "accuracy", "recall-at-k", "precision-at-k", "codebook", "cosine-similarity",
                 "similarity-matrix", "logit-scale", "adversarial", "gan", "discriminator",
                 "vector-quantisation", "straight-through-estimator", "linear-probe", "token"]


def clean(text: str) -> str:
    """Prose only: no code, no link targets, no formulas, no URLs, no HTML comments."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"`[^`]*`", " ", text)
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    text = re.sub(r"\$[^$\n]+\$", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"https?://\S+|arXiv:\S+|doi:\S+|<!--.*?-->", " ", text, flags=re.S)
    return " ".join(text.split())


def lesson_pairs(lang: str) -> list[tuple[str, str, str]]:
    """(where, English, translation) for every fresh translated block of every lesson page."""
    pairs = []
    for src in sorted((ROOT / "lessons" / "src").glob("*.md")):
        found = fresh_translations(src, lang, ROOT)
        for block in parse_lesson(src):
            if found.get(block.id):
                pairs.append((f"lessons/i18n/{lang}/{src.stem}.po#{block.id}", block.text, found[block.id]))
    return pairs


def quiz_pairs(lang: str) -> list[tuple[str, str, str]]:
    """(where, English, translation) for every text of every quiz."""
    pairs = []

    def walk(node, where):
        if isinstance(node, dict):
            if isinstance(node.get(SOURCE_LANG), str) and lang in node:
                pairs.append((where, node[SOURCE_LANG], node[lang]))
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    for path in sorted((ROOT / "quiz").glob("*.json")):
        if path.stem not in ("schema", "ui"):
            walk(json.loads(path.read_text(encoding="utf-8")), f"quiz/{path.name}")
    return pairs


def markdown_cells(path: Path) -> dict[str, str]:
    """{cell id: text} of a built notebook's markdown cells."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return {c["id"]: "".join(c["source"]) for c in cells if c["cell_type"] == "markdown"}


def notebook_pairs(lang: str) -> list[tuple[str, str, str]]:
    """(where, English, translation) for every translated markdown cell of the built notebooks
    (a cell still in English, an untranslated or fuzzy entry, is not a translation yet)."""
    pairs = []
    for path in sorted((ROOT / "notebooks" / lang).glob("*.ipynb")):
        english = markdown_cells(ROOT / "notebooks" / SOURCE_LANG / path.name)
        for cell_id, text in markdown_cells(path).items():
            if cell_id in english and text != english[cell_id]:
                pairs.append((f"notebooks/{lang}/{path.name}#{cell_id}", english[cell_id], text))
    return pairs


def all_pairs(lang: str) -> list[tuple[str, str, str]]:
    return lesson_pairs(lang) + quiz_pairs(lang) + notebook_pairs(lang)


def test_every_checked_term_and_avoided_word_is_in_the_glossary():
    terms = GLOSSARY["terms"]
    assert set(CHECKED_TERMS) <= set(terms), set(CHECKED_TERMS) - set(terms)
    for term_id in CHECKED_TERMS:
        for lang in LANGUAGES:
            assert term_forms(terms[term_id], lang), f"{term_id} has no {lang} form"
    for lang, rules in GLOSSARY["avoid"].items():
        if lang.startswith("_"):
            continue
        assert lang in TRANSLATED, lang
        for rule in rules:
            re.compile(rule["pattern"])
            assert rule["use"].strip()


@pytest.mark.parametrize("lang", TRANSLATED)
def test_lessons_quizzes_and_notebooks_avoid_the_words_the_glossary_rules_out(lang):
    rules = GLOSSARY["avoid"].get(lang, [])
    found = []
    for where, _english, text in all_pairs(lang):
        prose = clean(text)
        for rule in rules:
            for match in re.finditer(rule["pattern"], prose, flags=re.I):
                found.append(f"{where}: {match.group(0)!r} -> use {rule['use']!r}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("lang", TRANSLATED)
def test_lessons_quizzes_and_notebooks_use_the_glossary_words(lang):
    """Where the English says "embedding", the French says "plongement" (or another listed form)."""
    missing = []
    for where, english, text in all_pairs(lang):
        english, prose = clean(english), clean(text).lower()
        for term_id in CHECKED_TERMS:
            entry = GLOSSARY["terms"][term_id]
            used = any(re.search(rf"\b{re.escape(f)}s?\b", english, re.I) for f in term_forms(entry, SOURCE_LANG))
            forms = term_forms(entry, lang)
            if used and not any(f.lower() in prose for f in forms):
                missing.append(f"{where}: {term_id} -> {forms[0]!r}")
    assert not missing, "\n".join(missing)


def test_the_french_words_the_reviewers_asked_for_are_the_glossary_s():
    terms = GLOSSARY["terms"]
    assert term_forms(terms["embedding"], "fr")[0] == "plongement"
    assert term_forms(terms["contrastive-loss"], "fr")[0] == "perte contrastive"
    assert term_forms(terms["accuracy"], "fr")[0] == "exactitude"
    assert term_forms(terms["precision-at-k"], "fr")[0] == "précision@k"
    assert term_forms(terms["prompt-template"], "fr")[0] in ("gabarit d'invite", "modèle d'invite")
    avoided = " ".join(rule["pattern"] for rule in GLOSSARY["avoid"]["fr"])
    for word in ("modèle de prompt", "perte adverse"):
        assert any(re.search(rule["pattern"], word) for rule in GLOSSARY["avoid"]["fr"]), avoided


DECIMAL = re.compile(r"(?<![\d.,])\d+\.\d+(?![\d.,])")
THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,])")
GROUP = {"fr": "[ \u00a0\u202f]", "es": "[.\u00a0\u202f ]", "it": "[.\u00a0\u202f ]", "pt": "[.\u00a0\u202f ]"}


@pytest.mark.parametrize("lang", list(GROUP))
def test_lesson_numbers_follow_the_language(lang):
    """0.07 -> 0,07 and 32,768 -> 32 768 (fr) or 32.768 (es, it, pt) in the lesson pages."""
    problems = []
    for where, english, text in lesson_pairs(lang):
        english, prose = clean(english), clean(text)
        for number in DECIMAL.findall(english):
            if number.replace(".", ",") not in prose:
                problems.append(f"{where}: {number} should read {number.replace('.', ',')}")
        for number in THOUSANDS.findall(english):
            pattern = re.escape(number).replace(",", GROUP[lang])
            if len(number.replace(",", "")) == 4 and lang != "fr":
                pattern = f"(?:{pattern}|{number.replace(',', '')})"
            if not re.search(pattern, prose):
                problems.append(f"{where}: {number} is not grouped the {lang} way")
        points = re.findall(r"[^ ]*\d\.\d[^ ]*", prose)
        if points and lang == "fr":
            problems.append(f"{where}: a decimal point in French prose: {points}")
    assert not problems, "\n".join(problems)


def test_clean_keeps_prose_and_drops_code_links_and_formulas():
    text = "Le `embedding` [lien](https://x.y/embedding) $s = 0.07$ et un plongement, 0,3 h."
    assert clean(text) == "Le [lien] et un plongement, 0,3 h."


def test_notebook_pairs_cover_every_translated_notebook():
    """The notebook check is not empty: each language has translated markdown in every notebook."""
    names = {p.name for p in (ROOT / "notebooks" / SOURCE_LANG).glob("*.ipynb")}
    assert names
    for lang in TRANSLATED:
        found = {where.split("/")[2].split("#")[0] for where, _, _ in notebook_pairs(lang)}
        assert found == names, f"{lang}: no translated markdown in {sorted(names - found)}"
