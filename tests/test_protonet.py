"""Prototypical Networks against a plain per-task reference."""
import torch

from mlkit.checkpoints import load_checkpoint, save_checkpoint
from mlkit.models import Conv4
from mlkit.protonet import ProtoNet
from mlkit.tasks import TaskBatch
from mlkit.algorithms import make_learner


def tiny_batch(tasks=3, ways=3, shots=2, queries=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = lambda n: torch.arange(ways).repeat_interleave(n).expand(tasks, -1)
    return TaskBatch(torch.rand(tasks, ways * shots, 1, size, size, generator=g), labels(shots),
                     torch.rand(tasks, ways * queries, 1, size, size, generator=g), labels(queries),
                     {})


def tiny_protonet(seed=0):
    torch.manual_seed(seed)
    return ProtoNet(Conv4(ways=None, hidden=8, image_size=16)).double()


def reference_logits(model, batch, ways):
    """One task at a time: embed support + query together, class means, -squared distances."""
    out = []
    for t in range(batch.tasks):
        s = batch.x_support.shape[1]
        z = model(torch.cat([batch.x_support[t], batch.x_query[t]]))
        zs, zq = z[:s], z[s:]
        protos = torch.stack([zs[batch.y_support[t] == c].mean(0) for c in range(ways)])
        out.append(-((zq[:, None, :] - protos[None, :, :]) ** 2).sum(-1))
    return torch.stack(out)


def test_logits_match_per_task_reference():
    net = tiny_protonet()
    batch = tiny_batch()
    batch = TaskBatch(batch.x_support.double(), batch.y_support, batch.x_query.double(),
                      batch.y_query, {})
    ours = net.logits(batch)
    assert ours.shape == (3, 6, 3)
    ref = reference_logits(net.model, batch, 3)
    assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-10)


def test_prototypes_are_class_means_with_labels_in_any_order():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 12, 5, generator=g, dtype=torch.float64)
    y = torch.stack([torch.randperm(12, generator=g) % 4 for _ in range(2)])
    protos = ProtoNet.prototypes(z, y, 4)
    for t in range(2):
        for c in range(4):
            assert torch.allclose(protos[t, c], z[t][y[t] == c].mean(0))


def test_outer_step_learns_and_skips_non_finite_loss():
    net = tiny_protonet(2).float()
    batch = tiny_batch(seed=3)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    first = net.outer_step(batch, opt)
    for _ in range(20):
        last = net.outer_step(batch, opt)
    assert not last.requires_grad and last < first
    before = [p.clone() for p in net.parameters()]
    bad = TaskBatch(batch.x_support * float("nan"), batch.y_support, batch.x_query,
                    batch.y_query, {})
    assert not torch.isfinite(net.outer_step(bad, opt))
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_fits_the_learner_interface_and_checkpoints(tmp_path):
    net = make_learner("protonet", Conv4(ways=None, hidden=8, image_size=16), "cross_entropy")
    assert isinstance(net, ProtoNet) and net.name == "protonet"
    assert net.config() == {"algo": "protonet", "loss": "cross_entropy"}
    assert net.adapted_names() == [] and not hasattr(net, "inner_lr")
    path = save_checkpoint(tmp_path / "p.pt", net, {"task": "glyphs"})
    back, meta = load_checkpoint(path, task="glyphs")
    batch = tiny_batch()
    assert isinstance(back, ProtoNet) and meta["task"] == "glyphs"
    assert torch.equal(back.logits(batch), net.logits(batch))


def test_tasks_do_not_influence_each_other():
    """Batch norm takes statistics per task, so a task's logits do not depend on the batch."""
    net = tiny_protonet(4).float()
    batch = tiny_batch(tasks=4)
    one = TaskBatch(batch.x_support[:1], batch.y_support[:1], batch.x_query[:1],
                    batch.y_query[:1], {})
    assert torch.allclose(net.logits(batch)[:1], net.logits(one), atol=1e-5)


def test_meta_gradient_matches_per_task_reference():
    net = tiny_protonet(5)
    batch = tiny_batch(seed=5)
    batch = TaskBatch(batch.x_support.double(), batch.y_support, batch.x_query.double(),
                      batch.y_query, {})
    params = list(net.parameters())
    ours = torch.autograd.grad(net.meta_loss(batch), params)
    logits = reference_logits(net.model, batch, 3)
    ref_loss = torch.stack([torch.nn.functional.cross_entropy(logits[t], batch.y_query[t])
                            for t in range(batch.tasks)]).mean()
    ref = torch.autograd.grad(ref_loss, params)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
