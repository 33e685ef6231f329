"""One English source, six languages, and the checks that keep translations true.

Three kinds of text are translated, each keyed to its English source by an id and a hash:

Notebooks
    Sources live in `notebooks/src/NN-name.py` (percent format, see CONTRIBUTING.md).
    Each markdown cell has an `id`; its translation lives in `notebooks/i18n/<lang>/NN-name.json`:

        {"cells": {"<cell id>": {"hash": "<text_hash(english)>", "text": "<translation>"}}}

    Code cells are never translated: they are byte-identical in every language, except
    the `LANG = "en"` line of the parameters cell.

Lesson pages
    Sources live in `lessons/src/<name>.md`. A line `<!-- i18n: block-id -->` starts a
    block, which runs until the next such line; every line of the page belongs to a block.
    Ids are stable names written by hand (letters, digits, dashes), so a heading can be
    reworded without losing its translations. Translations live in
    `lessons/i18n/<lang>/<name>.json`:

        {"blocks": {"<block id>": {"hash": "<text_hash(english)>", "text": "<translation>"}}}

    The build writes `lessons/<lang>/<name>.md`: a language line linking the other
    languages and the glossary, then the blocks. Two macros keep links right in every
    language: `{{notebook 01-contrastive-learning}}` becomes a link to that notebook in the
    page's language with its Colab and Binder badges; `{{quiz overview pre}}` becomes the
    quiz command and a link to `quiz/overview.json`. Write them unchanged in translations.
    Headings are translated, so their anchors differ by language: link within a page to an
    `<a id="name"></a>` written in the block instead.

Glossary
    `lessons/glossary.json` keeps terms consistent: {"page": {title, intro per language},
    "terms": {term id: {lang: "term" or ["term", other accepted forms...]}}}. The build
    writes it as `lessons/<lang>/glossary.md`; `terms` lists translations that do not use it.

Strings shown by code
    `t("English")` looks the string up in `utils/locales/<lang>.json` ({English: translation}).
    `{placeholders}` are filled after translation: `t("{n} images", n=3)`.

A translation whose hash differs from the hash of the current English is *stale*: editing
the English marks every language's translation of that cell or block stale until a translator
updates it (and its hash). A fresh translation must also keep the English's relative links,
images and macros. Missing and stale translations fall back to English in the build.

    python -m utils.i18n build            # write notebooks/<lang>/ and lessons/<lang>/
    python -m utils.i18n check            # what CI fails on (exit 1 when anything is wrong)
    python -m utils.i18n todo --lang fr   # what to translate: ids, hashes and English text
    python -m utils.i18n terms --lang fr  # advice: glossary terms a translation does not use
    python -m utils.i18n export --lang fr lessons/src/x.md > x.fr.md   # what fr lacks, as blocks
    python -m utils.i18n import --lang fr lessons/src/x.md x.fr.md     # store the translated blocks

`export`/`import` work for notebook sources too (`notebooks/src/NN-name.py`): translators edit
a markdown file of `<!-- i18n: id -->` blocks instead of escaped JSON, and `import` stores each
block with the hash of the English it translates.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import numbers
import re
import string
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_SRC = ROOT / "notebooks" / "src"
NOTEBOOK_I18N = ROOT / "notebooks" / "i18n"
LESSON_SRC = ROOT / "lessons" / "src"
LESSON_I18N = ROOT / "lessons" / "i18n"
LOCALES = Path(__file__).resolve().parent / "locales"

LANGUAGES = {
    "en": "English",
    "fr": "Français",
    "es": "Español",
    "it": "Italiano",
    "pt": "Português",
    "zh": "中文",
}
SOURCE_LANG = "en"
_ID = re.compile(r"[A-Za-z0-9-]{1,64}")

# ------------------------------------------------------------------ t(): strings in code

_current = {"lang": SOURCE_LANG}
_catalogs: dict[str, dict[str, str]] = {}
_warned: set[str] = set()


def set_language(lang: str) -> str:
    """Choose the language of `t()` (and, for zh, a font that plots can draw it with).

    Returns the language; unknown codes raise with the list."""
    if lang not in LANGUAGES:
        raise ValueError(f"Unknown language {lang!r}; choose one of {', '.join(LANGUAGES)}.")
    _current["lang"] = lang
    if lang == "zh":
        use_cjk_font()
    return lang


# Fonts that draw Chinese, most common first (Linux, macOS, Windows).
_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei",
              "WenQuanYi Micro Hei", "Droid Sans Fallback", "PingFang SC", "Heiti SC",
              "Microsoft YaHei", "SimHei", "Arial Unicode MS")


def find_cjk_font() -> str | None:
    """The name of an installed font that draws Chinese (matplotlib's name for it), or None."""
    try:
        from matplotlib import font_manager
    except ImportError:
        return None
    installed = {f.name for f in font_manager.fontManager.ttflist}
    if not installed.intersection(_CJK_FONTS):  # installed after matplotlib built its cache?
        for path in font_manager.findSystemFonts():
            if re.search(r"cjk|wqy|wenquanyi|droidsansfallback|notosanssc", Path(path).name, re.I):
                font_manager.fontManager.addfont(path)
        installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in _CJK_FONTS if name in installed), None)


