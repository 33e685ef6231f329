"""What a student does in JupyterLab, as Playwright steps: open a notebook, Run All, read it.

The notebook model is read through `window.jupyterapp` (the server runs with
`--LabApp.expose_app_in_browser`): outputs, execution counts and cell tags come from the same
objects JupyterLab renders, so a check never depends on CSS details that change between versions.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
# What a notebook run may need at most on a busy 2-core machine (05 took 111-200 s by hand).
RUN_ALL_TIMEOUT_S = 300
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

def in_ci() -> bool:
    """True on a CI runner (GitHub Actions, GitLab and most others set CI=true)."""
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def find_chromium() -> str | None:
    """The system Chromium: $CHROMIUM_PATH, else the usual Debian/Ubuntu paths, else PATH."""
    env = os.environ.get("CHROMIUM_PATH")
    if env:
        return env if Path(env).exists() else None
    for path in CHROMIUM_CANDIDATES:
        if Path(path).exists():
            return path
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


# One summary per code cell: its index, execution count, tags and outputs (type, text, mimes).
_CELLS_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  return panel.content.widgets.map((cell, i) => {
    if (cell.model.type !== 'code') return null;
    const outputs = cell.model.outputs.toJSON().map(o => ({
      type: o.output_type, name: o.name || null, ename: o.ename || null,
      evalue: (o.evalue || '').slice(0, 400),
      text: [].concat(o.text || o.traceback || []).join('').slice(0, 800),
      mimes: Object.keys(o.data || {}),
      plain: [].concat((o.data || {})['text/plain'] || []).join('').slice(0, 200),
    }));
    return {index: i, id: cell.model.id, count: cell.model.executionCount,
            tags: cell.model.getMetadata('tags') || [], outputs};
  }).filter(c => c !== null);
}"""

_KERNEL_IDLE_JS = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session
                 && panel.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle' && panel.content.widgets.length > 0;
}"""

# Run All is over when every code cell has a number (done) or the kernel stopped on an error:
# idle with no cell waiting ('*').
_RUN_DONE_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session.kernel;
  const code = panel.content.widgets.filter(c => c.model.type === 'code');
  const prompts = code.map(c => c.node.querySelector('.jp-InputPrompt').textContent);
  if (prompts.some(p => p.includes('*'))) return false;
  return kernel.status === 'idle' && code.every(c => c.model.executionCount !== null);
}"""

