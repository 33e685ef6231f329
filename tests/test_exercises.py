"""Exercises: nbgrader metadata, student versions made by nbgrader, checks that fail helpfully
until the exercise is solved, committed student versions that match the source."""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from unittest.mock import MagicMock

import pytest

from course_tools import exercises as E
from course_tools.notebooks import build_notebook, dumps_notebook
from course_tools.sources import notebook_sources
from utils.exercises import answer_digest, same_answer
from utils.i18n import LANGUAGES

ROOT = Path(__file__).resolve().parent.parent

SOURCE = '''# %% [markdown] id="title"
# # 07 · Doubling
#
# A lesson with one exercise. See [the figure](figures/double.png) and [the docs](https://example.org/x).

# %% id="params" tags=["parameters"]
LANG = "en"
QUICK = True

# %% [markdown] id="task"
# ## Exercise
# Write `double(x)` that returns twice its argument, and the table of double(0..2).

# %% id="solution" tags=["solution"]
import math


def double(x: float) -> float:
    """Twice x."""
    ### BEGIN SOLUTION
    result = 2 * x  # the whole point
    return result
    ### END SOLUTION


### BEGIN SOLUTION
table = [double(i) for i in range(3)]
### END SOLUTION

# %% id="check" tags=["points-3"]
from utils.exercises import exercise_check, same_answer

with exercise_check(1):
    assert same_answer(table, "DIGEST"), "table is not [double(0), double(1), double(2)]"
    assert double(21) == 42, "double(21) is not 42"
    assert math.isclose(double(0.5), 1.0)
print("check passed")

# %% [markdown] id="after"
# Well done. Back to the [setup](../00-setup.ipynb).

# %% id="after-code"
done = True
'''.replace("DIGEST", answer_digest([0, 2, 4]))


def notebook_from(source: str, lang: str = "en") -> dict:
    """The notebook built from a percent-format source (no translations)."""
    with tempfile.TemporaryDirectory() as folder:
        src = Path(folder) / "07-doubling.py"
        src.write_text(source, encoding="utf-8")
        return build_notebook(src, lang, base=Path(folder) / "no-translations")


@pytest.fixture()
def full_notebook() -> dict:
    return notebook_from(SOURCE, "fr")


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


# ------------------------------------------------------------------ nbgrader metadata


def test_exercise_cells_get_nbgrader_metadata(full_notebook):
    assert cell(full_notebook, "solution")["metadata"]["nbgrader"] == {
        "grade": False, "grade_id": "solution", "locked": False, "schema_version": 3,
        "solution": True, "task": False}
    assert cell(full_notebook, "check")["metadata"]["nbgrader"] == {
        "grade": True, "grade_id": "check", "locked": True, "points": 3, "schema_version": 3,
        "solution": False, "task": False}
    assert "nbgrader" not in cell(full_notebook, "after-code")["metadata"]


def test_a_solution_without_markers_or_without_a_check_cell_is_an_error():
    unmarked = SOURCE.replace("    ### BEGIN SOLUTION\n", "").replace("    ### END SOLUTION\n", "") \
        .replace("### BEGIN SOLUTION\n", "").replace("### END SOLUTION\n", "")
    with pytest.raises(E.ExerciseError, match="solution cell 'solution' needs '### BEGIN SOLUTION'"):
        notebook_from(unmarked)
    with pytest.raises(E.ExerciseError, match="solution cell 'solution' has no check cell"):
        notebook_from(SOURCE.split('# %% id="check"')[0])


# ------------------------------------------------------------------ student notebooks


