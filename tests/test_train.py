"""Meta-training (mlkit/train.py): the loss falls, and a run stopped and continued (in memory,
through a checkpoint file, through ``python -m mlkit train --resume``, or after Ctrl-C)
equals one that never stopped."""
import subprocess
import sys

import pytest
import torch

from mlkit import MLP, History, SinusoidFamily, make_learner, meta_train
from mlkit.checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from mlkit.tools.cli import main
from mlkit.train import outer_lr_at

# a small, fast setting: 20 iterations of 4 tasks take well under a second
SETTING = dict(meta_batch=4, shots=5, queries=5, outer_lr=3e-3, seed=7, progress=False)


def fresh_learner(algo="maml", seed=0, **options):
    torch.manual_seed(seed)
    return make_learner(algo, MLP((1, 16, 16, 1)), **options)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def copy_of(learner):
    twin = fresh_learner(learner.name)
    twin.load_state_dict(learner.state_dict())
    return twin


def train(learner, iterations, history=None, **kwargs):
    return meta_train(learner, SinusoidFamily(), iterations, history=history,
                      **{**SETTING, **kwargs})


# ----------------------------------------------------------------------------- learning
def test_sinusoid_maml_loss_falls():
    torch.manual_seed(0)
    learner = make_learner("maml", MLP())  # the paper's 1-40-40-1 network
    history = meta_train(learner, SinusoidFamily(), 200, meta_batch=10, shots=10, queries=10,
                         outer_lr=1e-2, seed=0, progress=False)
    assert isinstance(history, History)
    assert history.iterations == len(history.losses) == 200 and history.stopped == "finished"
    assert all(isinstance(v, float) and v == v for v in history.losses)
    first, last = sum(history.losses[:30]) / 30, sum(history.losses[-30:]) / 30
    assert last < 0.7 * first, (first, last)  # measured: 3.56 -> 1.97
    assert history.seconds > 0 and history.optimizer_state is not None
    assert history.sampler_state is not None


def test_same_seed_same_run_and_another_seed_another():
    a, b, c = fresh_learner(), fresh_learner(), fresh_learner()
    ha, hb, hc = train(a, 10), train(b, 10), train(c, 10, seed=8)
    assert ha.losses == hb.losses and same_weights(a, b)
    assert ha.losses != hc.losses and not same_weights(a, c)


def test_callback_every_and_at_the_end():
    seen = []
    train(fresh_learner(), 10, callback=lambda h: seen.append(h.iterations), callback_every=4)
    assert seen == [4, 8, 10]


# ----------------------------------------------------------------------------- continuing
@pytest.mark.parametrize("algo", ["maml", "reptile", "metasgd"])
def test_continued_run_equals_an_uninterrupted_one(algo):
    """N iterations in one go == N/2, then the same History continued to N; the outer lr
    drops (at 7 and 15) fall on both sides of the break."""
    whole, half = fresh_learner(algo), fresh_learner(algo)
    assert same_weights(whole, half)
    h_whole = train(whole, 20, lr_drops=(7, 15))
    h = train(half, 10, lr_drops=(7, 15))
    assert h.iterations == 10 and h.losses == h_whole.losses[:10]
    assert not same_weights(whole, half)
    h2 = train(half, 20, history=h, lr_drops=(7, 15))
    assert h2 is h and h.iterations == 20 and h.stopped == "finished"
    assert h.losses == h_whole.losses
    assert same_weights(whole, half)


def test_continued_through_a_checkpoint_file_equals_an_uninterrupted_one(tmp_path):
    whole, half = fresh_learner(), fresh_learner()
    h_whole = train(whole, 20, lr_drops=(15,))
    h = train(half, 10, lr_drops=(15,))
    path = save_checkpoint(tmp_path / "half.pt", half, {"task": "sinusoid"}, training=h.state())
    del half, h
    payload = read_checkpoint(path)
    state = payload["training"]
    assert state["losses"].dtype == torch.float32 and len(state["losses"]) == 10
    assert torch.load(path, weights_only=True)["training"]["stopped"] == "finished"
    history = History.from_state(state)
    assert history.iterations == 10 and history.losses == h_whole.losses[:10]
    learner, _ = load_checkpoint(path)
    train(learner, 20, history=history, lr_drops=(15,))
    assert history.losses == h_whole.losses
    assert same_weights(whole, learner)


