"""The panels in a real browser: JupyterLab + headless Chromium (through playwright).

nbval checks what a notebook prints; it cannot see whether its widgets render and answer
in a student's JupyterLab. These tests start their own JupyterLab server and

* for each notebook with a panel: open a copy without outputs or widget state, run all
  its cells from the Run menu, then move EVERY control of the panel as a user does (an
  arrow key on a slider's handle or a number typed into its readout, an option picked in
  a dropdown, a click on a toggle button, checkbox or button). After each move the status
  line the browser shows must equal the status of the same panel class built in this
  test process with the same constructor arguments and set to the same control values
  (only run times may differ): the numbers are computed again, not echoed. When the
  numbers change, the plot must change too, and it must be the test process's PNG byte
  for byte (except the training panel's, which also shows the notebook's earlier runs).
  The Train button's run must show a progress bar in the panel's output while it runs.
  The control values come from the moves themselves: the typed number, or the slider
  handle's position (full precision) after a key press; a log slider's readout shows
  its step grid's value, not a typed one. Checkpoints are being retrained and replaced:
  if a file the panel reads changed while the kernel built its panel, the panel's cell
  is run again;
* open every notebook as shipped (stored outputs): no error shown, no JavaScript error,
  every stored plot drawn, and the notebook not marked as modified by opening it;
* work through an exercise of the student edition as a student does: the check's
  one-line "Not yet" on the stub, then "Correct" once the code is typed in and run.

Each move's response time (key press or click to new status and plot, measured in the
page) is written down, not asserted: only a generous sanity timeout applies.

Outputs, in test-artifacts/ (git-ignored):
  browser_timings.json        every move's response time; median and max per control
  browser/<panel>.png         each panel after its moves; browser/FAILED-*.png on failure
With UPDATE_SCREENSHOTS=1 the README's screenshots in docs/screenshots/ are rewritten.

Needs the system Chromium (`apt-get install -y chromium`; $CHROMIUM for another path).
Without it these tests skip, except under CI=true, where they fail.
"""
from __future__ import annotations

import hashlib
import html
import importlib
import json
import os
import re
import shutil
import statistics
import time
from dataclasses import dataclass

import nbformat
import pytest

from mlkit.tools.student import write_student_edition
import browser_helpers as bh

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported by the `browser` fixture (skip, or fail under CI)
    sync_playwright = expect = None

SANITY_S = 10   # a move that takes longer than this is broken, not slow
LONG_S = 60     # the Train button; a new episode in the image explorer


# ---- the moves a user makes ---------------------------------------------------------------
@dataclass
class Move:
    """One user action on the control labelled ``control``."""
    control: str
    action: str     # key | type | select | toggle | check | press
    arg: str = ""   # the key, the text typed, the option picked / clicked
    timeout_s: float = SANITY_S

    def __str__(self):
        return f"{self.control}: {self.action} {self.arg}".strip()


def key(control, name="ArrowRight", timeout_s=SANITY_S):
    """Press an arrow key on the slider's handle."""
    return Move(control, "key", name, timeout_s)


def type_(control, text, timeout_s=SANITY_S):
    """Type a number into the slider's readout and press Enter."""
    return Move(control, "type", text, timeout_s)


def select(control, option):
    """Pick an option in the dropdown."""
    return Move(control, "select", option)


def toggle(control, option):
    """Click one of the toggle buttons."""
    return Move(control, "toggle", option)


def check(control):
    """Click the checkbox."""
    return Move(control, "check")


def press(button, timeout_s=LONG_S):
    """Click the button."""
    return Move(button, "press", "", timeout_s)


SCREENSHOT = "screenshot"  # in a move list: take the panel's screenshot here


@dataclass
class PanelSpec:
    notebook: str
    panel_class: str  # the class the notebook builds (its one call's literal arguments are reused)
    module: str
    root: str         # CSS class of the panel's root widget
    moves: list
    screenshot: str   # file name of the panel's screenshot
    readme: bool = False  # the README shows this screenshot (docs/screenshots/)
    # the plot's PNG equals the test process's, byte for byte (not for a panel whose plot
    # keeps runs the notebook made before, which this process does not repeat)
    same_plot: bool = True
    # the plot follows every control; the training panel redraws only when a run ends (its
    # controls change the status line, the plot shows finished runs)
    plot_follows_controls: bool = True


