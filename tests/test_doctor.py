"""`python -m mlkit doctor`: OK in this environment, and names each problem with its fix."""
import io
import shutil
import sys

import pytest

from mlkit import cli, doctor
from mlkit.doctor import DATA_DIR, run_doctor


def report(**kwargs):
    out = io.StringIO()
    code = run_doctor(out=out, **kwargs)
    return code, out.getvalue().splitlines()


@pytest.fixture
def data_copy(tmp_path):
    """A copy of the shipped data folder that a test may damage."""
    shutil.copytree(DATA_DIR / "checkpoints", tmp_path / "checkpoints")
    shutil.copy(DATA_DIR / "glyphs_28.npz", tmp_path / "glyphs_28.npz")
    return tmp_path


def test_cli_doctor_healthy_environment(capsys):
    code = cli.main(["doctor"])  # as `python -m mlkit doctor`
    text = capsys.readouterr().out
    assert code == 0, text
    lines = text.splitlines()
    checks = lines[:-1]
    assert checks and all(line.startswith("OK ") for line in checks), text
    for needle in ("Python", "torch", "ipywidgets", "jupyterlab_widgets", "jupyterlab",
                   "jupyterlab-manager", "sinusoid_maml.pt", "glyphs_28.npz", "kernel imports mlkit"):
        assert needle in text, needle
    assert "this same Python" in text  # the tests run in the venv whose kernel the notebooks use
    assert lines[-1] == "Everything looks fine."


@pytest.mark.parametrize("ipywidgets, lab_widgets", [("8.1.9", "1.1.7"), ("7.8.5", "3.0.17")])
def test_widget_version_mismatch_is_a_problem_with_the_fix(monkeypatch, ipywidgets, lab_widgets):
    real = doctor.installed_version
    fake = {"ipywidgets": ipywidgets, "jupyterlab_widgets": lab_widgets}
    monkeypatch.setattr(doctor, "installed_version", lambda name: fake.get(name) or real(name))
    code, lines = report(kernel=False)
    assert code == 1
    [line] = [l for l in lines if "ipywidgets" in l]
    assert line.startswith("PROBLEM")
    assert f"ipywidgets {ipywidgets} with jupyterlab_widgets {lab_widgets}" in line
    assert "model not found" in line and "fix: pip install -r requirements.txt" in line
    assert lines[-1] == "1 problem(s) found."


def test_missing_packages_and_old_jupyterlab(monkeypatch):
    fake = {"ipywidgets": None, "jupyterlab_widgets": "3.0.17", "jupyterlab": "3.6.8"}
    monkeypatch.setattr(doctor, "installed_version", lambda name: fake.get(name, "2.13.0"))
    assert "ipywidgets not installed" in doctor.check_widgets().line()
    line = doctor.check_jupyterlab().line()
    assert line.startswith("PROBLEM") and "3.6.8" in line and ">= 4" in line


def test_missing_lab_extension(tmp_path):
    line = doctor.check_labextension(dirs=[tmp_path]).line()
    assert line.startswith("PROBLEM") and "@jupyter-widgets/jupyterlab-manager" in line
    assert "fix: pip install -r requirements.txt" in line


def test_damaged_and_missing_data_files_are_named_with_their_rebuild_command(data_copy):
    ck = data_copy / "checkpoints"
    good = ck / "sinusoid_maml.pt"
    good.write_bytes(good.read_bytes()[:300])            # truncated
    (ck / "sinusoid_anil.pt").unlink()                    # missing
    (data_copy / "glyphs_28.npz").write_bytes(b"not a zip file")
    code, lines = report(data_dir=data_copy, kernel=False)
    assert code == 1
    problems = [l for l in lines if l.startswith("PROBLEM")]
    assert len(problems) == 3, lines
    damaged, = [l for l in problems if "sinusoid_maml.pt" in l]
    assert "damaged" in damaged and f"--algo maml --out {good}" in damaged
    missing, = [l for l in problems if "sinusoid_anil.pt" in l]
    assert "missing" in missing and "fix: python -m mlkit train --task sinusoid --algo anil" in missing
    glyphs, = [l for l in problems if "glyphs_28.npz" in l]
    assert "damaged" in glyphs and "fix: python -m mlkit make-glyphs --out" in glyphs
    oks = [l for l in lines if l.startswith("OK") and "checkpoint" in l]
    intact = len(list(ck.glob("*.pt"))) - 1  # all but the truncated one
    assert len(oks) == intact and all("rebuild: python -m mlkit train" in l for l in oks)


def test_missing_glyph_file_and_missing_glyph_module(data_copy, monkeypatch):
    (data_copy / "glyphs_28.npz").unlink()
    line = doctor.check_glyphs(data_copy).line()
    assert line.startswith("PROBLEM") and "not found" in line and "make-glyphs" in line
    monkeypatch.setitem(sys.modules, "mlkit.data", None)  # as if mlkit/data.py were absent
    line = doctor.check_glyphs(DATA_DIR).line()
    assert line.startswith("PROBLEM") and "mlkit.data" in line


def test_kernel_that_cannot_import_mlkit(tmp_path):
    python = tmp_path / "python"  # a "kernel" whose Python has no mlkit
    python.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    python.chmod(0o755)
    line = doctor.check_kernel(str(python)).line()
    assert line.startswith("PROBLEM") and "cannot import mlkit" in line
    assert f"{python} -m pip install -e {DATA_DIR.parent}" in line and "ipykernel install" in line
    line = doctor.check_kernel(str(tmp_path / "nowhere")).line()
    assert line.startswith("PROBLEM") and "does not run" in line
