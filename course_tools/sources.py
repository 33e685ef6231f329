"""The English sources: notebooks (jupytext percent format) and lesson pages (blocks).

Notebook sources `notebooks/src/NN-name.py` are read by jupytext; a cell header carries its
id and tags as jupytext metadata: `# %% [markdown] id="title"`, `# %% id="params"
tags=["parameters"]`. Lesson pages `lessons/src/<name>.md` are cut into blocks by
`<!-- i18n: block-id -->` lines. Both give (id, English) items that translations key on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from utils.i18n import LANGUAGES, SOURCE_LANG

from .claims import claim_macros

__all__ = ["LANGUAGES", "SOURCE_LANG", "ROOT", "Cell", "Block", "parse_source", "parse_lesson",
           "notebook_sources", "lesson_sources", "items_of", "translatables", "kept_references", "rel"]

ROOT = Path(__file__).resolve().parent.parent
_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_KEYS = {"id", "tags"}
_LAYOUT = ("lines_to_", "cell_marker")  # jupytext's own notes on blank lines and markers


@dataclass
class Cell:
    kind: str  # "markdown" or "code"
    source: str
    id: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class Block:
    id: str
    text: str
    line: int  # line of its marker in the source, for messages


def rel(path: Path, root: Path) -> str:
    """`path` relative to `root` (posix), or as given when outside it."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def parse_source(path: str | Path) -> list[Cell]:
    """Read a percent-format notebook source with jupytext into cells, checking their ids."""
    import jupytext

    path = Path(path)
    cells = []
    for i, cell in enumerate(jupytext.read(path, fmt="py:percent").cells):
        unknown = {k for k in cell.metadata if k not in _KEYS and not k.startswith(_LAYOUT)}
        if unknown:
            raise ValueError(f"{path}: cell {i} has metadata {sorted(unknown)} that is not "
                             'id="..." or tags=[...] (jupytext reads key=JSON, e.g. id="intro")')
        cells.append(Cell(cell.cell_type, cell.source, cell.metadata.get("id"),
                          list(cell.metadata.get("tags", []))))
    _validate(path, cells)
    return cells


def _validate(path: Path, cells: list[Cell]) -> None:
    seen = set()
    for i, cell in enumerate(cells):
        if cell.kind not in ("markdown", "code"):
            raise ValueError(f"{path}: cell {i} is a {cell.kind} cell; use markdown or code")
        if cell.kind == "markdown" and not cell.id:
            raise ValueError(f"{path}: markdown cell {i} has no id= (needed for translations)")
        if cell.id:
            if not isinstance(cell.id, str) or not _ID.fullmatch(cell.id):
                raise ValueError(f"{path}: cell id {cell.id!r} must be letters, digits, dashes")
            if cell.id in seen:
                raise ValueError(f"{path}: duplicate cell id {cell.id!r}")
            seen.add(cell.id)


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
        if sum(1 for ln in block.text.splitlines() if _FENCE.match(ln)) % 2:
            raise ValueError(f"{path}:{block.line}: block {block.id!r} opens a code fence it "
                             "does not close (a block marker inside a code block?)")
    return blocks


def notebook_sources(root: Path = ROOT) -> list[Path]:
    return sorted((root / "notebooks" / "src").glob("[0-9][0-9]-*.py"))


def lesson_sources(root: Path = ROOT) -> list[Path]:
    return sorted((root / "lessons" / "src").glob("*.md"))


def items_of(src: str | Path) -> list[tuple[str, str]]:
    """(id, English) of what is translated in a source: markdown cells of a notebook source
    (`.py`), blocks of a lesson page (`.md`)."""
    src = Path(src)
    if src.suffix == ".py":
        return [(c.id, c.source) for c in parse_source(src) if c.kind == "markdown"]
    if src.suffix == ".md":
        return [(b.id, b.text) for b in parse_lesson(src)]
    raise ValueError(f"{src}: expected notebooks/src/*.py or lessons/src/*.md")


def translatables(root: Path = ROOT) -> list[tuple[str, Path, Path, list[tuple[str, str]]]]:
    """(kind "cell" or "block", source, translations folder, [(id, English)]) of every source."""
    out = [("cell", src, root / "notebooks" / "i18n", items_of(src)) for src in notebook_sources(root)]
    out += [("block", src, root / "lessons" / "i18n", items_of(src)) for src in lesson_sources(root)]
    return out


# Relative links, images and macros a translation must keep: `](target)`, `src="target"`,
# `{{macro ...}}`. Links to the web may be localised by translators, so they are not compared.
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)|\bsrc=[\"']([^\"']+)[\"']")
MACRO = re.compile(r"\{\{\s*(notebook|quiz)\s+([A-Za-z0-9-]+)(?:\s+(pre|post))?\s*\}\}")


def kept_references(text: str) -> list[str]:
    """Relative link/image targets and macros of a markdown text, sorted (what must survive)."""
    refs = {a or b for a, b in _LINK.findall(text)}
    refs = {r for r in refs if not re.match(r"^[a-z][a-z0-9+.-]*:", r, re.I)}
    refs |= {" ".join(x for x in m.groups() if x) for m in MACRO.finditer(text)}
    refs |= {f"claim {macro}" for macro in claim_macros(text)}
    return sorted(refs)
