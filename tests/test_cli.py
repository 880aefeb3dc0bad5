import json
import subprocess
import sys

import pytest

from mlkit.tools import bench
from mlkit.tools.cli import main


def mlkit(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "mlkit", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("ck") / "maml.pt"
    r = mlkit("train", "--task", "sinusoid", "--algo", "maml", "--iterations", "50",
              "--out", str(out), "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "saved" in r.stdout
    return out


def test_train_and_evaluate_json(trained):
    r = mlkit("evaluate", str(trained), "--shots", "5", "--steps", "3", "--tasks", "20", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["mse"]) == {"0", "1", "2", "3"}
    assert out["protocol"]["shots"] == 5 and out["protocol"]["tasks"] == 20
    assert "python -m mlkit train" in out["checkpoint"]["command"]


def test_evaluate_table(trained):
    r = mlkit("evaluate", str(trained), "--shots", "5", "--steps", "2", "--tasks", "10")
    assert r.returncode == 0 and "95% CI" in r.stdout


@pytest.mark.parametrize("args, needle", [
    (["train", "--algo", "nope", "--out", "x.pt"], "--algo"),
    (["train", "--iterations", "-3", "--out", "x.pt"], "--iterations"),
    (["train", "--inner-lr", "abc", "--out", "x.pt"], "--inner-lr"),
    (["train", "--iterations", "5"], "--out"),
    (["evaluate", "does-not-exist.pt"], "does-not-exist.pt"),
    (["evaluate", "CHECKPOINT", "--shots", "0"], "--shots"),
    (["evaluate", "CHECKPOINT", "--ways", "5"], "--ways"),
    (["evaluate", "CHECKPOINT", "--task", "glyphs"], "--task"),
    (["bench", "--rounds", "0"], "--rounds"),
    (["bench", "--only", "nope"], "--only"),
    (["train", "--ways", "5", "--out", "x.pt"], "--ways"),
    (["train", "--task", "glyphs", "--algo", "protonet", "--inner-lr", "0.1", "--out", "x.pt"],
     "--inner-lr"),
    (["train", "--algo", "protonet", "--out", "x.pt"], "protonet"),
    (["train", "--no-adapt-batch-norm", "--out", "x.pt"], "--no-adapt-batch-norm"),
    (["train", "--task", "glyphs", "--algo", "protonet", "--no-adapt-batch-norm", "--out",
      "x.pt"], "--no-adapt-batch-norm"),
    (["train", "--resume", "does-not-exist.pt"], "does-not-exist.pt"),
    (["fly"], "fly"),
    ([], "command"),
])
def test_bad_arguments_exit_2_with_one_line(trained, args, needle, capsys):
    args = [str(trained) if a == "CHECKPOINT" else a for a in args]
    assert main(args) == 2  # in-process: an exception here would fail the test
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines


def test_bad_argument_in_a_real_process_has_no_traceback():
    r = mlkit("train", "--shots", "-1", "--out", "x.pt")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "mlkit: error: argument --shots: --shots must be an integer >= 1, got '-1'"


def test_bench_json():
    r = mlkit("bench", "--rounds", "1", "--iterations", "2", "--only", "sinusoid", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["protocol"]["rounds"] == 1 and "images" not in out
    assert out["protocol"]["cpu"] == bench.processor_name() != ""
    assert out["sinusoid"]["iterations_per_round"] == 2
    for algo in ("maml", "fomaml"):
        result = out["sinusoid"]["results"][algo]
        assert result["kit_ms"] > 0 and result["loop_ms"] > 0
        assert result["ratio"] == pytest.approx(result["loop_ms"] / result["kit_ms"])
        low, high = result["ratio_range"]
        assert 0 < low <= high


def test_bench_ratio_range_is_the_spread_of_single_rounds(monkeypatch):
    rounds = {"kit": [1.0, 2.0, 4.0], "loop": [3.0, 3.0, 3.0]}  # ms in each of 3 rounds
    monkeypatch.setattr(bench, "round_times", lambda *args: rounds)
    out = bench.compare(None, None, 3, 1, None)
    # medians 2 and 3; the rounds' own ratios are 3/1, 3/2 and 3/4
    assert out["kit_ms"] == 2.0 and out["loop_ms"] == 3.0 and out["ratio"] == 1.5
    assert out["ratio_range"] == [0.75, 3.0]


def test_evaluate_tests_a_glyph_model_with_at_least_its_training_steps(tmp_path):
    """Without --steps a glyph MAML is tested as Finn et al. test Omniglot: 3 steps, or as
    many as it trained with if more (their 20-way model: 5)."""
    from mlkit import Conv4, make_learner, save_checkpoint
    for inner_steps, expected in ((1, 3), (5, 5)):
        learner = make_learner("maml", Conv4(ways=5, pool=False), loss="cross_entropy",
                               inner_steps=inner_steps)
        path = save_checkpoint(tmp_path / f"m{inner_steps}.pt", learner,
                               {"task": "glyphs", "algo": "maml", "iterations": 0})
        r = mlkit("evaluate", str(path), "--tasks", "2", "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["protocol"]["steps"] == expected
        assert set(out["accuracy"]) == {str(s) for s in range(expected + 1)}


def test_evaluate_on_the_alphabets_a_glyph_model_trained_on(tmp_path, capsys):
    """`evaluate --split background` tests on the training alphabets (upright), so a learner
    can measure the gap to the held-out ones; Omniglot's small sets still need --data."""
    from mlkit import Conv4, make_learner, save_checkpoint
    from mlkit.data import load_glyphs
    learner = make_learner("protonet", Conv4(None, hidden=8), "cross_entropy")
    path = str(save_checkpoint(tmp_path / "p.pt", learner, {"task": "glyphs"}))
    counts = {}
    for split in ("background", "evaluation"):
        assert main(["evaluate", path, "--split", split, "--ways", "3", "--tasks", "2",
                     "--json"]) == 0
        protocol = json.loads(capsys.readouterr().out)["protocol"]
        assert protocol["split"] == split and protocol["rotations"] is False
        counts[split] = protocol["classes"]
    assert counts == {s: len(load_glyphs(s)) for s in counts}
    assert counts["background"] != counts["evaluation"]
    assert main(["evaluate", path, "--split", "background_small1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--split background_small1 needs --data" in err and "background" in err
    assert len(err.splitlines()) == 1


def test_train_without_batch_norm_adaptation_keeps_it_in_the_checkpoint(tmp_path, capsys):
    """--no-adapt-batch-norm (Finn et al.'s inner loop) is stored in the learner and in the
    command that rebuilds the run, and a resumed run keeps it."""
    from mlkit import load_checkpoint
    out = tmp_path / "frozen.pt"
    assert main(["train", "--task", "glyphs", "--ways", "3", "--meta-batch", "2",
                 "--iterations", "2", "--no-adapt-batch-norm", "--out", str(out)]) == 0
    learner, meta = load_checkpoint(out)
    assert learner.adapt_batch_norm is False and "--no-adapt-batch-norm" in meta["command"]
    assert learner.adapted_names() == [f"blocks.{i}.0.weight" for i in range(4)] + [
        "head.weight", "head.bias"]  # blocks.i.1 is batch norm
    assert main(["train", "--resume", str(out), "--iterations", "3"]) == 0
    learner, meta = load_checkpoint(out)
    assert learner.adapt_batch_norm is False and meta["iterations"] == 3
    assert "--no-adapt-batch-norm" in meta["command"]
    r = mlkit("evaluate", str(out), "--tasks", "2", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["protocol"]["inner_update"] == (
        "SGD on the support set (batch norm not adapted), lr 0.4")
