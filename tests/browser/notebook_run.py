"""Run All in JupyterLab, in a real Chromium, then use every widget the way a student does.

The runs are listed in runs.txt: every English notebook (test_english.py) and one other
language per lesson (test_languages.py); two modules, so that `pytest -n 2 --dist loadfile`
gives one to each worker. Each run saves screenshots of the whole notebook to
tests/browser/screenshots/ (see the README).
"""

from __future__ import annotations

from pathlib import Path

import interactions
from jlab import (
    RUN_ALL_TIMEOUT_S,
    cell_index,
    cells,
    count_rendered,
    open_notebook,
    output_of,
    problems,
    rendering_problems,
    run_all,
    save_screenshots,
    settle,
)

RUNS_FILE = Path(__file__).with_name("runs.txt")
# What each lesson must show at least, once Run All is over: (images, widgets).
MINIMUM_RENDERED = {"00-setup": (1, 1), "01-contrastive-learning": (5, 3),
                    "02-zero-shot-classification": (5, 3), "03-image-search": (3, 3),
                    "04-vqgan-clip": (3, 1), "05-dall-e": (3, 1)}


def read_runs(english: bool) -> list[tuple[str, str]]:
    """(lesson, language) pairs of runs.txt: the English ones, or the others."""
    runs = [tuple(line.split()) for line in RUNS_FILE.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    return [(lesson, lang) for lesson, lang in runs if (lang == "en") == english]


def check_notebook(page, lab, screenshots, lesson: str, lang: str) -> None:
    """Run All shows no error and no stderr, draws every plot and widget, and each widget works."""
    open_notebook(page, lab, f"notebooks/{lang}/{lesson}.ipynb")
    seconds = run_all(page, RUN_ALL_TIMEOUT_S)
    print(f"{lesson} [{lang}]: Run All {seconds:.1f} s")
    settle(page, timeout_ms=15_000)
    found = problems(cells(page)) + rendering_problems(page)
    save_screenshots(page, screenshots, f"{lesson}-{lang}")
    assert not found, f"{lesson} [{lang}] after Run All:\n" + "\n".join(found)
    shown = count_rendered(page)
    images, widgets = MINIMUM_RENDERED[lesson]
    assert shown["images"] >= images and shown["widgets"] >= widgets, \
        f"{lesson} [{lang}] shows {shown}, expected at least {images} images and {widgets} widgets"
    for check in interactions.FOR_LESSON.get(lesson, []):
        check(page, lang)
        settle(page)
    interactions.quiz_gives_feedback(page, lang)
    settle(page)
    after = problems(cells(page)) + rendering_problems(page)
    for cell_id in interactions.WIDGET_CELLS:  # each widget as the student left it
        index = cell_index(page, cell_id, missing_ok=True)
        if index >= 0:
            output_of(page, index).screenshot(path=str(screenshots / f"{lesson}-{lang}-{cell_id}.png"))
    assert not after, f"{lesson} [{lang}] after using the widgets:\n" + "\n".join(after)