PANELS = [
    PanelSpec(
        "03_maml_from_scratch.ipynb", "LandscapePanel", "mlkit.widgets", "mlkit-landscape",
        screenshot="landscape.png", readme=True, moves=[
            key("alpha", "ArrowLeft"),
            toggle("gradient", "second order"),
            type_("alpha", "0.1"),
            toggle("gradient", "first order"),
            type_("alpha", "0"),           # no inner step: the objective is the average loss
            key("alpha", "ArrowRight"),
            toggle("gradient", "second order"),
            type_("alpha", "0.2"),
            SCREENSHOT,
        ]),
    PanelSpec(
        "04_meta_training.ipynb", "TrainingPanel", "mlkit.widgets", "mlkit-training-panel",
        screenshot="training_panel.png", readme=True, same_plot=False,
        plot_follows_controls=False, moves=[
            key("iterations", "ArrowLeft"),
            type_("iterations", "100"),
            select("algorithm", "fomaml"),
            select("algorithm", "maml"),
            key("inner steps", "ArrowRight"),
            type_("inner lr", "0.02"),
            key("inner lr", "ArrowLeft"),
            type_("outer lr", "0.005"),
            key("outer lr", "ArrowRight"),
            key("meta-batch", "ArrowLeft"),
            type_("meta-batch", "20"),
            key("K (shots)", "ArrowLeft"),
            type_("K (shots)", "8"),
            check("multi-step loss"),
            press("Train"),
            SCREENSHOT,
            key("inner steps", "ArrowRight"),  # after a run: the status names the next one
            check("multi-step loss"),
        ]),
    PanelSpec(
        "05_meta_testing.ipynb", "AdaptationExplorer", "mlkit.widgets", "mlkit-explorer",
        screenshot="adaptation_explorer.png", readme=True, moves=[
            key("inner steps", "ArrowRight"),
            type_("inner lr", "0.02"),
            key("K (shots)", "ArrowLeft"),
            select("support", "only x in [0, 5]"),
            type_("amplitude", "6.5"),      # outside the training range
            type_("phase", "4"),
            type_("inner lr", "10"),        # diverges: a message, never an exception
            key("inner lr", "ArrowLeft"),
            key("amplitude", "ArrowRight"),
            key("phase", "ArrowLeft"),
            select("support", "spread over [-5, 5]"),
            type_("amplitude", "3"),
            type_("phase", "1"),
            type_("inner lr", "0.01"),      # the meta-training lr: the README shows MAML adapting
            type_("inner steps", "5"),
            type_("K (shots)", "10"),
            SCREENSHOT,
        ]),
    PanelSpec(
        "06_few_shot_images.ipynb", "ImageExplorer", "mlkit.image_widgets",
        "mlkit-image-explorer", screenshot="image_explorer.png", readme=True, moves=[
            # a new (ways, K, lr) fine-tunes on a new episode: the long timeout
            type_("inner lr", "0.3", LONG_S),
            key("inner steps", "ArrowLeft"),
            type_("inner steps", "5"),
            key("K (shots)", "ArrowRight", LONG_S),
            type_("ways", "20", LONG_S),
            key("ways", "ArrowLeft", LONG_S),   # 19-way: no MAML head for it
            key("inner lr", "ArrowRight", LONG_S),
            type_("inner lr", "100", LONG_S),   # diverges: a message, never an exception
            type_("ways", "5", LONG_S),
            type_("K (shots)", "1", LONG_S),
            type_("inner lr", "0.4", LONG_S),
            type_("inner steps", "3"),
            SCREENSHOT,
        ]),
    PanelSpec(
        "07_maml_family.ipynb", "FamilyPanel", "mlkit.widgets", "mlkit-family-panel",
        screenshot="family_panel.png", moves=[
            key("inner steps", "ArrowRight"),
            type_("inner steps", "10"),
            type_("inner lr", "0.02"),
            key("inner lr", "ArrowRight"),
            type_("inner lr", "10"),        # diverges: a message, never an exception
            type_("inner lr", "0.01"),
            type_("inner steps", "5"),
            SCREENSHOT,
        ]),
]
PANEL_IDS = [p.notebook.removesuffix(".ipynb") for p in PANELS]
# every notebook is opened as shipped; the panel notebooks even before they exist (skip/fail)
SHIPPED = sorted({p.name for p in bh.NOTEBOOKS.glob("*.ipynb")} | {p.notebook for p in PANELS})
PANEL_CLASSES = ("LandscapePanel", "TrainingPanel", "AdaptationExplorer", "FamilyPanel",
                 "ImageExplorer", "interact", "interactive")

