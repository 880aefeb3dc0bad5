"""Helpers for the browser tests (tests/test_browser.py): a private JupyterLab server,
a headless Chromium page, the moves a user makes on a panel's controls, and the time
the panel takes to answer.

Nothing here is a test; ``test_browser.py`` says what is checked. Needs the ``playwright``
Python package and a system Chromium (``apt-get install -y chromium``); the browser
bundled by ``playwright install`` is never used.
"""
from __future__ import annotations

import ast
import hashlib
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
CHECKPOINTS = ROOT / "data" / "checkpoints"
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


def constructor_call(path: Path, class_name: str) -> tuple[list, dict]:
    """The arguments the notebook passes to ``class_name(...)``: its one call, whose
    arguments must be literals, so the test can build the same panel in its own process."""
    calls = []
    for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type != "code" or class_name not in cell.source:
            continue
        source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                           for line in cell.source.splitlines())
        for node in ast.walk(ast.parse(source, filename=f"{path.name} cell {i}")):
            func = getattr(node, "func", None)
            if isinstance(node, ast.Call) and class_name in (getattr(func, "id", None),
                                                             getattr(func, "attr", None)):
                calls.append(node)
    assert len(calls) == 1, f"{path.name}: expected one {class_name}(...) call, found {len(calls)}"
    try:
        return ([ast.literal_eval(a) for a in calls[0].args],
                {k.arg: ast.literal_eval(k.value) for k in calls[0].keywords})
    except ValueError:
        raise AssertionError(f"{path.name}: {ast.unparse(calls[0])} has arguments that are not "
                             "literals; the test cannot build the same panel") from None


def checkpoint_digests() -> dict[str, str]:
    """SHA-256 of every shipped checkpoint file (some are retrained and replaced while
    the tests run; a kernel and the test process must have loaded the same files)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(CHECKPOINTS.glob("*.pt"))}


@contextmanager
def checkpoints_read():
    """Collects the names of the checkpoint files that mlkit reads inside the block."""
    import mlkit.checkpoints as ck
    names, read = [], ck.read_checkpoint

    def recording(path, *args, **kwargs):
        names.append(Path(path).name)
        return read(path, *args, **kwargs)

    ck.read_checkpoint = recording
    try:
        yield names
    finally:
        ck.read_checkpoint = read


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
    runtime, data, IPython and matplotlib files in ``base`` (nothing written to $HOME).
    The app is exposed as ``window.jupyterapp`` so a test can read a document's state."""

    def __init__(self, base: Path, root: Path):
        self.base, self.root = base, root
        self.log_path = base / "jupyterlab.log"
        self.proc = None
        self.url = None
        self.background = []  # threads shutting kernels down

    def start(self, timeout: float = 120) -> "LabServer":
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
                "--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True",
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


def open_notebook(page, server: LabServer, rel_path: str, timeout_ms: int = 180_000):
    """Open a notebook in a fresh layout and wait until its kernel is connected and idle.

    The toolbar indicator says idle while the kernel is still connecting; the status
    bar's kernel item is the reliable signal."""
    page.goto(f"{server.url}/lab/tree/{rel_path}?reset")
    status = page.locator(".jp-StatusBar-TextItem[title^='Change kernel']")
    expect(status).to_have_text(KERNEL_IDLE, timeout=timeout_ms)
    expect(page.locator(".jp-NotebookPanel .jp-Cell").first).to_be_visible()
    return status


DOCUMENT_STATE_JS = """() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const tabs = [...document.querySelectorAll('#jp-main-dock-panel .lm-TabBar-tab')];
  return {
    path: widget && widget.context ? widget.context.path : null,
    dirty: widget && widget.context ? widget.context.model.dirty : null,
    dirtyTabs: tabs.filter(t => t.classList.contains('jp-mod-dirty'))
                   .map(t => t.textContent.trim()),
  };
}"""


def document_state(page) -> dict:
    """The open document's path and ``dirty`` flag (the model's own state), and the
    titles of tabs that show the unsaved-changes dot."""
    return page.evaluate(DOCUMENT_STATE_JS)


