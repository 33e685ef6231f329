"""Translations stay complete, current and built; the build itself; lesson pages; runtime t().

The repository checks (first section) read the committed files. The machinery checks copy
sources and translations (.po) into tmp_path and edit them there. The catalogs' own rules
(fuzzy, missing, left over, links kept, t() strings) are tested in tests/test_po.py.
"""

from __future__ import annotations

import json
import re
import shutil
import string
from pathlib import Path

import jupytext
import polib
import pytest

from course_tools import lessons, sources
from course_tools.build import build_all, check_all
from course_tools.glossary import load_glossary, terms_advice
from course_tools.notebooks import build_notebook
from course_tools.translations import update_catalogs
from utils import i18n
from utils.i18n import LANGUAGES, SOURCE_LANG

ROOT = Path(__file__).resolve().parent.parent
OTHERS = [lang for lang in LANGUAGES if lang != SOURCE_LANG]


def _report(problems: list[str], limit: int = 40) -> str:
    shown = "\n".join(problems[:limit])
    more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} problem(s):\n{shown}{more}\n(`python -m course_tools todo` lists them)"


# ------------------------------------------------------------------ the repository


def test_notebook_translations_are_complete_and_current():
    problems = check_all(parts=("notebooks",))
    assert not problems, _report(problems)


def test_lesson_translations_are_complete_and_current():
    problems = check_all(parts=("lessons",))
    assert sources.lesson_sources(), "lessons/src/ has no lesson source"
    assert not problems, _report(problems)


def test_committed_notebooks_and_lessons_equal_a_fresh_build():
    problems = check_all(parts=("built",))
    assert not problems, _report(problems)


def test_every_t_string_has_a_translation_in_every_language():
    problems = check_all(parts=("catalogs",))
    assert not problems, _report(problems)


def test_glossary_has_every_term_in_every_language():
    glossary = load_glossary()
    assert len(glossary["terms"]) >= 20, "the glossary should hold the lesson's key terms"
    for term in ["contrastive-loss", "embedding", "zero-shot", "prompt", "codebook", "token",
                 "cutout", "temperature"]:
        assert term in glossary["terms"], f"the glossary lacks {term!r}"
    problems = check_all(parts=("glossary",))
    assert not problems, _report(problems)


# ------------------------------------------------------------------ notebook sources


_HEADER = re.compile(r'^# %%(?P<md> \[markdown\])?(?: id="(?P<id>[^"]+)")?(?: tags=(?P<tags>\[[^\]]*\]))?$')


def _headers(path: Path) -> list[tuple[str, str | None, list[str]]]:
    """(kind, id, tags) of every `# %%` line, read with a regex (not with jupytext)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            match = _HEADER.match(line)
            assert match, f"{path.name}: header {line!r} is not `# %% [markdown] id=\"x\" tags=[...]`"
            out.append(("markdown" if match["md"] else "code", match["id"],
                        json.loads(match["tags"]) if match["tags"] else []))
    return out


@pytest.mark.parametrize("src", sources.notebook_sources(), ids=lambda p: p.stem)
def test_jupytext_reads_every_source_with_its_cell_ids_and_tags(src):
    """`jupytext --to ipynb` keeps each cell's id and tags (no `incorrectly_encoded_metadata`)."""
    nb = jupytext.reads(src.read_text(encoding="utf-8"), fmt="py:percent")
    read = [(c.cell_type, c.metadata.get("id"), c.metadata.get("tags", [])) for c in nb.cells]
    assert read == _headers(src)
    assert not [c for c in nb.cells if "incorrectly_encoded_metadata" in c.metadata]
    assert all(cell_id for kind, cell_id, _ in read if kind == "markdown")
    assert any("parameters" in tags for _, _, tags in read), f"{src.name}: no parameters cell"


