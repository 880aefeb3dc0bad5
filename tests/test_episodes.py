"""The N-way K-shot episode sampler."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlkit.data import ClassImages
from mlkit.episodes import EpisodeFamily, sample_episodes
from mlkit.tasks import TaskBatch

CLASSES, SAMPLES, SIDE = 7, 6, 5


def toy_set():
    """Image (c, k) holds c in its top-left pixel and k beside it: easy to trace back."""
    images = torch.zeros(CLASSES, SAMPLES, SIDE, SIDE, dtype=torch.uint8)
    images[:, :, 0, 0] = torch.arange(CLASSES)[:, None]
    images[:, :, 0, 1] = torch.arange(SAMPLES)[None, :]
    names = [f"c{i}" for i in range(CLASSES)]
    return ClassImages(images, names, ["toy"] * CLASSES)


def unturn(x, turns):
    """Undo the quarter turns: x (..., H, W), turns broadcastable to x's leading dims."""
    out = x.clone()
    for k in (1, 2, 3):
        out[turns == k] = torch.rot90(x[turns == k], -k, dims=(-2, -1))
    return out


def check_episodes(e, data, ways, shots, queries, tasks):
    assert isinstance(e, TaskBatch) and e.tasks == tasks and set(e.info) == {"classes", "rotations"}
    classes, rotations = e.info["classes"], e.info["rotations"]
    assert e.x_support.shape == (tasks, ways * shots, 1, SIDE, SIDE)
    assert e.x_query.shape == (tasks, ways * queries, 1, SIDE, SIDE)
    assert e.y_support.shape == (tasks, ways * shots) and e.y_query.shape == (tasks, ways * queries)
    assert e.x_support.dtype == torch.float32 and e.y_support.dtype == torch.long
    assert classes.shape == rotations.shape == (tasks, ways)
    assert e.x_support.min() >= 0 and e.x_support.max() <= 1
    for y, m in ((e.y_support, shots), (e.y_query, queries)):
        assert torch.equal(y, torch.arange(ways).repeat_interleave(m).expand(tasks, -1))
    # (class, rotation) pairs are distinct within each task
    pairs = classes * 4 + rotations
    assert all(len(set(row.tolist())) == ways for row in pairs)
    # each image is drawing k of its label's class, turned; support and query drawings differ
    x = torch.cat([e.x_support.view(tasks, ways, shots, SIDE, SIDE),
                   e.x_query.view(tasks, ways, queries, SIDE, SIDE)], dim=2)
    x = unturn(x, rotations[..., None].expand(-1, -1, shots + queries))
    x = (x * 255).round().long()
    assert torch.equal(x[..., 0, 0], classes[..., None].expand_as(x[..., 0, 0]))
    drawings = x[..., 0, 1]
    assert all(len(set(d.tolist())) == shots + queries for d in drawings.view(-1, shots + queries))


def test_shapes_labels_and_contents():
    data = toy_set()
    e = sample_episodes(data, ways=3, shots=2, queries=3, tasks=4, generator=0)
    check_episodes(e, data, 3, 2, 3, 4)
    assert (e.info["rotations"] == 0).all()


def tensors(batch):
    """Every tensor of a TaskBatch: its four sets, then its info."""
    return [batch.x_support, batch.y_support, batch.x_query, batch.y_query,
            *(batch.info[k] for k in sorted(batch.info))]


def test_same_seed_same_episodes():
    data = toy_set()
    a = sample_episodes(data, 3, 1, 2, 5, generator=1)
    b = sample_episodes(data, 3, 1, 2, 5, generator=torch.Generator().manual_seed(1))
    c = sample_episodes(data, 3, 1, 2, 5, generator=2)
    assert len(tensors(a)) == 6 and all(torch.equal(u, v) for u, v in zip(tensors(a), tensors(b)))
    assert not torch.equal(a.info["classes"], c.info["classes"]) or \
        not torch.equal(a.x_query, c.x_query)


def test_rotations_make_four_times_the_classes():
    data = toy_set()
    e = sample_episodes(data, ways=4 * CLASSES, shots=1, queries=1, tasks=2, generator=0,
                        rotations=True)
    check_episodes(e, data, 4 * CLASSES, 1, 1, 2)
    assert set(e.info["rotations"].flatten().tolist()) == {0, 1, 2, 3}


def test_accepts_a_plain_float_tensor():
    images = toy_set().images.float() / 255
    e = sample_episodes(images, ways=2, shots=1, queries=1, tasks=1, generator=0, device="cpu")
    assert e.x_support.dtype == torch.float32 and e.x_support.max() <= 1


@pytest.mark.parametrize("kwargs, name", [
    (dict(ways=0), "ways"), (dict(ways=CLASSES + 1), "ways"), (dict(ways=2.0), "ways"),
    (dict(ways=True), "ways"), (dict(shots=0), "shots"), (dict(queries=-1), "queries"),
    (dict(shots=3, queries=SAMPLES - 2), "shots \\+ queries"), (dict(tasks=0), "tasks"),
    (dict(generator="seed"), "generator"), (dict(rotations="yes"), "rotations"),
])
def test_bad_arguments_name_the_parameter(kwargs, name):
    args = dict(ways=2, shots=1, queries=1, tasks=1) | kwargs
    with pytest.raises(ValueError, match=name):
        sample_episodes(toy_set(), **args)


