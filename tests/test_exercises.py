"""Student versions: solutions become placeholders, their checks fail until the exercise is done."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import pytest

from utils import exercises as E
from utils.i18n import build_notebook, dumps_notebook

ROOT = Path(__file__).resolve().parent.parent

SOURCE = '''# %% [markdown] id=title
# # 07 · Doubling
#
# A lesson with one exercise. See [the figure](figures/double.png) and [the docs](https://example.org/x).

# %% id=params tags=parameters
LANG = "en"
QUICK = True

# %% [markdown] id=task
# ## Exercise
# Write `double(x)` that returns twice its argument.

# %% id=solution tags=solution
# Exercise: write double(x)
import math


def double(x: float) -> float:
    """Twice x: 2 * x."""
    result = 2 * x  # the whole point
    return result


table = [double(i) for i in range(3)]

# %% id=check
assert double(21) == 42, "double(21) must be 42"
assert table == [0, 2, 4]
assert math.isclose(double(0.5), 1.0)
print("check passed")

# %% [markdown] id=after
# Well done. Back to the [setup](../00-setup.ipynb).

# %% id=after-code
done = True
'''


@pytest.fixture()
def full_notebook(tmp_path) -> dict:
    src = tmp_path / "07-doubling.py"
    src.write_text(SOURCE, encoding="utf-8")
    return build_notebook(src, "fr", base=tmp_path / "no-translations")


def cell(nb: dict, cell_id: str) -> dict:
    return next(c for c in nb["cells"] if c.get("id") == cell_id)


def text(c: dict) -> str:
    return "".join(c["source"]) if isinstance(c["source"], list) else c["source"]


def run_cells(nb: dict) -> dict[str, BaseException | None]:
    """Execute the code cells in order in one namespace, like a kernel: {cell id: error}."""
    namespace: dict = {}
    errors = {}
    for c in nb["cells"]:
        if c["cell_type"] != "code":
            continue
        try:
            exec(compile(text(c), c["id"], "exec"), namespace)  # noqa: S102 - test notebook
            errors[c["id"]] = None
        except Exception as err:  # noqa: BLE001 - recorded and asserted below
            errors[c["id"]] = err
    return errors


# ------------------------------------------------------------------ placeholders


def build_notebook_from(source: str) -> dict:
    """The English notebook built from a percent-format source."""
    with tempfile.TemporaryDirectory() as folder:
        src = Path(folder) / "07-doubling.py"
        src.write_text(source, encoding="utf-8")
        return build_notebook(src, "en", base=Path(folder))


def test_placeholder_keeps_imports_signatures_and_docstrings():
    solution = text(cell(build_notebook_from(SOURCE), "solution"))
    code, raises = E.placeholder(solution)
    assert raises  # `table = ...` is a top-level statement: the cell itself raises
    assert code.startswith("# Exercise: write double(x)\n")
    assert "import math" in code
    assert "def double(x: float) -> float:" in code and '"""Twice x: 2 * x."""' in code
    assert "result = 2 * x" not in code and "the whole point" not in code and "table" not in code
    namespace: dict = {}
    with pytest.raises(NotImplementedError, match=r"^Exercise: write double\(x\)$"):
        exec(code, namespace)  # noqa: S102
    with pytest.raises(NotImplementedError, match="Exercise: write double"):
        namespace["double"](1)


def test_placeholder_of_functions_only_does_not_raise_itself():
    code, raises = E.placeholder("def f(a, b=2):\n    return a * b\n")
    assert not raises
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - defines f without raising
    with pytest.raises(NotImplementedError, match=r"Exercise: complete f\(\)"):
        namespace["f"](1)


def test_placeholder_stubs_the_methods_of_a_class_and_keeps_its_fields():
    solution = (
        "from dataclasses import dataclass\n\n@dataclass\nclass Scaler:\n"
        "    '''Multiply by k.'''\n    k: float = 2.0\n\n"
        "    def __call__(self, x):\n        return self.k * x\n"
    )
    code, raises = E.placeholder(solution)
    assert not raises and "return self.k * x" not in code and "k: float = 2.0" in code
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102
    scaler = namespace["Scaler"]()
    assert scaler.k == 2.0
    with pytest.raises(NotImplementedError, match=r"Scaler\.__call__"):
        scaler(3)


def test_placeholder_of_a_cell_python_cannot_parse_raises_with_the_task():
    code, raises = E.placeholder("%time x = 1\n")
    assert raises and "NotImplementedError" in code and "%time" not in code


# ------------------------------------------------------------------ student notebooks


def test_student_version_replaces_the_solution_and_tags_the_check(full_notebook):
    before = json.dumps(full_notebook, sort_keys=True)
    student = E.student_notebook(full_notebook, "fr", "07-doubling")
    assert json.dumps(full_notebook, sort_keys=True) == before  # the full version is untouched

    placeholder = cell(student, "solution")
    assert "NotImplementedError" in text(placeholder) and "result = 2 * x" not in text(placeholder)
    assert placeholder["metadata"]["tags"] == ["exercise", "raises-exception"]
    assert "raises-exception" in cell(student, "check")["metadata"]["tags"]
    assert "tags" not in cell(student, "after-code")["metadata"]

    ids = [c.get("id") for c in student["cells"]]
    assert ids.index("student-note") == ids.index("title") + 1
    note = text(cell(student, "student-note"))
    assert note.startswith("**Version étudiant.**") and "(../07-doubling.ipynb)" in note

    title = text(cell(student, "title"))
    assert "[the figure](../figures/double.png)" in title
    assert "(https://example.org/x)" in title
    assert "(../../00-setup.ipynb)" in text(cell(student, "after"))
    languages = text(cell(student, "languages"))
    assert "[English](../../en/exercises/07-doubling.ipynb)" in languages
    assert "notebooks/fr/exercises/07-doubling.ipynb" in languages  # Colab and Binder badges


def test_checks_fail_in_the_student_version_and_pass_once_the_exercise_is_done(full_notebook):
    full = run_cells(full_notebook)
    assert all(err is None for err in full.values()), full  # the solution passes its check

    student = E.student_notebook(full_notebook, "fr", "07-doubling")
    errors = run_cells(student)
    assert isinstance(errors["check"], NameError | NotImplementedError), errors["check"]
    assert isinstance(errors["solution"], NotImplementedError)
    for c in student["cells"]:  # every cell that fails is one nbval is told to expect
        if c["cell_type"] == "code" and errors[c["id"]] is not None:
            assert "raises-exception" in c["metadata"].get("tags", []), (
                c["id"], "".join(traceback.format_exception(errors[c["id"]])))

    # the student writes the solution into the placeholder: now the check passes
    cell(student, "solution")["source"] = cell(full_notebook, "solution")["source"]
    assert run_cells(student)["check"] is None


def test_a_function_only_exercise_fails_in_the_check_cell_with_not_implemented(tmp_path):
    source = SOURCE.replace("\n\ntable = [double(i) for i in range(3)]\n", "\n").replace(
        "assert table == [0, 2, 4]\n", "")
    student = E.student_notebook(build_notebook_from(source), "en", "07-doubling")
    errors = run_cells(student)
    assert errors["solution"] is None and "raises-exception" not in cell(student, "solution")["metadata"]["tags"]
    assert isinstance(errors["check"], NotImplementedError)
    assert str(errors["check"]) == "Exercise: write double(x)"


def test_later_cells_that_need_the_solution_are_tagged_and_only_those():
    source = SOURCE + (
        "\n# %% id=uses-table\ntotal = sum(table)\n"
        "\n# %% id=uses-total\nif total:\n    print(total)\n"
        "\n# %% id=redefines\ntable = [1]\nsizes = [len(t) for t in ([table],)]\n"
        "\n# %% id=reads-clean\nfor row in table:\n    print(row, sizes)\n"
    )
    student = E.student_notebook(build_notebook_from(source), "en", "07-doubling")
    tagged = [c["id"] for c in student["cells"]
              if "raises-exception" in c.get("metadata", {}).get("tags", [])]
    assert tagged == ["solution", "check", "uses-table", "uses-total"]
    errors = run_cells(student)  # the static guess matches what really fails
    assert sorted(k for k, err in errors.items() if err is not None) == sorted(tagged)


@pytest.mark.parametrize("markdown, title", [
    ("## Exercises\n\n**Exercise 1: build an ensemble by hand.** Using only…", "Exercise 1: build an ensemble by hand"),
    ("## Exercice 2 : combien de mémoire ?\n\nUne photothèque…", "Exercise 2: combien de mémoire ?"),
    ("**练习 3：带过滤的检索。** 真正的搜索引擎……", "Exercise 3: 带过滤的检索"),
    ("## Exercises\n\nNo numbered title here.", None),
])
def test_task_title_is_found_in_any_language(markdown, title):
    assert E.task_title(markdown) == title


def test_without_an_exercise_comment_the_message_is_the_task_title():
    source = SOURCE.replace("# Exercise: write double(x)\n", "").replace(
        "# ## Exercise\n# Write", "# **Exercise 1: doubling.** Write")
    student = E.student_notebook(build_notebook_from(source), "en", "07-doubling")
    assert text(cell(student, "solution")).startswith("# Exercise 1: doubling\n")
    assert str(run_cells(student)["check"]) == "Exercise 1: doubling"


def test_a_solution_without_a_check_cell_is_an_error():
    source = SOURCE.split("# %% id=check")[0]
    with pytest.raises(E.ExerciseError, match="solution cell 'solution' has no check cell"):
        E.student_notebook(build_notebook_from(source), "en", "07-doubling")


# ------------------------------------------------------------------ build and check


def test_build_writes_student_versions_and_never_overwrites_student_work(tmp_path, full_notebook):
    root = tmp_path / "notebooks"
    for lang in ("en", "fr"):
        (root / lang).mkdir(parents=True)
        (root / lang / "07-doubling.ipynb").write_text(dumps_notebook(full_notebook), encoding="utf-8")
    no_exercise = {**full_notebook, "cells": [c for c in full_notebook["cells"]
                                              if c.get("id") not in ("solution", "check")]}
    (root / "en" / "08-plain.ipynb").write_text(dumps_notebook(no_exercise), encoding="utf-8")

    written = E.build(root=root)
    assert sorted(p.relative_to(root).as_posix() for p in written) == [
        "en/exercises/07-doubling.ipynb", "fr/exercises/07-doubling.ipynb"]
    assert E.build(root=root) == [] and E.check(root=root) == []

    student = root / "en" / "exercises" / "07-doubling.ipynb"
    nb = json.loads(student.read_text(encoding="utf-8"))
    cell(nb, "solution")["source"] = ["def double(x):\n", "    return x + x\n"]  # the student's work
    student.write_text(json.dumps(nb), encoding="utf-8")
    messages = []
    assert E.build(root=root, log=messages.append) == []
    assert "return x + x" in student.read_text(encoding="utf-8")
    assert messages and "holds your work" in messages[0]
    assert E.check(root=root) == ["en/exercises/07-doubling.ipynb: differs from a fresh build "
                                  "(run make exercises)"]
    assert E.build(root=root, force=True) == [student]
    assert E.check(root=root) == []


def test_nbval_accepts_the_student_version_only_because_of_its_tags(tmp_path, full_notebook):
    student = E.student_notebook(full_notebook, "en", "07-doubling")
    untagged = json.loads(json.dumps(student))
    cell(untagged, "check")["metadata"]["tags"].remove("raises-exception")
    for name, nb in [("full", full_notebook), ("student", student), ("untagged", untagged)]:
        (tmp_path / f"{name}.ipynb").write_text(dumps_notebook(nb), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", "-rf",
         "full.ipynb", "student.ipynb", "untagged.ipynb"],
        cwd=tmp_path, capture_output=True, text=True, timeout=240)
    failed = sorted({line.split()[1].split("::")[0] for line in result.stdout.splitlines()
                     if line.startswith("FAILED")})
    assert failed == ["untagged.ipynb"], result.stdout[-3000:]


def test_real_notebooks_with_exercises_get_working_placeholders():
    built = sorted((ROOT / "notebooks" / "en").glob("[0-9][0-9]-*.ipynb"))
    with_exercises = [(p, json.loads(p.read_text(encoding="utf-8"))) for p in built]
    with_exercises = [(p, nb) for p, nb in with_exercises if E.has_exercises(nb)]
    if not with_exercises:
        pytest.skip("no built notebook has a cell tagged `solution` yet")
    for path, nb in with_exercises:
        student = E.student_notebook(nb, "en", path.stem)
        for full_cell, student_cell in zip(nb["cells"], [c for c in student["cells"]
                                                          if c.get("id") != "student-note"]):
            if "solution" in full_cell.get("metadata", {}).get("tags", []):
                assert "NotImplementedError" in text(student_cell), (path.name, full_cell["id"])
                assert text(student_cell) != text(full_cell)
        ids = [c.get("id") for c in student["cells"]]
        for i, c in enumerate(student["cells"]):
            if "exercise" in c["metadata"].get("tags", []):
                check = next(d for d in student["cells"][i + 1:] if d["cell_type"] == "code")
                assert "raises-exception" in check["metadata"]["tags"], (path.name, ids[i])