def use_cjk_font() -> str | None:
    """Put an installed Chinese font first in matplotlib's sans-serif list; returns its name.

    Without one, plot labels in Chinese show as empty boxes ("tofu") and matplotlib warns once
    per missing glyph: say so in one line, with the fix, and silence that wall of warnings."""
    font = find_cjk_font()
    if font is None:
        if "font" not in _warned:
            _warned.add("font")
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from (current )?font")
            print("提示：未找到中文字体，图中的中文会显示为方框；请安装 fonts-noto-cjk 并重启内核。"
                  "(No Chinese font for plots: install fonts-noto-cjk, then restart the kernel.)")
        return None
    from matplotlib import rcParams

    rcParams["font.family"] = "sans-serif"
    rcParams["font.sans-serif"] = [font] + [f for f in rcParams["font.sans-serif"] if f != font]
    rcParams["axes.unicode_minus"] = False  # CJK fonts often lack the minus sign glyph
    return font


def get_language() -> str:
    return _current["lang"]


def catalog(lang: str, locales: Path = LOCALES) -> dict[str, str]:
    """The `t()` translations of one language: {English: translated}."""
    key = f"{locales}/{lang}"
    if key not in _catalogs:
        path = locales / f"{lang}.json"
        _catalogs[key] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return _catalogs[key]


def t(text: str, lang: str | None = None, **values) -> str:
    """Translate a string shown to students; `values` fill `{placeholders}` after translation.

    t("Loss") -> "Perte" in French.  t("{n} images", n=3) -> "3 images".
    Untranslated strings fall back to English (the check reports them).
    """
    lang = lang or _current["lang"]
    out = text if lang == SOURCE_LANG else catalog(lang).get(text, text)
    return _NumberFormatter(lang).format(out, **values) if values else out


def notice_file():
    """Where a one-line notice goes: stdout in a notebook, where stderr shows as a pink block
    that looks like an error; stderr in a terminal, so that `--json` output stays clean."""
    return sys.stdout if "ipykernel" in sys.modules else sys.stderr


def number(value: float, spec: str = "", lang: str | None = None) -> str:
    """A number written the way the course language writes it: number(0.5, ".2f") -> "0,50" in fr."""
    return _NumberFormatter(lang or _current["lang"]).format_field(value, spec)


# How numbers are written: (thousands separator, decimal mark). A French reader expects
# "50 000" and "0,3 h", not "50,000" and "0.3 h". Languages not listed write numbers as English.
NUMBER_MARKS = {"fr": ("\u00a0", ","), "es": (".", ","), "it": (".", ","), "pt": (".", ",")}


class _NumberFormatter(string.Formatter):
    """str.format, with the thousands separator and decimal mark of the language: in fr,
    "{n:,}" gives "50 000" and "{h:.1f}" gives "0,3" (text values are left as they are)."""

    def __init__(self, lang: str):
        super().__init__()
        self.marks = NUMBER_MARKS.get(lang)

    def format_field(self, value, format_spec: str) -> str:
        out = super().format_field(value, format_spec)
        if self.marks is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
            return out
        thousands, decimal = self.marks
        return out.translate({ord(","): thousands, ord("."): decimal})


# ------------------------------------------------------------------ problems


@dataclass(frozen=True)
class Problem:
    """One thing CI fails on. `item` is the cell/block id or t() string concerned."""

    lang: str
    file: str  # repo-relative path of the source (or built file) concerned
    item: str
    message: str
    english: str = ""  # the current English, for translators (`todo`)
    hash: str = ""  # the hash a fresh translation must carry

    def __str__(self) -> str:
        return f"{self.lang}: {self.file}: {self.message}"


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def text_hash(text: str) -> str:
    """Short sha1 of an English text: the key that marks a translation stale."""
    return hashlib.sha1(text.strip().encode("utf-8")).hexdigest()[:12]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix it and rerun.") from None


def load_translations(stem: str, lang: str, base: Path = NOTEBOOK_I18N) -> dict:
    """{id: {"hash", "text"}} from `base/<lang>/<stem>.json` ("cells" or "blocks"); {} if absent."""
    path = base / lang / f"{stem}.json"
    if not path.exists():
        return {}
    data = _read_json(path)
    return data.get("cells", data.get("blocks", {}))


