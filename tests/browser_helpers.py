"""Helpers for the browser tests (tests/test_browser.py): a private JupyterLab server,
a headless Chromium page, and the moves a user makes on an ipywidgets slider.

Nothing here is a test; ``test_browser.py`` says what is checked. Needs the ``playwright``
Python package and a system Chromium (``apt-get install -y chromium``); the browser
bundled by ``playwright install`` is never used.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat

try:
    from playwright.sync_api import expect
except ImportError:  # test_browser.py skips (or fails, under CI) before any helper runs
    expect = None

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = Path(os.environ.get("MLKIT_TEST_ARTIFACTS", ROOT / "test-artifacts"))
SCREENSHOTS = ROOT / "docs" / "screenshots"  # written only with UPDATE_SCREENSHOTS=1

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows",
]
INSTALL_HINT = ("install the browser with `apt-get install -y chromium` (Debian/Ubuntu) and the "
                "Python package with `pip install playwright`; never `playwright install`. "
                "Set $CHROMIUM to use a browser at another path")
WIDGET_ERRORS = ("Error displaying widget", "model not found")
KERNEL_IDLE = re.compile(r"\|\s*Idle$")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def find_chromium() -> str | None:
    """$CHROMIUM if set (only it), else chromium / chromium-browser on $PATH, else
    /usr/bin/chromium."""
    if os.environ.get("CHROMIUM"):
        path = os.environ["CHROMIUM"]
        return path if Path(path).is_file() and os.access(path, os.X_OK) else None
    for candidate in (shutil.which("chromium"), shutil.which("chromium-browser"),
                      "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


# ---- notebooks ------------------------------------------------------------------------
def copy_notebook(src: Path, dst: Path, strip: bool) -> None:
    """Copy a notebook; with ``strip`` drop its outputs and any stored widget state, so
    every widget the browser shows was made by the live kernel."""
    nb = nbformat.read(src, as_version=4)
    if strip:
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
        nb.metadata.pop("widgets", None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)


def stored_problems(path: Path) -> list[str]:
    """Error outputs and tracebacks stored in a notebook file."""
    nb = nbformat.read(path, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                found.append(f"cell {i}: {out.ename}: {out.evalue}")
            text = out.get("text", "") if out.output_type == "stream" else ""
            if "Traceback (most recent call last)" in text or any(e in text for e in WIDGET_ERRORS):
                found.append(f"cell {i}: {text[:300]}")
    return found


def count_stored_images(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    return sum("image/png" in out.get("data", {})
               for cell in nb.cells for out in cell.get("outputs", []))


# ---- the server -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(settings: Path) -> None:
    """User settings: no news / update pop-up over the page; render every cell (no
    windowing), so the test can see every prompt and output."""
    files = {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"fetchNews": "false", "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }
    for rel, value in files.items():
        (settings / rel).parent.mkdir(parents=True, exist_ok=True)
        (settings / rel).write_text(json.dumps(value))


class LabServer:
    """``jupyter lab`` on 127.0.0.1 at a free port, token disabled, all of its config,
    runtime, data, IPython and matplotlib files in ``base`` (nothing written to $HOME)."""

    def __init__(self, base: Path, root: Path):
        self.base, self.root = base, root
        self.log_path = base / "jupyterlab.log"
        self.proc = None
        self.url = None
        self.background = []  # threads shutting kernels down

    def start(self, timeout: float = 90) -> "LabServer":
        settings = self.base / "settings"
        _write_settings(settings)
        env = dict(os.environ)
        for var, sub in [("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_CONFIG_DIR", "config"),
                         ("JUPYTER_DATA_DIR", "data"), ("IPYTHONDIR", "ipython"),
                         ("MPLCONFIGDIR", "mpl")]:
            env[var] = str(self.base / sub)
        env["JUPYTER_PREFER_ENV_PATH"] = "1"  # the kernel runs this interpreter's ipykernel
        env.pop("MPLBACKEND", None)  # tests/conftest.py sets Agg; notebooks need the inline one
        env["PYTHONUNBUFFERED"] = "1"
        for attempt in range(3):  # a free port can be taken between choosing and binding
            port = _free_port()
            cmd = [
                sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
                "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
                "--IdentityProvider.token=", "--ServerApp.password=",
                f"--ServerApp.root_dir={self.root}",
                f"--LabServerApp.user_settings_dir={settings}",
                f"--LabServerApp.workspaces_dir={self.base / 'workspaces'}",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ]
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
            log.close()
            self.url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"{self.url}/api/status", timeout=2) as r:
                        if r.status == 200:
                            return self
                except OSError:
                    time.sleep(0.25)
            if self.proc.poll() is None:
                self.stop()
                raise TimeoutError(f"jupyter lab did not answer within {timeout:.0f} s\n"
                                   + self.log_tail())
        raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}\n" + self.log_tail())

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the server we started (it shuts its kernels down), then make sure
        its kernel processes are gone. Only processes this object started are touched."""
        if self.proc is None:
            return
        for thread in self.background:
            thread.join(timeout=15)
        try:
            import psutil
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except Exception:  # psutil missing or the server already gone
            children = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for child in children:
            try:
                child.wait(timeout=5)
            except Exception:
                try:
                    child.kill()
                except Exception:
                    pass
        self.proc = None


