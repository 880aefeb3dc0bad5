"""The widgets in a real browser: JupyterLab + headless Chromium (through playwright).

nbval checks what a notebook prints; it cannot see whether its widgets render and answer
in a student's JupyterLab. These tests start their own JupyterLab server, open each
notebook that has a panel, run all its cells from the Run menu, then move every slider
the way a user does (an arrow key on the slider's handle, or a number typed into its
readout) and check that the panel answers: a new plot and a status line stating the new
value. They also open the notebooks as shipped (stored outputs) and check that nothing
shows an error. Any page JavaScript error fails a test.

Outputs, in test-artifacts/ (git-ignored):
  browser_timings.json        each slider's response time, key press to new plot + status
  browser/<panel>.png         each panel after the moves; browser/FAILED-*.png on failure
With UPDATE_SCREENSHOTS=1 the README's screenshots in docs/screenshots/ are rewritten.

Needs the system Chromium (`apt-get install -y chromium`; $CHROMIUM for another path).
Without it these tests skip, except under CI=true, where they fail.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass

import pytest

import browser_helpers as bh

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by the `browser` fixture (skip, or fail under CI)
    sync_playwright = expect = None

SANITY_MS = 5000  # a slider that takes longer than this is broken, not slow


# ---- what each notebook's panel is and how a user moves it ------------------------------
@dataclass
class Move:
    """One user action on a panel. kind: "key" (one arrow press on the slider handle),
    "type" (type ``text`` into the readout; a second choice after "|" is used when the
    slider already shows the first) or "click" (press the button named ``control``).
    ``status`` is a regex template for the status line after the move: ``{}`` is filled
    with the new readout value through ``fmt``."""
    control: str
    kind: str
    status: str
    fmt: str = "{}"
    text: str = ""
    timeout_ms: float = SANITY_MS
    plot: bool = True  # the plot must change too


@dataclass
class PanelSpec:
    notebook: str
    root: str        # CSS class of the panel's root widget
    moves: list
    screenshot: str  # file name of the after-state screenshot
    extreme: Move | None = None  # a move to the end of a slider's range: must not break
    readme: bool = False  # the README shows this screenshot (docs/screenshots/)


PANELS = [
    PanelSpec(
        "04_meta_training.ipynb", "mlkit-training-panel", screenshot="training_panel.png",
        # Before Train the plot shows the last run; only its title notes that the settings
        # changed, so only the first move after a run must change the plot.
        moves=[
            Move("inner steps", "key", r"^steps={} .*press Train", "{:.0f}"),
            Move("inner lr", "type", r"^steps=\d+ lr={} ", "{:.4f}", text="0.02", plot=False),
            Move("outer lr", "type", r"^[^|]* outer lr={} ", "{:.5f}", text="0.002", plot=False),
            Move("meta-batch", "key", r"^[^|]* meta-batch={} ", "{:.0f}", plot=False),
            Move("K (shots)", "key", r"^[^|]* K={} ", "{:.0f}", plot=False),
            # after Train the status states the run's result for the settings now shown
            Move("Train", "click", r"^(?!.*press Train).* \| \d+ iterations in [\d.]+ s \| "
                 r"(MSE after 1 step|diverged)", timeout_ms=120_000),
        ]),
    PanelSpec(
        "05_meta_testing.ipynb", "mlkit-explorer", screenshot="adaptation_explorer.png",
        readme=True,
        moves=[
            Move("inner steps", "key", r"^steps={} ", "{:.0f}"),
            Move("inner lr", "type", r"^steps=\d+ lr={} ", "{:.4f}", text="0.02"),
            Move("K (shots)", "key", r"^[^|]* K={} ", "{:.0f}"),
            Move("amplitude", "key", r"^[^|]* amplitude={} ", "{:.2f}"),
            Move("phase", "key", r"^[^|]* phase={} ", "{:.2f}"),
            # back to the meta-training lr: the README's screenshot shows MAML adapting
            Move("inner lr", "type", r"^steps=\d+ lr={} ", "{:.4f}", text="0.01|0.005"),
        ],
        extreme=Move("inner lr", "type", r"^steps=\d+ lr={} .*diverged", "{:.4f}", text="10")),
    PanelSpec(
        "06_few_shot_images.ipynb", "mlkit-image-explorer", screenshot="image_explorer.png",
        readme=True,
        moves=[
            Move("inner steps", "key", r"^[^|]* steps={} ", "{:.0f}"),
            # the plot shows the predicted labels, which need not change with the lr
            Move("inner lr", "type", r"^[^|]* lr={} ", "{:.3f}", text="0.2|0.1", plot=False),
            Move("K (shots)", "key", r"^[^|]* K={} ", "{:.0f}"),
            Move("ways", "type", r"^ways={} .*MAML \d+%", "{:.0f}", text="20"),
        ],
        extreme=Move("inner lr", "type", r"^[^|]* lr={} .*(diverged|overshoots)", "{:.3f}", text="100")),
    PanelSpec(
        "07_maml_family.ipynb", "mlkit-family-panel", screenshot="family_panel.png",
        moves=[
            Move("inner steps", "key", r"^steps={} ", "{:.0f}"),
            Move("inner lr", "type", r"^steps=\d+ lr={} ", "{:.4f}", text="0.02"),
        ],
        extreme=Move("inner lr", "type", r"^steps=\d+ lr={} .*diverged", "{:.4f}", text="10")),
]
PANEL_IDS = [p.notebook.removesuffix(".ipynb") for p in PANELS]
# every notebook is opened as shipped; the panel notebooks even before they exist (skip/fail)
SHIPPED = sorted({p.name for p in bh.NOTEBOOKS.glob("*.ipynb")} | {p.notebook for p in PANELS})
PANEL_CLASSES = ("AdaptationExplorer", "TrainingPanel", "FamilyPanel", "ImageExplorer",
                 "interact", "interactive")


def copy_to_lab(lab, name, strip):
    """Copy notebooks/<name> into the server's live/ (outputs stripped) or shipped/ folder
    and return its path there. A missing notebook skips the test (fails under CI)."""
    src = bh.NOTEBOOKS / name
    if not src.exists():
        msg = f"notebooks/{name} does not exist"
        if bh.in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    dst = lab.root / ("live" if strip else "shipped") / name
    bh.copy_notebook(src, dst, strip=strip)
    return dst


# ---- fixtures: one browser and one JupyterLab server for the session ----------------------
@pytest.fixture(scope="session")
def browser():
    """Headless system Chromium. Missing: skip with how to install it; under CI=true, fail."""
    path = bh.find_chromium()
    problem = None
    if sync_playwright is None:
        problem = "the playwright Python package is not installed"
    elif path is None:
        problem = (f"no Chromium at $CHROMIUM={os.environ['CHROMIUM']}" if os.environ.get("CHROMIUM")
                   else "no Chromium found (chromium on $PATH, /usr/bin/chromium)")
    if problem:
        msg = f"browser tests need a browser: {problem}; {bh.INSTALL_HINT}"
        if bh.in_ci():
            pytest.fail(msg + " (CI=true: the browser tests must run)", pytrace=False)
        pytest.skip(msg)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=bh.CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def lab(browser, tmp_path_factory):
    """A private JupyterLab serving a temporary folder; each test copies its notebook
    there (live/: outputs stripped, what the tests run; shipped/: as stored)."""
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "root"
    root.mkdir()
    for old in (bh.ARTIFACTS / "browser").glob("FAILED-*.png"):  # from an earlier session
        old.unlink()
    server = bh.LabServer(base, root).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def timings():
    """Response times collected by the tests; printed and written to
    test-artifacts/browser_timings.json at the end of the session."""
    found = {"controls": [], "notebooks": {}}
    yield found
    if found["controls"] or found["notebooks"]:
        bh.ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (bh.ARTIFACTS / "browser_timings.json").write_text(json.dumps(found, indent=1) + "\n")
        print("\nbrowser response times (key press or click -> new status and plot):")
        for r in found["controls"]:
            print(f"  {r['notebook']:26s} {r['control']:12s} -> {r['value'] or 'clicked':8s} "
                  f"{r['ms']:7.0f} ms")
        for name, r in found["notebooks"].items():
            print(f"  {name:26s} opened {r['open_s']:.1f} s, Run All Cells {r['run_all_s']:.1f} s")


@pytest.fixture
def page(browser, lab, request):
    """A fresh browser context per test. On failure: a screenshot in test-artifacts/browser/
    and the tail of the server log in the report."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    bh.watch_errors(pg)
    failed_before = request.session.testsfailed
    try:
        yield pg
    finally:
        if request.session.testsfailed > failed_before:
            shot = bh.ARTIFACTS / "browser" / ("FAILED-" + re.sub(r"\W+", "_", request.node.name) + ".png")
            shot.parent.mkdir(parents=True, exist_ok=True)
            try:
                pg.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot of the failure: {shot}")
            except Exception as exc:
                print(f"\nno screenshot of the failure: {exc}")
            print("console errors:", pg.console_errors)
            print("jupyterlab log (tail):\n" + lab.log_tail())
        bh.shutdown_sessions(pg, lab)
        context.close()


