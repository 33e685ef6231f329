"""Build `notebooks/<lang>/NN-name.ipynb` from `notebooks/src/NN-name.py` with nbformat.

Every built notebook starts with a language line and Colab/Binder badges, then the title, then
the Colab setup cell; markdown cells take their translation where it is fresh (English
otherwise); code cells are the same in every language except the parameters cell's LANG.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from utils import COURSE_REPO
from utils.i18n import LANGUAGES, SOURCE_LANG

from .sources import ROOT, parse_source

NOTEBOOK_I18N = ROOT / "notebooks" / "i18n"


def language_line(stem: str, lang: str, folder: str = "..", ext: str = ".ipynb") -> str:
    """'**English** · [Français](../fr/x.ipynb) · ...' with the current language in bold."""
    return " · ".join(f"**{name}**" if code == lang else f"[{name}]({folder}/{code}/{stem}{ext})"
                      for code, name in LANGUAGES.items())


def badges(path_in_repo: str) -> str:
    """Colab and Binder badges for a notebook path like notebooks/en/01-x.ipynb."""
    colab = f"https://colab.research.google.com/github/{COURSE_REPO}/blob/main/{path_in_repo}"
    binder = f"https://mybinder.org/v2/gh/{COURSE_REPO}/main?urlpath=lab/tree/{path_in_repo}"
    return (
        f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
        f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder})"
    )


# What a Colab runtime already has and must keep: replacing torch or ipywidgets inside a
# running kernel breaks it (ipywidgets 7 -> 8: the upload widget fails until a restart).
COLAB_KEEP = ("torch", "torchvision", "ipywidgets")


def read_pyproject(root: Path = ROOT) -> dict:
    """pyproject.toml as a dict: tomllib on Python 3.11+, tomli (pytest's dependency) on 3.10."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: tomli, which pytest installs there
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ModuleNotFoundError("Python 3.10 reads pyproject.toml with tomli: "
                                      "pip install tomli (or use Python 3.11+)") from None
    return tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))


def colab_requirements(root: Path = ROOT) -> list[str]:
    """What the Colab setup cell installs: the course's dependencies and its `faiss` extra
    (pyproject.toml), minus COLAB_KEEP, which the runtime provides."""
    project = read_pyproject(root)["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["faiss"]
    name = lambda req: re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()  # noqa: E731
    return [r for r in reqs if name(r) not in COLAB_KEEP]


def colab_setup_cell(root: Path = ROOT) -> str:
    """The code cell every notebook gets after its title: on Colab, fetch and install the
    course (package, quizzes, lesson files) and every package the notebooks import, keeping
    the runtime's torch, torchvision and ipywidgets; anywhere else, do nothing."""
    reqs = ", ".join(f'"{r}"' for r in colab_requirements(root))
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


def _cell(kind: str, cell_id: str, source: str, tags: list[str] | None = None):
    new = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
    cell = new(source, id=cell_id)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def build_notebook(src: Path, lang: str, base: Path = NOTEBOOK_I18N) -> nbformat.NotebookNode:
    """The notebook of `src` in `lang` (nbformat 4.5, no outputs), with nbgrader metadata on
    its exercise cells. Missing or stale translations fall back to English (`check` says so)."""
    from .claims import expand_claims, load_claims
    from .exercises import add_grading_metadata
    from .po import fresh_text, load_translations

    stem = Path(src).stem
    found = load_translations(stem, lang, base) if lang != SOURCE_LANG else {}
    header = language_line(stem, lang) + "\n\n" + badges(f"notebooks/{lang}/{stem}.ipynb")
    cells = [_cell("markdown", "languages", header)]
    n_code = 0
    claims = load_claims()
    for cell in parse_source(src):
        if cell.id == "colab-setup":  # generated below, the same in every notebook
            continue
        if cell.kind == "markdown":
            text = fresh_text(found.get(cell.id), cell.source) or cell.source
            text = expand_claims(text, lang, claims, f"notebooks/src/{stem}.py, cell {cell.id!r} ({lang}): ")
            cells.append(_cell("markdown", cell.id, text, cell.tags))
            if cell.id == "title":
                cells.append(_cell("code", "colab-setup", colab_setup_cell()))
        else:
            n_code += 1
            source = cell.source
            if "parameters" in cell.tags:
                source = re.sub(r'^LANG = "en"', f'LANG = "{lang}"', source, flags=re.M)
            cells.append(_cell("code", cell.id or f"code-{n_code}", source, cell.tags))
    add_grading_metadata(cells, f"{lang}/{stem}")
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    nb.nbformat_minor = 5
    return nb


def dumps_notebook(nb: dict) -> str:
    """The file content of a notebook: nbformat's JSON (validated), ending with a newline."""
    text = nbformat.writes(nbformat.from_dict(nb), version=4)
    return text if text.endswith("\n") else text + "\n"
