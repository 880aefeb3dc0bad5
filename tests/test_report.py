"""The README's results tables (mlkit.tools.report): every cell is computed, and must equal
a direct meta_test of the checkpoint it names; the protocol states the settings used."""
import re

import pytest
import torch

from mlkit import MLP, SinusoidFamily, load_checkpoint, make_learner, meta_test, save_checkpoint
from mlkit.checkpoints import load_shipped
from mlkit.tools import report


def test_cell_mean_and_ci():
    assert report.cell({"mean": 0.5812, "ci95": 0.0421}) == "0.58 ± 0.04"
    assert report.cell({"mean": 0.5812, "ci95": 0.0421, "median": 0.3, "diverged": 0.0}) \
        == "0.58 ± 0.04"
    assert report.cell({"mean": 0.97125, "ci95": 0.00349}, scale=100, digits=1) == "97.1 ± 0.3"
    assert report.cell({"mean": 2.0, "ci95": 0.125}, digits=3) == "2.000 ± 0.125"


def test_cell_with_diverged_tasks():
    v = {"mean": 3.14159, "ci95": 1.5, "median": 0.4249, "diverged": 0.25}
    assert report.cell(v) == "3.14 ± 1.50 (median 0.42; 25.0% diverge)"
    v = {"mean": 0.612, "ci95": 0.0123, "median": 0.705, "diverged": 0.034}
    assert report.cell(v, scale=100, digits=1) == "61.2 ± 1.2 (median 70.5; 3.4% diverge)"


ROWS = {"sinusoid_pretrain": "pretrained", "sinusoid_metasgd": "Meta-SGD",
        "planted_lr002": "MAML with inner lr 0.02"}


@pytest.fixture
def planted(tmp_path, monkeypatch):
    """A MAML checkpoint with inner lr 0.02 in a temporary folder, and report's loader
    looking there before the shipped checkpoints."""
    torch.manual_seed(3)
    learner = make_learner("maml", MLP(), inner_lr=0.02, inner_steps=1)
    path = save_checkpoint(tmp_path / "planted_lr002.pt", learner,
                           {"task": "sinusoid", "algo": "maml", "iterations": 1234})

    def load(name, device="cpu"):
        mine = tmp_path / f"{name}.pt"
        return load_checkpoint(mine, device) if mine.is_file() else load_shipped(name, device)
    monkeypatch.setattr(report, "load_shipped", load)
    monkeypatch.setattr(report, "SINUSOID_ROWS", ROWS)
    monkeypatch.setattr(report, "PAPER_5_SHOT", {"sinusoid_pretrain": (2.41, 2.23, 2.19),
                                                 "planted_lr002": (0.67, 0.38, 0.35)})
    return path


def table_rows(text: str) -> dict:
    """checkpoint name -> cells of each markdown row that names a checkpoint in backticks."""
    out = {}
    for line in text.splitlines():
        m = re.search(r"`(\w+)`", line)
        if line.startswith("|") and m:
            out.setdefault(m.group(1), []).append([c.strip() for c in line.strip("|").split("|")])
    return out


def test_sinusoid_tables_equal_direct_meta_tests(planted):
    shots, steps, tasks, seed = (5, 10), (1, 10), 20, 777
    text = report.sinusoid_tables(shots=shots, steps=steps, tasks=tasks, seed=seed)
    rows = table_rows(text)
    assert set(rows) == set(ROWS)
    for name in ROWS:
        learner, meta = load_checkpoint(planted) if name == "planted_lr002" else load_shipped(name)
        main, *paper = rows[name]
        assert main[0] == f"{ROWS[name]} (`{name}`)"
        assert main[1] == f"{meta['iterations']:,}"
        expected = []
        for k in shots:
            r = meta_test(learner, SinusoidFamily(), k, max(steps), tasks, seed=seed)
            expected += [report.cell(r["mse"][str(s)]) for s in steps]
        assert main[2:] == expected, name
        # the comparison with the paper: K = 5 after 1 / 5 / 10 steps
        if name in report.PAPER_5_SHOT:
            r = meta_test(learner, SinusoidFamily(), 5, 10, tasks, seed=seed)
            assert paper[0][1] == " / ".join(map(str, report.PAPER_5_SHOT[name]))
            assert paper[0][2] == " / ".join(report.cell(r["mse"][s]) for s in ("1", "5", "10"))
        else:
            assert not paper
    # the numbers differ between checkpoints (not one result copied into every row)
    assert len({tuple(rows[n][0][2:]) for n in ROWS}) == len(ROWS)


def test_sinusoid_protocol_states_the_settings_used(planted):
    text = report.sinusoid_tables(shots=(5,), steps=(1, 10), tasks=20, seed=4)
    protocol = [line for line in text.splitlines() if line.startswith("MSE on")]
    assert len(protocol) == 1
    line = protocol[0]
    lrs = re.search(r"own inner lr \(([^)]*)\)", line).group(1).split(", ")
    # the planted checkpoint's 0.02, the pretrained one's 0.01, Meta-SGD's learned rates
    assert sorted(lrs) == sorted(["0.01", "0.02", "learned per-weight rates"])
    assert load_checkpoint(planted)[0].inner_lr == 0.02
    assert load_shipped("sinusoid_pretrain")[0].inner_lr == 0.01
    assert "mean over 20 fresh tasks (seed 4)" in line
    assert f"MSE on {SinusoidFamily.test_queries} held-out points" in line
    assert "A ~ U[0.1, 5.0]" in line and "x ~ U[-5.0, 5.0]" in line
    assert "| K=5, 1 step | K=5, 10 steps |" in text


@pytest.fixture
def only(tmp_path, monkeypatch):
    """Report's rows reduced to one first-order MAML checkpoint with inner lr 0.02."""
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "only.pt", make_learner("fomaml", MLP(), inner_lr=0.02),
                           {"task": "sinusoid", "iterations": 5})
    monkeypatch.setattr(report, "load_shipped", lambda name, device="cpu":
                        load_checkpoint(tmp_path / f"{name}.pt", device))
    monkeypatch.setattr(report, "SINUSOID_ROWS", {"only": "first-order MAML"})
    monkeypatch.setattr(report, "PAPER_5_SHOT", {})
    return path


def test_sinusoid_protocol_follows_the_checkpoints(only):
    """With only the planted checkpoint, 0.02 is the one inner lr the protocol names."""
    text = report.sinusoid_tables(shots=(5,), steps=(1,), tasks=10)
    assert "own inner lr (0.02)" in text and "0.01" not in text.split("\n\n")[1]
    assert "| first-order MAML (`only`) | 5 |" in text


def test_paper_comparison_when_the_table_stops_before_10_steps(only, monkeypatch):
    """The comparison needs K = 5 after 1, 5 and 10 steps, whatever steps the table shows."""
    monkeypatch.setattr(report, "PAPER_5_SHOT", {"only": (0.67, 0.38, 0.35)})
    text = report.sinusoid_tables(shots=(5,), steps=(1,), tasks=10, seed=3)
    r = meta_test(load_checkpoint(only)[0], SinusoidFamily(), 5, 10, 10, seed=3)
    paper = table_rows(text)["only"][1]
    assert paper[2] == " / ".join(report.cell(r["mse"][s]) for s in ("1", "5", "10"))