def save_screenshot(locator, spec):
    out = bh.ARTIFACTS / "browser" / spec.screenshot
    out.parent.mkdir(parents=True, exist_ok=True)
    locator.page.evaluate("() => document.activeElement && document.activeElement.blur()")
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(out))
    if spec.readme and os.environ.get("UPDATE_SCREENSHOTS") == "1":
        bh.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(out, bh.SCREENSHOTS / spec.screenshot)
    return out


def exercise(root, move, timings, notebook):
    """Make one move as a user would, wait for the panel to answer, check that its status
    states the new value, and record the time it took."""
    if move.kind == "click":
        control = root.get_by_role("button", name=move.control, exact=True)
    else:
        control = bh.slider(root, move.control)
    expect(control).to_have_count(1)
    readout, pattern = "", move.status
    with bh.response_probe(root, move.timeout_ms, move.plot) as result:
        if move.kind == "click":
            control.click()
        else:
            if move.kind == "key":
                readout = bh.press_key(control)[1]
            else:
                now = float(control.locator(".widget-readout").inner_text())
                text = next((t for t in move.text.split("|")
                             if move.fmt.format(float(t)) != move.fmt.format(now)), move.text)
                readout = bh.type_value(control, text)
            pattern = move.status.format(re.escape(move.fmt.format(float(readout))))
    status = result["status"]
    assert re.search(pattern, status), (
        f"{move.control}: status does not state the new value ({readout!r}); expected "
        f"{pattern!r} in {status!r}")
    timings["controls"].append({"notebook": notebook, "control": move.control, "kind": move.kind,
                    "value": readout or None, "ms": round(result["ms"], 1), "status": status})
    print(f"\n{notebook}: {move.control} -> {readout or 'clicked'}: {result['ms']:.0f} ms | {status}")
    return result["ms"]