def test_bad_dataset():
    with pytest.raises(ValueError, match="dataset"):
        sample_episodes(torch.zeros(3, 4, 5), 2, 1, 1, 1)
    with pytest.raises(ValueError, match="square"):
        sample_episodes(torch.zeros(3, 4, 5, 6), 2, 1, 1, 1, rotations=True)


# ----------------------------------------------------------------------------- EpisodeFamily
def test_family_samples_episodes_like_sample_episodes():
    data = toy_set()
    family = EpisodeFamily(data, ways=3, rotations=True, name="toy", split="train")
    e = family.sample(4, shots=2, generator=torch.Generator().manual_seed(5), queries=3)
    check_episodes(e, data, 3, 2, 3, 4)
    same = sample_episodes(data, 3, 2, 3, 4, generator=5, rotations=True)
    assert all(torch.equal(u, v) for u, v in zip(tensors(e), tensors(same)))
    # another number of ways for one call; the family keeps its own
    check_episodes(family.sample(2, 1, 1, generator=0, ways=5), data, 5, 1, 1, 2)
    assert family.ways == 3
    assert family.protocol() == {"task": "toy", "split": "train", "ways": 3, "rotations": True,
                                 "classes": CLASSES, "alphabets": 1, "image_size": [SIDE, SIDE]}
    assert EpisodeFamily.test_queries == 15 and EpisodeFamily.tasks_per_pass >= 1


def test_family_default_queries_and_device():
    many = ClassImages(torch.zeros(3, 16, SIDE, SIDE, dtype=torch.uint8), ["a", "b", "c"],
                       ["toy"] * 3)
    e = EpisodeFamily(many, ways=2).sample(1, shots=1, generator=0, device="cpu")
    assert e.x_query.shape[1] == 2 * 15 and e.x_query.device.type == "cpu"  # 15 per class
    with pytest.raises(ValueError, match="shots \\+ queries"):  # 1 + 15 > 6 drawings
        EpisodeFamily(toy_set(), ways=2).sample(1, shots=1, generator=0)


@pytest.mark.parametrize("kwargs, name", [
    (dict(dataset=torch.zeros(3, 4, 5, 5, dtype=torch.uint8)), "dataset"),
    (dict(ways=1), "ways"), (dict(ways=CLASSES + 1), "ways"), (dict(ways=2.5), "ways"),
    (dict(rotations=1), "rotations"),
])
def test_family_bad_arguments_name_the_parameter(kwargs, name):
    args = dict(dataset=toy_set(), ways=2) | kwargs
    with pytest.raises(ValueError, match=name):
        EpisodeFamily(**args)
    assert EpisodeFamily(toy_set(), ways=4 * CLASSES, rotations=True).ways == 4 * CLASSES


@settings(max_examples=40, deadline=None)
@given(ways=st.integers(1, 4 * CLASSES), shots=st.integers(1, SAMPLES - 1),
       queries=st.integers(1, SAMPLES - 1), tasks=st.integers(1, 4), rotations=st.booleans(),
       seed=st.integers(0, 2**32))
def test_any_valid_request_gives_valid_episodes(ways, shots, queries, tasks, rotations, seed):
    data = toy_set()
    valid = shots + queries <= SAMPLES and ways <= CLASSES * (4 if rotations else 1)
    if not valid:
        with pytest.raises(ValueError):
            sample_episodes(data, ways, shots, queries, tasks, generator=seed, rotations=rotations)
        return
    e = sample_episodes(data, ways, shots, queries, tasks, generator=seed, rotations=rotations)
    check_episodes(e, data, ways, shots, queries, tasks)


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(["ways", "shots", "queries", "tasks"]),
       value=st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.text(max_size=3)))
def test_any_nonpositive_or_non_integer_value_is_refused(name, value):
    args = dict(ways=2, shots=1, queries=1, tasks=1) | {name: value}
    with pytest.raises(ValueError, match=name):
        sample_episodes(toy_set(), **args)


def test_labels_are_shuffled_in_every_episode():
    """Label i is the i-th class drawn, in random order: a label means nothing across tasks,
    so a model cannot learn "label 0 is the class with the smallest index"."""
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 5, 4, 4).contiguous()
    batch = sample_episodes(images, ways=4, shots=1, queries=1, tasks=400, generator=3)
    classes = batch.info["classes"]                                 # (tasks, ways)
    pixel = (batch.x_support[:, :, 0, 0, 0] * 255).round().long()  # uint8 images become [0, 1]
    assert torch.equal(pixel, classes)                               # each image shows its class
    smallest_first = (classes[:, 0] == classes.min(1).values).double().mean().item()
    assert 0.15 < smallest_first < 0.35  # a random order puts it first 1 time in 4
    sorted_rows = (classes[:, 1:] > classes[:, :-1]).all(1).double().mean().item()
    assert sorted_rows < 0.1             # 1 in 24 for a random order of 4


def test_the_evaluation_family_holds_only_held_out_classes():
    from mlkit.data import load_glyphs
    from mlkit.episodes import evaluation_family
    family = evaluation_family(5)
    held_out, background = load_glyphs("evaluation"), load_glyphs("background")
    assert family.dataset.class_names == held_out.class_names
    assert not set(family.dataset.class_names) & set(background.class_names)
    assert not set(family.dataset.alphabet_names) & set(background.alphabet_names)
    assert family.protocol()["split"] == "evaluation"