def fresh_text(entry: dict | None, english: str) -> str | None:
    """The translation in `entry` if it translates this very English, else None."""
    if entry is None or entry.get("hash") != text_hash(english):
        return None
    return entry.get("text")


# Relative links, images and macros a translation must keep: `](target)`, `src="target"`,
# `{{macro ...}}`. Links to the web may be localised by translators, so they are not compared.
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)|\bsrc=[\"']([^\"']+)[\"']")
_MACRO = re.compile(r"\{\{\s*(notebook|quiz)\s+([A-Za-z0-9-]+)(?:\s+(pre|post))?\s*\}\}")


def kept_references(text: str) -> list[str]:
    """Relative link/image targets and macros of a markdown text, sorted (what must survive)."""
    refs = {a or b for a, b in _LINK.findall(text)}
    refs = {r for r in refs if not re.match(r"^[a-z][a-z0-9+.-]*:", r, re.I)}
    refs |= {" ".join(x for x in m.groups() if x) for m in _MACRO.finditer(text)}
    return sorted(refs)


def _translation_problems(
    lang: str, file: str, kind: str, items: list[tuple[str, str]], found: dict, json_path: str
) -> list[Problem]:
    """Missing, stale, unused and link-breaking translations of (id, English) items."""
    problems = []
    for item_id, english in items:
        entry, h = found.get(item_id), text_hash(english)
        if entry is None:
            problems.append(Problem(lang, file, item_id, f"{kind} {item_id!r} is not translated "
                                    f"(add it to {json_path} with hash {h})", english, h))
        elif entry.get("hash") != h:
            problems.append(Problem(lang, file, item_id, f"{kind} {item_id!r} is stale: the English "
                                    f"changed; update its text in {json_path} and its hash to {h}",
                                    english, h))
        elif kept_references(entry.get("text", "")) != kept_references(english):
            lost = set(kept_references(english)) ^ set(kept_references(entry.get("text", "")))
            problems.append(Problem(lang, file, item_id, f"{kind} {item_id!r} changes the links, "
                                    f"images or macros of the English: {sorted(lost)} (in {json_path})",
                                    english, h))
    known = {item_id for item_id, _ in items}
    for item_id in sorted(set(found) - known):
        problems.append(Problem(lang, file, item_id, f"{json_path} translates {kind} {item_id!r}, "
                                "which the English no longer has: remove it"))
    return problems


# ------------------------------------------------------------------ notebook sources


@dataclass
class Cell:
    kind: str  # "markdown" or "code"
    source: str
    id: str | None = None
    tags: list[str] = field(default_factory=list)


_HEADER = re.compile(r"^# %%(?:\s+\[(?P<kind>markdown|md)\])?(?P<rest>.*)$")


def _parse_header(rest: str) -> dict[str, str]:
    out = {}
    for token in rest.split():
        if "=" not in token:
            raise ValueError(f"Cell header token {token!r} is not key=value")
        key, value = token.split("=", 1)
        out[key] = value.strip('"\'')
    return out


def parse_source(path: str | Path) -> list[Cell]:
    """Read a percent-format notebook source into cells (`# %%` starts a cell)."""
    path = Path(path)
    cells: list[Cell] = []
    current: Cell | None = None
    lines: list[str] = []

    def flush():
        if current is None:
            return
        if current.kind == "markdown":
            text = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        else:
            text = lines
        current.source = "\n".join(text).strip("\n")
        cells.append(current)

    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = _HEADER.match(line)
        if match:
            flush()
            try:
                meta = _parse_header(match.group("rest"))
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: {err}") from None
            kind = "markdown" if match.group("kind") else "code"
            tags = [tg for tg in meta.get("tags", "").split(",") if tg]
            current, lines = Cell(kind, "", meta.get("id"), tags), []
        elif current is not None:
            lines.append(line)
    flush()
    _validate(path, cells)
    return cells


def _validate(path: Path, cells: list[Cell]) -> None:
    seen = set()
    for i, cell in enumerate(cells):
        if cell.kind == "markdown" and not cell.id:
            raise ValueError(f"{path}: markdown cell {i} has no id= (needed for translations)")
        if cell.id:
            if not _ID.fullmatch(cell.id):
                raise ValueError(f"{path}: cell id {cell.id!r} must be letters, digits, dashes")
            if cell.id in seen:
                raise ValueError(f"{path}: duplicate cell id {cell.id!r}")
            seen.add(cell.id)


def translation_problems(src: Path, lang: str, base: Path = NOTEBOOK_I18N,
                         root: Path = ROOT) -> list[Problem]:
    """Missing, stale or link-breaking translations of one source notebook in one language."""
    src = Path(src)
    items = [(c.id, c.source) for c in parse_source(src) if c.kind == "markdown"]
    json_path = _rel(base / lang / f"{src.stem}.json", root)
    found = load_translations(src.stem, lang, base)
    return _translation_problems(lang, _rel(src, root), "cell", items, found, json_path)


