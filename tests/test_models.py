"""The models' fast per-task passes against their readable definitions, in float64."""
import pytest
import torch
import torch.nn.functional as F

from mlkit.models import MLP, Conv4, build_model, conv_bn


def randomize_batch_norm(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in model.blocks:
            block[1].weight.copy_(torch.rand(block[1].weight.shape, generator=g) * 2 - 0.5)
            block[1].bias.copy_(torch.randn(block[1].bias.shape, generator=g) * 0.3)
    return model


def per_task_weights(model, tasks, seed=0):
    """A different, random weight set per task: name -> (tasks, *shape)."""
    g = torch.Generator().manual_seed(seed)
    return {n: p.detach().expand(tasks, *p.shape) + 0.1 * torch.randn(tasks, *p.shape,
                                                                      generator=g, dtype=p.dtype)
            for n, p in model.named_parameters()}


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels", [1, 3])
def test_conv_bn_equals_conv_then_batch_norm_values_and_gradients(stride, channels):
    g = torch.Generator().manual_seed(stride + channels)
    x = torch.rand(6, channels, 11, 11, generator=g, dtype=torch.float64)
    w = torch.randn(5, channels, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    gamma = (torch.rand(5, generator=g, dtype=torch.float64) * 2 - 0.5).requires_grad_()
    beta = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    ref = F.batch_norm(F.conv2d(x, w, stride=stride, padding=1), None, None, gamma, beta,
                       training=True)
    ours = conv_bn(x, w, gamma, beta, stride)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    v = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    g_ref = torch.autograd.grad((ref * v).sum(), (w, gamma, beta), create_graph=True)
    g_ours = torch.autograd.grad((ours * v).sum(), (w, gamma, beta), create_graph=True)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # second order: the gradient of the gradient (what MAML differentiates)
    h_ref = torch.autograd.grad(sum((t ** 2).sum() for t in g_ref), (w, gamma))
    h_ours = torch.autograd.grad(sum((t ** 2).sum() for t in g_ours), (w, gamma))
    for a, b in zip(h_ours, h_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("pool", [True, False])
@pytest.mark.parametrize("size", [28, 21])
def test_conv4_functional_equals_readable_forward(pool, size):
    torch.manual_seed(0)
    model = randomize_batch_norm(Conv4(5, channels=1, hidden=8, image_size=size,
                                       pool=pool).double())
    x = torch.rand(7, 1, size, size, dtype=torch.float64)
    params = dict(model.named_parameters())
    torch.testing.assert_close(model.functional(params, x), model(x), rtol=0, atol=1e-12)
    assert model(x).shape == (7, 5)


@pytest.mark.parametrize("pool", [True, False])
def test_conv4_forward_tasks_runs_each_task_with_its_own_weights(pool):
    torch.manual_seed(1)
    model = randomize_batch_norm(Conv4(4, hidden=8, image_size=16, pool=pool).double(), 1)
    params = per_task_weights(model, 3, seed=1)
    x = torch.rand(3, 6, 1, 16, 16, dtype=torch.float64)
    out = model.forward_tasks(params, x)
    for t in range(3):
        own = torch.func.functional_call(model, {n: p[t] for n, p in params.items()}, (x[t],))
        torch.testing.assert_close(out[t], own, rtol=0, atol=1e-12)


def test_embed_tasks_takes_batch_norm_statistics_per_task():
    torch.manual_seed(2)
    model = randomize_batch_norm(Conv4(None, hidden=8, image_size=16).double(), 2)
    x = torch.rand(3, 5, 1, 16, 16, dtype=torch.float64)
    together = model.embed_tasks(x)
    for t in range(3):  # a task embedded alone gives the same features as in the batch
        torch.testing.assert_close(together[t], model(x[t]), rtol=0, atol=1e-12)
    changed = x.clone()
    changed[1] = torch.rand(5, 1, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(model.embed_tasks(changed)[0], together[0], rtol=0, atol=0)


def test_mlp_forward_tasks_equals_per_task_forward():
    torch.manual_seed(3)
    model = MLP((1, 7, 5, 2)).double()
    params = per_task_weights(model, 4, seed=3)
    x = torch.randn(4, 9, 1, dtype=torch.float64)
    out = model.forward_tasks(params, x)
    for t in range(4):
        own = torch.func.functional_call(model, {n: p[t] for n, p in params.items()}, (x[t],))
        torch.testing.assert_close(out[t], own, rtol=0, atol=1e-12)


@pytest.mark.parametrize("model", [MLP((1, 3, 1)), Conv4(None, hidden=4, pool=False),
                                   Conv4(20, hidden=4, image_size=32)])
def test_build_model_rebuilds_the_same_architecture(model):
    twin = build_model(model.config())
    assert twin.config() == model.config()
    assert {n: p.shape for n, p in twin.named_parameters()} == \
        {n: p.shape for n, p in model.named_parameters()}


def test_strided_network_is_mamls_and_pool_network_is_snells():
    strided, pooled = Conv4(5, pool=False), Conv4(None, pool=True)
    assert [b[0].stride for b in strided.blocks] == [(2, 2)] * 4
    assert all(isinstance(b[-1], torch.nn.MaxPool2d) for b in pooled.blocks)
    assert strided.feature_dim == 64 and pooled.feature_dim == 64  # 28x28 input
    assert all(b[0].bias is None for b in strided.blocks)  # batch norm cancels a conv bias


@pytest.mark.parametrize("kwargs, name", [({"ways": 1}, "ways"), ({"hidden": 0}, "hidden"),
                                          ({"image_size": 8}, "image_size"),
                                          ({"pool": "yes"}, "pool")])
def test_conv4_bad_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Conv4(**kwargs)
