"""Checkers for the notebooks' coding exercises: your function against the kit's own.

Each ``check_*`` runs the function you wrote on small random inputs (float64 where
gradients matter) and compares it with the kit's reference. It prints a line starting
with "Correct" when it agrees, and otherwise stops the notebook with a plain-words
explanation of what differs (no traceback from inside the kit): a shape, a sign, an
axis, a step size, a graph that was cut.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .algorithms import make_learner
from .episodes import sample_episodes
from .evaluate import mean_ci95
from .models import MLP, Conv4
from .protonet import ProtoNet
from .tasks import SinusoidFamily, TaskBatch


class NotYet(AssertionError):
    """An exercise whose answer is not right yet; Jupyter shows only the message."""

    def _render_traceback_(self):  # IPython shows these lines instead of a traceback
        return [f"\x1b[31m{self.args[0]}\x1b[0m"]


def _fail(message):
    raise NotYet("Not yet: " + message)


def _correct(message):
    print("Correct: " + message)


def _call(name, fn, *args):
    """Run the learner's ``fn``; explain a stub or an error in plain words."""
    try:
        return fn(*args)
    except NotImplementedError:
        _fail(f"`{name}` still raises NotImplementedError: replace the `raise` line with your "
              f"code.")
    except NotYet:
        raise
    except Exception as e:  # the learner's own code failed: say where, in one line
        _fail(f"`{name}` raised {type(e).__name__}: {e}")


def _same(a, b, tol=1e-9) -> bool:
    return torch.is_tensor(a) and a.shape == b.shape and \
        bool(torch.allclose(a.double(), b.double(), rtol=tol, atol=tol))


