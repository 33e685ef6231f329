"""The instructor guide's run times have one source: lessons/timings.json, written by a script.

`python lessons/measure_timings.py` runs every English notebook cell by cell and writes
`lessons/timings.json` and the table `lessons/timings.md` that the guide links to. These tests
check that the table is exactly what the script renders from the JSON (no number typed by
hand), that every notebook was measured, and that the guide points at the table."""

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
