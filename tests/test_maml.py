"""The batched MAML family against independent per-task references, in float64."""
import pytest
import torch
import torch.nn.functional as F

from torch.func import functional_call

from mlkit.maml import ANIL, FOMAML, MAML, MetaSGD, Reptile
from mlkit.models import MLP, Conv4
from mlkit.tasks import SinusoidFamily, TaskBatch


def mlp_forward(params, x):
    """Plain forward of a 3-layer MLP from a list [w1, b1, w2, b2, w3, b3]."""
    w1, b1, w2, b2, w3, b3 = params
    return F.linear(F.relu(F.linear(F.relu(F.linear(x, w1, b1)), w2, b2)), w3, b3)


def reference_meta_grad(theta, batch, lr, steps, first_order=False, adapt_idx=None, lrs=None):
    """Per-task loop, written independently with torch.autograd.grad(create_graph=True).

    Returns the gradient of the mean query loss with respect to theta (and lrs)."""
    adapt_idx = range(len(theta)) if adapt_idx is None else adapt_idx
    total = 0.0
    for t in range(batch.tasks):
        params = list(theta)
        for _ in range(steps):
            loss = F.mse_loss(mlp_forward(params, batch.x_support[t]), batch.y_support[t])
            grads = torch.autograd.grad(loss, [params[i] for i in adapt_idx],
                                        create_graph=not first_order)
            for i, g in zip(adapt_idx, grads):
                step = lrs[i] if lrs is not None else lr
                params[i] = params[i] - step * (g.detach() if first_order else g)
        total = total + F.mse_loss(mlp_forward(params, batch.x_query[t]), batch.y_query[t])
    wrt = list(theta) + (list(lrs) if lrs is not None else [])
    return torch.autograd.grad(total / batch.tasks, wrt)


def setup(seed=0, tasks=6):
    torch.manual_seed(seed)
    model = MLP().double()
    batch = SinusoidFamily().sample(tasks, 5, 7, generator=torch.Generator().manual_seed(seed))
    batch = batch.to(torch.float64)
    return model, batch


PATHS = ["readable", "fast"]  # maml.py's own inner loop, and fast_maml.py (MLP only)


def on(path, learner):
    """The learner, set to compute its meta-loss on ``path``."""
    learner.fast_path = path == "fast"
    assert learner.has_fast_path() == (path == "fast")
    return learner


def batched_grad(learner, batch):
    learner.zero_grad()
    learner.meta_loss(batch).backward()
    return [p.grad.clone() for p in learner.parameters()]


def rel_err(a, b):
    a = torch.cat([t.flatten() for t in a])
    b = torch.cat([t.flatten() for t in b])
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("steps", [1, 3])
def test_maml_meta_gradient_matches_per_task_reference(steps, path):
    model, batch = setup()
    learner = on(path, MAML(model, inner_lr=0.05, inner_steps=steps))
    ours = batched_grad(learner, batch)
    theta = [p.detach().clone().requires_grad_() for p in model.parameters()]
    ref = reference_meta_grad(theta, batch, 0.05, steps)
    assert rel_err(ours, ref) < 1e-8


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("steps", [1, 3])
def test_fomaml_matches_first_order_reference_and_differs_from_maml(steps, path):
    model, batch = setup(1)
    fo = batched_grad(on(path, FOMAML(model, inner_lr=0.05, inner_steps=steps)), batch)
    so = batched_grad(on(path, MAML(model, inner_lr=0.05, inner_steps=steps)), batch)
    theta = [p.detach().clone().requires_grad_() for p in model.parameters()]
    ref = reference_meta_grad(theta, batch, 0.05, steps, first_order=True)
    assert rel_err(fo, ref) < 1e-8
    # second-order terms really flow: MAML's meta-gradient is not FOMAML's
    assert rel_err(fo, so) > 1e-3


def test_anil_matches_reference_and_leaves_body_untouched():
    model, batch = setup(2)
    learner = ANIL(model, inner_lr=0.05, inner_steps=2)
    adapted = learner.adapt(batch.x_support, batch.y_support)
    for name, p in model.named_parameters():
        same = torch.equal(adapted[name], p.expand_as(adapted[name]))
        assert same == (name not in model.head_names), name
    ours = batched_grad(learner, batch)
    theta = [p.detach().clone().requires_grad_() for p in model.parameters()]
    ref = reference_meta_grad(theta, batch, 0.05, 2, adapt_idx=[4, 5])
    assert rel_err(ours, ref) < 1e-8


def test_metasgd_learning_rates_get_gradients_matching_reference():
    model, batch = setup(3)
    learner = MetaSGD(model, inner_lr=0.03, inner_steps=1).double()
    with torch.no_grad():  # make the rates differ per weight
        for lr in learner.lrs.values():
            lr.uniform_(0.01, 0.05)
    learner.zero_grad()
    learner.meta_loss(batch).backward()
    lr_grads = [learner.lrs[n.replace(".", "_")].grad for n, _ in model.named_parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in lr_grads)
    theta = [p.detach().clone().requires_grad_() for p in model.parameters()]
    lrs = [learner.lrs[n.replace(".", "_")].detach().clone().requires_grad_()
           for n, _ in model.named_parameters()]
    ref = reference_meta_grad(theta, batch, None, 1, lrs=lrs)
    ours = [p.grad for p in model.parameters()] + lr_grads
    assert rel_err(ours, ref) < 1e-8


