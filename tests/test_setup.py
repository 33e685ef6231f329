"""The project's own setup: dependency lists agree, the CLI answers, the layout is there."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import yaml

from course_tools.notebooks import read_pyproject

ROOT = Path(__file__).resolve().parent.parent


def _names(requirements: list[str]) -> dict[str, str]:
    """{normalised name: spec} of requirement strings like 'torch>=2.6'."""
    out = {}
    for req in requirements:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
        out[match.group(1).lower().replace("_", "-")] = match.group(2).strip()
    return out


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = read_pyproject(ROOT)["project"]
    wanted = _names(project["dependencies"] + project["optional-dependencies"]["lab"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = _names([r for r in pip_section if not r.startswith("-")])
    assert listed == wanted, (
        f"environment.yml and pyproject.toml disagree: only in environment.yml "
        f"{sorted(set(listed.items()) - set(wanted.items()))}, only in pyproject "
        f"{sorted(set(wanted.items()) - set(listed.items()))}"
    )


def test_constraints_pin_every_direct_dependency():
    project = read_pyproject(ROOT)["project"]
    direct = set(_names(project["dependencies"]))
    for extra in project["optional-dependencies"].values():
        direct |= set(_names(extra))
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    missing = sorted(d for d in direct if d not in pins)
    assert not missing, f"constraints.txt has no pin for {missing}"
    # Colab keeps its torch: pyproject must use ranges, never exact pins.
    assert all("==" not in spec for spec in _names(project["dependencies"]).values())


def test_layout_of_the_course_card():
    for name in ["README.md", "Makefile", "pyproject.toml", "environment.yml", ".ci/run",
                 "lessons", "notebooks", "quiz", "utils", "tests", "benchmarks"]:
        assert (ROOT / name).exists(), f"{name} is missing"
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in ci


def test_cli_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "utils", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    from utils.__main__ import COMMANDS

    for command in COMMANDS:
        assert command in out.stdout


def test_nothing_the_lessons_import_needs_python_3_11():
    """README says Python 3.10+: `tomllib` (3.11) may appear only in the tooling, with a fallback."""
    for path in sorted((ROOT / "utils").rglob("*.py")) + sorted((ROOT / "notebooks" / "src").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "tomllib" not in names, f"{path.relative_to(ROOT)} imports tomllib (Python 3.11+)"
    assert read_pyproject(ROOT)["project"]["requires-python"] == ">=3.10"


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first = readme.find("make lab")
    assert 0 < first < readme.find("## Lessons"), "README must show `make lab` before the lessons"
    assert readme.find("make test") < readme.find("## Lessons")


def _dist(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_colab_setup_cell_installs_every_module_the_notebooks_import():
    """Every module the notebooks and the helpers they import need comes from the Colab setup
    cell's install (or from what that installs), or is one the runtime keeps (torch,
    torchvision, ipywidgets; IPython is the runtime itself)."""
    import importlib.metadata as md

    from course_tools.notebooks import COLAB_KEEP, colab_requirements, colab_setup_cell

    cell = colab_setup_cell()
    compile(cell, "colab-setup", "exec")
    installed = {_dist(r) for r in colab_requirements()}
    assert all(f'"{r}"' in cell for r in colab_requirements())
    assert "faiss-cpu" in installed, "lesson 03 imports faiss"
    assert not installed & set(COLAB_KEEP), "the runtime's torch and widgets must be kept"
    assert "--upgrade" not in cell and " -U" not in cell
    covered = installed | set(COLAB_KEEP) | {"ipython"}
    for dist in installed:  # and what those bring with them
        covered |= {_dist(r) for r in (md.requires(dist) or []) if "extra ==" not in r}
    owners = md.packages_distributions()
    optional = {"pixray"}  # installed by its own cell in lesson 04, on request
    sources = sorted((ROOT / "notebooks" / "src").glob("*.py")) + sorted((ROOT / "utils").glob("*.py"))
    missing = {}
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in optional or top == "utils":
                    continue
                if not {_dist(d) for d in owners.get(top, [top])} & covered:
                    missing.setdefault(top, path.name)
    assert not missing, f"imported but not installed by the Colab setup cell: {missing}"


def test_every_badge_points_at_the_one_repository_url():
    from utils import COURSE_REPO

    texts = [ROOT / "README.md", *sorted((ROOT / "lessons").rglob("*.md")),
             *sorted((ROOT / "notebooks").glob("*/[0-9][0-9]-*.ipynb"))]
    for path in texts:
        for repo in re.findall(r"colab\.research\.google\.com/github/([^/]+/[^/]+)/", path.read_text()) + \
                re.findall(r"mybinder\.org/v2/gh/([^/]+/[^/]+)/", path.read_text()):
            assert repo == COURSE_REPO, f"{path.relative_to(ROOT)} links to {repo}, not {COURSE_REPO}"