def test_state_round_trip():
    h = train(fresh_learner(), 5)
    again = History.from_state(h.state())
    assert again.losses == h.losses and again.seconds == h.seconds
    assert again.stopped == h.stopped and torch.equal(again.sampler_state, h.sampler_state)
    assert again.optimizer_state["param_groups"] == h.optimizer_state["param_groups"]


def test_a_saved_state_is_not_changed_by_continuing_the_run():
    """h.state() taken at iteration 5 must still resume from iteration 5 after h went on."""
    whole, half = fresh_learner(), fresh_learner()
    h_whole = train(whole, 10)
    h = train(half, 5)
    state, weights = h.state(), copy_of(half)
    train(half, 10, history=h)  # go on in memory
    train(weights, 10, history=History.from_state(state))  # and from the saved state
    assert same_weights(whole, half)
    assert same_weights(whole, weights)


def test_continuing_a_finished_run_to_its_own_length_changes_nothing():
    learner = fresh_learner()
    h = train(learner, 6)
    before = copy_of(learner)
    losses = list(h.losses)
    train(learner, 6, history=h)
    assert h.losses == losses and h.stopped == "finished" and same_weights(before, learner)


# ----------------------------------------------------------------------------- Ctrl-C
def test_keyboard_interrupt_from_the_callback_stops_and_the_run_can_be_resumed(capsys):
    whole, stopped = fresh_learner(), fresh_learner()
    h_whole = train(whole, 20)
    pressed = []

    def ctrl_c_at_10(history):
        if history.iterations == 10 and not pressed:
            pressed.append(history.iterations)
            raise KeyboardInterrupt

    h = train(stopped, 20, callback=ctrl_c_at_10, callback_every=5)
    assert pressed == [10]
    assert h.stopped == "interrupted" and h.iterations == 10
    assert "Interrupted after 10 iterations" in capsys.readouterr().out
    assert h.losses == h_whole.losses[:10]
    train(stopped, 20, history=h)
    assert h.stopped == "finished" and h.losses == h_whole.losses
    assert same_weights(whole, stopped)


# ----------------------------------------------------------------------------- outer lr
def test_outer_lr_at_halves_at_each_listed_iteration():
    lr = 1e-3
    assert [outer_lr_at(it, lr) for it in (0, 5, 10**6)] == [lr, lr, lr]
    drops = (10, 20, 30)
    expected = {0: lr, 9: lr, 10: lr / 2, 19: lr / 2, 20: lr / 4, 29: lr / 4, 30: lr / 8,
                10**6: lr / 8}
    for it, value in expected.items():
        assert outer_lr_at(it, lr, drops) == pytest.approx(value, rel=1e-12), it
        assert outer_lr_at(it, lr, list(reversed(drops))) == pytest.approx(value, rel=1e-12)


def test_lr_drops_are_applied():
    dropped, plain = fresh_learner(), fresh_learner()
    h = train(dropped, 12, lr_drops=(5, 10))
    h_plain = train(plain, 12)
    # the optimiser ends at the outer lr halved twice
    assert [g["lr"] for g in h.optimizer_state["param_groups"]] == [SETTING["outer_lr"] / 4]
    assert [g["lr"] for g in h_plain.optimizer_state["param_groups"]] == [SETTING["outer_lr"]]
    # the first 5 steps are the same; the 6th (iteration 5) is smaller, so the loss measured
    # after it (iteration 6) differs
    assert h.losses[:6] == h_plain.losses[:6]
    assert h.losses[6] != h_plain.losses[6]


def test_lr_drops_after_the_end_change_nothing():
    a, b = fresh_learner(), fresh_learner()
    assert train(a, 8, lr_drops=(8, 100)).losses == train(b, 8).losses and same_weights(a, b)


