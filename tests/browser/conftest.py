"""Browser tests: one JupyterLab server and one Chromium for the whole session.

A student opens the notebooks in JupyterLab; these tests do the same with Playwright and the
system Chromium (Debian's `chromium` package: Playwright cannot download its own browsers
here). Without Chromium the tests are skipped with a clear reason, except in CI (CI=true),
where a missing browser is an error: CI must never silently skip them.

The notebooks are copied to a temporary folder first, so running them never writes outputs
into the committed notebooks. Screenshots go to tests/browser/screenshots/ (gitignored; CI
keeps them as artifacts).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import smoke_run
from jlab import CHROMIUM_CANDIDATES, find_chromium, in_ci

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"


def _missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Playwright is not installed: pip install -e '.[test]'"
    if find_chromium() is None:
        return ("no Chromium found (looked for $CHROMIUM_PATH, " + ", ".join(CHROMIUM_CANDIDATES)
                + "): sudo apt-get install chromium fonts-noto-cjk")
    return None


def pytest_collection_modifyitems(config, items):
    """Skip every browser test with one clear reason when Chromium is missing; fail in CI."""
    reason = _missing_reason()
    if reason is None:
        return
    browser_items = [item for item in items if "tests/browser" in item.nodeid.replace(os.sep, "/")]
    if not browser_items:
        return
    if in_ci():
        raise pytest.UsageError(f"CI=true but the browser tests cannot run: {reason}. "
                                ".ci/run installs the Debian packages listed in apt.txt.")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"SKIPPING the {len(browser_items)} browser tests: {reason}", yellow=True)
    marker = pytest.mark.skip(reason=f"browser tests skipped: {reason}")
    for item in browser_items:
        item.add_marker(marker)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lab_settings(folder: Path) -> Path:
    """JupyterLab settings overrides: every cell in the DOM, no news or update pop-ups."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    overrides = {
        "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension:notification": {"fetchNews": "false",
                                                        "checkForUpdates": False},
    }
    (folder / "overrides.json").write_text(json.dumps(overrides))
    return folder


def _smoke(path: Path) -> None:
    """Make a translated notebook's copy the smoke run nbval runs (tests/smoke_run.py)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            source = smoke_run.smoke_source(cell)
            cell.source = f"# {smoke_run.SKIP_REASON}" if source is None else source
    nbformat.write(nb, path)


class Lab:
    """A running JupyterLab server: its base URL and token."""

    def __init__(self, url: str, token: str, root: Path):
        self.url, self.token, self.root = url, token, root

    def notebook_url(self, relpath: str) -> str:
        return f"{self.url}/lab/tree/{relpath}?reset&token={self.token}"


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Lab:
    """One JupyterLab server for the session, on 127.0.0.1 and a free port, with a token.

    It serves a copy of notebooks/ (the translations made smoke runs, tests/smoke_run.py) and
    runs kernels in the test environment: offline, COURSE_TESTING=1, one thread per library
    (the machine may have only 2 cores)."""
    root = tmp_path_factory.mktemp("lab")
    source = Path(os.environ.get("BROWSER_NOTEBOOKS", ROOT / "notebooks"))  # another tree: to test the tests
    shutil.copytree(source, root / "notebooks",
                    ignore=shutil.ignore_patterns("src", "i18n", "exercises", ".ipynb_checkpoints"))
    for path in (root / "notebooks").glob("*/[0-9][0-9]-*.ipynb"):
        if smoke_run.applies(path):
            _smoke(path)
    settings = _lab_settings(root / ".lab-settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update({
        "JUPYTER_RUNTIME_DIR": str(ROOT / ".venv" / "share" / "jupyter" / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(root / ".lab-user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / ".lab-workspaces"),
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COURSE_TESTING": "1",
        "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
    })
    env.pop("MPLBACKEND", None)  # the kernel must use the inline backend, as for a student
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", f"--LabApp.app_settings_dir={settings}"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        cmd.append("--allow-root")
    log = (root / "jupyterlab.log").open("w")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                break
        except OSError as err:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                tail = (root / "jupyterlab.log").read_text()[-2000:]
                raise RuntimeError(f"JupyterLab did not start (exit {proc.returncode}):\n{tail}") from err
            time.sleep(0.3)
    yield Lab(url, token, root)
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def browser():
    """The system Chromium, headless, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=find_chromium(), headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh browser tab at a notebook-friendly size."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