# the run time in a status line ("300 iterations in 3.4 s"): the only part that may differ
RUN_TIME = re.compile(r" in \d+(?:\.\d+)? s\b")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def comparable(status: str) -> str:
    return RUN_TIME.sub(" in (time) s", status.strip())


def numbers(status: str) -> list[str]:
    return NUMBER.findall(comparable(status))


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
    """Response times collected by the tests; summarised (median and max per control),
    printed and written to test-artifacts/browser_timings.json at the end of the session."""
    found = {"notebooks": {}, "moves": []}
    yield found
    if not (found["moves"] or found["notebooks"]):
        return
    for nb, entry in found["notebooks"].items():
        per_control = {}
        for m in found["moves"]:
            if m["notebook"] == nb:
                per_control.setdefault(m["control"], []).append(m["ms"])
        entry["controls"] = {c: {"moves": len(ms), "median_ms": round(statistics.median(ms)),
                                 "max_ms": round(max(ms))} for c, ms in per_control.items()}
    found["machine"] = {"cpus": os.cpu_count(), "load_average": os.getloadavg()}
    bh.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (bh.ARTIFACTS / "browser_timings.json").write_text(json.dumps(found, indent=1) + "\n")
    print("\nbrowser response times (action -> new status and plot), median / max:")
    for nb, entry in found["notebooks"].items():
        print(f"  {nb}: opened in {entry.get('open_s', '?')} s, Run All Cells "
              f"{entry.get('run_all_s', '?')} s")
        for control, t in entry.get("controls", {}).items():
            print(f"    {control:16s} {t['median_ms']:7d} / {t['max_ms']:7d} ms ({t['moves']} moves)")


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


def save_screenshot(root, spec):
    out = bh.ARTIFACTS / "browser" / spec.screenshot
    out.parent.mkdir(parents=True, exist_ok=True)
    root.page.evaluate("() => document.activeElement && document.activeElement.blur()")
    root.scroll_into_view_if_needed()
    root.screenshot(path=str(out))
    if spec.readme and os.environ.get("UPDATE_SCREENSHOTS") == "1":
        bh.SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(out, bh.SCREENSHOTS / spec.screenshot)
    return out


# ---- the same panel in the test process ---------------------------------------------------
def build_panel(spec, notebook_path):
    """The panel class of ``spec`` built here with the notebook's own arguments (its
    checkpoints loaded now, from data/checkpoints). Returns it and the names of the
    checkpoint files it read."""
    args, kwargs = bh.constructor_call(notebook_path, spec.panel_class)
    cls = getattr(importlib.import_module(spec.module), spec.panel_class)
    with bh.checkpoints_read() as names:
        panel = cls(*args, **kwargs)
    return panel, sorted(set(names))


def same_checkpoints(page, spec, path, kernel, before):
    """Build the panel here; make sure the kernel's panel read the same checkpoint files.
    Files are being retrained and replaced every few minutes: when one the panel reads
    changed since ``before`` (taken before the kernel built its panel), run the panel's
    cell again in the browser (a few seconds, not a whole notebook) and build it again."""
    for attempt in range(4):
        panel, used = build_panel(spec, path)
        now = bh.checkpoint_digests()
        replaced = [n for n in used if before.get(n) != now.get(n)]
        if not replaced:
            return panel
        print(f"\n{spec.notebook}: {', '.join(replaced)} replaced meanwhile; running the "
              "panel's cell again")
        before = now
        cell = page.locator(".jp-CodeCell", has=page.locator(f".{spec.root}")).first
        bh.run_cell(page, cell, kernel)
    pytest.fail(f"checkpoints {replaced} were replaced during each of 4 runs of the panel's cell")


def option_value(widget, label):
    """The value of a dropdown's / toggle buttons' option shown as ``label``."""
    labels = list(widget._options_labels)
    assert label in labels, f"{widget.description}: no option {label!r} in {labels}"
    return widget._options_values[labels.index(label)]


