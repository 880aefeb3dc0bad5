"""The plotting helpers return figures with the lines and axes they promise."""
import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from mlkit import MLP, SinusoidFamily, fine_tune, make_learner, meta_test, plots
from mlkit.data import ClassImages
from mlkit.episodes import sample_episodes

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


def test_adaptation_curves_accepts_meta_test_fine_tune_results_and_tensors(batch):
    torch.manual_seed(0)
    learner = make_learner("maml", MLP((1, 8, 1)))
    tested = meta_test(learner, SinusoidFamily(), shots=5, steps=3, tasks=20, queries=10)
    curves = fine_tune(learner, batch, steps=3)
    fig = plots.plot_adaptation_curves({"MAML": tested, "curves": curves,
                                        "tensor": torch.rand(10, 4)})
    ax = fig.axes[0]
    assert len(ax.lines) == 3
    assert len(ax.collections) == 3  # one CI band each
    assert list(ax.lines[0].get_xdata()) == [0, 1, 2, 3]
    assert ax.lines[0].get_ydata()[0] == pytest.approx(tested["mse"]["0"]["mean"])
    assert list(ax.lines[1].get_ydata()) == pytest.approx(curves["loss"].mean(0).tolist())
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


# ----------------------------------------------------------------------------- few-shot images
def toy_images(classes=6, samples=4, side=8):
    """Image (c, k) is filled with (c * samples + k) / (classes * samples) * 255."""
    values = torch.arange(classes * samples, dtype=torch.float32) / (classes * samples) * 255
    images = values.view(classes, samples, 1, 1).expand(-1, -1, side, side).to(torch.uint8)
    return ClassImages(images.contiguous(), [f"c{i}" for i in range(classes)],
                       ["A"] * (classes // 2) + ["B"] * (classes - classes // 2))


def test_mosaic_places_each_image_in_its_cell():
    images = torch.arange(5, dtype=torch.float32).view(5, 1, 1).expand(5, 3, 3) / 10
    out = plots.mosaic(images, cols=2, pad=1)
    assert out.shape == (3 * 4 - 1, 2 * 4 - 1)
    for i in range(5):
        r, c = divmod(i, 2)
        assert (out[r * 4:r * 4 + 3, c * 4:c * 4 + 3] == pytest.approx(i / 10))
    assert out[8:, 4:] == pytest.approx(0.35)  # the empty sixth cell


def test_gallery_has_one_row_per_alphabet():
    data = toy_images()
    fig = plots.plot_gallery(data, per_alphabet=2)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A (3)", "B (3)"]
    assert ax.images[0].get_array().shape == (2 * 10 - 2, 2 * 10 - 2)
    with pytest.raises(ValueError, match="'C'"):
        plots.plot_gallery(data, alphabets=["C"])


def test_episode_shows_support_and_query_by_label():
    e = sample_episodes(toy_images(), ways=3, shots=1, queries=2, tasks=2, generator=0)
    fig = plots.plot_episode(e, task=1, title="toy")
    support, query = fig.axes
    assert support.images[0].get_array().shape == (8, 3 * 10 - 2)
    assert query.images[0].get_array().shape == (2 * 10 - 2, 3 * 10 - 2)
    assert [t.get_text() for t in support.get_xticklabels()] == ["0", "1", "2"]
    assert "support: 1 per label (toy)" == support.get_title()
    # the left column of the query set holds label 0's drawings, the next one label 1's
    grid = np.asarray(query.images[0].get_array())
    for row, col, index in ((0, 0, 0), (1, 0, 1), (0, 1, 2), (1, 2, 5)):
        cell = grid[10 * row:10 * row + 8, 10 * col:10 * col + 8]
        assert int(e.y_query[1, index]) == col
        assert cell == pytest.approx(e.x_query[1, index, 0].numpy())


def test_draw_predictions_marks_right_and_wrong():
    images = torch.zeros(4, 8, 8)
    fig = matplotlib.figure.Figure()
    ax = fig.add_subplot()
    plots.draw_predictions(ax, images, torch.tensor([0, 1, 2, 0]),
                           {"MAML": torch.tensor([0, 1, 0, 0]), "ProtoNet": None},
                           support=torch.zeros(3, 8, 8), cols=3)
    guesses = [t for t in ax.texts if t.get_text().startswith("M")]
    assert [t.get_text() for t in guesses] == ["M0", "M1", "M0", "M0"]
    colours = [matplotlib.colors.to_hex(t.get_bbox_patch().get_facecolor()) for t in guesses]
    assert colours == [plots.GOOD, plots.GOOD, plots.BAD, plots.GOOD]
    assert sum(t.get_text().startswith("label ") for t in ax.texts) == 3
