"""Plant each bug of ``tests/mutations.py`` in a copy of the kit and check that its tests fail.

A test suite proves something only if it fails when the code is wrong. Each bug here is one
small patch; the copy of the kit is imported instead of the installed one (PYTHONPATH comes
before the editable install), and only the tests the catalogue names are run.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mutations import BUGS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def copy_of_the_kit(tmp_path_factory):
    """mlkit/ and tests/ copied, data/ linked (read-only use), pyproject for pytest's settings."""
    root = tmp_path_factory.mktemp("mutant")
    shutil.copytree(ROOT / "mlkit", root / "mlkit",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", root / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "data").symlink_to(ROOT / "data")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def run_tests(root, tests):
    env = {**os.environ, "PYTHONPATH": str(root), "CI": ""}
    return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                           "-o", "addopts=", *tests], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)


def test_the_copy_is_what_the_tests_import(copy_of_the_kit):
    probe = subprocess.run([sys.executable, "-c", "import mlkit; print(mlkit.__file__)"],
                           cwd=copy_of_the_kit, env={**os.environ,
                                                     "PYTHONPATH": str(copy_of_the_kit)},
                           capture_output=True, text=True)
    assert probe.stdout.strip().startswith(str(copy_of_the_kit)), probe


def test_the_catalogue_is_large_and_each_bug_names_its_tests():
    assert len(BUGS) >= 15
    assert len({b.name for b in BUGS}) == len(BUGS)
    for bug in BUGS:
        source = (ROOT / bug.file).read_text()
        assert source.count(bug.old) == 1, f"{bug.name}: the patched text must occur once"
        assert bug.tests and all(t.startswith("tests/") for t in bug.tests)


@pytest.mark.parametrize("bug", BUGS, ids=[b.name[:60] for b in BUGS])
def test_the_bug_is_caught(copy_of_the_kit, bug):
    path = copy_of_the_kit / bug.file
    original = path.read_text()
    try:
        path.write_text(original.replace(bug.old, bug.new))
        result = run_tests(copy_of_the_kit, bug.tests)
    finally:
        path.write_text(original)
    assert result.returncode == 1, (  # 1: tests ran and some failed (not 2-5: broken runs)
        f"the bug survived ({bug.name}): {' '.join(bug.tests)} returned "
        f"{result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