@pytest.mark.parametrize("kwargs, name", [
    (dict(lr_drops=(0,)), "lr_drops"), (dict(lr_drops=(2.5,)), "lr_drops"),
    (dict(outer_lr=0.0), "outer_lr"), (dict(meta_batch=0), "meta_batch"),
    (dict(seed=-1), "seed"), (dict(callback_every=0), "callback_every"),
])
def test_bad_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        train(fresh_learner(), 3, **kwargs)
    with pytest.raises(ValueError, match="iterations"):
        train(fresh_learner(), -1)


# ----------------------------------------------------------------------------- command line
def mlkit(*args):
    """Start ``python -m mlkit ARGS``."""
    return subprocess.Popen([sys.executable, "-m", "mlkit", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """``train --iterations 60 --out a.pt`` and ``--iterations 30 --out b.pt`` (in parallel),
    then ``train --resume b.pt --iterations 60 --out c.pt``; real processes."""
    folder = tmp_path_factory.mktemp("resume")
    a, b, c = (folder / f"{n}.pt" for n in "abc")
    runs = [mlkit("train", "--iterations", 60, "--out", a), mlkit("train", "--iterations", 30,
                                                                   "--out", b)]
    for proc in runs:
        assert "saved" in finish(proc)
    out = finish(mlkit("train", "--resume", b, "--iterations", 60, "--out", c))
    assert f"saved {c}" in out and "60 iterations" in out
    return a, b, c


def test_cli_resume_equals_an_uninterrupted_run(cli_runs):
    a, b, c = cli_runs
    (la, ma), (lb, mb), (lc, mc) = (load_checkpoint(p) for p in (a, b, c))
    assert (ma["iterations"], mb["iterations"], mc["iterations"]) == (60, 30, 60)
    assert same_weights(la, lc) and not same_weights(la, lb)
    pa, pc = read_checkpoint(a), read_checkpoint(c)
    assert pa["state_dict"].keys() == pc["state_dict"].keys()
    assert all(torch.equal(pa["state_dict"][k], pc["state_dict"][k]) for k in pa["state_dict"])
    assert pa["sha256"] == pc["sha256"]
    assert torch.equal(pa["training"]["losses"], pc["training"]["losses"])
    assert ma["loss_curve"] == mc["loss_curve"] and ma["metrics"] == mc["metrics"]
    assert ma["config"] == mc["config"] == mb["config"]
    assert mc["target_iterations"] == 60 and mc["stopped"] == "finished"
    # the stored command rebuilds the run from scratch; only --out differs
    assert mc["command"] == ma["command"].replace(str(a), str(c))


def test_cli_resume_goes_on_to_the_runs_own_target(cli_runs, tmp_path, capsys):
    """An interrupted run (here: b.pt marked as stopped at 30 of 60) is continued to its
    target when --iterations is left out; --out defaults to the file resumed."""
    a, b, _ = cli_runs
    payload = torch.load(b, weights_only=True)
    payload["meta"].update(target_iterations=60, stopped="interrupted")
    part = tmp_path / "part.pt"
    torch.save(payload, part)
    assert main(["train", "--resume", str(part)]) == 0, capsys.readouterr().err
    learner, meta = load_checkpoint(part)
    assert meta["iterations"] == 60 and meta["stopped"] == "finished"
    assert same_weights(learner, load_checkpoint(a)[0])


@pytest.mark.parametrize("flag, value", [
    ("--inner-lr", "0.05"), ("--seed", "3"), ("--algo", "fomaml"), ("--meta-batch", "5"),
    ("--shots", "5"), ("--outer-lr", "0.01"), ("--inner-steps", "2"), ("--lr-drops", "20"),
])
def test_cli_resume_with_a_contradicting_setting_is_refused(cli_runs, tmp_path, capsys,
                                                            flag, value):
    _, b, _ = cli_runs
    out = tmp_path / "x.pt"
    assert main(["train", "--resume", str(b), flag, value, "--iterations", "40",
                 "--out", str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlkit: error: ") and flag in lines[0], lines
    assert not out.exists()


def test_cli_resume_refuses_to_stop_adapting_batch_norm(cli_runs, tmp_path, capsys):
    _, b, _ = cli_runs
    out = tmp_path / "x.pt"
    assert main(["train", "--resume", str(b), "--no-adapt-batch-norm", "--iterations", "40",
                 "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        "mlkit: error: --no-adapt-batch-norm differs from the run being resumed "
        "(adapt_batch_norm=True); leave it out to keep the run's own")
    assert not out.exists()


def test_cli_resume_with_the_runs_own_setting_is_accepted(cli_runs, tmp_path, capsys):
    a, b, _ = cli_runs
    out = tmp_path / "same.pt"
    assert main(["train", "--resume", str(b), "--inner-lr", "0.01", "--seed", "0",
                 "--iterations", "60", "--out", str(out)]) == 0, capsys.readouterr().err
    assert same_weights(load_checkpoint(out)[0], load_checkpoint(a)[0])


def test_cli_resume_may_add_lr_drops_the_run_has_not_reached(cli_runs, tmp_path, capsys):
    """b.pt (30 iterations, no drops) continued to 60 with a drop at 40 equals a run of 60
    trained with that drop from the start, and stores the command of that run; a drop at 20,
    an iteration b.pt has already run with the full lr, is refused."""
    _, b, _ = cli_runs
    whole, resumed = tmp_path / "whole.pt", tmp_path / "resumed.pt"
    assert main(["train", "--iterations", "60", "--lr-drops", "40", "--out", str(whole)]) == 0
    assert main(["train", "--resume", str(b), "--lr-drops", "40", "--iterations", "60",
                 "--out", str(resumed)]) == 0, capsys.readouterr().err
    (lw, mw), (lr, mr) = load_checkpoint(whole), load_checkpoint(resumed)
    assert same_weights(lw, lr) and not same_weights(lr, load_checkpoint(b)[0])
    assert mr["config"]["lr_drops"] == [40] == mw["config"]["lr_drops"]
    assert mr["command"] == mw["command"].replace(str(whole), str(resumed))
    capsys.readouterr()
    assert main(["train", "--resume", str(b), "--lr-drops", "20", "40", "--iterations", "60",
                 "--out", str(tmp_path / "x.pt")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "--lr-drops [20, 40]" in line and "iteration 30 or later" in line


def test_cli_resume_may_move_lr_drops_the_run_has_not_reached(cli_runs, tmp_path, capsys):
    """A run planned with a drop at 50 and stopped at 30 has not used that drop yet: continued
    with the drop moved to 40, it equals a run trained with a drop at 40 from the start, and
    its command says 40 only (a long plan shortened keeps an honest rebuild command)."""
    _, b, _ = cli_runs
    payload = torch.load(b, weights_only=True)
    payload["meta"]["config"]["lr_drops"] = [50]  # b's 30 iterations never reached it
    planned, resumed, whole = tmp_path / "planned.pt", tmp_path / "moved.pt", tmp_path / "w.pt"
    torch.save(payload, planned)
    assert main(["train", "--iterations", "60", "--lr-drops", "40", "--out", str(whole)]) == 0
    assert main(["train", "--resume", str(planned), "--lr-drops", "40", "--iterations", "60",
                 "--out", str(resumed)]) == 0, capsys.readouterr().err
    (lw, mw), (lr, mr) = load_checkpoint(whole), load_checkpoint(resumed)
    assert same_weights(lw, lr)
    assert mr["config"]["lr_drops"] == [40]
    assert mr["command"] == mw["command"].replace(str(whole), str(resumed))


def test_cli_resume_errors_in_a_real_process(cli_runs, tmp_path):
    _, b, _ = cli_runs
    proc = subprocess.run([sys.executable, "-m", "mlkit", "train", "--resume", str(b),
                           "--inner-lr", "0.05", "--out", str(tmp_path / "x.pt")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("mlkit: error: --inner-lr 0.05 differs from the run being resumed")


def test_cli_resume_needs_enough_iterations_and_a_training_state(cli_runs, tmp_path, capsys):
    _, b, _ = cli_runs
    assert main(["train", "--resume", str(b), "--iterations", "10",
                 "--out", str(tmp_path / "x.pt")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "--iterations" in line and "30" in line
    bare = save_checkpoint(tmp_path / "bare.pt", fresh_learner(), {"task": "sinusoid"})
    assert main(["train", "--resume", str(bare), "--out", str(tmp_path / "y.pt")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert str(bare) in line and "no training state" in line