def test_reptile_moves_towards_adapted_weights():
    model, batch = setup(4)
    learner = Reptile(model, inner_lr=0.02, inner_steps=3)
    before = [p.detach().clone() for p in model.parameters()]
    # reference: mean over tasks of the weights after 3 SGD steps on the support set
    targets = [torch.zeros_like(p) for p in before]
    for t in range(batch.tasks):
        params = [p.clone().requires_grad_() for p in before]
        for _ in range(3):
            loss = F.mse_loss(mlp_forward(params, batch.x_support[t]), batch.y_support[t])
            grads = torch.autograd.grad(loss, params)
            params = [(p - 0.02 * g).detach().requires_grad_() for p, g in zip(params, grads)]
        for acc, p in zip(targets, params):
            acc += p.detach() / batch.tasks
    opt = torch.optim.SGD(learner.parameters(), lr=0.5)  # theta += 0.5 (mean phi - theta)
    learner.outer_step(batch, opt)
    for b, tgt, p in zip(before, targets, model.parameters()):
        torch.testing.assert_close(p.detach(), b + 0.5 * (tgt - b), rtol=1e-10, atol=1e-12)


def test_outer_step_skips_non_finite_loss():
    torch.manual_seed(5)
    model = MLP()  # float32: a huge inner lr overflows to inf
    batch = SinusoidFamily().sample(4, 5, generator=torch.Generator().manual_seed(5))
    learner = MAML(model, inner_lr=1e30)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(learner.parameters(), 1e-3)
    loss = learner.outer_step(batch, opt)
    assert not torch.isfinite(loss)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="inner_lr"):
        MAML(MLP(), inner_lr=-1)
    with pytest.raises(ValueError, match="inner_steps"):
        MAML(MLP(), inner_steps=1.5)
    with pytest.raises(ValueError, match="loss"):
        MAML(MLP(), loss="hinge")


@pytest.mark.parametrize("path", PATHS)
def test_multi_step_loss_matches_reference(path):
    """MAML++'s multi-step loss: the mean of the query losses after steps 1..S."""
    model, batch = setup(6)
    learner = on(path, MAML(model, inner_lr=0.05, inner_steps=3, multi_step_loss=True))
    ours = batched_grad(learner, batch)
    theta = [p.detach().clone().requires_grad_() for p in model.parameters()]
    total = 0.0
    for t in range(batch.tasks):
        params = list(theta)
        for _ in range(3):
            loss = F.mse_loss(mlp_forward(params, batch.x_support[t]), batch.y_support[t])
            grads = torch.autograd.grad(loss, params, create_graph=True)
            params = [p - 0.05 * g for p, g in zip(params, grads)]
            total = total + F.mse_loss(mlp_forward(params, batch.x_query[t]), batch.y_query[t])
    ref = torch.autograd.grad(total / (3 * batch.tasks), theta)
    assert rel_err(ours, ref) < 1e-8


@pytest.mark.parametrize("path", PATHS)
def test_fomaml_multi_step_loss_matches_first_order_reference(path):
    """The shipped FOMAML checkpoint's recipe: 2 steps, multi-step loss, no second order."""
    model, batch = setup(7)
    learner = on(path, FOMAML(model, inner_lr=0.05, inner_steps=2, multi_step_loss=True))
    ours = batched_grad(learner, batch)
    theta = [p.detach().clone().requires_grad_() for p in model.parameters()]
    total = 0.0
    for t in range(batch.tasks):
        params = list(theta)
        for _ in range(2):
            loss = F.mse_loss(mlp_forward(params, batch.x_support[t]), batch.y_support[t])
            grads = torch.autograd.grad(loss, params, create_graph=True)
            params = [p - 0.05 * g.detach() for p, g in zip(params, grads)]  # first order
            total = total + F.mse_loss(mlp_forward(params, batch.x_query[t]), batch.y_query[t])
    ref = torch.autograd.grad(total / (2 * batch.tasks), theta)
    assert rel_err(ours, ref) < 1e-8
    second = batched_grad(on(path, MAML(model, inner_lr=0.05, inner_steps=2,
                                        multi_step_loss=True)), batch)
    assert rel_err(ours, second) > 1e-3


