"""One other language per lesson (zh for two): Run All in JupyterLab, then every widget used (see notebook_run.py)."""

from __future__ import annotations

import pytest
from notebook_run import check_notebook, read_runs

RUNS = read_runs(english=False)


@pytest.mark.slow
@pytest.mark.parametrize(("lesson", "lang"), RUNS, ids=[f"{n}-{lang}" for n, lang in RUNS])
def test_run_all_and_use_widgets(page, lab, screenshots, lesson, lang):
    """Run All shows no error and no stderr, draws every plot and widget, and each widget works."""
    check_notebook(page, lab, screenshots, lesson, lang)