# ---- the tests ---------------------------------------------------------------------------
def test_every_widget_notebook_is_covered():
    """A notebook that builds a panel must be listed in PANELS (no untested widgets)."""
    import nbformat
    covered = {p.notebook for p in PANELS}
    missing = []
    for path in sorted(bh.NOTEBOOKS.glob("*.ipynb")):
        source = "\n".join(c.source for c in nbformat.read(path, 4).cells if c.cell_type == "code")
        used = [c for c in PANEL_CLASSES if re.search(rf"\b{c}\(", source)]
        if used and path.name not in covered:
            missing.append(f"{path.name} ({', '.join(used)})")
    assert not missing, f"notebooks with widgets not exercised by test_browser.py: {missing}"


@pytest.mark.parametrize("name", SHIPPED, ids=[n.removesuffix(".ipynb") for n in SHIPPED])
def test_shipped_notebook_shows_no_error(name, page, lab):
    """Open the notebook as shipped (stored outputs, a fresh kernel): no widget error,
    no error output, no JavaScript error, and every stored plot is drawn."""
    path = copy_to_lab(lab, name, strip=False)
    assert bh.stored_problems(path) == [], f"{name} stores errors"
    bh.open_notebook(page, lab, f"shipped/{name}")
    images = bh.count_stored_images(path)
    rendered = page.locator(".jp-NotebookPanel .jp-OutputArea-output img")
    if images:
        expect(rendered).to_have_count(images, timeout=30_000)
    state = page.evaluate(bh.RUN_STATE_JS)
    assert state["errors"] == [], state["errors"]
    page.wait_for_timeout(500)  # let the widget manager settle after the kernel connected
    assert bh.page_problems(page) == []


@pytest.mark.parametrize("spec", PANELS, ids=PANEL_IDS)
def test_panel_answers_every_slider(spec, page, lab, timings):
    """Run the notebook in the browser, then move each slider of its panel as a user
    would: each move must redraw the plot and restate the new value in the status."""
    copy_to_lab(lab, spec.notebook, strip=True)
    t0 = time.monotonic()
    kernel = bh.open_notebook(page, lab, f"live/{spec.notebook}")
    open_s = time.monotonic() - t0
    run_s = bh.run_all_cells(page, kernel)
    timings["notebooks"][spec.notebook] = {"open_s": round(open_s, 1), "run_all_s": round(run_s, 1)}
    root = page.locator(f".{spec.root}").first
    expect(root).to_be_visible()
    expect(root.locator(".mlkit-plot")).to_be_visible()
    expect(root.locator(".mlkit-status")).not_to_be_empty()
    root.scroll_into_view_if_needed()
    assert bh.page_problems(page) == []
    print(f"\n{spec.notebook}: opened and ran all cells in {time.monotonic() - t0:.1f} s "
          f"(Run All {run_s:.1f} s)")

    for move in spec.moves:
        ms = exercise(root, move, timings, spec.notebook)
        assert math.isfinite(ms) and ms < move.timeout_ms
    save_screenshot(root, spec)

    if spec.extreme is not None:  # the end of the range: a message, never an exception
        exercise(root, spec.extreme, timings, spec.notebook)
    assert bh.page_problems(page) == []