RUN_STATE_JS = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return {cells: 0, counts: [], pending: 0, errors: []};
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
      .map(p => p.textContent.trim());
  const errors = [...panel.querySelectorAll('.jp-OutputArea-output')]
      .map(o => o.textContent)
      .filter(t => /Traceback \\(most recent call last\\)|Error displaying widget|model not found/.test(t))
      .map(t => t.length > 2500 ? t.slice(0, 500) + '\\n[...]\\n' + t.slice(-2000) : t);
  const counts = prompts.map(p => { const m = /\\[(\\d+)\\]/.exec(p); return m ? +m[1] : 0; });
  return {cells: prompts.length, counts, pending: prompts.filter(p => p.includes('*')).length,
          errors};
}"""


def run_all_cells(page, kernel_status, timeout_s: float = 600) -> float:
    """Run -> Run All Cells, then wait until every code cell has a new execution count
    and the kernel is idle (also when the cells ran before). Fails at once, with the
    traceback, if a cell shows an error. Returns the seconds it took."""
    before = max(page.evaluate(RUN_STATE_JS)["counts"], default=0)
    page.locator(".lm-MenuBar-item", has_text="Run").click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
    t0 = time.monotonic()
    state = {}
    while time.monotonic() - t0 < timeout_s:
        state = page.evaluate(RUN_STATE_JS)
        if state["errors"]:
            raise AssertionError("a cell failed while running all cells:\n"
                                 + "\n---\n".join(state["errors"]))
        if state["cells"] and min(state["counts"]) > before and not state["pending"]:
            if KERNEL_IDLE.search(kernel_status.inner_text().strip()):
                return time.monotonic() - t0
        time.sleep(0.25)
    raise AssertionError(f"Run All Cells did not finish in {timeout_s:.0f} s: {state}")


def run_cell(page, cell, kernel_status, timeout_s: float = 300) -> float:
    """Run one code cell (``cell``: its ``.jp-CodeCell`` locator) with Ctrl+Enter, as a
    user does, and wait until it has a new execution count and the kernel is idle."""
    prompt = cell.locator(".jp-InputPrompt")
    before = prompt.inner_text().strip()
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        now = prompt.inner_text().strip()
        if now != before and re.search(r"\[\d+\]", now) and \
                KERNEL_IDLE.search(kernel_status.inner_text().strip()):
            state = page.evaluate(RUN_STATE_JS)
            if state["errors"]:
                raise AssertionError("the cell failed:\n" + "\n---\n".join(state["errors"]))
            return time.monotonic() - t0
        time.sleep(0.25)
    raise AssertionError(f"the cell did not finish in {timeout_s:.0f} s")


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


# ---- a panel's controls, as the page shows them ----------------------------------------
def _labelled(root, css: str, description: str):
    label = root.page.locator(".widget-label",
                              has_text=re.compile(rf"^\s*{re.escape(description)}\s*$"))
    return root.locator(css, has=label)


def slider(root, description: str):
    """The slider (int, float or log) in ``root`` whose label is ``description``."""
    return _labelled(root, ".widget-slider", description)


def dropdown(root, description: str):
    return _labelled(root, ".widget-dropdown", description).locator("select")


def toggle_button(root, description: str, option: str):
    """The button ``option`` of the toggle buttons labelled ``description``."""
    return _labelled(root, ".widget-toggle-buttons", description).locator(
        ".widget-toggle-button", has_text=re.compile(rf"^\s*{re.escape(option)}\s*$"))


def checkbox(root, description: str):
    return root.locator(".widget-checkbox", has=root.page.locator(
        ".widget-label-basic span", has_text=re.compile(rf"^\s*{re.escape(description)}\s*$"))
    ).locator("input[type=checkbox]")


def button(root, description: str):
    return root.get_by_role("button", name=description, exact=True)


CONTROLS_JS = """(root) => {
  // every control of the panel as shown: label -> what the page shows for it
  const label = el => { const l = el.querySelector(':scope > .widget-label');
                        return l ? l.textContent.trim() : ''; };
  const out = {};
  for (const el of root.querySelectorAll('.widget-slider')) {
    const handle = el.querySelector('.noUi-handle');
    out[label(el)] = {kind: 'slider', readout: el.querySelector('.widget-readout').textContent.trim(),
                      position: handle ? handle.getAttribute('aria-valuetext') : null};
  }
  for (const el of root.querySelectorAll('.widget-dropdown')) {
    const s = el.querySelector('select');
    // an option's text shows its label with no-break spaces; its value is the label
    out[label(el)] = {kind: 'dropdown', shown: s.selectedIndex >= 0 ? s.options[s.selectedIndex].value : null};
  }
  for (const el of root.querySelectorAll('.widget-toggle-buttons')) {
    const on = el.querySelector('.widget-toggle-button.mod-active');
    out[label(el)] = {kind: 'toggle', shown: on ? on.textContent.trim() : null};
  }
  for (const el of root.querySelectorAll('.widget-checkbox')) {
    out[el.querySelector('.widget-label-basic span').textContent.trim()] =
        {kind: 'checkbox', shown: el.querySelector('input').checked};
  }
  return out;
}"""


def shown_controls(root) -> dict:
    """label -> {"kind", and "readout" + "position" (slider handle's value, full
    precision) or "shown"} for every control in the panel."""
    return root.evaluate(CONTROLS_JS)


def js_pow(page, base: float, exponent: float) -> float:
    """``Math.pow(base, exponent)`` computed by the browser: what a log slider sends to
    the kernel after a key press (the handle moves the exponent)."""
    return float(page.evaluate("([b, e]) => String(Math.pow(b, e))", [base, exponent]))


def status_text(root) -> str:
    """The panel's status line as the page shows it."""
    return root.locator(".mlkit-status .widget-html-content").evaluate("e => e.textContent").strip()