def values_shown(root, panel) -> dict:
    """Each control's value as the page shows it now (sliders: their readouts). Used
    once, after the notebook ran; later values follow from the moves themselves."""
    shown = bh.shown_controls(root)
    assert set(shown) == set(panel.controls), (
        f"the page shows controls {sorted(shown)}, the panel has {sorted(panel.controls)}")
    values = {}
    for name, widget in panel.controls.items():
        s = shown[name]
        if s["kind"] == "slider":
            values[name] = (int if type(widget).__name__ == "IntSlider" else float)(s["readout"])
        elif s["kind"] == "checkbox":
            values[name] = bool(s["shown"])
        else:
            values[name] = option_value(widget, s["shown"])
    return values


def set_values(panel, values: dict) -> None:
    """Set the in-process panel's controls (each change recomputes, as in the kernel)."""
    for name, value in values.items():
        if panel.controls[name].value != value:
            panel.controls[name].value = value
        assert panel.controls[name].value == value, f"{name}: the panel refused {value!r}"


def kit_status(panel) -> str:
    return html.unescape(panel.status.value).strip()


def png_digest(panel) -> str:
    return hashlib.sha256(panel.image.value).hexdigest()


def catch_up(panel, status: str) -> None:
    """A TrainingPanel whose notebook pressed Train shows its last run: train the same
    run here (the controls still hold its settings when no other run is pending)."""
    if not hasattr(panel, "train") or not status.startswith("last run"):
        return
    assert "next run:" not in status, (
        "the notebook leaves the training panel with settings other than its last run's; "
        f"the test cannot rebuild that run: {status!r}")
    panel.train()


# ---- one move: in the browser, then the same in the test process ----------------------------
def slider_value(widget, text: str, page) -> float:
    """The value a slider sends after ``text`` is typed into its readout (clamped to the
    slider's range; a log slider keeps the typed number, off its step grid)."""
    kind = type(widget).__name__
    if kind == "IntSlider":
        return min(max(int(text), widget.min), widget.max)
    if kind == "FloatLogSlider":
        low, high = (bh.js_pow(page, widget.base, e) for e in (widget.min, widget.max))
        return min(max(float(text), low), high)
    return min(max(float(text), widget.min), widget.max)


def make_move(root, move: Move, panel, values: dict) -> dict:
    """Make ``move`` in the page as a user would and wait for the panel's answer. Updates
    ``values`` with the control's new value (exactly what the page sent to the kernel)
    and returns the probe's result (status, ms, plot_changed, progress)."""
    page, widget = root.page, panel.controls.get(move.control)
    new = values.get(move.control)
    if move.action in ("key", "type"):
        control = bh.slider(root, move.control)
    elif move.action == "select":
        control = bh.dropdown(root, move.control)
        new = option_value(widget, move.arg)
    elif move.action == "toggle":
        control = bh.toggle_button(root, move.control, move.arg)
        new = option_value(widget, move.arg)
    elif move.action == "check":
        control, new = bh.checkbox(root, move.control), not values[move.control]
    elif move.action == "press":
        control = bh.button(root, move.control)
    else:
        raise ValueError(f"unknown action {move.action!r}")
    expect(control).to_have_count(1)
    if move.action == "type":
        new = slider_value(widget, move.arg, page)
    if move.action not in ("key", "press"):
        assert new != values[move.control], f"{move}: the control already shows that value"

    with bh.response_probe(root, move.timeout_s) as result:
        if move.action == "key":
            bh.press_key(control, move.arg)
        elif move.action == "type":
            bh.type_value(control, move.arg)
        elif move.action == "select":
            control.select_option(value=move.arg)  # an <option>'s value is its label
        else:
            control.click()

    shown = bh.shown_controls(root).get(move.control)
    if move.action == "key":  # the handle's position, in full precision
        position, kind = float(shown["position"]), type(widget).__name__
        new = (round(position) if kind == "IntSlider" else position if kind == "FloatSlider"
               else bh.js_pow(page, widget.base, position))
    if widget is not None:
        values[move.control] = new
        if shown["kind"] == "slider":
            expected = {format(new, widget.readout_format)}
            if type(widget).__name__ == "FloatLogSlider":  # it shows its step grid's value
                expected.add(format(bh.js_pow(page, widget.base, float(shown["position"])),
                                    widget.readout_format))
            assert shown["readout"] in expected, f"{move}: readout {shown['readout']!r}, value {new!r}"
        else:
            assert shown["shown"] == (new if shown["kind"] == "checkbox" else move.arg), shown
    return result


