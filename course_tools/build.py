"""Every built file (notebooks, student versions, lesson and glossary pages), written or checked.

The build is deterministic: building twice writes nothing the second time, and `check` fails
on any committed built file that differs from a fresh build.
"""

from __future__ import annotations

from pathlib import Path

from utils.i18n import LANGUAGES

from .exercises import FOLDER, can_build_student_versions, has_exercises, student_text
from .glossary import build_glossary
from .lessons import build_lesson
from .notebooks import build_notebook, dumps_notebook
from .sources import ROOT, lesson_sources, notebook_sources, rel

PARTS = ("notebooks", "lessons", "built", "catalogs", "glossary")


def outputs(root: Path = ROOT, langs: list[str] | None = None) -> list[tuple[Path, str, Path]]:
    """(path, content, source) of every built file for these languages."""
    langs = list(langs or LANGUAGES)
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
    glossary = root / "lessons" / "glossary.json"
    if glossary.exists():
        out += [(root / "lessons" / lang / "glossary.md", build_glossary(lang, root), glossary)
                for lang in langs]
    return out


def build_all(langs: list[str] | None = None, root: Path = ROOT) -> list[Path]:
    """Write notebooks/<lang>/*.ipynb and lessons/<lang>/*.md; returns the files that changed."""
    written = []
    for path, text, _ in outputs(root, langs):
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def built_problems(langs: list[str] | None = None, root: Path = ROOT) -> list:
    """Built files that are missing or differ from a fresh build."""
    from .translations import Problem

    problems = []
    for path, text, src in outputs(root, langs):
        lang, name = path.parent.name, rel(path, root)
        if lang == FOLDER:
            lang = path.parent.parent.name
        if not path.exists():
            problems.append(Problem(lang, name, "", f"not built from {rel(src, root)} (run make notebooks)"))
        elif path.read_text(encoding="utf-8") != text:
            problems.append(Problem(lang, name, "", f"differs from a fresh build of {rel(src, root)} "
                                    "(run make notebooks)"))
    return problems


def find_problems(langs: list[str] | None = None, root: Path = ROOT,
                  parts: tuple[str, ...] = PARTS) -> list:
    """Every problem of the chosen parts: translations missing, stale or breaking links
    (notebooks, lessons), built files that differ from a fresh build, t() catalogs, glossary."""
    from .glossary import glossary_problems
    from .translations import catalog_problems, document_problems

    problems = []
    kinds = tuple(kind for kind, part in (("cell", "notebooks"), ("block", "lessons")) if part in parts)
    if kinds:
        problems += document_problems(root, langs, kinds)
    if "catalogs" in parts:
        problems += catalog_problems(root, langs)
    if "glossary" in parts:
        problems += glossary_problems(root, langs)
    if "built" in parts:
        problems += built_problems(langs, root)
    return problems


def check_all(langs: list[str] | None = None, root: Path = ROOT,
              parts: tuple[str, ...] = PARTS) -> list[str]:
    """Every problem that CI fails on, one line each naming language, file and cell/block."""
    return [str(p) for p in find_problems(langs, root, parts)]
