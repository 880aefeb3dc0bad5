"""The README's numbers come from its commands: one of them recomputed end to end."""
import json
import re
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_the_paper_comparison_row_is_what_the_evaluate_command_prints():
    """The README's like-for-like row for `sinusoid_maml_paper` (K = 5, 1 / 5 / 10 steps),
    recomputed with the command the README gives, in a real process (a few seconds)."""
    row = next(line for line in README.splitlines()
               if line.startswith("| MAML as in the paper") and "paper (figure 3)" not in line
               and line.count("/") >= 4)
    shown = re.findall(r"(\d+\.\d+) ± (\d+\.\d+)", row.split("|")[3])
    assert len(shown) == 3, row
    command = "python -m mlkit evaluate data/checkpoints/sinusoid_maml_paper.pt --shots 5 " \
              "--steps 10 --tasks 1000 --json"
    assert command in README
    out = subprocess.run([sys.executable, "-m", "mlkit", *command.split()[3:]],
                         capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    mse = json.loads(out.stdout)["mse"]
    for (mean, ci), step in zip(shown, ("1", "5", "10")):
        assert f"{mse[step]['mean']:.2f}" == mean and f"{mse[step]['ci95']:.2f}" == ci, step


def test_every_notebook_and_screenshot_the_readme_names_exists():
    root = Path(__file__).resolve().parent.parent
    for name in re.findall(r"`(\d\d_\w+)`", README):
        assert (root / "notebooks" / f"{name}.ipynb").is_file(), name
    for path in re.findall(r"\]\((docs/[^)]+)\)", README):
        assert (root / path).is_file(), path
    assert len(list((root / "notebooks").glob("*.ipynb"))) == len(
        set(re.findall(r"`(\d\d_\w+)`", README)))
