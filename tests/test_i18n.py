"""Translations stay complete, current and built: notebooks, lesson pages, t() strings.

The repository checks (first section) read the committed files. The machinery checks
(second section) copy sources and translations into tmp_path and edit them there.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from utils import i18n
from utils.i18n import LANGUAGES, ROOT, SOURCE_LANG, check_all, text_hash

OTHERS = [lang for lang in LANGUAGES if lang != SOURCE_LANG]


def _report(problems: list[str], limit: int = 40) -> str:
    shown = "\n".join(problems[:limit])
    more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} problem(s):\n{shown}{more}\n(`python -m utils.i18n todo` lists them)"


# ------------------------------------------------------------------ the repository


def test_notebook_translations_are_complete_and_current():
    problems = check_all(parts=("notebooks",))
    assert not problems, _report(problems)


def test_lesson_translations_are_complete_and_current():
    problems = check_all(parts=("lessons",))
    assert i18n.lesson_sources(), "lessons/src/ has no lesson source"
    assert not problems, _report(problems)


def test_committed_notebooks_and_lessons_equal_a_fresh_build():
    problems = check_all(parts=("built",))
    assert not problems, _report(problems)


def test_every_t_string_has_a_translation_in_every_language():
    problems = check_all(parts=("catalogs",))
    assert not problems, _report(problems)


def test_glossary_has_every_term_in_every_language():
    glossary = i18n.load_glossary()
    assert len(glossary["terms"]) >= 20, "the glossary should hold the lesson's key terms"
    for term in ["contrastive-loss", "embedding", "zero-shot", "prompt", "codebook", "token",
                 "cutout", "temperature"]:
        assert term in glossary["terms"], f"the glossary lacks {term!r}"
    problems = check_all(parts=("glossary",))
    assert not problems, _report(problems)


def _code_cells(nb: dict) -> list[tuple[str, str, list[str]]]:
    return [(c["id"], "".join(c["source"]), c["metadata"].get("tags", []))
            for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("stem", [src.stem for src in i18n.notebook_sources()])
def test_code_cells_are_identical_in_every_language(stem):
    """Only the parameters cell's LANG line may differ between languages."""
    english = json.loads((ROOT / "notebooks" / "en" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    for lang in OTHERS:
        path = ROOT / "notebooks" / lang / f"{stem}.ipynb"
        assert path.exists(), f"{path.relative_to(ROOT)} is not built (run make notebooks)"
        nb = json.loads(path.read_text(encoding="utf-8"))
        ours, theirs = _code_cells(english), _code_cells(nb)
        assert [c[0] for c in theirs] == [c[0] for c in ours], f"{lang}: {stem}: other code cells"
        for (cell_id, en_src, tags), (_, src, _) in zip(ours, theirs):
            if "parameters" in tags:
                assert f'LANG = "{lang}"' in src, f"{lang}: {stem}: parameters cell has no LANG = {lang!r}"
                en_src = en_src.replace('LANG = "en"', f'LANG = "{lang}"')
            assert src == en_src, f"{lang}: {stem}: code cell {cell_id!r} differs from English"


# ------------------------------------------------------------------ the machinery, in tmp_path


def _fill_translations(root: Path) -> None:
    """Give every language a current translation of everything (the real one where it exists,
    else '[xx] ' + English), so that the repository in `root` starts with no problem."""
    for kind, src, base, items in i18n._translatables(root):
        key = "cells" if kind == "cell" else "blocks"
        for lang in OTHERS:
            path = base / lang / f"{src.stem}.json"
            data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
            entries = data.setdefault(key, {})
            for item_id, english in items:
                if i18n.fresh_text(entries.get(item_id), english) is None:
                    entries[item_id] = {"hash": text_hash(english), "text": f"[{lang}] {english}"}
            for gone in set(entries) - {item_id for item_id, _ in items}:
                del entries[gone]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the 00-setup notebook source, the lesson sources and their translations."""
    (tmp_path / "notebooks" / "src").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / "src" / "00-setup.py", tmp_path / "notebooks" / "src")
    for lang in OTHERS:
        real = ROOT / "notebooks" / "i18n" / lang / "00-setup.json"
        if real.exists():
            (tmp_path / "notebooks" / "i18n" / lang).mkdir(parents=True, exist_ok=True)
            shutil.copy(real, tmp_path / "notebooks" / "i18n" / lang)
    shutil.copytree(ROOT / "lessons" / "src", tmp_path / "lessons" / "src")
    if (ROOT / "lessons" / "i18n").exists():
        shutil.copytree(ROOT / "lessons" / "i18n", tmp_path / "lessons" / "i18n")
    shutil.copy(ROOT / "lessons" / "glossary.json", tmp_path / "lessons")
    _fill_translations(tmp_path)
    i18n.build_all(root=tmp_path)
    assert check_all(root=tmp_path, parts=("notebooks", "lessons", "built")) == []
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _stale_langs(problems: list[str], file: str, what: str) -> set[str]:
    langs = set()
    for p in problems:
        assert file in p and what in p and "stale" in p, f"unexpected problem: {p}"
        langs.add(p.split(":")[0])
    return langs


def test_editing_an_english_markdown_cell_makes_it_stale_in_the_five_other_languages(repo):
    src = repo / "notebooks" / "src" / "00-setup.py"
    _edit(src, "# The course has two worlds that share one API:",
          "# The course has two worlds, and they share one API:")
    problems = check_all(root=repo, parts=("notebooks",))
    assert len(problems) == 5, problems
    assert _stale_langs(problems, "notebooks/src/00-setup.py", "cell 'doctor-intro'") == set(OTHERS)
    # The build falls back to English for that cell, so every built notebook is now out of date.
    built = check_all(root=repo, parts=("built",))
    assert {p.split(":")[0] for p in built if "00-setup.ipynb" in p} == set(LANGUAGES)


def test_editing_an_english_lesson_block_makes_it_stale_in_the_five_other_languages(repo):
    src = repo / "lessons" / "src" / "multimodal-networks.md"
    _edit(src, "A low\ntemperature makes the model confident", "A low\ntemperature makes it confident")
    problems = check_all(root=repo, parts=("lessons",))
    assert len(problems) == 5, problems
    assert _stale_langs(problems, "lessons/src/multimodal-networks.md", "block 'temperature'") \
        == set(OTHERS)
    fr = i18n.build_lesson(src, "fr", repo / "lessons" / "i18n")
    assert "A low\ntemperature makes it confident" in fr, "a stale block must fall back to English"


def test_updating_the_hash_makes_the_translation_current_again(repo):
    src = repo / "lessons" / "src" / "instructor-guide.md"
    _edit(src, "## Learning objectives", "## Learning goals")
    assert len(check_all(root=repo, parts=("lessons",))) == 5
    english = next(b.text for b in i18n.parse_lesson(src) if b.id == "objectives")
    for lang in OTHERS:
        path = repo / "lessons" / "i18n" / lang / "instructor-guide.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        data["blocks"]["objectives"]["hash"] = text_hash(english)
        path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    assert check_all(root=repo, parts=("lessons",)) == []


def test_missing_translation_and_left_over_translation_are_named(repo):
    path = repo / "notebooks" / "i18n" / "pt" / "00-setup.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["cells"]["an-old-cell"] = data["cells"].pop("load-intro")
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    problems = check_all(root=repo, parts=("notebooks",))
    assert len(problems) == 2, problems
    assert any("pt:" in p and "'load-intro' is not translated" in p for p in problems)
    assert any("pt:" in p and "'an-old-cell'" in p and "remove it" in p for p in problems)


def test_a_translation_that_breaks_a_link_or_macro_is_reported(repo):
    path = repo / "lessons" / "i18n" / "es" / "multimodal-networks.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    block = data["blocks"]["clip"]
    block["text"] = block["text"].replace("../figures/clip-architecture.png", "figures/clip.png")
    data["blocks"]["clip-notebook"]["text"] = "Notebook 01."  # the {{notebook}} macro is gone
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    problems = check_all(root=repo, parts=("lessons",))
    assert len(problems) == 2, problems
    assert any("es:" in p and "'clip'" in p and "../figures/clip-architecture.png" in p for p in problems)
    assert any("es:" in p and "'clip-notebook'" in p and "notebook 01-contrastive-learning" in p
               for p in problems)


def test_an_edited_built_file_is_reported(repo):
    page = repo / "lessons" / "it" / "instructor-guide.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nedited by hand\n", encoding="utf-8")
    problems = check_all(root=repo, parts=("built",))
    assert len(problems) == 1 and "lessons/it/instructor-guide.md" in problems[0], problems


# ------------------------------------------------------------------ lesson pages


def test_lesson_blocks_are_split_at_markers(tmp_path):
    src = tmp_path / "page.md"
    src.write_text("<!-- i18n: intro -->\n# Title\n\nText.\n\n<!-- i18n: code -->\n```python\n"
                   "x = 1\n```\n", encoding="utf-8")
    blocks = i18n.parse_lesson(src)
    assert [(b.id, b.text, b.line) for b in blocks] == [
        ("intro", "# Title\n\nText.", 1), ("code", "```python\nx = 1\n```", 6)]


@pytest.mark.parametrize("text, message", [
    ("Text before.\n<!-- i18n: a -->\nx\n", "before the first"),
    ("<!-- i18n: a -->\nx\n<!-- i18n: a -->\ny\n", "duplicate block id 'a'"),
    ("<!-- i18n: a -->\n```\nx\n<!-- i18n: b -->\n```\n", "code fence"),
    ("<!-- i18n: a b -->\nx\n", "block id"),
    ("<!-- i18n: a -->\n\n<!-- i18n: b -->\ny\n", "empty"),
])
def test_malformed_lesson_sources_raise_with_the_line(tmp_path, text, message):
    src = tmp_path / "page.md"
    src.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        i18n.parse_lesson(src)


def test_macros_link_the_notebook_and_quiz_of_the_page_language():
    text = "Run {{notebook 03-image-search}}, then {{quiz overview post}}."
    fr = i18n.expand_macros(text, "fr")
    # a notebook with exercises: its student version, the solved one beside it
    assert "[`03-image-search.ipynb`](../../notebooks/fr/exercises/03-image-search.ipynb)" in fr
    assert "([avec les solutions](../../notebooks/fr/03-image-search.ipynb))" in fr
    assert "(../../notebooks/fr/00-setup.ipynb)" in i18n.expand_macros("{{notebook 00-setup}}", "fr")
    assert "colab.research.google.com/github/" in fr and "notebooks/fr/03-image-search.ipynb" in fr
    assert "mybinder.org" in fr
    assert "`python -m utils quiz overview --stage post --lang fr`" in fr
    assert "(../../quiz/overview.json)" in fr
    en = i18n.expand_macros(text, "en")
    assert "--lang" not in en and "notebooks/en/03-image-search.ipynb" in en


def test_every_built_page_starts_with_a_language_line(tmp_path):
    for src in i18n.lesson_sources():
        for lang, name in LANGUAGES.items():
            page = i18n.build_lesson(src, lang)
            line = page.splitlines()[2]
            assert f"**{name}**" in line, f"{lang}: {src.name}: the language line does not bold {name}"
            for other in LANGUAGES:
                if other != lang:
                    assert f"(../{other}/{src.name})" in line


def test_lesson_cites_the_facts_it_teaches():
    text = (ROOT / "lessons" / "src" / "multimodal-networks.md").read_text(encoding="utf-8")
    for fact in ["400 million", "32,768", "76.2%", "12 billion", "256 BPE text tokens",
                 "32×32 = 1,024 image tokens", "8,192", "Radford", "Esser", "Ramesh", "Crowson",
                 "van den Oord", "Zhai", r"\mathcal{L} = \frac{1}{2N}"]:
        assert fact in text, f"the lesson no longer says {fact!r}"
    for stem in ["00-setup", "01-contrastive-learning", "02-zero-shot-classification",
                 "03-image-search", "04-vqgan-clip", "05-dall-e"]:
        assert f"{{{{notebook {stem}}}}}" in text, f"the lesson does not link notebook {stem}"


def test_export_then_import_round_trip(repo, tmp_path):
    src = repo / "lessons" / "src" / "instructor-guide.md"
    _edit(src, "## Quizzes", "## The quizzes")
    todo = i18n.export_text(src, "zh")
    assert todo.startswith("<!-- i18n: quizzes -->\n## The quizzes") and todo.count("<!-- i18n:") == 1
    translated = tmp_path / "zh.md"
    translated.write_text(todo.replace("## The quizzes", "## 测验"), encoding="utf-8")
    i18n.import_translation(src, "zh", translated)
    assert not [p for p in check_all(root=repo, parts=("lessons",)) if p.startswith("zh:")]
    assert "## 测验" in i18n.build_lesson(src, "zh", repo / "lessons" / "i18n")
    translated.write_text("<!-- i18n: no-such-block -->\nx\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no-such-block"):
        i18n.import_translation(src, "zh", translated)


def test_import_stores_notebook_cells_under_their_hash(repo, tmp_path):
    src = repo / "notebooks" / "src" / "00-setup.py"
    _edit(src, "# ## Self-check", "# ## Check yourself")
    todo = i18n.export_text(src, "it")
    assert todo.startswith("<!-- i18n: self-check-intro -->\n## Check yourself")
    translated = tmp_path / "it.md"
    translated.write_text(todo.replace("## Check yourself", "## Verifica"), encoding="utf-8")
    path = i18n.import_translation(src, "it", translated)
    entry = json.loads(path.read_text(encoding="utf-8"))["cells"]["self-check-intro"]
    english = next(c.source for c in i18n.parse_source(src) if c.id == "self-check-intro")
    assert entry["hash"] == text_hash(english) and entry["text"].startswith("## Verifica")
    assert not [p for p in check_all(root=repo, parts=("notebooks",)) if p.startswith("it:")]


# ------------------------------------------------------------------ t() and its catalogs


def test_t_translates_falls_back_and_fills_placeholders(tmp_path, monkeypatch):
    (tmp_path / "fr.json").write_text(json.dumps({"{n} images": "{n} images (fr)", "Loss": "Perte"}),
                                      encoding="utf-8")
    monkeypatch.setattr(i18n, "LOCALES", tmp_path)
    monkeypatch.setattr(i18n, "_catalogs", {})
    monkeypatch.setattr(i18n.catalog, "__defaults__", (tmp_path,))
    assert i18n.t("Loss", "fr") == "Perte"
    assert i18n.t("{n} images", "fr", n=3) == "3 images (fr)"
    assert i18n.t("Not in the catalog", "fr") == "Not in the catalog"
    assert i18n.t("{n} images", "en", n=2) == "2 images"
    with pytest.raises(ValueError, match="choose one of"):
        i18n.set_language("de")


def test_chinese_gets_a_font_for_plots_or_one_clear_message(monkeypatch, capsys):
    from matplotlib import rcParams

    monkeypatch.setattr(i18n, "_warned", set())
    monkeypatch.setitem(rcParams, "font.sans-serif", list(rcParams["font.sans-serif"]))
    first, second = i18n.use_cjk_font(), i18n.use_cjk_font()
    printed = capsys.readouterr().out
    if first is None:  # no Chinese font on this machine: say so once, with the fix
        assert second is None and printed.count("No Chinese font for plots") == 1, printed
    else:
        assert rcParams["font.sans-serif"][0] == first == second and not printed


def test_catalog_scanner_finds_t_strings_and_names_file_and_language(tmp_path):
    (tmp_path / "utils" / "locales").mkdir(parents=True)
    (tmp_path / "notebooks" / "src").mkdir(parents=True)
    (tmp_path / "utils" / "plots.py").write_text(
        "from utils.i18n import t\n\n"
        "def title(n):\n"
        "    return t(\"Loss\") + t(\"{n} steps\", n=n) + t(f\"{n} bad\")\n", encoding="utf-8")
    (tmp_path / "notebooks" / "src" / "01-x.py").write_text(
        "# %% [markdown] id=a\n# text\n\n# %%\nfrom utils import i18n\nprint(i18n.t('Accuracy'))\n"
        "t = 3  # not our t: this file does not import it\nprint(t)\n"
        "from utils.i18n import t as tr\nprint(tr('Loss'))\n", encoding="utf-8")
    assert i18n.t_strings(tmp_path / "utils" / "plots.py") == [("Loss", 4), ("{n} steps", 4), (None, 4)]
    catalogs = {"fr": {"Loss": "Perte", "{n} steps": "{n} étapes", "Accuracy": "Exactitude"},
                "es": {"Loss": "Pérdida", "{n} steps": "{m} pasos"}}
    for lang in OTHERS:
        (tmp_path / "utils" / "locales" / f"{lang}.json").write_text(
            json.dumps(catalogs.get(lang, {})), encoding="utf-8")
    problems = check_all(root=tmp_path, parts=("catalogs",))
    assert not [p for p in problems if p.startswith("fr:")], problems
    es = [p for p in problems if p.startswith("es:")]
    assert len(es) == 2 and any("'Accuracy'" in p and "notebooks/src/01-x.py:6" in p for p in es)
    assert any("placeholders" in p and "'{n} steps'" in p for p in es)
    assert sum(p.startswith("zh: utils/locales/zh.json") for p in problems) == 3
    assert any("utils/plots.py:4" in p and "f\"...\"" in p for p in problems)


def test_catalog_reports_translations_no_code_uses(tmp_path):
    (tmp_path / "utils" / "locales").mkdir(parents=True)
    (tmp_path / "notebooks" / "src").mkdir(parents=True)
    (tmp_path / "utils" / "plots.py").write_text(
        "from utils.i18n import t\n\nKEYS = ['Precision']\n\n"
        "def title(key):\n    return t(\"Loss\") + t(key)\n", encoding="utf-8")
    for lang in OTHERS:  # "Precision" reaches t() through a variable: it is used
        (tmp_path / "utils" / "locales" / f"{lang}.json").write_text(
            json.dumps({"Loss": "x", "Precision": "y", "Old title": "z"}), encoding="utf-8")
    problems = check_all(root=tmp_path, parts=("catalogs",))
    assert len(problems) == len(OTHERS), problems
    assert all("'Old title'" in p and "no code uses it" in p for p in problems)


def test_catalog_files_are_flat_string_maps():
    for lang in OTHERS:
        path = ROOT / "utils" / "locales" / f"{lang}.json"
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            bad = [k for k, v in data.items() if not isinstance(v, str) or not v.strip()]
            assert not bad, f"{path.relative_to(ROOT)}: empty or non-string translations for {bad}"


def test_terms_advice_flags_a_translation_without_the_glossary_term(repo):
    path = repo / "lessons" / "i18n" / "it" / "multimodal-networks.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["blocks"]["temperature"]["text"] = re.sub("(?i)temperatur[ae]", "calore",
                                                   data["blocks"]["temperature"]["text"])
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    advice = i18n.terms_advice(repo, ["it"])
    assert any("'temperature'" in a and "'temperatura'" in a for a in advice), advice