# ------------------------------------------------------------------ building notebooks


def language_line(stem: str, lang: str, folder: str = "..", ext: str = ".ipynb") -> str:
    """'**English** · [Français](../fr/x.ipynb) · ...' with the current language in bold."""
    parts = []
    for code, name in LANGUAGES.items():
        parts.append(f"**{name}**" if code == lang else f"[{name}]({folder}/{code}/{stem}{ext})")
    return " · ".join(parts)


def badges(path_in_repo: str) -> str:
    """Colab and Binder badges for a notebook path like notebooks/en/01-x.ipynb."""
    from . import COURSE_REPO

    colab = f"https://colab.research.google.com/github/{COURSE_REPO}/blob/main/{path_in_repo}"
    binder = f"https://mybinder.org/v2/gh/{COURSE_REPO}/main?urlpath=lab/tree/{path_in_repo}"
    return (
        f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
        f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder})"
    )


def _nb_cell(cell_id: str, kind: str, source: str, tags: list[str] | None = None) -> dict:
    out = {"cell_type": kind, "id": cell_id, "metadata": {}, "source": source.splitlines(keepends=True)}
    if tags:
        out["metadata"]["tags"] = list(tags)
    if kind == "code":
        out["execution_count"] = None
        out["outputs"] = []
    return out


# What a Colab runtime already has and must keep: replacing torch or ipywidgets inside a
# running kernel breaks it (ipywidgets 7 -> 8: the upload widget fails until a restart).
COLAB_KEEP = ("torch", "torchvision", "ipywidgets")


def colab_requirements(root: Path = ROOT) -> list[str]:
    """What the Colab setup cell installs: the course's dependencies and its `faiss` extra
    (pyproject.toml), minus COLAB_KEEP, which the runtime provides."""
    import tomllib

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["faiss"]
    name = lambda req: re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()  # noqa: E731
    return [r for r in reqs if name(r) not in COLAB_KEEP]


def colab_setup_cell() -> str:
    """The code cell every notebook gets after its title: on Colab, fetch and install the
    course (package, quizzes, lesson files) and every package the notebooks import, keeping
    the runtime's torch, torchvision and ipywidgets; anywhere else, do nothing."""
    from . import COURSE_REPO

    reqs = ", ".join(f'"{r}"' for r in colab_requirements())
    keep = ", ".join(f'"{k}"' for k in COLAB_KEEP)
    return f"""# Colab only: fetch the course and install what it needs, keeping Colab's own torch,
# torchvision and ipywidgets. This cell does nothing anywhere else, and nothing the second time.
import sys

if "google.colab" in sys.modules and not __import__("os").path.exists("/content/course/.installed"):
    import importlib.metadata as md
    import os
    import subprocess

    if not os.path.isdir("/content/course"):
        subprocess.run(["git", "clone", "--depth", "1",
                        "https://github.com/{COURSE_REPO}", "/content/course"], check=True)
    keep = [f"{{name}}=={{md.version(name)}}" for name in ({keep})]  # pinned: never replaced
    with open("/content/keep.txt", "w") as f:
        f.write("\\n".join(keep))
    before = {{d.metadata["Name"].lower(): d.version for d in md.distributions()}}
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", "/content/keep.txt",
                    {reqs}], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", "/content/course"],
                   check=True)
    open("/content/course/.installed", "w").close()
    owners = md.packages_distributions()  # module -> the distributions that provide it
    imported = {{d.lower() for m in list(sys.modules) for d in owners.get(m, [])}}
    changed = sorted(name for name, version in before.items()
                     if name in imported and md.version(name) != version)
    if changed:  # a module already imported by this kernel changed: one restart loads the new one
        print("Updated", ", ".join(changed), "- restarting the runtime once. Run the notebook again.")
        os.kill(os.getpid(), 9)
if "google.colab" in sys.modules:
    sys.path.insert(0, "/content/course")"""