def check_train_progress(result, panel) -> dict:
    """While Train runs, a progress bar (tqdm widget) appears in the panel's output and
    ends at the run's iteration count."""
    seen = result["progress"]
    assert seen, "no progress bar appeared in the panel while Train ran"
    iterations = panel.value("iterations")
    last = seen[-1]["text"]
    assert f"{iterations}/{iterations}" in last, (
        f"the progress bar did not reach {iterations}/{iterations} before the status: {last!r}")
    return {"first_ms": round(seen[0]["ms"]), "texts_seen": len(seen), "first": seen[0]["text"],
            "last": last}


# ---- the tests ---------------------------------------------------------------------------
def test_every_widget_notebook_is_covered():
    """A notebook that builds a panel must be listed in PANELS (no untested widgets)."""
    covered = {p.notebook for p in PANELS}
    missing = []
    for path in sorted(bh.NOTEBOOKS.glob("*.ipynb")):
        source = "\n".join(c.source for c in nbformat.read(path, 4).cells if c.cell_type == "code")
        used = [c for c in PANEL_CLASSES if re.search(rf"\b{c}\(", source)]
        if used and path.name not in covered:
            missing.append(f"{path.name} ({', '.join(used)})")
    assert not missing, f"notebooks with widgets not exercised by test_browser.py: {missing}"


METADATA_JS = "() => window.jupyterapp.shell.currentWidget.context.model.toJSON().metadata"


@pytest.mark.parametrize("name", SHIPPED, ids=[n.removesuffix(".ipynb") for n in SHIPPED])
def test_shipped_notebook_opens_clean(name, page, lab):
    """Open the notebook as shipped (stored outputs, a fresh kernel): no error output,
    no widget error, no JavaScript error, every stored plot drawn, and opening it does
    not mark it as modified (no unsaved-changes dot, the document not dirty)."""
    path = copy_to_lab(lab, name, strip=False)
    assert bh.stored_problems(path) == [], f"{name} stores errors"
    bh.open_notebook(page, lab, f"shipped/{name}")
    images = bh.count_stored_images(path)
    rendered = page.locator(".jp-NotebookPanel .jp-OutputArea-output img")
    if images:
        expect(rendered).to_have_count(images, timeout=60_000)
    state = page.evaluate(bh.RUN_STATE_JS)
    assert state["errors"] == [], state["errors"]
    page.wait_for_timeout(2000)  # the kernel's info reply has updated the metadata by now
    problems = bh.page_problems(page)
    doc = bh.document_state(page)
    assert doc["path"] == f"shipped/{name}", doc
    if doc["dirty"] or doc["dirtyTabs"]:
        stored = nbformat.read(path, 4).metadata
        now = page.evaluate(METADATA_JS)
        changed = {k: {"stored": stored.get(k), "after opening": now.get(k)}
                   for k in set(stored) | set(now) if stored.get(k) != now.get(k)}
        problems.append(f"opening {name} marks it as modified (dirty={doc['dirty']}, tabs with "
                        f"the unsaved-changes dot: {doc['dirtyTabs']}); metadata changed: "
                        f"{changed or 'none (the cells changed)'}")
    assert problems == []


