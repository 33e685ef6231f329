"""The instructor guide's run times have one source: lessons/timings.json, written by a script.

`python lessons/measure_timings.py` runs every English notebook cell by cell and writes
`lessons/timings.json` and the table `lessons/timings.md` that the guide links to. These tests
check that the table is exactly what the script renders from the JSON (no number typed by
hand), that every notebook was measured, that the guide points at the table, and that the
student-time estimates (not measurements: `estimate_claims`) are current."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure_module():
    spec = importlib.util.spec_from_file_location("measure_timings", ROOT / "lessons" / "measure_timings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_timings_table_is_rendered_from_the_measurements():
    module = measure_module()
    data = json.loads((ROOT / "lessons" / "timings.json").read_text(encoding="utf-8"))
    assert (ROOT / "lessons" / "timings.md").read_text(encoding="utf-8") == module.render(data), \
        "lessons/timings.md was edited by hand: run `python lessons/measure_timings.py --render`"


def test_every_english_notebook_was_measured_cell_by_cell():
    data = json.loads((ROOT / "lessons" / "timings.json").read_text(encoding="utf-8"))
    notebooks = sorted(p.stem for p in (ROOT / "notebooks" / "en").glob("[0-9][0-9]-*.ipynb"))
    assert sorted(data["notebooks"]) == notebooks, "rerun python lessons/measure_timings.py"
    for name, nb in data["notebooks"].items():
        seconds = [c["seconds"] for c in nb["cells"]]
        assert nb["code_cells"] == len(seconds) > 0, name
        assert all(s is not None and s >= 0 for s in seconds), f"{name}: a cell has no time"
        assert abs(sum(seconds) - nb["cells_total_seconds"]) < 0.1 * len(seconds) + 0.1, name
        assert nb["wall_seconds"] >= nb["cells_total_seconds"] - 1, name
        assert nb["machine"]["cpus"] >= 1 and len(nb["machine"]["load_average"]) == 3, name


def test_the_measured_cells_are_the_notebooks_code_cells_now():
    """A code cell added, removed or renamed since the run makes its times stale, and the
    student estimates, which look the times up by cell id, would count it as 0 s."""
    data = json.loads((ROOT / "lessons" / "timings.json").read_text(encoding="utf-8"))
    for name, nb in data["notebooks"].items():
        built = json.loads((ROOT / "notebooks" / "en" / f"{name}.ipynb").read_text("utf-8"))
        code_ids = [cell.get("id", "") for cell in built["cells"] if cell["cell_type"] == "code"]
        assert [c["id"] for c in nb["cells"]] == code_ids, (
            f"{name} changed since its cells were timed: "
            f"rerun python lessons/measure_timings.py --only {name[:2]}")


def test_render_totals_the_notebooks_and_names_the_slowest_cells():
    module = measure_module()
    cell = {"python": "3", "torch": "2", "platform": "Linux", "cpus": 2, "load_average": [1.0, 2.0, 3.0]}
    data = {"measured_at": "today", "notebooks": {
        "00-a": {"cells": [{"id": "x", "seconds": 1.5}, {"id": "y", "seconds": 0.5}], "code_cells": 2,
                 "cells_total_seconds": 2.0, "wall_seconds": 3.0, "machine": cell},
        "01-b": {"cells": [{"id": "z", "seconds": 4.0}], "code_cells": 1,
                 "cells_total_seconds": 4.0, "wall_seconds": 5.0, "machine": cell}}}
    text = module.render(data)
    assert "| 00-a | 2 | 2.0 | 3.0 | `x` 1.5, `y` 0.5 | 1.0 / 2.0 / 3.0 |" in text
    assert "| **all** | 3 | 6.0 | 8.0 | | |" in text


def test_the_guide_in_every_language_links_the_measured_table():
    for guide in sorted((ROOT / "lessons").glob("*/instructor-guide.md")):
        assert "(../timings.md)" in guide.read_text(encoding="utf-8"), guide


def test_student_time_estimates_are_recomputed_from_the_sources():
    """The guide's student minutes are estimates from the notebook sources (words, code cells,
    quiz questions, exercises at stated rates), written as claims: they must be current."""
    import sys

    sys.path.insert(0, str(ROOT))
    from course_tools.claims import load_claims

    module = measure_module()
    data = json.loads((ROOT / "lessons" / "timings.json").read_text(encoding="utf-8"))
    stored = load_claims()
    found = module.estimate_claims(data)
    for key, (value, unit) in found.items():
        assert key in stored and stored[key]["value"] == value, \
            f"{key}: the notebooks changed; rerun python lessons/measure_timings.py --render"
        assert "estimate" in unit or "assumed" in unit or unit == "words", key
    for name in data["notebooks"]:
        core = found[f"timings.{name}.estimate.core_minutes"][0]
        assert 0 < core <= found[f"timings.{name}.estimate.full_minutes"][0], name
    # what the guide (run-times) says in words: the minutes "are rounded to 5", and the core path
    # takes a student alone "far longer than 90 minutes", hence lectures with live demos
    assert module.ROUND_TO == 5, "the guide says the estimates are rounded to 5 minutes"
    assert found["timings.all.estimate.core_minutes"][0] >= 1.5 * 90, \
        "the guide says the core path takes far longer than a 90-minute session: reword run-times"


def test_the_parts_of_a_notebook_follow_its_headings():
    module = measure_module()
    from course_tools.sources import Cell

    cells = [Cell("markdown", "# Title", "title"), Cell("code", "x = 1", "a"),
             Cell("markdown", "## Optional (deep dive): more", "deep"), Cell("code", "y = 2", "b"),
             Cell("markdown", "## Exercises\n\n### Exercise 1", "exercise-1"), Cell("code", "z", "c"),
             Cell("markdown", "## Quiz", "quiz"), Cell("code", "show()", "quiz-show")]
    assert module._parts(cells) == ["core", "core", "optional", "optional", "exercise", "exercise",
                                    "core", "core"]


def test_every_guide_gives_the_measured_and_estimated_times_in_its_language():
    """The table is in each guide (rendered from the claims, numbers in the page's format), not
    only in the English timings.md."""
    guides = [g for g in sorted((ROOT / "lessons").glob("*/instructor-guide.md")) if g.parent.name != "src"]
    assert len(guides) == 6
    for guide in guides:
        text = guide.read_text(encoding="utf-8")
        assert "| `05-dall-e` |" in text and "{{claim" not in text, guide
