"""The translations' smoke run, shared by nbval (tests/conftest.py) and the browser tests.

A translated notebook's code cells equal the English ones but for LANG (tests/test_i18n.py),
and the English notebooks run in full (in the browser, or under nbval without Chromium). So the
other languages run with SMOKE = True in the parameters cell, as papermill would set it: every
cell and t() string runs, with tiny sizes, except the cells tagged smoke-skip (checks of results
a tiny run cannot reach), which stand aside. COURSE_SMOKE=0 runs the translations in full.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

SMOKE_TAG = "smoke-skip"
SKIP_REASON = "smoke run of a translation: this check runs in the English notebook"
_SMOKE_LINE = re.compile(r"^SMOKE = False\b", re.M)


def applies(path: Path) -> bool:
    """Whether the notebook at path (notebooks/<lang>/NN-name.ipynb) runs as a smoke run."""
    path = Path(path)
    return (os.environ.get("COURSE_SMOKE", "1") != "0" and path.suffix == ".ipynb"
            and path.parent.parent.name == "notebooks" and path.parent.name not in ("en", "src"))


def smoke_source(cell) -> str | None:
    """What a code cell of a translation runs in the smoke run; None: it stands aside."""
    tags = cell.get("metadata", {}).get("tags", [])
    if SMOKE_TAG in tags:
        return None
    if "parameters" in tags:
        return _SMOKE_LINE.sub("SMOKE = True", cell["source"])
    return cell["source"]