@pytest.mark.parametrize("spec", PANELS, ids=PANEL_IDS)
def test_panel_shows_what_the_kit_computes(spec, page, lab, timings):
    """Run the notebook in the browser, then move every control of its panel as a user
    would. After each move the browser's status line must equal the status of the same
    panel built in this process with the same control values (run times aside), and the
    plot must change when the numbers do. Response times go to browser_timings.json."""
    path = copy_to_lab(lab, spec.notebook, strip=True)
    t0 = time.monotonic()
    kernel = bh.open_notebook(page, lab, f"live/{spec.notebook}")
    record = timings["notebooks"][spec.notebook] = {"open_s": round(time.monotonic() - t0, 1)}
    before = bh.checkpoint_digests()
    record["run_all_s"] = round(bh.run_all_cells(page, kernel), 1)
    panel = same_checkpoints(page, spec, path, kernel, before)
    print(f"\n{spec.notebook}: opened in {record['open_s']} s, Run All Cells {record['run_all_s']} s")

    root = page.locator(f".{spec.root}").first
    expect(root).to_be_visible()
    expect(root.locator(".mlkit-plot")).to_be_visible()
    expect(root.locator(".mlkit-status")).not_to_be_empty()
    root.scroll_into_view_if_needed()
    assert bh.page_problems(page) == []

    moved = {m.control for m in spec.moves if isinstance(m, Move)}
    assert set(panel.controls) <= moved, f"controls never moved: {set(panel.controls) - moved}"
    if hasattr(panel, "train_button"):
        assert "Train" in moved, "the Train button is never pressed"

    # the state the notebook left: same controls, same status
    values = values_shown(root, panel)
    set_values(panel, values)
    status = bh.status_text(root)
    catch_up(panel, status)
    assert comparable(status) == comparable(kit_status(panel)), "after Run All Cells"
    if spec.same_plot:
        assert bh.image_digest(root) == png_digest(panel), "after Run All Cells: another plot"

    for move in spec.moves:
        if move == SCREENSHOT:
            save_screenshot(root, spec)
            continue
        result = make_move(root, move, panel, values)
        set_values(panel, values)
        if move.action == "press":
            panel.train()
        shown, kit = result["status"], kit_status(panel)
        entry = {"notebook": spec.notebook, "control": move.control, "action": move.action,
                 "arg": move.arg, "value": values.get(move.control), "ms": round(result["ms"], 1),
                 "plot_changed": result["plot_changed"],
                 "same_png_as_test_process": png_digest(panel) == result["digest"],
                 "status": shown}
        if move.action == "press":
            entry["progress"] = check_train_progress(result, panel)
        timings["moves"].append(entry)
        print(f"{spec.notebook}: {move} -> {result['ms']:.0f} ms | {shown}")
        assert comparable(shown) == comparable(kit), (
            f"{move}: the browser shows\n  {shown!r}\nthe kit computes\n  {kit!r}")
        if numbers(shown) != numbers(status) and (spec.plot_follows_controls
                                                  or move.action == "press"):
            assert result["plot_changed"], f"{move}: the numbers changed, the plot did not"
        if spec.same_plot:
            assert entry["same_png_as_test_process"], f"{move}: the plot is not the kit's plot"
        status = shown
    assert bh.page_problems(page) == []


# ---- the student edition: an exercise as a student meets it ------------------------------
STUDENT_NOTEBOOK = "02_tasks_and_few_shot.ipynb"
STUDENT_FUNCTION = "def episode("  # Exercise 2.1; the code cell after it runs its checker


def test_student_edition_exercise_gives_feedback_in_the_browser(page, lab):
    """Exercise 2.1 in the student edition (``python -m mlkit student-edition``), the way
    a student meets it: Run All stops at the exercise's check with one plain line (no
    traceback) saying the function is still a stub; after the student types the code
    into the exercise cell (here the teacher edition's solution, typed as text) and runs
    that cell and the check, the check says "Correct" in the same place."""
    write_student_edition(lab.root / "student")
    teacher = nbformat.read(bh.NOTEBOOKS / STUDENT_NOTEBOOK, 4)
    code = [c for c in teacher.cells if c.cell_type == "code"]
    k = next(i for i, c in enumerate(code) if c.source.startswith(STUDENT_FUNCTION))
    solution = "\n".join(line for line in code[k].source.split("\n")
                         if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)
    status = bh.open_notebook(page, lab, f"student/{STUDENT_NOTEBOOK}")
    cells = page.locator(".jp-NotebookPanel .jp-CodeCell")
    exercise, check = cells.nth(k), cells.nth(k + 1)
    expect(exercise.locator(".jp-InputArea-editor")).to_contain_text("raise NotImplementedError")

    page.locator(".lm-MenuBar-item", has_text="Run").click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
    feedback = check.locator(".jp-OutputArea-output")
    expect(feedback).to_contain_text("Not yet: `episode` still raises NotImplementedError",
                                     timeout=LONG_S * 1000)
    expect(status).to_have_text(bh.KERNEL_IDLE, timeout=LONG_S * 1000)
    shown = feedback.inner_text()
    assert "Traceback" not in shown and "NotYet" not in shown, shown
    assert len(shown.strip().splitlines()) == 1, f"more than one line of feedback: {shown!r}"
    assert cells.nth(k + 2).locator(".jp-InputPrompt").inner_text().strip() in ("[ ]:", ""), (
        "Run All went on past the failed check")

    exercise.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(solution)
    expect(exercise.locator(".jp-InputArea-editor")).not_to_contain_text("NotImplementedError")
    bh.run_cell(page, exercise, status)
    bh.run_cell(page, check, status)
    expect(feedback).to_have_count(1)
    expect(feedback).to_contain_text("Correct: 4-way 2-shot episodes")
    assert bh.page_problems(page) == []