def test_student_version_has_nbgraders_stubs_and_tags_the_check(full_notebook):
    before = json.dumps(full_notebook, sort_keys=True)
    student = E.student_notebook(full_notebook, "fr", "07-doubling")
    assert json.dumps(full_notebook, sort_keys=True) == before  # the full version is untouched

    placeholder = text(cell(student, "solution"))
    assert "result = 2 * x" not in placeholder and "range(3)" not in placeholder
    assert placeholder.count("raise NotImplementedError()") == 2  # one stub per solution region
    assert "import math" in placeholder and '"""Twice x."""' in placeholder  # kept: outside the regions
    assert "    # YOUR CODE HERE\n    raise NotImplementedError()" in placeholder  # indented in the function
    assert cell(student, "solution")["metadata"]["tags"] == ["exercise", "raises-exception"]
    check = cell(student, "check")
    assert "raises-exception" in check["metadata"]["tags"]
    assert check["metadata"]["editable"] is False and check["metadata"]["deletable"] is False  # LockCells
    assert text(check) == text(cell(full_notebook, "check"))
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


def test_checks_fail_helpfully_on_the_empty_attempt_and_pass_once_solved(full_notebook):
    full = run_cells(full_notebook)
    assert all(err is None for err in full.values()), full  # the solution passes its check

    student = E.student_notebook(full_notebook, "en", "07-doubling")
    errors = run_cells(student)
    assert isinstance(errors["solution"], NotImplementedError)
    assert isinstance(errors["check"], AssertionError)
    message = str(errors["check"])
    assert message.startswith("Exercise 1 is not solved yet (name 'table' is not defined)"), message
    assert "raise NotImplementedError()" in message and "[0, 2, 4]" not in message
    for c in student["cells"]:  # every cell that fails is one nbval is told to expect
        if c["cell_type"] == "code" and errors[c["id"]] is not None:
            assert "raises-exception" in c["metadata"].get("tags", []), (
                c["id"], "".join(traceback.format_exception(errors[c["id"]])))

    # a wrong attempt: the check says what is wrong, without the answer
    cell(student, "solution")["source"] = ["def double(x):\n    return x + 1\n", "table = [0, 2, 4]\n"]
    wrong = str(run_cells(student)["check"])
    assert wrong == "Exercise 1: not yet. double(21) is not 42", wrong
    # the student writes the solution: now the check passes
    cell(student, "solution")["source"] = cell(full_notebook, "solution")["source"]
    assert run_cells(student)["check"] is None


def test_only_the_function_body_is_missing_the_check_fails_with_not_implemented():
    source = SOURCE.replace("### BEGIN SOLUTION\ntable = [double(i) for i in range(3)]\n### END SOLUTION\n",
                            "table = [0, 2, 4]\n")
    student = E.student_notebook(notebook_from(source), "en", "07-doubling")
    errors = run_cells(student)
    assert errors["solution"] is None and "raises-exception" not in cell(student, "solution")["metadata"]["tags"]
    assert str(errors["check"]).startswith("Exercise 1 is not solved yet (NotImplementedError)")


def test_later_cells_that_need_the_solution_are_tagged_and_only_those():
    source = SOURCE + (
        "\n# %% id=\"uses-table\"\ntotal = sum(table)\n"
        "\n# %% id=\"uses-total\"\nif total:\n    print(total)\n"
        "\n# %% id=\"redefines\"\ntable = [1]\nsizes = [len(t) for t in ([table],)]\n"
        "\n# %% id=\"reads-clean\"\nfor row in table:\n    print(row, sizes)\n"
    )
    student = E.student_notebook(notebook_from(source), "en", "07-doubling")
    tagged = [c["id"] for c in student["cells"]
              if "raises-exception" in c.get("metadata", {}).get("tags", [])]
    assert tagged == ["solution", "check", "uses-table", "uses-total"]
    errors = run_cells(student)  # the static guess matches what really fails
    assert sorted(k for k, err in errors.items() if err is not None) == sorted(tagged)


def test_answer_digests_hide_the_value_and_round_floats():
    assert same_answer(15.3600001, answer_digest(15.36))
    assert not same_answer(15.4, answer_digest(15.36))
    assert "15.36" not in answer_digest(15.36)


