import math

import pytest
import torch

from mlkit.tasks import SinusoidFamily, mse_per_task


def test_sinusoid_shapes_and_ranges():
    fam = SinusoidFamily()
    b = fam.sample(64, shots=7, queries=11, generator=torch.Generator().manual_seed(0))
    assert b.x_support.shape == (64, 7, 1) and b.y_support.shape == (64, 7, 1)
    assert b.x_query.shape == (64, 11, 1) and b.y_query.shape == (64, 11, 1)
    assert b.info["amplitude"].shape == (64,) and b.info["phase"].shape == (64,)
    assert b.tasks == 64
    a, p = b.info["amplitude"], b.info["phase"]
    assert 0.1 <= a.min() and a.max() <= 5.0
    assert 0 <= p.min() and p.max() <= math.pi
    x = torch.cat([b.x_support, b.x_query], 1)
    assert -5 <= x.min() and x.max() <= 5


def test_sinusoid_labels_are_the_true_curve():
    fam = SinusoidFamily()
    b = fam.sample(8, 5, 5, generator=torch.Generator().manual_seed(1))
    a, p = b.info["amplitude"].view(-1, 1, 1), b.info["phase"].view(-1, 1, 1)
    torch.testing.assert_close(b.y_support, a * torch.sin(b.x_support - p))
    torch.testing.assert_close(fam.curve(b.info["amplitude"], b.info["phase"], b.x_query), b.y_query)


def test_sinusoid_custom_ranges():
    fam = SinusoidFamily(amplitude=(2, 3), phase=(0, 0.5), x_range=(0, 1))
    b = fam.sample(100, 4, generator=torch.Generator().manual_seed(0))
    assert 2 <= b.info["amplitude"].min() and b.info["amplitude"].max() <= 3
    assert b.info["phase"].max() <= 0.5 and b.x_support.min() >= 0 and b.x_support.max() <= 1


def test_sinusoid_seeding():
    fam = SinusoidFamily()
    b1 = fam.sample(4, 5, generator=torch.Generator().manual_seed(3))
    b2 = fam.sample(4, 5, generator=torch.Generator().manual_seed(3))
    b3 = fam.sample(4, 5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(b1.x_support, b2.x_support) and torch.equal(b1.y_query, b2.y_query)
    assert not torch.equal(b1.x_support, b3.x_support)


@pytest.mark.parametrize("kwargs, name", [
    (dict(amplitude=(5, 1)), "amplitude"),
    (dict(phase=(1,)), "phase"),
    (dict(x_range=(0, float("nan"))), "x_range"),
])
def test_sinusoid_bad_ranges(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SinusoidFamily(**kwargs)


@pytest.mark.parametrize("kwargs, name", [
    (dict(tasks=0, shots=5), "tasks"), (dict(tasks=2, shots=-1), "shots"),
    (dict(tasks=2, shots=2.5), "shots"), (dict(tasks=2, shots=5, queries=0), "queries"),
])
def test_sinusoid_bad_counts(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SinusoidFamily().sample(**kwargs)


def test_mse_per_task():
    pred = torch.zeros(3, 4, 1)
    y = torch.arange(3.0).view(3, 1, 1).expand(3, 4, 1)
    torch.testing.assert_close(mse_per_task(pred, y), torch.tensor([0.0, 1.0, 4.0]))