def build_notebook(src: Path, lang: str, base: Path = NOTEBOOK_I18N) -> dict:
    """The notebook of `src` in `lang`, as nbformat 4.5 JSON (no outputs).

    Missing or stale translations fall back to English (`check` reports them)."""
    stem = Path(src).stem
    found = load_translations(stem, lang, base) if lang != SOURCE_LANG else {}
    header = language_line(stem, lang) + "\n\n" + badges(f"notebooks/{lang}/{stem}.ipynb")
    cells = [_nb_cell("languages", "markdown", header)]
    n_code = 0
    for cell in parse_source(src):
        if cell.id == "colab-setup":  # generated below, the same in every notebook
            continue
        if cell.kind == "markdown":
            text = fresh_text(found.get(cell.id), cell.source) or cell.source
            cells.append(_nb_cell(cell.id, "markdown", text, cell.tags))
            if cell.id == "title":
                cells.append(_nb_cell("colab-setup", "code", colab_setup_cell()))
        else:
            n_code += 1
            source = cell.source
            if "parameters" in cell.tags:
                source = re.sub(r'^LANG = "en"', f'LANG = "{lang}"', source, flags=re.M)
            cells.append(_nb_cell(cell.id or f"code-{n_code}", "code", source, cell.tags))
    from .exercises import add_grading_metadata  # nbgrader metadata on the exercise cells

    add_grading_metadata(cells, f"{lang}/{stem}")
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def dumps_notebook(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def notebook_sources(root: Path = ROOT) -> list[Path]:
    return sorted((root / "notebooks" / "src").glob("[0-9][0-9]-*.py"))


# ------------------------------------------------------------------ lesson pages


@dataclass
class Block:
    id: str
    text: str
    line: int  # line of its marker in the source, for messages


_MARKER = re.compile(r"^<!--\s*i18n:\s*(?P<id>.*?)\s*-->\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def parse_lesson(path: str | Path) -> list[Block]:
    """Split a lesson source into blocks: each `<!-- i18n: id -->` line starts one."""
    path = Path(path)
    blocks: list[Block] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = _MARKER.match(line)
        if match:
            block_id = match.group("id")
            if not _ID.fullmatch(block_id):
                raise ValueError(f"{path}:{lineno}: block id {block_id!r} must be letters, "
                                 "digits, dashes")
            if any(b.id == block_id for b in blocks):
                raise ValueError(f"{path}:{lineno}: duplicate block id {block_id!r}")
            blocks.append(Block(block_id, "", lineno))
        elif blocks:
            blocks[-1].text += line + "\n"
        elif line.strip():
            raise ValueError(f"{path}:{lineno}: text before the first `<!-- i18n: id -->` line; "
                             "start the file with a block marker")
    for block in blocks:
        block.text = block.text.strip("\n")
        if not block.text.strip():
            raise ValueError(f"{path}:{block.line}: block {block.id!r} is empty")
        fences = sum(1 for ln in block.text.splitlines() if _FENCE.match(ln))
        if fences % 2:
            raise ValueError(f"{path}:{block.line}: block {block.id!r} opens a code fence it "
                             "does not close (a block marker inside a code block?)")
    return blocks


def lesson_sources(root: Path = ROOT) -> list[Path]:
    return sorted((root / "lessons" / "src").glob("*.md"))


def expand_macros(text: str, lang: str, up: str = "../..") -> str:
    """Replace `{{notebook NN-name}}` and `{{quiz LESSON pre|post}}` for a page in `lang`.

    `up` is the path from the page's folder to the repository root."""

    def replace(match: re.Match) -> str:
        what, name, stage = match.groups()
        if what == "notebook":
            from .exercises import lesson_link  # the student version, solutions beside it

            path = f"notebooks/{lang}/{name}.ipynb"
            return lesson_link(name, lang, up) or f"[`{name}.ipynb`]({up}/{path}) {badges(path)}"
        command = f"python -m utils quiz {name} --stage {stage or 'pre'}"
        if lang != SOURCE_LANG:
            command += f" --lang {lang}"
        return f"`{command}` ([`quiz/{name}.json`]({up}/quiz/{name}.json))"

    return _MACRO.sub(replace, text)


def _generated_note(sources: list[str]) -> str:
    return (f"<!-- Written by `python -m utils.i18n build` from {' and '.join(sources)}: "
            "edit those, not this file. -->")


def build_lesson(src: Path, lang: str, base: Path = LESSON_I18N) -> str:
    """The page `lessons/<lang>/<name>.md` of the source `src` (English where untranslated).

    It starts with the language line and a link to the glossary in the same language."""
    src = Path(src)
    found = load_translations(src.stem, lang, base) if lang != SOURCE_LANG else {}
    glossary = load_glossary(Path(base).parent.parent)["page"].get("title", {})
    links = language_line(src.stem, lang, ext=".md")
    if glossary:
        links += f" · [{glossary.get(lang, glossary.get(SOURCE_LANG))}](glossary.md)"
    parts = [
        _generated_note([f"lessons/src/{src.name}"]
                        + ([f"lessons/i18n/{lang}/{src.stem}.json"] if lang != SOURCE_LANG else [])),
        links,
    ]
    for block in parse_lesson(src):
        text = fresh_text(found.get(block.id), block.text) or block.text
        parts.append(expand_macros(text, lang))
    return "\n\n".join(parts) + "\n"


def lesson_translation_problems(src: Path, lang: str, base: Path = LESSON_I18N,
                                root: Path = ROOT) -> list[Problem]:
    """Missing, stale or link-breaking translations of one lesson source in one language."""
    src = Path(src)
    items = [(b.id, b.text) for b in parse_lesson(src)]
    json_path = _rel(base / lang / f"{src.stem}.json", root)
    found = load_translations(src.stem, lang, base)
    return _translation_problems(lang, _rel(src, root), "block", items, found, json_path)


# ------------------------------------------------------------------ glossary


def load_glossary(root: Path = ROOT) -> dict:
    """`lessons/glossary.json`: {"page": {...}, "terms": {id: {lang: str | [str, ...]}}}."""
    path = root / "lessons" / "glossary.json"
    return _read_json(path) if path.exists() else {"page": {}, "terms": {}}


def term_forms(entry: dict, lang: str) -> list[str]:
    """Accepted forms of a glossary term in `lang`: the first is the preferred one."""
    value = entry.get(lang, [])
    return [value] if isinstance(value, str) else list(value)


def glossary_problems(root: Path = ROOT, langs: list[str] | None = None) -> list[Problem]:
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


def build_glossary(lang: str, root: Path = ROOT) -> str:
    """`lessons/<lang>/glossary.md`: the terms in this language first, then the others."""
    glossary = load_glossary(root)
    page = glossary.get("page", {})
    order = [lang] + [code for code in LANGUAGES if code != lang]
    header = [LANGUAGES[code] for code in order]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in sorted(glossary.get("terms", {}).values(),
                        key=lambda e: (term_forms(e, lang) or term_forms(e, SOURCE_LANG))[0].lower()):
        cells = [(term_forms(entry, code) or ["?"])[0] for code in order]
        cells[0] = f"**{cells[0]}**"
        rows.append("| " + " | ".join(cells) + " |")
    parts = [
        _generated_note(["lessons/glossary.json"]),
        language_line("glossary", lang, ext=".md"),
        "# " + page.get("title", {}).get(lang, "Glossary"),
        page.get("intro", {}).get(lang, ""),
        "\n".join(rows),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _translatables(root: Path = ROOT) -> list[tuple[str, Path, Path, list[tuple[str, str]]]]:
    """(kind, source, translations folder, [(id, English)]) of every notebook and lesson."""
    out = []
    for src in notebook_sources(root):
        items = [(c.id, c.source) for c in parse_source(src) if c.kind == "markdown"]
        out.append(("cell", src, root / "notebooks" / "i18n", items))
    for src in lesson_sources(root):
        items = [(b.id, b.text) for b in parse_lesson(src)]
        out.append(("block", src, root / "lessons" / "i18n", items))
    return out


def terms_advice(root: Path = ROOT, langs: list[str] | None = None) -> list[str]:
    """Fresh translations whose English uses a glossary term that the translation does not.

    Advice, not an error: a translator may rightly use a pronoun instead of repeating a term."""
    glossary, advice = load_glossary(root).get("terms", {}), []
    for lang in langs or [c for c in LANGUAGES if c != SOURCE_LANG]:
        for kind, src, base, items in _translatables(root):
            found = load_translations(src.stem, lang, base)
            for item_id, english in items:
                text = fresh_text(found.get(item_id), english)
                if not text:
                    continue
                text = " ".join(text.lower().split())
                for entry in glossary.values():
                    en_forms, forms = term_forms(entry, SOURCE_LANG), term_forms(entry, lang)
                    used = any(re.search(rf"\b{re.escape(f)}", english, re.I) for f in en_forms)
                    # The English term itself is fine too: a loanword, or a cited title.
                    if used and forms and not any(f.lower() in text for f in forms + en_forms):
                        advice.append(f"{lang}: {_rel(src, root)}: {kind} {item_id!r} uses "
                                      f"{en_forms[0]!r}; the glossary says {forms[0]!r}")
    return advice


# ------------------------------------------------------------------ t() catalogs


def _t_names(tree: ast.AST) -> set[str]:
    """Names under which a file imports `t` from utils.i18n (`t`, or an alias)."""
    return {alias.asname or alias.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("i18n")
            for alias in node.names if alias.name == "t"}


def t_strings(path: Path) -> list[tuple[str | None, int]]:
    """(literal, line) of every `t(...)` call in a Python file; literal None for an f-string.

    Counts `t(...)` where the file imports `t` from `utils.i18n` (or its alias), and `i18n.t(...)`."""
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
    return sorted((root / "utils").rglob("*.py")) + notebook_sources(root)


def _fields(text: str) -> set[str]:
    return set(re.findall(r"\{(\w*)[^{}]*\}", text))


def _string_constants(path: Path) -> set[str]:
    """Every string literal of a Python file (a t() key may be passed through a variable)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def catalog_problems(root: Path = ROOT, langs: list[str] | None = None) -> list[Problem]:
    """t("...") strings without a translation in utils/locales/<lang>.json, or with other
    {placeholders}; t(f"...") calls, which can never be translated; and translations of
    strings that no code holds any more (left behind when the English changed)."""
    problems, wanted, constants = [], {}, set()
    for path in code_files(root):
        if path.name == "i18n.py" and path.parent.name == "utils":
            continue  # its docstrings show t() examples, not strings students see
        constants |= _string_constants(path)
        for literal, line in t_strings(path):
            where = f"{_rel(path, root)}:{line}"
            if literal is None:
                problems.append(Problem("all", where, "", "t(f\"...\") cannot be translated; write "
                                        "t(\"... {name} ...\", name=value) instead"))
            else:
                wanted.setdefault(literal, where)
    locales = root / "utils" / "locales"
    for lang in langs or LANGUAGES:
        if lang == SOURCE_LANG:
            continue
        path = locales / f"{lang}.json"
        found = _read_json(path) if path.exists() else {}
        json_path = _rel(path, root)
        for english, where in sorted(wanted.items()):
            if english not in found:
                problems.append(Problem(lang, json_path, english,
                                        f"no translation of t({english!r}) (used at {where})", english))
            elif _fields(found[english]) != _fields(english):
                problems.append(Problem(lang, json_path, english,
                                        f"the translation of t({english!r}) has placeholders "
                                        f"{sorted(_fields(found[english]))}, the English "
                                        f"{sorted(_fields(english))}", english))
        for english in sorted(set(found) - constants):
            problems.append(Problem(lang, json_path, english,
                                    f"t({english!r}) is translated but no code uses it any more: remove it"))
    return problems


# ------------------------------------------------------------------ translators' round trip


def _items_of(source: Path) -> tuple[str, list[tuple[str, str]], Path]:
    """(JSON key, [(id, English)], translations folder) of a notebook or lesson source."""
    source = Path(source).resolve()
    if source.suffix == ".py":
        items = [(c.id, c.source) for c in parse_source(source) if c.kind == "markdown"]
        return "cells", items, source.parent.parent / "i18n"
    if source.suffix == ".md":
        return "blocks", [(b.id, b.text) for b in parse_lesson(source)], source.parent.parent / "i18n"
    raise ValueError(f"{source}: expected notebooks/src/*.py or lessons/src/*.md")


def export_text(source: Path, lang: str, everything: bool = False) -> str:
    """The English of `source` that `lang` lacks (or all of it), as `<!-- i18n: id -->` blocks.

    Translate the text under each marker, keep the markers, then `import` the file."""
    key, items, base = _items_of(source)
    found = load_translations(Path(source).stem, lang, base)
    out = [f"<!-- i18n: {item_id} -->\n{english}\n" for item_id, english in items
           if everything or fresh_text(found.get(item_id), english) is None]
    return "\n".join(out)


def import_translation(source: Path, lang: str, translated: Path) -> Path:
    """Store each block of `translated` (a file of `<!-- i18n: id -->` blocks) as the `lang`
    translation of that id in `source`, with the hash of the English it now translates."""
    if lang == SOURCE_LANG or lang not in LANGUAGES:
        raise ValueError(f"Import translations into one of {', '.join(list(LANGUAGES)[1:])}.")
    key, items, base = _items_of(source)
    english = dict(items)
    blocks = parse_lesson(translated)
    unknown = [b.id for b in blocks if b.id not in english]
    if unknown:
        raise ValueError(f"{translated}: {Path(source).name} has no cell or block {unknown}; "
                         "keep the ids of `python -m utils.i18n export`.")
    path = base / lang / f"{Path(source).stem}.json"
    data = _read_json(path) if path.exists() else {}
    entries = data.get(key, {})
    for block in blocks:
        entries[block.id] = {"hash": text_hash(english[block.id]), "text": block.text}
    order = [item_id for item_id, _ in items] + sorted(set(entries) - set(english))
    data[key] = {item_id: entries[item_id] for item_id in order if item_id in entries}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------ build and check


def _outputs(root: Path, langs: list[str]) -> list[tuple[Path, str, str]]:
    """(path, content, source) of every built file for these languages."""
    from .exercises import FOLDER, can_build_student_versions, has_exercises, student_text

    students = can_build_student_versions()
    out = []
    for src in notebook_sources(root):
        for lang in langs:
            nb = build_notebook(src, lang, root / "notebooks" / "i18n")
            out.append((root / "notebooks" / lang / f"{src.stem}.ipynb", dumps_notebook(nb), src))
            if students and has_exercises(nb):  # the student version (committed too), one folder down
                out.append((root / "notebooks" / lang / FOLDER / f"{src.stem}.ipynb",
                            student_text(nb, lang, src.stem), src))
    for src in lesson_sources(root):
        for lang in langs:
            text = build_lesson(src, lang, root / "lessons" / "i18n")
            out.append((root / "lessons" / lang / f"{src.stem}.md", text, src))
    if (root / "lessons" / "glossary.json").exists():
        for lang in langs:
            out.append((root / "lessons" / lang / "glossary.md", build_glossary(lang, root),
                        root / "lessons" / "glossary.json"))
    return out


def build_all(langs: list[str] | None = None, root: Path = ROOT) -> list[Path]:
    """Write notebooks/<lang>/*.ipynb and lessons/<lang>/*.md; returns the files that changed."""
    written = []
    for path, text, _ in _outputs(root, list(langs or LANGUAGES)):
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def find_problems(langs: list[str] | None = None, root: Path = ROOT,
                  parts: tuple[str, ...] = ("notebooks", "lessons", "built", "catalogs", "glossary"),
                  ) -> list[Problem]:
    """Every problem of the chosen parts: translations missing, stale or breaking links
    (notebooks, lessons), built files that differ from a fresh build, t() catalogs, glossary."""
    langs = list(langs or LANGUAGES)
    others = [lang for lang in langs if lang != SOURCE_LANG]
    problems: list[Problem] = []
    for kind, src, base, items in _translatables(root):
        if ("notebooks" if kind == "cell" else "lessons") not in parts:
            continue
        for lang in others:
            json_path = _rel(base / lang / f"{src.stem}.json", root)
            found = load_translations(src.stem, lang, base)
            problems += _translation_problems(lang, _rel(src, root), kind, items, found, json_path)
    if "built" in parts:
        for path, text, src in _outputs(root, langs):
            lang = path.parent.name
            if not path.exists():
                problems.append(Problem(lang, _rel(path, root), "", f"not built from "
                                        f"{_rel(src, root)} (run make notebooks)"))
            elif path.read_text(encoding="utf-8") != text:
                problems.append(Problem(lang, _rel(path, root), "", f"differs from a fresh build "
                                        f"of {_rel(src, root)} (run make notebooks)"))
    if "catalogs" in parts:
        problems += catalog_problems(root, langs)
    if "glossary" in parts:
        problems += glossary_problems(root, langs)
    return problems


def check_all(langs: list[str] | None = None, root: Path = ROOT,
              parts: tuple[str, ...] = ("notebooks", "lessons", "built", "catalogs", "glossary"),
              ) -> list[str]:
    """Every problem that CI fails on, one line each naming language, file and cell/block."""
    return [str(p) for p in find_problems(langs, root, parts)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.i18n", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["build", "check", "todo", "terms", "export", "import"])
    parser.add_argument("paths", nargs="*", help="export: SOURCE; import: SOURCE TRANSLATED_FILE")
    parser.add_argument("--lang", action="append", help="only these languages (repeatable)")
    parser.add_argument("--all", action="store_true", help="export: every item, not only the "
                        "missing and stale ones")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_intermixed_args(argv)
    for lang in args.lang or []:
        set_language(lang)  # raises with the list of languages on a typo
    if args.action in ("export", "import"):
        wanted = 1 if args.action == "export" else 2
        if len(args.paths) != wanted or len(args.lang or []) != 1:
            parser.error(f"{args.action} needs one --lang and {wanted} path(s); see the docstring")
        if args.action == "export":
            print(export_text(Path(args.paths[0]), args.lang[0], args.all))
        else:
            path = import_translation(Path(args.paths[0]), args.lang[0], Path(args.paths[1]))
            print(f"wrote {_rel(path, ROOT)}")
        return 0
    if args.action == "build":
        written = build_all(args.lang)
        for path in written:
            print(f"wrote {_rel(path, ROOT)}")
        left = [p for p in find_problems(args.lang, parts=("notebooks", "lessons"))]
        for p in left:
            print(f"warning: {p}", file=sys.stderr)
        print(f"{len(written)} file(s) written; {len(left)} translation(s) missing or stale "
              "(built in English meanwhile)")
        return 0
    if args.action == "terms":
        advice = terms_advice(langs=args.lang)
        print(json.dumps(advice, indent=1, ensure_ascii=False) if args.json else "\n".join(advice))
        return 0
    problems = find_problems(args.lang)
    if args.action == "todo":
        problems = [p for p in problems if p.english or p.hash]
        if args.json:
            print(json.dumps([asdict(p) for p in problems], indent=1, ensure_ascii=False))
            return 0
        for p in problems:
            print(f"## {p}\n# hash: {p.hash}\n{p.english}\n")
        print(f"{len(problems)} item(s) to translate")
        return 0
    if args.json:
        print(json.dumps([asdict(p) for p in problems], indent=1, ensure_ascii=False))
    else:
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