# ---- the page -----------------------------------------------------------------------------
def watch_errors(page) -> None:
    """Collect page JavaScript errors and console errors on ``page.js_errors`` /
    ``page.console_errors``."""
    page.js_errors, page.console_errors = [], []
    page.on("pageerror", lambda e: page.js_errors.append(str(e)))
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)


def widget_console_errors(page) -> list[str]:
    """Console errors that come from the widget manager (e.g. a model that cannot be made)."""
    return [m for m in page.console_errors
            if re.search(r"widget|model|comm|jupyter-widgets", m, re.I)]


def open_notebook(page, server: LabServer, rel_path: str, timeout_ms: int = 120_000):
    """Open a notebook in a fresh layout and wait until its kernel is connected and idle.

    The toolbar indicator says idle while the kernel is still connecting; the status
    bar's kernel item is the reliable signal."""
    page.goto(f"{server.url}/lab/tree/{rel_path}?reset")
    status = page.locator(".jp-StatusBar-TextItem[title^='Change kernel']")
    expect(status).to_have_text(KERNEL_IDLE, timeout=timeout_ms)
    expect(page.locator(".jp-NotebookPanel .jp-Cell").first).to_be_visible()
    return status


RUN_STATE_JS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return {cells: 0, done: 0, pending: 0, errors: []};
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
      .map(p => p.textContent.trim());
  const errors = [...panel.querySelectorAll('.jp-OutputArea-output')]
      .map(o => o.textContent)
      .filter(t => /Traceback \\(most recent call last\\)|Error displaying widget|model not found/.test(t))
      .map(t => t.length > 2500 ? t.slice(0, 500) + '\\n[...]\\n' + t.slice(-2000) : t);
  return {cells: prompts.length, done: prompts.filter(p => /\\[\\d+\\]/.test(p)).length,
          pending: prompts.filter(p => p.includes('*')).length, errors};
}"""


def run_all_cells(page, kernel_status, timeout_s: float = 300) -> float:
    """Run -> Run All Cells, then wait until every code cell has an execution count and
    the kernel is idle. Fails at once, with the traceback, if a cell shows an error."""
    page.locator(".lm-MenuBar-item", has_text="Run").click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
    t0 = time.monotonic()
    state = {}
    while time.monotonic() - t0 < timeout_s:
        state = page.evaluate(RUN_STATE_JS)
        if state["errors"]:
            raise AssertionError("a cell failed while running all cells:\n"
                                 + "\n---\n".join(state["errors"]))
        if state["cells"] and state["done"] == state["cells"] and not state["pending"]:
            if KERNEL_IDLE.search(kernel_status.inner_text().strip()):
                return time.monotonic() - t0
        time.sleep(0.25)
    raise AssertionError(f"Run All Cells did not finish in {timeout_s:.0f} s: {state}")


def page_problems(page) -> list[str]:
    """Widget errors shown anywhere in the page, page JavaScript errors, and widget
    console errors."""
    body = page.locator("body").inner_text()
    found = [f"{text!r} shown in the page" for text in WIDGET_ERRORS if text in body]
    found += [f"JavaScript error: {e}" for e in page.js_errors]
    found += [f"console error: {e}" for e in widget_console_errors(page)]
    return found


def shutdown_sessions(page, server: LabServer) -> None:
    """Best effort: shut down the kernels this page started, in the background (a kernel
    takes seconds to exit), so they do not hold memory for the rest of the session."""
    try:
        ids = page.evaluate("async () => (await (await fetch('/api/sessions')).json()).map(s => s.id)")
        xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf")
    except Exception:
        return

    def delete():
        for sid in ids:
            req = urllib.request.Request(f"{server.url}/api/sessions/{sid}", method="DELETE",
                                         headers={"X-XSRFToken": xsrf, "Cookie": f"_xsrf={xsrf}"})
            try:
                urllib.request.urlopen(req, timeout=30).close()
            except OSError:
                pass

    thread = threading.Thread(target=delete, daemon=True)
    thread.start()
    server.background.append(thread)


# ---- sliders, buttons, and the time the panel takes to answer ------------------------
def slider(root, description: str):
    """The ipywidgets slider in ``root`` whose label is exactly ``description``."""
    label = root.page.locator(".widget-label", has_text=re.compile(rf"^\s*{re.escape(description)}\s*$"))
    return root.locator(".widget-slider", has=label)


PROBE_JS = """(root, needPlot) => {
  // Time from the user's last key press or click to the moment the panel shows a new
  // status line and (if needPlot) a new plot.
  const img = () => root.querySelector('.mlkit-plot');
  const status = () => root.querySelector('.mlkit-status');
  const before = img().src, statusBefore = status().textContent;
  const probe = window.__mlkitProbe = {t0: null, t1: null, status: null};
  const onUser = () => { probe.t0 = performance.now(); probe.t1 = null; };
  document.addEventListener('keydown', onUser, true);
  document.addEventListener('click', onUser, true);
  const check = () => {
    if (probe.t0 === null || probe.t1 !== null) return;
    const text = status().textContent;
    if ((img().src !== before || !needPlot) && text !== statusBefore) {
      probe.t1 = performance.now();
      probe.status = text;
    }
  };
  const observer = new MutationObserver(check);
  observer.observe(root, {subtree: true, childList: true, characterData: true,
                          attributes: true, attributeFilter: ['src']});
  probe.stop = () => {
    observer.disconnect();
    document.removeEventListener('keydown', onUser, true);
    document.removeEventListener('click', onUser, true);
  };
}"""

IMAGE_DIGEST_JS = """async (img) => {
  const bytes = await (await fetch(img.src)).arrayBuffer();
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map(b => b.toString(16).padStart(2, '0')).join('');
}"""


def image_digest(root) -> str:
    """SHA-256 of the PNG the panel's plot shows (the blob behind its src)."""
    return root.locator(".mlkit-plot").evaluate(IMAGE_DIGEST_JS)


