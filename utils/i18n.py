"""One English source, six languages.

Notebook sources live in `notebooks/src/NN-name.py` (percent format). Each markdown
cell has an `id`; its translations live in `notebooks/i18n/<lang>/NN-name.json` as
`{"cells": {id: {"hash": sha1(english)[:12], "text": "..."}}}`. Editing the English
text changes its hash, so the translation is reported stale until it is updated.

Strings shown by code go through `t("English")`, looked up in `utils/locales/<lang>.json`.

    python -m utils.i18n build            # write notebooks/<lang>/*.ipynb for every language
    python -m utils.i18n check            # missing / stale translations, unbuilt notebooks
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_SRC = ROOT / "notebooks" / "src"
NOTEBOOK_I18N = ROOT / "notebooks" / "i18n"
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

# ------------------------------------------------------------------ t(): strings in code

_current = {"lang": SOURCE_LANG}
_catalogs: dict[str, dict[str, str]] = {}


def set_language(lang: str) -> str:
    """Choose the language of `t()`; returns it. Unknown codes raise with the list."""
    if lang not in LANGUAGES:
        raise ValueError(f"Unknown language {lang!r}; choose one of {', '.join(LANGUAGES)}.")
    _current["lang"] = lang
    return lang


def get_language() -> str:
    return _current["lang"]


def catalog(lang: str) -> dict[str, str]:
    """The `t()` translations of one language: {English: translated}."""
    if lang not in _catalogs:
        path = LOCALES / f"{lang}.json"
        _catalogs[lang] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return _catalogs[lang]


def t(text: str, lang: str | None = None, **values) -> str:
    """Translate a string shown to students; `values` fill `{placeholders}` after translation.

    t("Loss") -> "Perte" in French.  t("{n} images", n=3) -> "3 images".
    Untranslated strings fall back to English (the check reports them).
    """
    lang = lang or _current["lang"]
    out = text if lang == SOURCE_LANG else catalog(lang).get(text, text)
    return out.format(**values) if values else out


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
            if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", cell.id):
                raise ValueError(f"{path}: cell id {cell.id!r} must be letters, digits, dashes")
            if cell.id in seen:
                raise ValueError(f"{path}: duplicate cell id {cell.id!r}")
            seen.add(cell.id)


def text_hash(text: str) -> str:
    """Short sha1 of an English text: the key that marks a translation stale."""
    return hashlib.sha1(text.strip().encode("utf-8")).hexdigest()[:12]


def load_translations(stem: str, lang: str, base: Path = NOTEBOOK_I18N) -> dict:
    path = base / lang / f"{stem}.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("cells", {})


def translation_problems(src: Path, lang: str, base: Path = NOTEBOOK_I18N) -> list[str]:
    """Missing or stale translations of one source notebook in one language."""
    found = load_translations(src.stem, lang, base)
    problems = []
    for cell in parse_source(src):
        if cell.kind != "markdown":
            continue
        entry = found.get(cell.id)
        if entry is None:
            problems.append(f"{lang}: {src.stem}: cell {cell.id!r} is not translated")
        elif entry.get("hash") != text_hash(cell.source):
            problems.append(
                f"{lang}: {src.stem}: cell {cell.id!r} is stale (the English changed; "
                f"update notebooks/i18n/{lang}/{src.stem}.json and its hash {text_hash(cell.source)})"
            )
    return problems


# ------------------------------------------------------------------ building notebooks


def language_line(stem: str, lang: str, folder: str = "..") -> str:
    """'English · [Français](../fr/x.ipynb) · ...' with the current language in bold."""
    parts = []
    for code, name in LANGUAGES.items():
        parts.append(f"**{name}**" if code == lang else f"[{name}]({folder}/{code}/{stem}.ipynb)")
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


def build_notebook(src: Path, lang: str, base: Path = NOTEBOOK_I18N) -> dict:
    """The notebook of `src` in `lang`, as nbformat 4.5 JSON (no outputs).

    Missing or stale translations fall back to English (`check` reports them)."""
    stem = src.stem
    found = load_translations(stem, lang, base) if lang != SOURCE_LANG else {}
    header = language_line(stem, lang) + "\n\n" + badges(f"notebooks/{lang}/{stem}.ipynb")
    cells = [_nb_cell("languages", "markdown", header)]
    n_code = 0
    for cell in parse_source(src):
        if cell.kind == "markdown":
            entry = found.get(cell.id)
            fresh = entry is not None and entry.get("hash") == text_hash(cell.source)
            text = entry["text"] if fresh else cell.source
            cells.append(_nb_cell(cell.id, "markdown", text, cell.tags))
        else:
            n_code += 1
            source = cell.source
            if "parameters" in cell.tags:
                source = re.sub(r'^LANG = "en"', f'LANG = "{lang}"', source, flags=re.M)
            cells.append(_nb_cell(cell.id or f"code-{n_code}", "code", source, cell.tags))
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


def notebook_sources() -> list[Path]:
    return sorted(NOTEBOOK_SRC.glob("[0-9][0-9]-*.py"))


def build_all(langs: list[str] | None = None, root: Path = ROOT) -> list[Path]:
    """Write notebooks/<lang>/<stem>.ipynb for every source and language."""
    written = []
    for src in notebook_sources():
        for lang in langs or LANGUAGES:
            out = root / "notebooks" / lang / f"{src.stem}.ipynb"
            out.parent.mkdir(parents=True, exist_ok=True)
            text = dumps_notebook(build_notebook(src, lang))
            if not out.exists() or out.read_text(encoding="utf-8") != text:
                out.write_text(text, encoding="utf-8")
                written.append(out)
    return written


def check_all(langs: list[str] | None = None) -> list[str]:
    """Every problem that CI fails on: missing/stale translations, unbuilt notebooks."""
    problems = []
    for src in notebook_sources():
        for lang in langs or LANGUAGES:
            if lang != SOURCE_LANG:
                problems += translation_problems(src, lang)
            out = ROOT / "notebooks" / lang / f"{src.stem}.ipynb"
            if not out.exists():
                problems.append(f"{lang}: {src.stem}: notebook not built (run make notebooks)")
            elif out.read_text(encoding="utf-8") != dumps_notebook(build_notebook(src, lang)):
                problems.append(f"{lang}: {src.stem}: notebooks/{lang}/{src.stem}.ipynb differs "
                                "from a fresh build (run make notebooks)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.i18n", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["build", "check"])
    parser.add_argument("--lang", action="append", help="only these languages (repeatable)")
    args = parser.parse_args(argv)
    if args.action == "build":
        for path in build_all(args.lang):
            print(f"wrote {path.relative_to(ROOT)}")
        problems = [p for p in check_all(args.lang) if "not translated" in p or "stale" in p]
        for p in problems:
            print(f"warning: {p}", file=sys.stderr)
        return 0
    problems = check_all(args.lang)
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