def test_an_integral_float_answer_is_the_same_answer_as_the_int():
    assert same_answer(32768 / 256, answer_digest(128))  # a student may divide with / (lesson 01, exercise 3)
    assert answer_digest(128.0) == answer_digest(128) != answer_digest(128.5)
    assert same_answer(15.36, answer_digest(15.36)) and not same_answer(15.0, answer_digest(15.36))


def test_the_temperature_check_recomputes_both_peaks():
    import torch

    from utils.exercises import same_peaks

    row = torch.tensor([0.31, 0.12, 0.25, 0.02])
    peaks = [(row / tau).softmax(-1).max().item() for tau in (0.01, 1.0)]
    assert same_peaks(row, (0.01, 1.0), peaks)
    assert not same_peaks(row, (0.01, 1.0), peaks[::-1])  # swapped
    assert not same_peaks(row, (0.01, 1.0), [peaks[0], row.softmax(-1).min().item()])  # not the largest
    assert not same_peaks(row, (0.01, 1.0), peaks[:1])


def test_the_class_vector_check_accepts_build_classifier_only():
    import torch

    from utils.exercises import same_class_vectors
    from utils.models import load_clip
    from utils.zeroshot import build_classifier

    clip = load_clip("tiny-shapes", device="cpu", verbose=False)
    names, templates = ["red circle", "blue star"], ["a {}", "a drawing of a {}"]
    weights = build_classifier(clip, names, templates).weights
    assert same_class_vectors(clip, names, templates, weights.clone())
    unnormalised = clip.encode_texts([tpl.format(n) for n in names for tpl in templates]).view(2, 2, -1).mean(1)
    assert not same_class_vectors(clip, names, templates, unnormalised)  # the average, not normalised again
    assert not same_class_vectors(clip, names, templates, weights[:1])
    assert not same_class_vectors(clip, names, templates, torch.flip(weights, [0]))


# ------------------------------------------------------------------ nbgrader itself


def test_nbgrader_generates_the_assignment_and_autogrades_it(tmp_path, full_notebook, monkeypatch):
    """An instructor's workflow on a notebook built by the course: release, then grade a
    solved and an empty submission."""
    # nbgrader runs the `alembic` command of its environment (the venv, not always on PATH)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    course = tmp_path / "course"
    (course / "source" / "ps1").mkdir(parents=True)
    (course / "source" / "ps1" / "doubling.ipynb").write_text(dumps_notebook(full_notebook), encoding="utf-8")
    config = Config()
    config.CourseDirectory.root = str(course)
    config.Execute.timeout = 60
    api = NbGraderAPI(config=config)
    result = api.generate_assignment("ps1")
    assert result["success"], result["log"]
    released = json.loads((course / "release" / "ps1" / "doubling.ipynb").read_text(encoding="utf-8"))
    assert "result = 2 * x" not in json.dumps(released) and "raise NotImplementedError()" in json.dumps(released)

    for student, nb in [("solver", full_notebook), ("blank", released)]:
        folder = course / "submitted" / student / "ps1"
        folder.mkdir(parents=True)
        (folder / "doubling.ipynb").write_text(json.dumps(nb), encoding="utf-8")
        result = api.autograde("ps1", student, create=True)
        assert result["success"], result["log"]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        assert gradebook.find_submission("ps1", "solver").score == 3
        assert gradebook.find_submission("ps1", "blank").score == 0
        assert gradebook.find_submission("ps1", "solver").max_score == 3

    # the course's own lessons release too (generate_assignment validates their metadata)
    (course / "source" / "lessons").mkdir()
    lessons = [p for p in sorted((ROOT / "notebooks" / "en").glob("[0-9][0-9]-*.ipynb"))
               if E.has_exercises(json.loads(p.read_text(encoding="utf-8")))]
    for path in lessons:
        (course / "source" / "lessons" / path.name).write_bytes(path.read_bytes())
    result = api.generate_assignment("lessons")
    assert result["success"], result["log"]
    for path in lessons:
        released = (course / "release" / "lessons" / path.name).read_text(encoding="utf-8")
        assert "### BEGIN SOLUTION" not in released and "raise NotImplementedError()" in released, path.name