_STOPPED_ON_ERROR_JS = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const code = panel.content.widgets.filter(c => c.model.type === 'code');
  const waiting = code.some(c => c.node.querySelector('.jp-InputPrompt').textContent.includes('*'));
  const error = code.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'));
  return error && !waiting && panel.sessionContext.session.kernel.status === 'idle';
}"""


def open_notebook(page, lab, relpath: str) -> None:
    """Open a notebook in JupyterLab and wait until its kernel is ready."""
    page.goto(lab.notebook_url(relpath))
    page.wait_for_function(_KERNEL_IDLE_JS, timeout=120_000, polling=250)
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")


def settle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the kernel is idle and every image of the notebook is decoded (after a widget
    change the kernel redraws, then the browser loads the new picture)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("""() => {
          const panel = window.jupyterapp.shell.currentWidget;
          const idle = panel.sessionContext.session.kernel.status === 'idle';
          const imgs = [...panel.content.node.querySelectorAll('.jp-OutputArea-output img')];
          return idle && imgs.every(img => img.complete && img.naturalWidth > 0);
        }""", timeout=timeout_ms, polling=200)
    except PlaywrightTimeout:
        return  # a picture that never loads: rendering_problems() names it
    page.wait_for_timeout(300)


def run_all(page, timeout_s: float) -> float:
    """Run > Run All Cells, as a student would; returns the seconds it took."""
    start = time.monotonic()
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    deadline = start + timeout_s
    while time.monotonic() < deadline:
        if page.evaluate(_RUN_DONE_JS) or page.evaluate(_STOPPED_ON_ERROR_JS):
            return time.monotonic() - start
        page.wait_for_timeout(250)
    raise TimeoutError(f"Run All did not finish in {timeout_s:.0f} s")


def cells(page) -> list[dict]:
    """The code cells of the open notebook: index, count, tags, outputs."""
    return page.evaluate(_CELLS_JS)


def problems(cell_list: list[dict]) -> list[str]:
    """Everything a student should not see: errors, stderr blocks, cells that never ran,
    widgets shown as text (no widget manager)."""
    found, not_run = [], []
    for cell in cell_list:
        where = f"cell {cell['index']} ({cell['id']})"
        expected_error = "raises-exception" in cell["tags"]
        if cell["count"] is None:
            not_run.append(cell["id"])
        for out in cell["outputs"]:
            if out["type"] == "error" and not expected_error:
                found.append(f"{where}: {out['ename']}: {out['evalue']}")
            elif out["type"] == "stream" and out["name"] == "stderr":
                found.append(f"{where} writes to stderr (a pink block): {out['text'][:300]}")
            elif out["plain"].startswith(("interactive(", "VBox(", "HBox(")) and WIDGET_MIME not in out["mimes"]:
                found.append(f"{where} shows a widget as text: {out['plain'][:80]}")
    if not_run:
        found.append(f"{len(not_run)} cell(s) did not run: {', '.join(not_run)}")
    return found


def rendering_problems(page) -> list[str]:
    """Plots and widgets that are in the outputs but not drawn on the page."""
    return page.evaluate("""(mime) => {
      const panel = window.jupyterapp.shell.currentWidget;
      const found = [];
      panel.content.node.querySelectorAll('.jp-OutputArea-output img').forEach((img, k) => {
        if (!img.complete || img.naturalWidth === 0) found.push('image ' + k + ' is not drawn');
      });
      panel.content.node.querySelectorAll('[data-mime-type="' + mime + '"]').forEach((el, k) => {
        const text = el.textContent;
        if (text.includes('Error displaying widget') || text.includes('Error rendering'))
          found.push('widget ' + k + ': ' + text.slice(0, 120));
        else if (!el.querySelector('.jupyter-widgets'))
          found.push('widget ' + k + ' is not rendered');
      });
      return found;
    }""", WIDGET_MIME)


def count_rendered(page) -> dict:
    """How many images (plots, GIFs) and widgets the open notebook shows."""
    return page.evaluate("""() => {
      const node = window.jupyterapp.shell.currentWidget.content.node;
      return {images: node.querySelectorAll('.jp-OutputArea-output img').length,
              widgets: node.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length};
    }""")


def save_screenshots(page, folder: Path, stem: str, chunk: int = 2400) -> list[Path]:
    """The whole notebook as a few tall screenshots, top to bottom: stem-01.png, stem-02.png..."""
    for old in folder.glob(f"{stem}-*.png"):
        old.unlink()
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": chunk})
    scroller = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer"
    total = page.evaluate(f"() => document.querySelector('{scroller}').scrollHeight")
    paths = []
    top, k = 0, 1
    while top < total and k <= 30:
        page.evaluate(f"() => {{ document.querySelector('{scroller}').scrollTop = {top}; }}")
        page.wait_for_timeout(150)
        path = folder / f"{stem}-{k:02d}.png"
        page.locator(scroller).screenshot(path=str(path))
        paths.append(path)
        top += chunk - 100
        k += 1
    page.set_viewport_size(size)
    return paths


def output_of(page, cell_index: int):
    """The output area of one cell (a Playwright locator)."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").nth(
        cell_index).locator(".jp-Cell-outputArea")


def cell_index(page, cell_id: str, missing_ok: bool = False) -> int:
    """The position of the cell whose id (the `id=` of the notebook source) is `cell_id`
    (-1 when there is none and missing_ok)."""
    index = page.evaluate("""(id) => window.jupyterapp.shell.currentWidget.content.widgets
        .findIndex(c => c.model.id === id)""", cell_id)
    if index < 0 and not missing_ok:
        raise LookupError(f"no cell with id {cell_id!r} in the open notebook")
    return index


def image_sources(locator) -> list[str]:
    """The src of every image inside a locator (data URLs: equal src, equal picture)."""
    return locator.locator("img").evaluate_all("imgs => imgs.map(i => i.src)")