def status_text(root) -> str:
    return root.locator(".mlkit-status").inner_text().strip()


@contextmanager
def response_probe(root, timeout_ms: float, plot: bool = True):
    """Arm the probe, let the caller act (key press / typing / click), then wait until
    the status line and (if ``plot``) the plot changed. Yields a dict that gets ``ms``
    (in-browser time from the last key press or click to the answer) and ``status``."""
    page = root.page
    old_digest = image_digest(root)
    root.evaluate(PROBE_JS, plot)
    result = {}
    try:
        yield result
        try:
            page.wait_for_function("() => window.__mlkitProbe.t1 !== null", timeout=timeout_ms)
        except Exception as exc:
            raise AssertionError(
                f"no answer within {timeout_ms / 1000:.0f} s: expected a new status line"
                f"{' and a new plot' if plot else ''}; status is {status_text(root)!r}") from exc
        probe = page.evaluate("() => ({t0: window.__mlkitProbe.t0, t1: window.__mlkitProbe.t1,"
                              " status: window.__mlkitProbe.status})")
        result["ms"] = probe["t1"] - probe["t0"]
        result["status"] = probe["status"]
        if plot:
            assert image_digest(root) != old_digest, "the plot's src changed but its PNG is the same"
    finally:
        page.evaluate("() => window.__mlkitProbe && window.__mlkitProbe.stop()")


def press_key(slider_el, key: str | None = None) -> tuple[str, str]:
    """Focus the slider's handle and press one arrow key, as a user would (ArrowRight,
    or ArrowLeft when the handle is at its maximum). Returns (key, new readout text)."""
    handle = slider_el.locator(".noUi-handle")
    readout = slider_el.locator(".widget-readout")
    before = readout.inner_text().strip()
    if key is None:
        now, top = float(handle.get_attribute("aria-valuenow")), float(handle.get_attribute("aria-valuemax"))
        key = "ArrowLeft" if now >= top else "ArrowRight"
    handle.focus()
    handle.press(key)
    expect(readout).not_to_have_text(before)
    return key, readout.inner_text().strip()


def type_value(slider_el, text: str) -> str:
    """Click the slider's readout, replace its text with ``text`` and press Enter, as a
    user types a number. Returns the readout text afterwards."""
    readout = slider_el.locator(".widget-readout")
    readout.click()
    page = slider_el.page
    page.keyboard.press("Control+A")
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    return readout.inner_text().strip()