# ------------------------------------------------------------------ the course's notebooks


def test_committed_student_versions_match_a_fresh_build():
    problems = []
    for src in notebook_sources(ROOT):
        for lang in LANGUAGES:
            nb = build_notebook(src, lang)
            path = ROOT / "notebooks" / lang / E.FOLDER / f"{src.stem}.ipynb"
            if not E.has_exercises(nb):
                assert not path.exists(), f"{path.relative_to(ROOT)}: the lesson has no exercise"
            elif not path.exists():
                problems.append(f"{path.relative_to(ROOT)}: missing")
            elif path.read_text(encoding="utf-8") != E.student_text(nb, lang, src.stem):
                problems.append(f"{path.relative_to(ROOT)}: differs from the source")
    assert not problems, "run `python -m course_tools build`: " + "; ".join(problems)


class _LessonState(dict):
    """The namespace of a lesson run up to its exercises, without running it: every name is a
    stand-in (MagicMock), except builtins and the names only a solution defines."""

    def __init__(self, unsolved: set[str]):
        super().__init__()
        self.unsolved = unsolved

    def __missing__(self, key: str):
        if key in self.unsolved or hasattr(builtins, key):
            raise KeyError(key)  # exec goes on to builtins, or raises NameError
        return MagicMock(name=key)


@pytest.mark.parametrize("stem", [p.stem for p in notebook_sources(ROOT)])
def test_each_check_of_the_lessons_fails_helpfully_on_the_empty_attempt(stem):
    full = json.loads((ROOT / "notebooks" / "en" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    if not E.has_exercises(full):
        pytest.skip(f"{stem} has no exercise")
    exercises = [c for c in full["cells"] if "solution" in c["metadata"].get("tags", [])]
    assert 2 <= len(exercises) <= 4, f"{stem}: {len(exercises)} exercises"
    student = json.loads((ROOT / "notebooks" / "en" / E.FOLDER / f"{stem}.ipynb").read_text(encoding="utf-8"))
    cells = student["cells"]
    unsolved = set().union(*(E._names(text(c))[0] for c in exercises))
    state = _LessonState(unsolved)
    for i, c in enumerate(cells):
        if "exercise" not in c["metadata"].get("tags", []):
            continue
        try:
            exec(compile(text(c), c["id"], "exec"), {}, state)  # noqa: S102 - the stub
        except NotImplementedError:
            pass
        check = next(d for d in cells[i + 1:] if d["cell_type"] == "code")
        assert check["metadata"]["nbgrader"]["grade"] is True
        with pytest.raises(AssertionError, match=r"^Exercise \d is not solved yet \(") as caught:
            exec(compile(text(check), check["id"], "exec"), {}, state)  # noqa: S102
        assert "raise NotImplementedError()" in str(caught.value), (stem, check["id"])


# ------------------------------------------------------------------ build and check


def test_build_writes_student_versions_and_check_reports_stale_ones(tmp_path, full_notebook):
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
    student.write_text(student.read_text(encoding="utf-8").replace("YOUR CODE HERE", "mine"), encoding="utf-8")
    assert E.check(root=root) == ["en/exercises/07-doubling.ipynb: differs from a fresh build "
                                  "(run make notebooks)"]
    assert E.build(root=root) == [student] and E.check(root=root) == []


def test_without_nbgrader_the_build_says_it_keeps_the_committed_student_versions(monkeypatch):
    assert E.can_build_student_versions()  # the test environment has the `grading` extra
    monkeypatch.setattr(E.importlib.util, "find_spec", lambda name: None)
    with pytest.warns(UserWarning, match=r"nbgrader is not installed: student versions .* not rebuilt"):
        assert not E.can_build_student_versions()


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
