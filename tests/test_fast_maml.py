"""fast_maml.py against maml.py's readable path: the same meta-loss and meta-gradient to
1e-10 in float64, and taken only where it computes exactly what the readable path does.
(Both paths are also checked against independent per-task references in test_maml.py.)"""
import pytest
import torch

from mlkit.maml import ANIL, FOMAML, MAML, MetaSGD, Pretrain, Reptile
from mlkit.models import MLP, Conv4
from mlkit.tasks import SinusoidFamily


def meta_loss_and_grad(learner, batch, fast: bool):
    learner.fast_path = fast
    assert learner.has_fast_path() == fast
    loss = learner.meta_loss(batch)
    return loss.detach(), torch.autograd.grad(loss, list(learner.parameters()))


@pytest.mark.parametrize("multi_step_loss", [False, True])
@pytest.mark.parametrize("steps", [0, 1, 2])
@pytest.mark.parametrize("cls", [MAML, FOMAML])
def test_fast_path_equals_readable_path_in_float64(cls, steps, multi_step_loss):
    torch.manual_seed(steps)
    learner = cls(MLP((1, 16, 12, 1)).double(), inner_lr=0.3, inner_steps=steps,
                  multi_step_loss=multi_step_loss)
    batch = SinusoidFamily().sample(5, 4, 6, generator=torch.Generator().manual_seed(3))
    batch = batch.to(torch.float64)
    readable_loss, readable = meta_loss_and_grad(learner, batch, fast=False)
    fast_loss, fast = meta_loss_and_grad(learner, batch, fast=True)
    assert abs(fast_loss - readable_loss) <= 1e-10 * readable_loss.abs()
    for name, a, b in zip([n for n, _ in learner.named_parameters()], fast, readable):
        assert (a - b).abs().max() <= 1e-10 * b.abs().max(), name


def test_fast_path_keeps_second_order_terms():
    """A large inner lr makes the second-order terms large: the fast MAML's meta-gradient
    is far from the fast first-order one."""
    torch.manual_seed(0)
    batch = SinusoidFamily().sample(4, 5, 5, generator=torch.Generator().manual_seed(0))
    batch = batch.to(torch.float64)
    model = MLP().double()
    grads = [meta_loss_and_grad(cls(model, inner_lr=0.1), batch, fast=True)[1]
             for cls in (MAML, FOMAML)]
    diff = sum((a - b).norm() ** 2 for a, b in zip(*grads)) ** 0.5
    assert diff > 1e-2 * sum(b.norm() ** 2 for b in grads[1]) ** 0.5


def test_fast_path_is_taken_only_where_it_computes_the_same():
    assert MAML(MLP()).has_fast_path() and FOMAML(MLP()).has_fast_path()
    for learner in (ANIL(MLP()), MetaSGD(MLP()), Reptile(MLP()), Pretrain(MLP()),
                    MAML(Conv4(5), "cross_entropy")):
        assert not learner.has_fast_path(), type(learner).__name__

    class MyMAML(MAML):  # a learner's own inner step (as the notebooks' exercises write it)
        def inner_step(self, params, x, y, create_graph, inner_lr=None):
            return super().inner_step(params, x, y, create_graph, inner_lr)

    assert not MyMAML(MLP()).has_fast_path()
