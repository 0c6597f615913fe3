"""The batched augmentation against the per-image transforms it replaces: the same pixels under
the same draws, and draws from the same distribution."""

import pytest
import torch
from scipy import stats

from vggbook import augment, batches, data

MEAN = (0.29, 0.29, 0.29)


@pytest.fixture(scope="module")
def images():
    """300 Fashion-MNIST training images, uint8 (N, 1, 28, 28)."""
    return batches.images_of(data.load_dataset("fashion-mnist", "train"))[:300]


def per_image_draws(images, crop, scale, seed=0, flip=True):
    """The per-image pipeline run on every image under one seed, with what it drew recorded:
    (outputs, Draws)."""
    tf = augment.train_transform(crop, scale, mean=MEAN, flip=flip)
    drawn: dict[str, list] = {}
    for t in tf.transforms:
        name = type(t).__name__
        if name in ("Resize", "RandomResize", "RandomCrop", "RandomHorizontalFlip", "PCALighting"):

            def record(flat, make=t.make_params, name=name):
                params = make(flat)
                drawn[name] = params
                return params

            t.make_params = record
    torch.manual_seed(seed)
    rows, outputs = [], []
    for image in images:
        drawn.clear()
        outputs.append(tf(image))
        s = drawn["RandomResize"]["size"][0] if "RandomResize" in drawn else scale
        crop_params = drawn["RandomCrop"]
        shift = drawn["PCALighting"]["shift"]
        rows.append((s, crop_params["top"], crop_params["left"], "RandomHorizontalFlip" in drawn,
                     shift))  # fmt: skip
    draws = batches.Draws(
        torch.tensor([r[0] for r in rows]),
        torch.tensor([r[1] for r in rows]),
        torch.tensor([r[2] for r in rows]),
        torch.tensor([r[3] for r in rows]),
        torch.stack([r[4] for r in rows]),
    )
    return torch.stack(outputs), draws


@pytest.mark.parametrize("scale", [37, (37, 73)], ids=["fixed S", "jittered S"])
def test_same_draws_same_pixels(images, scale):
    expected, draws = per_image_draws(images[:64], 32, scale)
    batch = batches.BatchAugment(images[:64], 32, scale, mean=MEAN)
    got = batch(torch.arange(64), draws)
    assert got.shape == expected.shape == (64, 3, 32, 32)
    assert torch.equal(got, expected)
    assert draws.flip.any() and not draws.flip.all()  # both branches were compared
    if not isinstance(scale, int):
        assert len(draws.scale.unique()) > 10


@pytest.mark.parametrize("scale", [37, (37, 45)], ids=["fixed S", "jittered S"])
def test_draws_follow_the_per_image_distribution(images, scale):
    """Chi-squared tests of homogeneity on S, offsets and flips, Kolmogorov-Smirnov on the
    colour shifts: 1,200 draws from each path (fixed seeds: deterministic)."""
    n = 1200
    stacked = images.repeat(n // len(images), 1, 1, 1)
    _, ours = per_image_draws(stacked, 32, scale, seed=1)
    theirs = batches.BatchAugment(stacked, 32, scale, mean=MEAN).draws(
        torch.Generator().manual_seed(1)
    )
    for name in ("scale", "top", "left", "flip"):
        a, b = getattr(ours, name).long(), getattr(theirs, name).long()
        values = torch.cat([a, b]).unique()
        table = [[int((x == v).sum()) for v in values] for x in (a, b)]
        if len(values) > 1:
            assert stats.chi2_contingency(table).pvalue > 1e-3, (name, table)
        else:
            assert table[0] == table[1]
    for k in range(3):
        assert stats.ks_2samp(ours.shift[:, k], theirs.shift[:, k]).pvalue > 1e-3


def test_offsets_cover_every_position(images):
    """Uniform on 0 .. S - crop, both ends included (as RandomCrop), for every S."""
    batch = batches.BatchAugment(images, 32, (37, 40))
    d = batch.draws(torch.Generator().manual_seed(0))
    for s in range(37, 41):
        tops = d.top[d.scale == s]
        assert set(tops.tolist()) == set(range(s - 32 + 1))


def test_draws_depend_on_the_image_not_the_batch(images):
    batch = batches.BatchAugment(images, 32, (37, 73), mean=MEAN)
    draws = batch.draws(torch.Generator().manual_seed(5))
    whole = batch(torch.arange(20), draws)
    halves = torch.cat([batch(torch.arange(10, 20), draws), batch(torch.arange(10), draws)])
    assert torch.equal(whole, torch.cat([halves[10:], halves[:10]]))


def test_images_of_finds_in_memory_datasets(images):
    train = data.load_dataset("fashion-mnist", "train")
    sub = data.subset(train, 100, seed=0)
    assert torch.equal(batches.images_of(sub)[:, 0], train.data[sub.indices])
    assert batches.images_of(data.with_transform(train, lambda x: x)) is None
