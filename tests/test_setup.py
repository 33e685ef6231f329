"""The project's own setup: dependency lists agree, the CLI answers, the layout is there."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _names(requirements: list[str]) -> dict[str, str]:
    """{normalised name: spec} of requirement strings like 'torch>=2.6'."""
    out = {}
    for req in requirements:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
        out[match.group(1).lower().replace("_", "-")] = match.group(2).strip()
    return out


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
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
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
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


def test_readme_starts_with_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    first = readme.find("make lab")
    assert 0 < first < readme.find("## Lessons"), "README must show `make lab` before the lessons"
    assert readme.find("make test") < readme.find("## Lessons")