def _shape(name, got, expected):
    if not torch.is_tensor(got):
        _fail(f"{name} should be a tensor of shape {tuple(expected)}, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected):
        _fail(f"{name} has shape {tuple(got.shape)}; expected {tuple(expected)}")


def _grads(loss, wrt):
    """Gradients of ``loss`` (None where a tensor does not reach it)."""
    if not loss.requires_grad:
        return [None] * len(wrt)
    return torch.autograd.grad(loss, wrt, allow_unused=True, retain_graph=True)


def _flat(tensors):
    return torch.cat([(torch.zeros(1) if t is None else t.double()).flatten() for t in tensors])


# ---- notebook 02: an episode --------------------------------------------------------------
def _labelled_images(classes=10, samples=6, side=4):
    """images[c, k] holds the number 100 * c + k in every pixel: which class is which."""
    c = torch.arange(classes).view(-1, 1, 1, 1) * 100 + torch.arange(samples).view(1, -1, 1, 1)
    return c.expand(classes, samples, side, side).double()


def check_episode(episode):
    """episode(images (C, S, H, W), ways, shots, queries, generator) -> x_support
    (ways*shots, 1, H, W), y_support (ways*shots,), x_query (ways*queries, 1, H, W), y_query."""
    images = _labelled_images()
    ways, shots, queries = 4, 2, 3
    orders = set()
    for seed in range(40):
        out = _call("episode", episode, images, ways, shots, queries,
                    torch.Generator().manual_seed(seed))
        if not isinstance(out, (tuple, list)) or len(out) != 4:
            _fail("episode should return four tensors: x_support, y_support, x_query, y_query")
        xs, ys, xq, yq = out
        _shape("x_support", xs, (ways * shots, 1, 4, 4))
        _shape("x_query", xq, (ways * queries, 1, 4, 4))
        _shape("y_support", ys, (ways * shots,))
        _shape("y_query", yq, (ways * queries,))
        ids = lambda x: x[:, 0, 0, 0].long()  # 100 * class + sample of each image
        cls_s, cls_q = ids(xs) // 100, ids(xq) // 100
        for label in range(ways):
            if int((ys == label).sum()) != shots or int((yq == label).sum()) != queries:
                _fail(f"label {label} should have {shots} support and {queries} query images; "
                      f"it has {int((ys == label).sum())} and {int((yq == label).sum())}. "
                      f"Labels are 0 .. ways-1, one per class.")
            if len(set(cls_s[ys == label].tolist()) | set(cls_q[yq == label].tolist())) != 1:
                _fail(f"the images labelled {label} come from more than one class: all support "
                      f"and query images of a label must be drawings of the same class")
        if len(set(cls_s.tolist())) != ways:
            _fail(f"the episode should use {ways} different classes, it uses "
                  f"{len(set(cls_s.tolist()))}")
        if set(ids(xs).tolist()) & set(ids(xq).tolist()):
            _fail("an image is in both the support and the query set: draw different "
                  "drawings for the two")
        by_label = [int(cls_s[ys == label][0]) for label in range(ways)]
        orders.add(tuple(sorted(range(ways), key=lambda i: by_label[i])))
    if len(orders) == 1:
        _fail("the labels follow the same order of classes in every episode (label 0 is "
              "always the smallest class, ...): shuffle which class gets which label in "
              "each episode, or a model can memorise label positions instead of learning")
    reference = sample_episodes(images, ways, shots, queries, 1, generator=0)
    _correct(f"{ways}-way {shots}-shot episodes with {queries} queries per class, labels "
             f"shuffled per episode (the kit's sampler gives the same shapes: "
             f"{tuple(reference.x_support.shape[1:])}).")


# ---- notebook 03: MAML by hand --------------------------------------------------------------
def _mlp_task(seed=0, shots=5, queries=7):
    torch.manual_seed(seed)
    model = MLP((1, 8, 8, 1)).double()
    b = SinusoidFamily().sample(3, shots, queries, generator=torch.Generator().manual_seed(seed))
    b = TaskBatch(*(t.double() for t in (b.x_support, b.y_support, b.x_query, b.y_query)), {})
    return model, b


def _kit_adapted(model, x, y, lr, steps, first_order=False):
    """The kit's inner loop on one task: name -> tensor (one weight set)."""
    learner = make_learner("fomaml" if first_order else "maml", model, inner_lr=lr)
    params = learner.adapt(x[None], y[None], steps=steps, create_graph=not first_order)
    return {n: p[0] for n, p in params.items()}


def _check_adapted(name, got, expected):
    if not isinstance(got, dict) or set(got) != set(expected):
        _fail(f"{name} should return a dict with the same names as `params` "
              f"({', '.join(expected)}), got {type(got).__name__}"
              + (f" with {sorted(got)}" if isinstance(got, dict) else ""))
    for n in expected:
        _shape(f"the adapted `{n}`", got[n], expected[n].shape)


def check_inner_step(inner_step):
    """inner_step(model, params, x, y, lr) -> params after one SGD step, differentiable."""
    model, b = _mlp_task(1)
    theta = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    x, y, lr = b.x_support[0], b.y_support[0], 0.03
    got = _call("inner_step", inner_step, model, theta, x, y, lr)
    expected = _kit_adapted(model, x, y, lr, 1)
    _check_adapted("inner_step", got, expected)
    loss = F.mse_loss(model(x), y)
    g = torch.autograd.grad(loss, list(model.parameters()))
    for (n, p), gn in zip(model.named_parameters(), g):
        delta = (got[n] - p).detach()
        if _same(delta, lr * gn, 1e-7):
            _fail(f"the step goes uphill: `{n}` moved by +lr x gradient; subtract the gradient "
                  f"(theta - lr * grad)")
        if not _same(got[n], expected[n], 1e-8):
            ratio = (delta.norm() / (lr * gn).norm()).item() if gn.norm() > 0 else float("nan")
            twice = " (did you divide the mean loss again by the number of points?)" \
                if math.isclose(ratio, 1 / len(x), rel_tol=1e-3) else ""
            _fail(f"`{n}` after the step differs from theta - lr * grad (your step is "
                  f"{ratio:.3g} x as long){twice}: use the gradient of the MSE on (x, y) and "
                  f"the step size lr")
    query = F.mse_loss(torch.func.functional_call(model, got, (b.x_query[0],)), b.y_query[0])
    yours = _grads(query, list(theta.values()))
    if all(t is None for t in yours):
        _fail("the adapted weights do not depend on `params` any more: the meta-gradient "
              "cannot reach theta. Compute the step from `params` without .detach() or .data")
    ref_q = F.mse_loss(torch.func.functional_call(model, expected, (b.x_query[0],)),
                       b.y_query[0])
    second = _grads(ref_q, list(model.parameters()))
    first = _grads(F.mse_loss(torch.func.functional_call(
        model, _kit_adapted(model, x, y, lr, 1, first_order=True), (b.x_query[0],)),
        b.y_query[0]), list(model.parameters()))
    if _same(_flat(yours), _flat(first), 1e-8) and not _same(_flat(first), _flat(second), 1e-6):
        _fail("the values are right, but the meta-gradient equals first-order MAML's: did the "
              "inner step keep its graph (torch.autograd.grad(..., create_graph=True))?")
    if not _same(_flat(yours), _flat(second), 1e-7):
        _fail("the adapted weights are right but their gradient with respect to theta is not: "
              "compute the step with torch.autograd.grad(..., create_graph=True), without "
              "in-place changes to the weights")
    _correct("one SGD step, theta - lr * grad, and the second-order meta-gradient flows through "
             "it (checked against the kit in float64).")


def check_meta_loss(meta_loss):
    """meta_loss(model, batch, lr) -> mean over tasks of the query MSE after one inner step."""
    model, b = _mlp_task(2)
    lr = 0.02
    before = [p.detach().clone() for p in model.parameters()]
    got = _call("meta_loss", meta_loss, model, b, lr)
    if not all(torch.equal(a, p) for a, p in zip(before, model.parameters())):
        _fail("meta_loss changed the model's own weights: each task must adapt a copy "
              "(new tensors from inner_step), never theta itself (no .data, no in-place "
              "updates), or every task after the first starts from a moved start")
    learner = make_learner("maml", model, inner_lr=lr)
    expected = learner.meta_loss(b)
    if not torch.is_tensor(got) or got.numel() != 1:
        _fail(f"meta_loss should return one number (a 0-d tensor), got "
              f"{tuple(got.shape) if torch.is_tensor(got) else type(got).__name__}")
    if _same(got, expected * b.tasks, 1e-8):
        _fail(f"the meta-loss is {b.tasks} x too large: average the query losses over the "
              f"tasks, do not add them")
    unadapted = learner.loss(model.forward_tasks(learner.start(b.tasks), b.x_query), b.y_query)
    if _same(got, unadapted.mean(), 1e-8):
        _fail("this is the query loss of the unadapted weights: adapt each task with "
              "inner_step on its support set first, then score the query set")
    support_after = learner.loss(model.forward_tasks(
        learner.adapt(b.x_support, b.y_support), b.x_support), b.y_support).mean()
    if _same(got, support_after, 1e-8):
        _fail("this scores the adapted weights on the support set: the meta-loss is measured "
              "on each task's query set")
    if not _same(got, expected, 1e-8):
        _fail(f"meta_loss gives {got.item():.6f}; the kit's MAML gives {expected.item():.6f}")
    ours = _grads(got, list(model.parameters()))
    ref = _grads(expected, list(model.parameters()))
    if not _same(_flat(ours), _flat(ref), 1e-7):
        _fail("the value is right but its gradient is not the MAML meta-gradient: keep the "
              "graph through the inner step")
    _correct(f"the mean query loss after one inner step over {b.tasks} tasks, with the same "
             f"meta-gradient as mlkit.MAML.")


def check_adapt(adapt):
    """adapt(model, params, x, y, lr, steps) -> params after ``steps`` SGD steps."""
    model, b = _mlp_task(3)
    x, y, lr = b.x_support[1], b.y_support[1], 0.05
    for steps in (0, 1, 3):
        theta = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
        got = _call("adapt", adapt, model, theta, x, y, lr, steps)
        expected = _kit_adapted(model, x, y, lr, steps)
        _check_adapted("adapt", got, expected)
        if all(_same(got[n], expected[n], 1e-8) for n in expected):
            continue
        for other in (steps - 1, steps + 1):
            if other >= 0:
                near = _kit_adapted(model, x, y, lr, other)
                if all(_same(got[n], near[n], 1e-8) for n in near):
                    _fail(f"asked for {steps} step(s), your adapt took {other}: loop exactly "
                          f"`steps` times, each step starting from the last step's weights")
        _fail(f"after {steps} steps the weights differ from {steps} SGD steps of size lr: "
              f"each step must start from the previous step's result")
    _correct("0, 1 and 3 steps give the kit's adapted weights.")


def check_first_order_step(first_order_step):
    """first_order_step(model, params, x, y, lr) -> params after one SGD step whose gradient
    is a constant for autograd (first-order MAML)."""
    model, b = _mlp_task(4)
    x, y, lr = b.x_support[2], b.y_support[2], 0.05
    theta = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    got = _call("first_order_step", first_order_step, model, theta, x, y, lr)
    expected = _kit_adapted(model, x, y, lr, 1, first_order=True)
    _check_adapted("first_order_step", got, expected)
    if not all(_same(got[n], expected[n], 1e-8) for n in expected):
        _fail("the adapted weights should still be theta - lr * grad; only the gradient's "
              "graph is cut")
    query = F.mse_loss(torch.func.functional_call(model, got, (b.x_query[2],)), b.y_query[2])
    yours = _grads(query, list(theta.values()))
    if all(t is None or not t.any() for t in yours):
        _fail("the meta-gradient is zero: you detached the weights themselves. Detach only "
              "the gradient: theta - lr * grad.detach()")
    fo = _grads(F.mse_loss(torch.func.functional_call(model, expected, (b.x_query[2],)),
                           b.y_query[2]), list(model.parameters()))
    so = _grads(F.mse_loss(torch.func.functional_call(
        model, _kit_adapted(model, x, y, lr, 1), (b.x_query[2],)), b.y_query[2]),
        list(model.parameters()))
    if _same(_flat(yours), _flat(so), 1e-8):
        _fail("this is still second order: the gradient keeps its graph. Cut it "
              "(grad.detach(), or create_graph=False)")
    if not _same(_flat(yours), _flat(fo), 1e-7):
        _fail("the meta-gradient is neither first nor second order: theta' = theta - lr * g "
              "with g a constant")
    _correct("first order: the same step, and the meta-gradient of first-order MAML.")


# ---- notebook 05: meta-testing --------------------------------------------------------------
def check_mean_ci95(mean_and_ci):
    """mean_and_ci(values (n,)) -> (mean, half-width of the 95% confidence interval)."""
    g = torch.Generator().manual_seed(5)
    for n in (5, 400):
        values = torch.rand(n, generator=g, dtype=torch.float64) * 3
        got = _call("mean_and_ci", mean_and_ci, values)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            _fail("mean_and_ci should return two numbers: (mean, ci)")
        mean, ci = (float(v) for v in got)
        ref_mean, ref_ci = mean_ci95(values)
        if not math.isclose(mean, ref_mean, rel_tol=1e-9):
            _fail(f"the mean is {mean:.5f}, expected {ref_mean:.5f}")
        sd, sd0 = values.std(unbiased=True).item(), values.std(unbiased=False).item()
        if math.isclose(ci, 1.96 * sd0 / math.sqrt(n), rel_tol=1e-6) and n == 5:
            _fail("you used the standard deviation that divides by n; the sample standard "
                  "deviation divides by n - 1 (values.std() does)")
        if math.isclose(ci, 1.96 * sd, rel_tol=1e-6):
            _fail("the interval does not shrink with more tasks: divide the standard deviation "
                  "by sqrt(n) (the standard error of the mean)")
        if math.isclose(ci, sd / math.sqrt(n), rel_tol=1e-6):
            _fail("that is one standard error (a 68% interval): a 95% interval is 1.96 of them")
        if not math.isclose(ci, ref_ci, rel_tol=1e-6):
            _fail(f"with n = {n} the half-width is {ci:.5f}, expected 1.96 * std / sqrt(n) = "
                  f"{ref_ci:.5f}")
    _correct("mean and 1.96 * std / sqrt(n), as mlkit.mean_ci95.")


# ---- notebook 06: ProtoNets and MAML on images ----------------------------------------------
def check_prototypes(prototypes):
    """prototypes(z_support (T, S, D), y_support (T, S), ways) -> class means (T, ways, D)."""
    g = torch.Generator().manual_seed(6)
    z = torch.randn(2, 12, 5, generator=g, dtype=torch.float64)
    y = torch.stack([torch.randperm(12, generator=g) % 4 for _ in range(2)])  # labels shuffled
    got = _call("prototypes", prototypes, z, y, 4)
    if torch.is_tensor(got) and got.shape[:2] == (2, 4) and got.shape != (2, 4, 5):
        _fail(f"the prototypes have shape {tuple(got.shape)}, expected (2, 4, 5): did you "
              f"average over the feature axis? Average over the images of a class instead")
    _shape("the prototype tensor", got, (2, 4, 5))
    expected = ProtoNet.prototypes(z, y, 4)
    if _same(got, expected):
        return _correct("one prototype per class: the mean of its support embeddings.")
    ordered = z.view(2, 4, 3, 5).mean(2)  # as if the labels were sorted
    if _same(got, ordered):
        _fail("these are means of consecutive blocks of images; the labels are not sorted "
              "here: average the embeddings whose label is c (y_support == c)")
    if _same(got, z.view(2, 3, 4, 5).mean(1)):
        _fail("these are means over every 4th image: average over the images of each class "
              "(select them by label), not over positions")
    _fail("the prototypes differ from the class means: for each task and class c, average "
          "z_support over the images with y_support == c (over the image axis, not the "
          "feature axis)")


def check_protonet_logits(logits):
    """logits(z_query (T, Q, D), prototypes (T, ways, D)) -> (T, Q, ways): minus the squared
    Euclidean distance to each prototype."""
    g = torch.Generator().manual_seed(7)
    zq = torch.randn(2, 6, 5, generator=g, dtype=torch.float64)
    protos = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    got = _call("logits", logits, zq, protos)
    _shape("the logit tensor", got, (2, 6, 3))
    d = torch.cdist(zq, protos)
    if _same(got, -d ** 2):
        return _correct("logits = minus the squared distance to each prototype (Snell et al.).")
    if _same(got, d ** 2) or _same(got, d):
        _fail("nearer prototypes must score higher: use minus the distance")
    if _same(got, -d):
        _fail("Snell et al. use the squared Euclidean distance: square it")
    _fail("the logits differ from -||z_query - prototype||^2 for each query and class")


def check_image_inner_step(inner_step):
    """inner_step(model, params, x, y, lr) on a Conv-4 with cross-entropy: one SGD step that
    keeps its graph (MAML on images)."""
    torch.manual_seed(8)
    model = Conv4(3, hidden=4, image_size=16).double()
    g = torch.Generator().manual_seed(8)
    x = torch.rand(6, 1, 16, 16, generator=g, dtype=torch.float64)
    y = torch.arange(3).repeat(2)
    theta = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    got = _call("inner_step", inner_step, model, theta, x, y, 0.4)
    learner = make_learner("maml", model, "cross_entropy", inner_lr=0.4)
    expected = {n: p[0] for n, p in learner.adapt(x[None], y[None], steps=1).items()}
    _check_adapted("inner_step", got, expected)
    wrong = [n for n in expected if not _same(got[n], expected[n], 1e-8)]
    if wrong:
        _fail(f"`{wrong[0]}` after the step differs from theta - 0.4 * grad of the "
              f"cross-entropy on the support images (images are classified: use "
              f"F.cross_entropy(logits, labels), not the MSE)")
    query = F.cross_entropy(torch.func.functional_call(model, got, (x,)), y)
    yours = _grads(query, list(theta.values()))
    ref = _grads(F.cross_entropy(torch.func.functional_call(model, expected, (x,)), y),
                 list(model.parameters()))
    if not _same(_flat(yours), _flat(ref), 1e-7):
        _fail("the step is right but the meta-gradient is not second order: keep the graph "
              "(create_graph=True)")
    _correct("one MAML step on a Conv-4, second order, as mlkit.MAML on images.")


# ---- notebook 07: the family ------------------------------------------------------------------
def check_reptile_update(reptile_update):
    """reptile_update(theta (P,), adapted (T, P), epsilon) -> theta moved by epsilon towards
    the mean of the adapted weights (Nichol et al. 2018)."""
    g = torch.Generator().manual_seed(9)
    theta = torch.randn(6, generator=g, dtype=torch.float64)
    adapted = theta + torch.randn(4, 6, generator=g, dtype=torch.float64)
    got = _call("reptile_update", reptile_update, theta, adapted, 0.1)
    _shape("the new theta", got, theta.shape)
    mean = adapted.mean(0)
    if _same(got, theta + 0.1 * (mean - theta)):
        return _correct("theta + epsilon * (mean of the adapted weights - theta).")
    if _same(got, theta - 0.1 * (mean - theta)):
        _fail("Reptile moves theta towards the adapted weights, not away: add "
              "epsilon * (mean(adapted) - theta)")
    if _same(got, theta + 0.1 * (adapted - theta).sum(0)):
        _fail("you added the differences of all tasks: take their mean, so that the step "
              "does not grow with the number of tasks")
    _fail("the update differs from theta + epsilon * (adapted.mean(0) - theta)")


def check_anil_names(anil_names):
    """anil_names(model) -> the parameter names ANIL adapts in its inner loop."""
    for model in (MLP((1, 8, 8, 1)), Conv4(5, hidden=4)):
        got = _call("anil_names", anil_names, model)
        expected = set(model.head_names)
        got = set(got) if isinstance(got, (list, tuple, set)) else got
        if got == expected:
            continue
        if got == {n for n, _ in model.named_parameters()}:
            _fail("that is every weight, as MAML adapts: ANIL (Raghu et al. 2020) adapts only "
                  "the head, the last layer")
        if isinstance(got, set) and got < expected:
            _fail(f"the head has a weight and a bias; you gave {sorted(got)}")
        _fail(f"ANIL adapts the head's weight and bias ({sorted(expected)} here); you gave "
              f"{sorted(got) if isinstance(got, set) else got}")
    _correct("ANIL adapts the head (weight and bias) and reuses the body's features.")


def check_metasgd_step(metasgd_step):
    """metasgd_step(params, grads, rates) -> {name: params[name] - rates[name] * grads[name]},
    each rate a learned tensor of the weight's shape (Li et al. 2017)."""
    torch.manual_seed(10)
    learner = make_learner("metasgd", MLP((1, 4, 3)).double(), inner_lr=0.01)
    with torch.no_grad():
        for rate in learner.lrs.values():
            rate.uniform_(0.005, 0.05)
    x = torch.linspace(-2, 2, 6, dtype=torch.float64).view(1, 6, 1)
    params = {n: p.expand(1, *p.shape) for n, p in learner.model.named_parameters()}
    expected = {n: p[0] for n, p in learner.inner_step(params, x, torch.sin(x), True).items()}
    params = {n: p[0] for n, p in params.items()}
    grads = dict(zip(params, torch.autograd.grad(
        learner.loss(learner.model.forward_tasks({n: p[None] for n, p in params.items()}, x),
                     torch.sin(x)).sum(), list(params.values()), create_graph=True)))
    rates = {n: learner.step_size(n) for n in params}
    got = _call("metasgd_step", metasgd_step, params, grads, rates)
    if not isinstance(got, dict) or set(got) != set(params):
        _fail("metasgd_step should return a dict with the names of `params`")
    for n in params:
        _shape(f"the new `{n}`", got[n], params[n].shape)
        if not _same(got[n], expected[n]):
            moved = grads[n].detach().abs() > 1e-9
            step = ((params[n] - got[n]) / grads[n]).detach()[moved]
            if step.numel() > 1 and torch.allclose(step, step[0].expand_as(step)):
                _fail("one step size for the whole tensor: Meta-SGD multiplies each weight's "
                      "gradient by its own rate (elementwise, rates[name] * grads[name])")
            if _same(got[n], params[n] + rates[n] * grads[n]):
                _fail("the step goes uphill: subtract rates * grads")
            _fail(f"`{n}` differs from params - rates * grads (elementwise), as "
                  f"mlkit.MetaSGD's inner step computes it")
    outer = _grads(sum(v.sum() for v in got.values()), list(rates.values()))
    if any(t is None or not t.any() for t in outer):
        _fail("the rates get no gradient: they are learned by the outer loop, so do not "
              "detach them (and do not use .data)")
    _correct("a learned step size for every single weight, and the rates get gradients, as "
             "mlkit.MetaSGD.")