def press_key(slider_el, key: str) -> str:
    """Focus the slider's handle and press ``key`` (e.g. ArrowRight), as a user would.
    Returns the new readout text; the handle must have moved."""
    handle = slider_el.locator(".noUi-handle")
    readout = slider_el.locator(".widget-readout")
    before = readout.inner_text().strip()
    handle.focus()
    handle.press(key)
    expect(readout).not_to_have_text(before)
    return readout.inner_text().strip()


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


# ---- the time a panel takes to answer ----------------------------------------------------
PROBE_JS = """(root) => {
  // From the user's last key press, click or change to the moment the panel shows a new
  // status line (tStatus) and a new plot (tImage). While waiting, it also records every
  // text of a progress bar (tqdm widget) that appears in the panel's output after the action.
  const status = () => root.querySelector('.mlkit-status .widget-html-content');
  const img = () => root.querySelector('.mlkit-plot');
  for (const bar of root.querySelectorAll('.widget-hprogress')) bar.dataset.mlkitOld = '1';
  const statusBefore = status().textContent, srcBefore = img().src;
  const p = window.__mlkitProbe = {t0: null, tStatus: null, tImage: null, status: null,
                                   progress: []};
  const onUser = () => { p.t0 = performance.now(); p.tStatus = p.tImage = null; p.progress = []; };
  const events = ['keydown', 'click', 'change'];
  events.forEach(e => document.addEventListener(e, onUser, true));
  const check = () => {
    if (p.t0 === null) return;
    const now = performance.now();
    if (p.tImage === null && img().src !== srcBefore) p.tImage = now;
    if (p.tStatus === null && status().textContent !== statusBefore) {
      p.tStatus = now;
      p.status = status().textContent;
    }
    if (p.tStatus === null) {
      for (const bar of root.querySelectorAll('.widget-output .widget-hprogress:not([data-mlkit-old])')) {
        const text = bar.parentElement.textContent.replace(/\\s+/g, ' ').trim();
        const last = p.progress[p.progress.length - 1];
        if (!last || last.text !== text) p.progress.push({ms: now - p.t0, text});
      }
    }
  };
  const observer = new MutationObserver(check);
  observer.observe(root, {subtree: true, childList: true, characterData: true,
                          attributes: true, attributeFilter: ['src', 'style', 'class']});
  p.stop = () => {
    observer.disconnect();
    events.forEach(e => document.removeEventListener(e, onUser, true));
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


@contextmanager
def response_probe(root, timeout_s: float):
    """Arm the probe, let the caller act (key press / typing / selecting / click), then
    wait until the status line changed. Yields a dict that then holds ``status`` (the new
    line), ``ms`` (in-browser time from the action to the new status and, if it changed,
    the new plot), ``plot_changed`` (the PNG's bytes differ), ``digest`` and
    ``progress`` (progress-bar texts seen before the status changed)."""
    page = root.page
    old_digest = image_digest(root)
    root.evaluate(PROBE_JS)
    result = {}
    try:
        yield result
        try:
            page.wait_for_function("() => window.__mlkitProbe.tStatus !== null",
                                   timeout=timeout_s * 1000, polling=50)
        except Exception as exc:
            raise AssertionError(f"no new status line within {timeout_s:.0f} s; the status "
                                 f"is {status_text(root)!r}") from exc
        try:  # a panel sends the plot before the status line: it is there or just coming
            page.wait_for_function("() => window.__mlkitProbe.tImage !== null", timeout=3000,
                                   polling=50)
        except Exception:
            pass
        probe = page.evaluate("() => { const p = window.__mlkitProbe; return {t0: p.t0, "
                              "tStatus: p.tStatus, tImage: p.tImage, status: p.status, "
                              "progress: p.progress}; }")
        result["digest"] = image_digest(root)
        result["plot_changed"] = result["digest"] != old_digest
        done = max(probe["tStatus"], probe["tImage"] or 0)
        result["ms"] = done - probe["t0"]
        result["status"] = probe["status"].strip()
        result["progress"] = probe["progress"]
    finally:
        page.evaluate("() => window.__mlkitProbe && window.__mlkitProbe.stop()")
