"""Every relative link and image in the course's markdown resolves.

Checked: README.md, CONTRIBUTING.md and every .md under lessons/, quiz/, notebooks/,
benchmarks/ and utils/, and the markdown cells of every built notebook. Links to the web
(http, https, mailto, ...) are not fetched: tests never touch the network. An `#anchor`
into a markdown file (or within one) must name one of its headings, GitHub-style, or an
`<a id="...">`; anchors into notebooks are not checked (Jupyter makes its own).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKDOWN_FOLDERS = ["lessons", "quiz", "notebooks", "benchmarks", "utils"]

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+[\"'(].*)?$", re.M)
_HTML = re.compile(r"\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_HTML_ID = re.compile(r"<a\s[^>]*\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']")


def prose(markdown: str) -> str:
    """The markdown without fenced code blocks and inline code (links there are examples)."""
    out, in_fence = [], False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            out.append("")
        else:
            out.append("" if in_fence else re.sub(r"`+[^`]*`+", "", line))
    return "\n".join(out)


def link_targets(markdown: str) -> list[str]:
    """Targets of inline links and images, reference definitions and HTML src/href."""
    text = prose(markdown)
    return _INLINE_LINK.findall(text) + _REFERENCE.findall(text) + _HTML.findall(text)


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target)) or target.startswith("//")


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every anchor a markdown file defines: its headings' slugs and its <a id=...>."""
    found, seen = set(), {}
    for line in prose(markdown).splitlines():
        match = _HEADING.match(line)
        if match:
            slug = github_slug(match.group(1))
            found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return found | set(_HTML_ID.findall(markdown))


def broken_links(markdown: str, folder: Path, self_path: Path | None = None,
                 check_anchors: bool = True) -> list[str]:
    """Relative targets in `markdown` (which lives in `folder`) that do not resolve."""
    broken = []
    for target in dict.fromkeys(link_targets(markdown)):  # each target once
        if not target or is_external(target):
            continue
        path_part, _, anchor = target.partition("#")
        path_part = unquote(path_part.split("?")[0])
        if path_part.startswith("/"):
            resolved = ROOT / path_part.lstrip("/")
        elif path_part:
            resolved = (folder / path_part).resolve()
        else:
            resolved = self_path
        if resolved is None:
            continue
        if not resolved.exists():
            broken.append(f"{target}: no such file {resolved}")
        elif anchor and check_anchors and resolved.suffix == ".md" and resolved.is_file():
            if anchor not in anchors(resolved.read_text(encoding="utf-8")):
                broken.append(f"{target}: {resolved.name} has no anchor #{anchor}")
    return broken


def markdown_files() -> list[Path]:
    files = sorted(ROOT.glob("*.md"))
    for folder in MARKDOWN_FOLDERS:
        files += sorted((ROOT / folder).rglob("*.md"))
    return files


