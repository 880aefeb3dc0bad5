import pytest
import torch

from mlkit.checkpoints import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from mlkit.models import MLP
from mlkit.algorithms import make_learner


@pytest.mark.parametrize("algo", ["maml", "fomaml", "reptile", "anil", "metasgd", "pretrain"])
def test_round_trip(tmp_path, algo):
    torch.manual_seed(0)
    learner = make_learner(algo, MLP((1, 8, 8, 1)), inner_lr=0.02)
    path = save_checkpoint(tmp_path / "sub" / "c.pt", learner, {"task": "sinusoid", "seed": 3,
                                                                  "command": "python -m mlkit x"})
    loaded, meta = load_checkpoint(path)
    assert meta["seed"] == 3 and meta["task"] == "sinusoid" and "torch" in meta["versions"]
    assert loaded.name == algo and loaded.inner_lr == 0.02
    for (n1, a), (n2, b) in zip(learner.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(a, b)
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["c.pt"]  # no temp files left


def test_damaged_and_foreign_files(tmp_path):
    learner = make_learner("maml", MLP())
    good = save_checkpoint(tmp_path / "good.pt", learner, {"task": "sinusoid"})
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pt").write_text("hello")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    for name in ("trunc.pt", "text.pt", "foreign.pt", "missing.pt"):
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="glyphs"):
        load_checkpoint(good, task="glyphs")


def test_checkpoint_of_another_model_size(tmp_path):
    learner = make_learner("maml", MLP())
    path = save_checkpoint(tmp_path / "c.pt", learner, {"task": "sinusoid"})
    payload = read_checkpoint(path)
    payload["model"]["sizes"] = [1, 20, 20, 1]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path)


def test_failed_save_keeps_old_file(tmp_path, monkeypatch):
    learner = make_learner("maml", MLP())
    path = save_checkpoint(tmp_path / "c.pt", learner, {"task": "sinusoid", "v": 1})

    def broken_save(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, learner, {"task": "sinusoid", "v": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)[1]["v"] == 1
    assert len(list(tmp_path.iterdir())) == 1
