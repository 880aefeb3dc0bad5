"""The plotting helpers return figures with the lines and axes they promise."""
import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from mlkit import MLP, SinusoidFamily, adaptation_curves, make_learner, meta_test
from mlkit import plots

matplotlib.use("Agg")


@pytest.fixture
def batch():
    return SinusoidFamily().sample(6, 5, 7, generator=torch.Generator().manual_seed(0))


def test_loss_curve_raw_and_smoothed():
    fig = plots.plot_loss_curve(torch.rand(200) + 0.1, smooth=20)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert len(fig.axes[0].lines) == 2
    assert fig.axes[0].get_yscale() == "log"


def test_loss_curve_short_run_draws_one_line_and_adds_to_axes():
    fig = plots.plot_loss_curve([1.0, 0.5, 0.2], smooth=50)
    assert len(fig.axes[0].lines) == 1
    plots.plot_loss_curve([2.0] * 60, smooth=10, ax=fig.axes[0], label="second run")
    assert len(fig.axes[0].lines) == 3


def test_adaptation_curves_accepts_meta_test_curves_and_tensors(batch):
    torch.manual_seed(0)
    learner = make_learner("maml", MLP((1, 8, 1)))
    tested = meta_test(learner, SinusoidFamily(), shots=5, steps=3, tasks=20, queries=10)
    curves = adaptation_curves(learner, batch, steps=3)
    fig = plots.plot_adaptation_curves({"MAML": tested, "curves": curves,
                                        "tensor": torch.rand(10, 4)})
    ax = fig.axes[0]
    assert len(ax.lines) == 3
    assert len(ax.collections) == 3  # one CI band each
    assert list(ax.lines[0].get_xdata()) == [0, 1, 2, 3]
    assert ax.lines[0].get_ydata()[0] == pytest.approx(tested["mse"]["0"]["mean"])
    assert ax.get_ylabel() == "query MSE"


def test_adaptation_curves_rejects_empty():
    with pytest.raises(ValueError, match="results_by_name"):
        plots.plot_adaptation_curves({})


def test_task_plots(batch):
    fig = plots.plot_tasks(batch, max_tasks=4, mean_curve=lambda x: 0 * x)
    assert len(fig.axes[0].lines) == 5
    fig = plots.plot_support_query(batch, task=2)
    assert len(fig.axes[0].lines) == 1 and len(fig.axes[0].collections) == 2
    x = torch.linspace(-5, 5, 50)
    fig = plots.plot_fit(x, torch.sin(x), {"model": torch.cos(x), "MAML": x},
                         support=(x[:5], x[:5]))
    assert len(fig.axes[0].lines) == 3 and len(fig.axes[0].collections) == 1


def test_episode_schematic_draws_one_square_per_example():
    fig = plots.plot_episode_schematic(ways=3, shots=2, queries=1)
    assert len(fig.axes[0].patches) == 3 * (2 + 1)


def test_contour_paths():
    loss = lambda p: (p ** 2).sum(1) + 0.1
    path = torch.tensor([[1.0, 1.0], [0.5, 0.5], [0.1, 0.1]])
    fig = plots.plot_loss_contour_paths(loss, (-2, 2), (-2, 2), resolution=20,
                                        paths={"one": path, "many": [path, -path]},
                                        points={"start": (1.0, 1.0)})
    assert len(fig.axes) == 2  # the plot and its colour bar
    assert len(fig.axes[0].lines) == 4  # three paths and one star