def notebook_files() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*/*.ipynb"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ------------------------------------------------------------------ the repository


@pytest.mark.parametrize("path", markdown_files(), ids=_rel)
def test_links_and_images_in_markdown_resolve(path):
    broken = broken_links(path.read_text(encoding="utf-8"), path.parent, path)
    assert not broken, f"{_rel(path)} has broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("path", notebook_files(), ids=_rel)
def test_links_and_images_in_notebook_markdown_cells_resolve(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    broken = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            broken += [f"cell {cell.get('id')!r}: {b}" for b in broken_links(text, path.parent)]
    assert not broken, f"{_rel(path)} has broken links:\n" + "\n".join(broken)


def test_the_readme_and_every_lesson_page_are_checked():
    checked = {_rel(p) for p in markdown_files()}
    assert "README.md" in checked
    for lang in ["en", "fr", "es", "it", "pt", "zh"]:
        assert f"lessons/{lang}/multimodal-networks.md" in checked, f"lessons/{lang}/ is not built"
        assert f"lessons/{lang}/instructor-guide.md" in checked


def test_every_figure_of_the_lesson_is_drawn_by_the_script(tmp_path):
    """The committed figures are the ones lessons/figures/draw_figures.py draws."""
    script = ROOT / "lessons" / "figures" / "draw_figures.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True,
                   capture_output=True, env={"MPLBACKEND": "Agg", "PATH": ""})
    drawn = {p.name for p in tmp_path.glob("*.png")}
    committed = {p.name for p in (ROOT / "lessons" / "figures").glob("*.png")}
    assert drawn == committed, f"drawn {sorted(drawn)} but committed {sorted(committed)}"
    used = set(re.findall(r"\.\./figures/([\w-]+\.png)",
                          (ROOT / "lessons" / "src" / "multimodal-networks.md").read_text("utf-8")))
    assert used and used <= drawn, f"the lesson uses figures the script does not draw: {used - drawn}"
    assert used == drawn, f"figures drawn but never used: {sorted(drawn - used)}"


# ------------------------------------------------------------------ the checker itself


def test_checker_finds_broken_links_images_and_anchors(tmp_path):
    (tmp_path / "img.png").write_bytes(b"png")
    (tmp_path / "other.md").write_text("# Other page\n\n## Two words\n<a id=\"kept\"></a>\n",
                                       encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page title\n\n"
        "![ok](img.png) ![missing](missing.png) [ok](other.md#two-words) [ok](other.md#kept)\n"
        "[bad anchor](other.md#three-words) [self](#page-title) [bad self](#nowhere)\n"
        "[web](https://example.com/x.md) [mail](mailto:a@b.c) [badge [![b](img.png)](gone.md)\n"
        "<img src=\"gone.png\"> `[code](not-checked.md)`\n\n"
        "```\n[fenced](not-checked-either.md)\n```\n\n"
        "[ref]: missing-ref.md\n", encoding="utf-8")
    broken = broken_links(page.read_text(encoding="utf-8"), tmp_path, page)
    names = sorted(b.split(":")[0] for b in broken)
    assert names == sorted(["missing.png", "other.md#three-words", "#nowhere", "gone.md",
                            "gone.png", "missing-ref.md"]), broken


@pytest.mark.parametrize("heading, slug", [
    ("CLIP: one space for images and texts", "clip-one-space-for-images-and-texts"),
    ("Temperature and logit scale", "temperature-and-logit-scale"),
    ("Measuring search: recall@k", "measuring-search-recallk"),
    ("DALL-E 2: generating from CLIP's space (unCLIP)", "dall-e-2-generating-from-clips-space-unclip"),
    ("`make test` and **more**", "make-test-and-more"),
    ("零样本分类", "零样本分类"),
])
def test_github_slugs(heading, slug):
    assert github_slug(heading) == slug


def test_duplicate_headings_get_numbered_anchors():
    assert anchors("# A\n\n## A\n\n### A\n") == {"a", "a-1", "a-2"}


SEED_LINKS = [  # what the source lesson links to; the module links them too (links only)
    "https://github.com/openai/CLIP",
    "https://openai.com/research/clip",
    "https://github.com/pixray/pixray",
    "https://arxiv.org/abs/2204.06125",
    "https://openai.com/dall-e-2",
    "https://github.com/microsoft/AI-For-Beginners/tree/main/lessons/4-ComputerVision/07-ConvNets",
    "https://github.com/microsoft/AI-For-Beginners/tree/main/lessons/4-ComputerVision/10-GANs",
    "https://github.com/microsoft/AI-For-Beginners/blob/main/lessons/X-Extras/X1-MultiModal/README.md",
]


@pytest.mark.parametrize("lang", ["en", "fr", "es", "it", "pt", "zh"])
def test_every_language_of_the_lesson_links_the_seed_material(lang):
    text = (ROOT / "lessons" / lang / "multimodal-networks.md").read_text(encoding="utf-8")
    targets = set(link_targets(text))
    missing = [url for url in SEED_LINKS if url not in targets]
    assert not missing, f"lessons/{lang}/multimodal-networks.md does not link {missing}"