@pytest.mark.parametrize("header, message", [
    ("# %% [markdown] id=title", "not id="),  # the old, hand-parsed encoding
    ("# %% [markdown]", "has no id="),
    ('# %% [markdown] id="a b"', "letters, digits, dashes"),
])
def test_malformed_notebook_headers_raise_with_the_file(tmp_path, header, message):
    src = tmp_path / "09-bad.py"
    src.write_text(f'{header}\n# # Title\n\n# %% id="x"\nx = 1\n', encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        sources.parse_source(src)


def test_a_built_notebook_keeps_ids_tags_and_has_no_outputs():
    src = ROOT / "notebooks" / "src" / "00-setup.py"
    nb = build_notebook(src, "it")
    ids = [c["id"] for c in nb["cells"]]
    assert ids[:3] == ["languages", "title", "colab-setup"]
    wanted = [cell_id for _, cell_id, _ in _headers(src) if cell_id]
    assert [i for i in ids if i not in ("languages", "colab-setup")] == wanted  # in source order
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    assert 'LANG = "it"' in params["source"]
    assert all(c["outputs"] == [] and c["execution_count"] is None
               for c in nb["cells"] if c["cell_type"] == "code")
    assert "**Italiano**" in nb["cells"][0]["source"] and "colab.research.google.com" in nb["cells"][0]["source"]


def _code_cells(nb: dict) -> list[tuple[str, str, list[str]]]:
    return [(c["id"], "".join(c["source"]), c["metadata"].get("tags", []))
            for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("stem", [src.stem for src in sources.notebook_sources()])
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


def test_translations_run_as_smoke_runs_where_only_tagged_cells_stand_aside():
    """tests/smoke_run.py: the English runs as committed; a translation runs every code cell
    but those tagged smoke-skip, with SMOKE = True wherever the parameters cell has SMOKE."""
    import nbformat
    import smoke_run

    assert not smoke_run.applies(ROOT / "notebooks" / "en" / "01-contrastive-learning.ipynb")
    for src in sources.notebook_sources():
        text = src.read_text(encoding="utf-8")
        assert ("SMOKE" in text) == ("SMOKE = False" in text), f"{src.name}: SMOKE must default to False"
        for lang in OTHERS:
            path = ROOT / "notebooks" / lang / f"{src.stem}.ipynb"
            assert smoke_run.applies(path), path
            for cell in nbformat.read(path, as_version=4).cells:
                if cell.cell_type != "code":
                    continue
                runs = smoke_run.smoke_source(cell)
                tags = cell.metadata.get("tags", [])
                assert (runs is None) == (smoke_run.SMOKE_TAG in tags), (path.name, cell.id)
                if "parameters" in tags and "SMOKE = False" in cell.source:
                    assert "SMOKE = True" in runs and "SMOKE = False" not in runs, (path.name, lang)
                elif runs is not None:
                    assert runs == cell.source, (path.name, cell.id)


# ------------------------------------------------------------------ the machinery, in tmp_path


def _fill_translations(root: Path) -> None:
    """Give every language a current translation of everything (the real one where it is
    fresh, else '[xx] ' + English), so that the repository in `root` starts with no problem."""
    update_catalogs(root)
    for path in (root / "notebooks" / "i18n").rglob("*.po"):
        _fill(path)
    for path in (root / "lessons" / "i18n").rglob("*.po"):
        _fill(path)


def _fill(path: Path) -> None:
    po = polib.pofile(str(path))
    lang = path.parent.name
    for entry in po:
        if "fuzzy" in entry.flags or not entry.msgstr:
            entry.msgstr = f"[{lang}] {entry.msgid}"
            entry.flags = [f for f in entry.flags if f != "fuzzy"]
            entry.previous_msgid = None
    po[:] = [e for e in po if not e.obsolete]
    po.save(str(path))


def _set_translation(path: Path, item_id: str, edit) -> None:
    po = polib.pofile(str(path))
    entry = next(e for e in po if e.msgctxt == item_id)
    entry.msgstr = edit(entry.msgstr)
    po.save(str(path))


@pytest.fixture(scope="module")
def built_repo(tmp_path_factory) -> Path:
    """A copy of the 00-setup notebook source, the lesson sources and their translations, built
    (once per module: each test edits its own copy, `repo`)."""
    tmp_path = tmp_path_factory.mktemp("course")
    (tmp_path / "notebooks" / "src").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / "src" / "00-setup.py", tmp_path / "notebooks" / "src")
    for lang in OTHERS:
        real = ROOT / "notebooks" / "i18n" / lang / "00-setup.po"
        if real.exists():
            (tmp_path / "notebooks" / "i18n" / lang).mkdir(parents=True, exist_ok=True)
            shutil.copy(real, tmp_path / "notebooks" / "i18n" / lang)
    shutil.copytree(ROOT / "lessons" / "src", tmp_path / "lessons" / "src")
    shutil.copytree(ROOT / "lessons" / "i18n", tmp_path / "lessons" / "i18n",
                    ignore=shutil.ignore_patterns("*.json"))
    shutil.copy(ROOT / "lessons" / "glossary.json", tmp_path / "lessons")
    _fill_translations(tmp_path)
    assert build_all(root=tmp_path), "the first build writes every file"
    assert build_all(root=tmp_path) == [], "the build is deterministic: a second one writes nothing"
    assert check_all(root=tmp_path, parts=("notebooks", "lessons", "built")) == []
    return tmp_path


@pytest.fixture
def repo(built_repo: Path, tmp_path: Path) -> Path:
    """A fresh copy of built_repo for one test to edit."""
    return Path(shutil.copytree(built_repo, tmp_path / "course"))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_editing_an_english_markdown_cell_fails_the_check_in_the_five_other_languages(repo):
    src = repo / "notebooks" / "src" / "00-setup.py"
    _edit(src, "# The course has two worlds that share one API:",
          "# The course has two worlds, and they share one API:")
    problems = check_all(root=repo, parts=("notebooks",))
    assert len(problems) == 5, problems
    assert all("notebooks/src/00-setup.py" in p and "'doctor-intro'" in p for p in problems), problems
    assert {p.split(":")[0] for p in problems} == set(OTHERS)
    # The build falls back to English for that cell, so every built notebook is now out of date.
    built = check_all(root=repo, parts=("built",))
    assert {p.split(":")[0] for p in built if "00-setup.ipynb" in p} == set(LANGUAGES)
    fr = build_notebook(src, "fr", repo / "notebooks" / "i18n")
    cell = next(c for c in fr["cells"] if c["id"] == "doctor-intro")
    assert "two worlds, and they share one API" in cell["source"], "stale must fall back to English"
    title = next(c for c in fr["cells"] if c["id"] == "title")
    assert not title["source"].startswith("# 00 · Setup check"), "a fresh translation is used"


def test_editing_an_english_lesson_block_falls_back_to_english_in_the_page(repo):
    src = repo / "lessons" / "src" / "multimodal-networks.md"
    _edit(src, "A low\ntemperature makes the model confident", "A low\ntemperature makes it confident")
    problems = check_all(root=repo, parts=("lessons",))
    assert len(problems) == 5 and all("'temperature'" in p for p in problems), problems
    fr = lessons.build_lesson(src, "fr", repo / "lessons" / "i18n")
    assert "A low\ntemperature makes it confident" in fr, "a stale block must fall back to English"


def test_an_edited_built_file_is_reported(repo):
    page = repo / "lessons" / "it" / "instructor-guide.md"
    page.write_text(page.read_text(encoding="utf-8") + "\nedited by hand\n", encoding="utf-8")
    problems = check_all(root=repo, parts=("built",))
    assert len(problems) == 1 and "lessons/it/instructor-guide.md" in problems[0], problems
    assert build_all(root=repo) == [page] and check_all(root=repo, parts=("built",)) == []


def test_terms_advice_flags_a_translation_without_the_glossary_term(repo):
    path = repo / "lessons" / "i18n" / "it" / "multimodal-networks.po"
    _set_translation(path, "temperature", lambda text: re.sub("(?i)temperatur[ae]", "calore", text))
    advice = terms_advice(repo, ["it"])
    assert any("'temperature'" in a and "'temperatura'" in a for a in advice), advice


# ------------------------------------------------------------------ lesson pages


def test_lesson_blocks_are_split_at_markers(tmp_path):
    src = tmp_path / "page.md"
    src.write_text("<!-- i18n: intro -->\n# Title\n\nText.\n\n<!-- i18n: code -->\n```python\n"
                   "x = 1\n```\n", encoding="utf-8")
    blocks = sources.parse_lesson(src)
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
        sources.parse_lesson(src)


def test_macros_link_the_notebook_and_quiz_of_the_page_language():
    text = "Run {{notebook 03-image-search}}, then {{quiz overview post}}."
    fr = lessons.expand_macros(text, "fr")
    # a notebook with exercises: its student version, the solved one beside it
    assert "[`03-image-search.ipynb`](../../notebooks/fr/exercises/03-image-search.ipynb)" in fr
    assert "([avec les solutions](../../notebooks/fr/03-image-search.ipynb))" in fr
    assert "(../../notebooks/fr/00-setup.ipynb)" in lessons.expand_macros("{{notebook 00-setup}}", "fr")
    assert "colab.research.google.com/github/" in fr and "notebooks/fr/03-image-search.ipynb" in fr
    assert "mybinder.org" in fr
    assert "`python -m utils quiz overview --stage post --lang fr`" in fr
    assert "(../../quiz/overview.json)" in fr
    en = lessons.expand_macros(text, "en")
    assert "--lang" not in en and "notebooks/en/03-image-search.ipynb" in en


def test_every_built_page_starts_with_a_language_line(tmp_path):
    for src in sources.lesson_sources():
        for lang, name in LANGUAGES.items():
            page = lessons.build_lesson(src, lang)
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


# ------------------------------------------------------------------ t() at runtime


def test_t_translates_falls_back_and_fills_placeholders(tmp_path):
    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8"}
    po.append(polib.POEntry(msgid="{n} images", msgstr="{n} images (fr)"))
    po.append(polib.POEntry(msgid="Loss", msgstr="Perte"))
    po.append(polib.POEntry(msgid="Accuracy", msgstr="Précision", flags=["fuzzy"]))
    po.append(polib.POEntry(msgid="Recall", msgstr=""))
    po.save(str(tmp_path / "fr.po"))
    found = i18n.catalog("fr", tmp_path)
    assert found == {"{n} images": "{n} images (fr)", "Loss": "Perte"}  # fuzzy and empty: English
    assert i18n.catalog("fr", tmp_path) is found  # read once
    assert i18n.t("Loss", "fr") == i18n.catalog("fr").get("Loss", "Loss")
    assert i18n.t("{n} images", "en", n=2) == "2 images"
    assert i18n.t("Not in any catalog", "fr") == "Not in any catalog"
    assert i18n.catalog("de", tmp_path) == {}
    with pytest.raises(ValueError, match="choose one of"):
        i18n.set_language("de")


def test_the_runtime_catalogs_are_po_files_with_translations():
    for lang in OTHERS:
        assert (ROOT / "utils" / "locales" / f"{lang}.po").exists(), f"utils/locales/{lang}.po is missing"
        assert not (ROOT / "utils" / "locales" / f"{lang}.json").exists(), "left-over JSON catalog"
        found = i18n.catalog(lang)
        assert len(found) > 50 and all(v.strip() for v in found.values()), lang


@pytest.mark.parametrize("lang", OTHERS)
def test_every_runtime_message_renders_with_its_placeholders_filled(lang):
    """Each t() message of utils/locales/<lang>.po goes through t() with a number in every
    placeholder: it renders, and each placeholder shows its value as that language writes it.
    (The translated notebooks run small; this covers the messages of every branch.)"""
    entries = [e for e in polib.pofile(str(ROOT / "utils" / "locales" / f"{lang}.po")) if e.translated()]
    assert len(entries) > 50, f"utils/locales/{lang}.po has few translations"
    formatter = string.Formatter()
    for entry in entries:
        fields = [(name, spec, conv) for _, name, spec, conv in formatter.parse(entry.msgstr) if name is not None]
        names = {name for _, name, _, _ in formatter.parse(entry.msgid) if name is not None}
        assert {f[0] for f in fields} == names, f"{lang}: t({entry.msgid!r}) is translated with other placeholders"
        values = {name: 1234.5678 + k for k, name in enumerate(sorted(names))}
        out = i18n.t(entry.msgid, lang, **values)
        if not values:
            assert out == entry.msgstr, f"{lang}: t({entry.msgid!r}) does not give its translation"
            continue
        assert i18n.t(entry.msgid, SOURCE_LANG, **values), entry.msgid  # the English renders too
        for name, spec, conv in fields:
            value = formatter.convert_field(values[name], conv)
            assert i18n.number(value, spec, lang) in out, \
                f"{lang}: t({entry.msgid!r}) gave {out!r}: its {{{name}}} is not filled"


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
