"""The kit never crashes on a learner: Ctrl-C, damaged files, divergence; and same seed, same numbers.

Subprocesses run ``python -m mlkit`` as a learner would; the rest calls ``mlkit.tools.cli.main``
in-process (the same code path, without paying for a fresh Python each time).
"""
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mlkit import MLP, SinusoidFamily, load_checkpoint, make_learner, meta_train
from mlkit.checkpoints import CHECKPOINT_DIR, CheckpointError
from mlkit.tools import cli

SHIPPED = CHECKPOINT_DIR / "sinusoid_maml.pt"
GOOD = SHIPPED.read_bytes()


STARTED = []


def start_mlkit(*args, stderr):
    """Start ``python -m mlkit ARGS`` with Ctrl-C behaving as in a terminal (SIGINT ->
    KeyboardInterrupt, even if this test runner was started with SIGINT ignored)."""
    proc = subprocess.Popen([sys.executable, "-m", "mlkit", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=stderr,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    STARTED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _stop_leftover_processes():
    """A failed test must not leave a million-iteration training running."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_cli(capsys, *args):
    """``python -m mlkit ARGS`` in this process: (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def finite(learner):
    return all(torch.isfinite(p).all() for p in learner.parameters())


# ----------------------------------------------------------------------------- interruption
def test_ctrl_c_during_cli_training_keeps_a_loadable_checkpoint(tmp_path):
    out, log = tmp_path / "c.pt", tmp_path / "stderr.txt"
    with open(log, "wb") as err:
        proc = start_mlkit("train", "--task", "sinusoid", "--algo", "maml", "--iterations", 1000000,
                           "--out", out, stderr=err)
        deadline = time.time() + 60
        # wait until the progress bar shows finished iterations, then press Ctrl-C
        while not re.search(r"\| *[1-9]\d*/1000000", log.read_text(errors="replace")):
            assert proc.poll() is None and time.time() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout = proc.communicate(timeout=60)[0].decode()
    stderr = log.read_text(errors="replace")
    assert "Traceback" not in stderr + stdout
    assert proc.returncode == 0, stderr
    assert "Interrupted after" in stdout and "(interrupted: continue it with --resume)" in stdout
    learner, meta = load_checkpoint(out)
    assert meta["stopped"] == "interrupted"
    assert 0 < meta["iterations"] < 1000000 and len(meta["loss_curve"]) > 0
    assert finite(learner)
    assert not list(tmp_path.glob("*.tmp"))


def _ctrl_c_runs(folder, triggers, seed):
    """Start one short training per trigger, each over a copy of an existing checkpoint, and
    press Ctrl-C when its trigger fires: "tmp" as soon as the checkpoint's temporary file
    appears, ("trained", s) s seconds after the progress bar appears. Checks the files."""
    runs = []
    for i, trigger in enumerate(triggers):
        (folder / f"run{i}").mkdir()
        run = {"folder": folder / f"run{i}", "trigger": trigger, "sent": False}
        (run["folder"] / "c.pt").write_bytes(GOOD)
        run["log"] = run["folder"] / "stderr.txt"
        with open(run["log"], "wb") as err:
            run["proc"] = start_mlkit("train", "--iterations", 50, "--out", run["folder"] / "c.pt",
                                      stderr=err)
        runs.append(run)
    deadline = time.time() + 90
    while any(r["proc"].poll() is None for r in runs):
        assert time.time() < deadline, f"trainings did not end (seed {seed})"
        for r in runs:
            if r["sent"] or r["proc"].poll() is not None:
                continue
            if r["trigger"] == "tmp":
                fire = any(p.suffix == ".tmp" for p in r["folder"].iterdir())
            else:
                if "t_train" not in r and "meta-train" in r["log"].read_text(errors="replace"):
                    r["t_train"] = time.time()
                fire = "t_train" in r and time.time() - r["t_train"] >= r["trigger"][1]
            if fire:
                r["proc"].send_signal(signal.SIGINT)
                r["sent"] = True
        time.sleep(0.0005)
    for r in runs:
        r["proc"].communicate()
        path, stderr = r["folder"] / "c.pt", r["log"].read_text(errors="replace")
        why = f"trigger {r['trigger']}, seed {seed}, exit {r['proc'].returncode}: {stderr[-500:]}"
        assert not list(r["folder"].glob("*.tmp")), why
        assert path.is_file(), why  # replaced atomically: never deleted
        if path.read_bytes() != GOOD:
            learner, meta = load_checkpoint(path)  # a complete new one
            assert meta["stopped"] in ("finished", "interrupted") and finite(learner), why
            assert str(path) in meta["command"], why
        else:  # stopped before the new file was complete: says so, exit 130, no traceback
            assert r["sent"] and r["proc"].returncode == 130, why
            assert stderr.rstrip().endswith("mlkit: interrupted") and "Traceback" not in stderr, why
    return runs


def test_ctrl_c_at_any_moment_never_leaves_a_partial_checkpoint(tmp_path):
    """Three short trainings write over an existing checkpoint; each gets a real Ctrl-C at
    another moment: while the checkpoint's temporary file exists (one), at random times during
    training, evaluation or saving (two). Afterwards each file is the old one or a complete new
    one, and no temporary file remains."""
    seed = 20240601  # fixed; the moments are in any failure message
    rng = random.Random(seed)
    runs = _ctrl_c_runs(tmp_path, ["tmp", *(("trained", rng.uniform(0, 0.6)) for _ in range(2))],
                        seed)
    for attempt in range(3):  # saving takes milliseconds: a busy machine can miss the moment
        if runs[0]["sent"]:
            break
        (tmp_path / f"again{attempt}").mkdir()
        runs = _ctrl_c_runs(tmp_path / f"again{attempt}", ["tmp"], seed)
    assert runs[0]["sent"], "the checkpoint's temporary file was never seen"


def _interrupt_inside_torch_save(real_save):
    def save(obj, f, *args, **kwargs):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[:len(buf.getvalue()) // 2])  # half the file is on disk
        raise KeyboardInterrupt
    return save


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("where", ["torch.save", "os.fsync", "os.replace"])
def test_ctrl_c_at_each_step_of_saving_keeps_the_old_checkpoint(where, tmp_path, capsys,
                                                                monkeypatch):
    """The same, deterministic: Ctrl-C (KeyboardInterrupt) raised at each step of an atomic save."""
    out = tmp_path / "c.pt"
    out.write_bytes(GOOD)
    module, name = where.split(".")
    target = {"torch": torch, "os": os}[module]
    fake = _interrupt_inside_torch_save(torch.save) if where == "torch.save" else _interrupt
    monkeypatch.setattr(target, name, fake)
    code, stdout, stderr = run_cli(capsys, "train", "--iterations", 3, "--out", out)
    monkeypatch.undo()
    assert code == 130 and stderr.rstrip().endswith("mlkit: interrupted")
    assert out.read_bytes() == GOOD and os.listdir(tmp_path) == ["c.pt"]


# ----------------------------------------------------------------------------- damaged files
def _payload():
    return torch.load(SHIPPED, weights_only=True)


def _torch_bytes(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _edited(edit):
    payload = _payload()
    edit(payload)
    return _torch_bytes(payload)


def _npz_bytes():
    buf = io.BytesIO()
    np.savez(buf, weights=np.zeros(3))
    return buf.getvalue()


BAD_FILES = {
    # kind: truncated
    "truncated-1-byte": lambda: GOOD[:1],
    "truncated-100-bytes": lambda: GOOD[:100],
    "truncated-half": lambda: GOOD[:len(GOOD) // 2],
    "truncated-last-byte": lambda: GOOD[:-1],
    # kind: random bytes / corrupted
    "random-bytes-5k": lambda: random.Random(1).randbytes(5000),
    "random-bytes-20": lambda: random.Random(2).randbytes(20),
    "zeroed-header": lambda: GOOD[:100] + bytes(200) + GOOD[300:],
    # kind: foreign files
    "foreign-torch-tensor": lambda: _torch_bytes(torch.zeros(3)),
    "foreign-torch-dict": lambda: _torch_bytes({"weights": torch.zeros(3)}),
    "foreign-torch-module": lambda: _torch_bytes(MLP()),  # a pickled nn.Module: refused, never run
    "foreign-npz": _npz_bytes,
    "foreign-text": lambda: b"hello, I am not a checkpoint\n",
    # kind: another model size or a broken model description
    "weights-of-another-size": lambda: _edited(lambda p: p["model"].update(sizes=[1, 20, 20, 1])),
    "unknown-model": lambda: _edited(lambda p: p["model"].update(model="rnn")),
    "unknown-algorithm": lambda: _edited(lambda p: p["learner"].update(algo="xyz")),
    "no-learner-description": lambda: _edited(lambda p: p.pop("learner")),
    "negative-inner-lr": lambda: _edited(lambda p: p["learner"].update(inner_lr=-1.0)),
    # kind: empty
    "empty": lambda: b"",
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_damaged_checkpoint_gives_one_line_naming_the_file(kind, tmp_path, capsys):
    path = tmp_path / f"{kind}.pt"
    path.write_bytes(BAD_FILES[kind]())
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_checkpoint(path)
    code, out, err = run_cli(capsys, "evaluate", path, "--tasks", 5)
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("mlkit: error:") and str(path) in line


def test_checkpoint_of_another_task_is_refused(tmp_path, capsys):
    path = tmp_path / "glyph-task.pt"
    path.write_bytes(_edited(lambda p: p["meta"].update(task="glyphs")))
    with pytest.raises(CheckpointError, match="glyphs"):
        load_checkpoint(path, task="sinusoid")
    code, out, err = run_cli(capsys, "evaluate", path, "--task", "sinusoid", "--tasks", 5)
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert "--task sinusoid" in line and "'glyphs'" in line


def test_missing_checkpoint_and_directory(tmp_path, capsys):
    for path in (tmp_path / "nothing.pt", tmp_path):
        code, out, err = run_cli(capsys, "evaluate", path)
        assert code == 2 and len(err.strip().splitlines()) == 1 and str(path) in err


def test_damaged_checkpoints_end_to_end_without_traceback(tmp_path):
    """The same through a real ``python -m mlkit`` process: stderr is one line, no traceback."""
    path = tmp_path / "truncated.pt"
    path.write_bytes(BAD_FILES["truncated-half"]())
    proc = start_mlkit("evaluate", path, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and out == b""
    [line] = err.decode().strip().splitlines()
    assert str(path) in line and "damaged" in line and "Traceback" not in line


# ----------------------------------------------------------------------------- determinism
def test_same_seed_same_tasks():
    family = SinusoidFamily()
    a, b, c = (family.sample(7, 5, 3, generator=torch.Generator().manual_seed(s)) for s in (4, 4, 5))
    for name in ("x_support", "y_support", "x_query", "y_query"):
        assert torch.equal(getattr(a, name), getattr(b, name))
        assert not torch.equal(getattr(a, name), getattr(c, name))
    assert torch.equal(a.info["amplitude"], b.info["amplitude"])
    assert torch.equal(a.info["phase"], b.info["phase"])


def test_same_seed_same_training_history_and_evaluation(tmp_path, capsys):
    """Train twice with seed 3: in a fresh ``python -m mlkit`` process and in this one (whose
    random state earlier tests have moved): same weights, same loss curve, same evaluation."""
    outs = [tmp_path / "a.pt", tmp_path / "b.pt"]
    proc = start_mlkit("train", "--iterations", 30, "--seed", 3, "--out", outs[0],
                       stderr=subprocess.DEVNULL)
    assert run_cli(capsys, "train", "--iterations", 30, "--seed", 3, "--out", outs[1])[0] == 0
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    (la, ma), (lb, mb) = (load_checkpoint(out) for out in outs)
    assert ma["iterations"] == mb["iterations"] == 30
    assert ma["loss_curve"] == mb["loss_curve"]
    assert ma["metrics"] == mb["metrics"]
    sa, sb = la.state_dict(), lb.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # another seed, another history
    run_cli(capsys, "train", "--iterations", 30, "--seed", 4, "--out", tmp_path / "c.pt")
    assert load_checkpoint(tmp_path / "c.pt")[1]["loss_curve"] != ma["loss_curve"]

    def evaluation(path):
        code, out, _ = run_cli(capsys, "evaluate", path, "--json", "--tasks", 40, "--steps", 2)
        assert code == 0
        result = json.loads(out)
        del result["checkpoint"]  # its path and the command that made it (with --out) differ
        assert result.pop("seconds") >= 0  # the time it took differs from run to run
        return result

    first = evaluation(outs[0])
    assert first == evaluation(outs[0]) == evaluation(outs[1])
    assert first["mse"]["2"]["mean"] > 0


# ----------------------------------------------------------------------------- divergence
def test_diverging_cli_training_stops_with_a_message_and_a_finite_model(tmp_path, capsys):
    out = tmp_path / "d.pt"
    with pytest.warns(RuntimeWarning, match="stopped at iteration .*smaller inner_lr"):
        code, stdout, stderr = run_cli(capsys, "train", "--inner-lr", "1e6", "--iterations", 50,
                                       "--out", out)
    assert code == 1
    assert "stopped: the loss diverged" in stdout and "Traceback" not in stderr
    learner, meta = load_checkpoint(out)
    assert meta["stopped"] == "diverged" and meta["iterations"] < 50
    assert finite(learner)


def test_diverging_meta_train_keeps_last_finite_model():
    torch.manual_seed(0)
    learner = make_learner("maml", MLP(), inner_lr=1e6)
    start = {k: v.clone() for k, v in learner.state_dict().items()}
    with pytest.warns(RuntimeWarning, match="the model is the last finite one"):
        history = meta_train(learner, SinusoidFamily(), 20, meta_batch=4, progress=False)
    assert history.stopped == "diverged" and history.iterations == 0  # the first step blows up
    assert finite(learner)
    assert all(torch.equal(start[k], v) for k, v in learner.state_dict().items())  # not updated
