"""`python -m mlkit doctor`: OK in this environment, and names each problem with its fix."""
import shutil
import sys

import pytest

from mlkit.tools import cli, doctor
from mlkit.tools.doctor import DATA_DIR, Check, run_doctor


def report(capsys, monkeypatch, data_dir):
    """run_doctor() with ``data_dir`` as the kit's data folder and without the kernel check
    (which starts a Python): (exit code, lines printed). The module is restored afterwards."""
    with monkeypatch.context() as m:
        m.setattr(doctor, "DATA_DIR", data_dir)
        m.setattr(doctor, "check_kernel", lambda: Check(True, "kernel not checked here"))
        capsys.readouterr()
        code = run_doctor()
        return code, capsys.readouterr().out.splitlines()


def problems(lines):
    return [line for line in lines if line.startswith("PROBLEM")]


def summary(count):
    return f"{count} problem(s) found." if count else "Everything looks fine."


@pytest.fixture
def data_copy(tmp_path):
    """A copy of the shipped data folder that a test may damage."""
    shutil.copytree(DATA_DIR / "checkpoints", tmp_path / "checkpoints")
    shutil.copy(DATA_DIR / "glyphs_28.npz", tmp_path / "glyphs_28.npz")
    shutil.copy(DATA_DIR / "README.md", tmp_path / "README.md")  # the rebuild commands
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
    for name in doctor.SHIPPED:  # every shipped checkpoint is checked, once
        assert sum(f"checkpoint {name}.pt:" in line for line in checks) == 1, (name, text)
    assert "this same Python" in text  # the tests run in the venv whose kernel the notebooks use
    assert lines[-1] == "Everything looks fine."


@pytest.mark.parametrize("ipywidgets, lab_widgets", [("8.1.9", "1.1.7"), ("7.8.5", "3.0.17")])
def test_widget_version_mismatch_is_a_problem_with_the_fix(monkeypatch, capsys, data_copy,
                                                           ipywidgets, lab_widgets):
    # what the doctor says with the installed versions (test_cli_doctor_healthy_environment
    # checks that this is nothing); the mismatch must add exactly one problem to it
    code, before = report(capsys, monkeypatch, data_copy)
    real = doctor.installed_version
    fake = {"ipywidgets": ipywidgets, "jupyterlab_widgets": lab_widgets}
    monkeypatch.setattr(doctor, "installed_version", lambda name: fake.get(name) or real(name))
    code, lines = report(capsys, monkeypatch, data_copy)
    assert code == 1
    [line] = [l for l in lines if "ipywidgets" in l]
    assert line.startswith("PROBLEM")
    assert f"ipywidgets {ipywidgets} with jupyterlab_widgets {lab_widgets}" in line
    assert "model not found" in line and "fix: pip install -r requirements.txt" in line
    assert problems(lines) == [line] + [l for l in problems(before) if "ipywidgets" not in l]
    assert lines[-1] == summary(len(problems(before)) + 1)


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


def test_damaged_and_missing_data_files_are_named_with_their_rebuild_command(
        data_copy, capsys, monkeypatch):
    def check_lines():  # each data check on the copy (the fixes name the copy's files)
        return [c.line() for c in [*doctor.check_checkpoints(data_copy),
                                   doctor.check_glyphs(data_copy)]]

    # problems of the shipped data itself (none when healthy, see the test above) stay as
    # they are; the damage below must add exactly three
    before_checks = problems(check_lines())
    before_code, before_report = report(capsys, monkeypatch, data_copy)
    ck = data_copy / "checkpoints"
    good = ck / "sinusoid_maml.pt"
    good.write_bytes(good.read_bytes()[:300])            # truncated
    (ck / "sinusoid_anil.pt").unlink()                    # missing
    (data_copy / "glyphs_28.npz").write_bytes(b"not a zip file")
    lines = check_lines()
    assert all(l in lines for l in before_checks)
    new = [l for l in problems(lines) if l not in before_checks]
    assert len(new) == 3, lines
    damaged, = [l for l in new if "sinusoid_maml.pt" in l]
    # the fix is the command that data/README.md lists for the file
    assert "damaged" in damaged and "fix: python -m mlkit train --task sinusoid" in damaged
    assert damaged.endswith("--out data/checkpoints/sinusoid_maml.pt")
    missing, = [l for l in new if "sinusoid_anil.pt" in l]
    assert "missing" in missing and "--algo anil " in missing
    assert missing.endswith("--out data/checkpoints/sinusoid_anil.pt")
    glyphs, = [l for l in new if "glyphs_28.npz" in l]
    assert "damaged" in glyphs and "fix: python -m mlkit make-glyphs --out" in glyphs
    oks = [l for l in lines if l.startswith("OK") and "checkpoint" in l]
    intact = len(list(ck.glob("*.pt"))) - 1 - len(before_checks)  # all but the truncated one
    assert len(oks) == intact and all("rebuild: python -m mlkit train" in l for l in oks)
    # the whole doctor, with the damaged copy as the kit's data folder: the same three
    # problems more, exit code 1
    code, after_report = report(capsys, monkeypatch, data_copy)
    assert code == 1
    new = [l for l in problems(after_report) if l not in problems(before_report)]
    assert len(new) == 3, after_report
    for name in ("sinusoid_maml.pt", "sinusoid_anil.pt", "glyphs_28.npz"):
        assert sum(name in l for l in new) == 1, (name, after_report)
    assert after_report[-1] == summary(len(problems(before_report)) + 3)


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


def test_data_readme_lists_the_command_stored_in_each_shipped_checkpoint():
    """data/README.md and the checkpoints agree: the command a user copies rebuilds the file."""
    from mlkit.checkpoints import read_checkpoint
    readme = (doctor.DATA_DIR / "README.md").read_text()
    for name in doctor.SHIPPED:
        command = read_checkpoint(doctor.DATA_DIR / "checkpoints" / f"{name}.pt")["meta"]["command"]
        assert f"`{command}`" in readme, (name, command)