# ---- Conv-4 on images: the fast per-task pass against the readable network ----------------
def conv_reference_meta_grad(model, batch, lr, steps, first_order, fixed=()):
    """Per-task loop over the network's own readable forward (nn.Sequential blocks).
    The parameters named in ``fixed`` keep theta's value in the inner loop."""
    theta = dict(model.named_parameters())
    total = 0.0
    for t in range(batch.tasks):
        params = theta
        for _ in range(steps):
            loss = F.cross_entropy(functional_call(model, params, (batch.x_support[t],)),
                                   batch.y_support[t])
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
            params = {n: p if n in fixed else p - lr * (g.detach() if first_order else g)
                      for (n, p), g in zip(params.items(), grads)}
        total = total + F.cross_entropy(functional_call(model, params, (batch.x_query[t],)),
                                        batch.y_query[t])
    return torch.autograd.grad(total / batch.tasks, list(theta.values()))


def image_setup(pool, seed=0, ways=3):
    torch.manual_seed(seed)
    model = Conv4(ways, hidden=8, image_size=16, pool=pool).double()
    with torch.no_grad():  # batch norm weights away from their defaults
        for block in model.blocks:
            block[1].weight.uniform_(0.5, 1.5)
            block[1].bias.normal_(0, 0.1)
    g = torch.Generator().manual_seed(seed)
    batch = TaskBatch(torch.rand(2, 2 * ways, 1, 16, 16, generator=g, dtype=torch.float64),
                      torch.arange(ways).repeat(2, 2),
                      torch.rand(2, 3 * ways, 1, 16, 16, generator=g, dtype=torch.float64),
                      torch.arange(ways).repeat(2, 3), {})
    return model, batch


@pytest.mark.parametrize("pool", [True, False])
@pytest.mark.parametrize("algo", [MAML, FOMAML])
def test_conv4_meta_gradient_matches_per_task_reference(pool, algo):
    model, batch = image_setup(pool)
    learner = algo(model, "cross_entropy", inner_lr=0.4, inner_steps=2)
    ours = batched_grad(learner, batch)
    ref = conv_reference_meta_grad(model, batch, 0.4, 2, first_order=algo is FOMAML)
    assert rel_err(ours, ref) < 1e-10


@pytest.mark.parametrize("algo", [MAML, FOMAML])
def test_conv4_without_batch_norm_adaptation_matches_reference(algo):
    """Finn et al.'s code: the inner loop adapts convolutions and head; batch norm's scale
    and shift (blocks.i.1.*) keep theta's value and are learned in the outer loop only."""
    model, batch = image_setup(pool=False, seed=2)
    bn = {f"blocks.{i}.1.{k}" for i in range(4) for k in ("weight", "bias")}
    learner = algo(model, "cross_entropy", inner_lr=0.4, inner_steps=2, adapt_batch_norm=False)
    ours = batched_grad(learner, batch)
    ref = conv_reference_meta_grad(model, batch, 0.4, 2, algo is FOMAML, fixed=bn)
    assert rel_err(ours, ref) < 1e-10
    adapting_all = conv_reference_meta_grad(model, batch, 0.4, 2, algo is FOMAML)
    assert rel_err(ours, adapting_all) > 1e-3
    adapted = learner.adapt(batch.x_support, batch.y_support)
    for name, p in model.named_parameters():  # batch norm stays, everything else moves
        moved = (adapted[name] - p).abs().amax().item()
        assert (moved == 0) == (name in bn), name


def test_adapt_batch_norm_must_be_a_bool():
    with pytest.raises(ValueError, match="adapt_batch_norm must be True or False, got 'no'"):
        MAML(Conv4(3), "cross_entropy", adapt_batch_norm="no")


@pytest.mark.parametrize("pool", [True, False])
def test_conv4_second_order_really_flows(pool):
    model, batch = image_setup(pool, seed=1)
    so = batched_grad(MAML(model, "cross_entropy", inner_lr=0.4), batch)
    fo = batched_grad(FOMAML(model, "cross_entropy", inner_lr=0.4), batch)
    assert rel_err(fo, so) > 1e-3


@pytest.mark.parametrize("ways, shots", [(5, 1), (20, 1), (5, 3)])
def test_paper_alpha_is_the_kit_lr_divided_by_ways(ways, shots):
    """The README's conversion: Finn et al.'s code steps on the support cross-entropy summed
    over the N*K drawings and divided by K, so its alpha equals the kit's inner lr / N."""
    torch.manual_seed(0)
    model = Conv4(ways, hidden=4, pool=False).double()
    x = torch.randn(1, ways * shots, 1, 28, 28, dtype=torch.float64)
    y = torch.arange(ways).repeat(shots)[None]
    alpha = 0.4
    learner = MAML(model, "cross_entropy", inner_lr=alpha * ways)
    kit = learner.inner_step(learner.start(1), x, y, create_graph=False)
    names, theta = zip(*model.named_parameters())
    per_drawing = F.cross_entropy(functional_call(model, dict(zip(names, theta)), (x[0],)),
                                  y[0], reduction="none")
    grads = torch.autograd.grad(per_drawing.sum() / shots, theta)
    for name, p, g in zip(names, theta, grads):
        torch.testing.assert_close(kit[name][0], p - alpha * g, rtol=1e-10, atol=1e-12)
