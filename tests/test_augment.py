import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from vggbook import augment, data


def grey(h=28, w=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tv_tensors.Image(torch.randint(0, 256, (1, h, w), dtype=torch.uint8, generator=g))


def unit(x):
    """uint8 pixels as the pipeline's floats in [0, 1] (x * (1/255), bit for bit)."""
    return v2.ToDtype(torch.float32, scale=True)(torch.as_tensor(x))


def test_scaled_sizes():
    assert [augment.scaled(s, 32) for s in (256, 384, 512)] == [37, 55, 73]
    assert augment.scaled(256, 224) == 256


@pytest.mark.parametrize("scale", [37, (37, 73)])
def test_train_transform_contract(scale):
    tf = augment.train_transform(32, scale, mean=(0.3, 0.3, 0.3))
    out = tf(grey())
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    out = augment.train_transform(224, (256, 512))(rgb)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    out = augment.train_transform(32, scale, pca=None)(rgb.convert("L"))  # a grey PIL image
    assert out.shape == (3, 32, 32) and torch.equal(out[0], out[2])


def test_grey_is_replicated_before_the_colour_shift():
    torch.manual_seed(0)
    out = augment.train_transform(32, 37, pca=None)(grey())
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_jittered_scale_covers_both_ends():
    torch.manual_seed(0)
    s = augment.sample_scales((37, 73), 5000)
    assert s.min() == 37 and s.max() == 73 and len(s.unique()) == 37
    # the real resize step: the smaller side lands in [Smin, Smax]
    counts = torch.bincount(s - 37, minlength=37)  # uniform: chi-square within dof + 5 sd
    chi2 = ((counts - 5000 / 37) ** 2 / (5000 / 37)).sum().item()
    assert chi2 < 36 + 5 * math.sqrt(2 * 36)
    # the real resize step: the smaller side takes every value in [Smin, Smax] and no other
    resize = augment.train_transform(32, (37, 73)).transforms[1]
    sides = {min(resize(grey(28, 40)).shape[-2:]) for _ in range(800)}
    assert sides == set(range(37, 74))


def test_fixed_scale():
    assert set(augment.sample_scales(37, 10).tolist()) == {37}
    resize = augment.train_transform(32, 37).transforms[1]
    assert resize(grey(28, 56)).shape[-2:] == (37, 74)


def test_flip_is_an_exact_mirror():
    x = grey(32, 32)
    assert torch.equal(v2.RandomHorizontalFlip(p=1)(x), x.flip(-1))
    # in the pipeline, under the same seed, a flipped draw of the image equals the mirror
    tf = augment.train_transform(32, 32, pca=None)  # no crop freedom at S = crop
    flipped = unflipped = None
    for seed in range(20):
        torch.manual_seed(seed)
        out = tf(x)
        if torch.allclose(out[0], x[0].float() / 255):
            unflipped = out
        elif torch.allclose(out[0], x[0].flip(-1).float() / 255):
            flipped = out
    assert flipped is not None and unflipped is not None
    assert torch.equal(flipped, unflipped.flip(-1))


def test_pipeline_commutes_with_mirroring():
    # a 40x32 (HxW) image at S = crop = 32: the crop can move vertically but not horizontally,
    # so under the same seed the mirror image must give exactly the mirrored output, flipped
    # or not, with the same colour shift and mean subtraction
    g = torch.Generator().manual_seed(0)
    x = tv_tensors.Image(torch.randint(0, 256, (3, 40, 32), dtype=torch.uint8, generator=g))
    tf = augment.train_transform(32, 32, mean=(0.4, 0.5, 0.6))
    tops = set()
    for seed in range(12):
        torch.manual_seed(seed)
        a = tf(x)
        torch.manual_seed(seed)
        b = tf(x.flip(-1))
        assert torch.equal(b, a.flip(-1))
        torch.manual_seed(seed)
        no_shift = augment.train_transform(32, 32, pca=None, pixel_scale=1.0)(x)
        crops = [unit(x[:, i : i + 32]) for i in range(9)]
        tops.add(
            next(i for i, c in enumerate(crops) if no_shift.equal(c) or no_shift.equal(c.flip(-1)))
        )
    assert len(tops) > 1  # the vertical crop did move


def test_flip_happens_half_the_time_and_only_if_asked():
    x = grey(32, 32)
    plain, mirrored = unit(x), unit(x.flip(-1))
    outcomes = []
    torch.manual_seed(0)
    for flip in (True, False):
        tf = augment.train_transform(32, 32, pca=None, flip=flip, pixel_scale=1.0)
        for _ in range(400):
            out = tf(x)[:1]
            assert torch.equal(out, plain) or torch.equal(out, mirrored)
            outcomes.append((flip, torch.equal(out, mirrored)))
    flips = sum(f for asked, f in outcomes if asked)
    assert 150 <= flips <= 250  # Binomial(400, 0.5): 200 +- 5 sd
    assert not any(f for asked, f in outcomes if not asked)


def test_pca_lighting_statistics():
    eigval, eigvec = torch.tensor(augment.IMAGENET_EIGVAL), torch.tensor(augment.IMAGENET_EIGVEC)
    t = augment.PCALighting(eigval, eigvec, std=0.1)
    torch.manual_seed(0)
    n = 20000
    shifts = torch.stack([t(torch.zeros(3, 1, 1)).flatten() for _ in range(n)])
    assert (shifts.mean(0).abs() < 5 * shifts.std(0) / math.sqrt(n)).all()
    alpha_times_eigval = shifts @ eigvec  # eigvec is orthonormal: back onto the components
    torch.testing.assert_close(alpha_times_eigval.std(0), 0.1 * eigval, rtol=0.03, atol=0)
    # the same shift on every pixel of an image
    img = torch.rand(3, 4, 5)
    torch.manual_seed(1)
    out = t(img)
    d = out - img
    assert torch.allclose(d, d[:, :1, :1].expand_as(d))


def test_pca_lighting_refuses_integer_or_grey_images():
    t = augment.PCALighting(augment.IMAGENET_EIGVAL, augment.IMAGENET_EIGVEC)
    with pytest.raises(TypeError, match="after v2.RGB"):
        t(grey())
    with pytest.raises(TypeError, match="1 channel"):
        t(v2.ToDtype(torch.float32, scale=True)(grey()))
    image, label = t(tv_tensors.Image(torch.rand(3, 4, 4)), torch.tensor(7))
    assert label.item() == 7 and image.shape == (3, 4, 4)


def test_pca_from_dataset_grey_and_colour():
    base = data.TensorImages(
        torch.randint(0, 256, (50, 8, 8), dtype=torch.uint8), torch.zeros(50).long(), ["x"], "t"
    )
    eigval, eigvec = augment.pca_from_dataset(base, n=None)
    assert eigval[1] < 1e-6 * eigval[0]
    torch.testing.assert_close(eigvec[:, 0].abs(), torch.full((3,), 3**-0.5), atol=1e-4, rtol=0)
    # the one eigenvalue is the variance of the grey value times 3 (it is shared by R, G, B)
    grey_var = (base.data.double() / 255).var().item()
    assert eigval[0].item() == pytest.approx(3 * grey_var, rel=1e-4)


def test_pca_from_dataset_recovers_a_known_colour_covariance():
    # uint8 RGB images whose pixels have covariance Q diag(lam) Q^T in [0, 1] units, with the
    # mean at 0.5 and at most 0.1 sd per channel, so that no pixel is clipped
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.tensor([[1.0, 0.2, 0.1], [0.5, 1.0, 0.3], [0.2, 0.4, 1.0]]))
    lam = torch.tensor([0.008, 0.002, 0.0005])
    cov = q @ torch.diag(lam) @ q.T
    n = 20 * 64 * 64
    pix = torch.randn(n, 3, generator=g) @ torch.linalg.cholesky(cov).T + 0.5
    assert pix.min() > 0 and pix.max() < 1
    images = (pix * 255).round().to(torch.uint8).T.reshape(3, 20, 64, 64).transpose(0, 1)
    ds = [(tv_tensors.Image(img), 0) for img in images]
    eigval, eigvec = augment.pca_from_dataset(ds, n=None)
    # sampling error of an eigenvalue from 81920 pixels: ~sqrt(2/n) = 0.5%; rounding to uint8
    # adds 1/(12 * 255^2) = 1.3e-6 to each
    torch.testing.assert_close(eigval, lam, rtol=0.03, atol=0)
    alignment = (eigvec * q).sum(0).abs()  # |cos| between found and true eigenvectors
    assert (alignment > 0.99).all(), alignment


def test_subtract_mean_exact():
    x = torch.rand(3, 5, 5)
    mean = (0.1, 0.2, 0.3)
    centred = x - torch.tensor(mean)[:, None, None]
    assert torch.equal(augment.subtract_mean(mean, 1.0)(x), centred)
    # x 255 up to float32 rounding: v2.Normalize divides by float32(1/255)
    torch.testing.assert_close(augment.subtract_mean(mean)(x), centred * 255, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(augment.subtract_mean(mean, 10)(x), centred * 10, rtol=1e-6, atol=0)


def test_eval_transform_shapes():
    x = grey(28, 42)
    assert augment.eval_transform(37, 32)(x).shape == (3, 32, 32)
    out = augment.eval_transform(37)(x)  # the whole image, smaller side Q: 42 * 37 / 28 = 55.5
    assert out.shape == (3, 37, 55) and out.dtype == torch.float32
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    assert augment.eval_transform(37, 32, mean=(0.5, 0.5, 0.5))(rgb).shape == (3, 32, 32)
    # no randomness, and the crop is the centre: a 32x48 image at Q = 32 keeps columns 8..39
    y = grey(32, 48)
    torch.manual_seed(0)
    a = augment.eval_transform(32, 32)(y)
    torch.manual_seed(1)
    assert torch.equal(a, augment.eval_transform(32, 32)(y))
    assert torch.equal(a[:1], unit(y[:, :, 8:40]))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: augment.train_transform(64, (37, 73)), "S=37 is below the crop 64"),
        (lambda: augment.train_transform(32, (73, 37)), "Smin=73 exceeds Smax=37"),
        (lambda: augment.train_transform(0, 37), "crop must be positive"),
        (lambda: augment.eval_transform(30, 32), "Q=30 is below the crop 32"),
        (lambda: augment.PCALighting((1, 1, 1), torch.eye(3), std=-1), "non-negative"),
        (lambda: augment.train_transform(32, 31), "S=31 is below the crop 32"),
        (lambda: augment.train_transform(32, (37, 73), pca_std=-0.1), "non-negative"),
        (lambda: augment.eval_transform(37, 0), "crop must be positive"),
    ],
)
def test_impossible_parameters(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_same_seed_same_augmentation():
    tf = augment.train_transform(32, (37, 73), mean=(0.5, 0.5, 0.5))
    x = grey()
    torch.manual_seed(3)
    a = tf(x)
    torch.manual_seed(3)
    b = tf(x)
    torch.manual_seed(4)
    c = tf(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_stages_for_pictures():
    torch.manual_seed(0)
    rgb = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    names = [n for n, _ in augment.stages(rgb, 224, (256, 512), mean=(0.5, 0.5, 0.5))]
    assert names == [
        "original",
        "rescaled to S (jittered)",
        "random crop",
        "flipped",
        "colour shift",
        "mean subtracted",
    ]


def old_mean_rgb(ds, n=None):
    """The mean RGB as computed before streaming: every pixel gathered as float32, then float64."""
    return data.pixels(ds, n).double().mean(0).tolist()


@pytest.fixture
def png_folder(tmp_path):
    """An ImageFolder tree train/<a, b>/ of lossless RGB PNGs of two sizes (so that a mean over
    images rather than pixels would differ), and the same pixels as (H, W, 3) uint8 arrays."""
    rng = np.random.default_rng(1)
    arrays = []
    for c, (h, w), brighter in (("a", (7, 9), 0), ("b", (12, 10), 60)):
        (tmp_path / "train" / c).mkdir(parents=True)
        for i in range(4):
            # channels centred apart (R dark, G bright) so that a channel mix-up shows
            x = rng.integers(0, 192, (h, w, 3)) // np.array([4, 1, 2]) + brighter
            x = x.astype(np.uint8)
            Image.fromarray(x, "RGB").save(tmp_path / "train" / c / f"{i}.png")
            arrays.append(x)
    return tmp_path, arrays


def test_mean_rgb_equals_float64_reference_on_in_memory_grey_images():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (13, 5, 6), dtype=torch.uint8, generator=g)
    ds = data.TensorImages(images, torch.zeros(13).long(), ["x"], "t")
    reference = images.double().mean().item() / 255
    assert augment.mean_rgb(ds) == pytest.approx((reference,) * 3, abs=1e-12, rel=0)
    # the old float32-then-float64 gather agrees to its float32 rounding of x / 255
    assert augment.mean_rgb(ds) == pytest.approx(old_mean_rgb(ds), abs=1e-7, rel=0)
    # n: the same images as data.pixels draws (seed 0), not the first n
    drawn = images[torch.randperm(13, generator=torch.Generator().manual_seed(0))[:4]]
    expected = drawn.double().mean().item() / 255
    assert augment.mean_rgb(ds, n=4) == pytest.approx((expected,) * 3, abs=1e-12, rel=0)
    assert augment.mean_rgb(ds, n=4) == pytest.approx(old_mean_rgb(ds, 4), abs=1e-7, rel=0)
    assert expected != pytest.approx(images[:4].double().mean().item() / 255, abs=1e-6)


def test_mean_rgb_equals_float64_reference_on_an_image_folder(png_folder):
    root, arrays = png_folder
    ds = data.load_dataset("imagefolder", "train", root)
    flat = np.concatenate([a.reshape(-1, 3) for a in arrays]).astype(np.float64)
    reference = tuple((flat.sum(0) / len(flat) / 255).tolist())
    assert augment.mean_rgb(ds) == pytest.approx(reference, abs=1e-12, rel=0)
    assert augment.mean_rgb(ds) == pytest.approx(old_mean_rgb(ds), abs=1e-7, rel=0)
    # weighted by pixels, not by images, and the channels in order
    per_image = np.mean([a.reshape(-1, 3).mean(0) for a in arrays], 0) / 255
    assert np.abs(np.array(reference) - per_image).max() > 1e-3
    assert reference[0] < reference[2] < reference[1]

    # n images drawn as data.pixels draws them: the first n of a shuffle with seed 0
    def mean_of(indices):
        flat = np.concatenate([arrays[i].reshape(-1, 3) for i in indices]).astype(np.float64)
        return tuple(flat.mean(0) / 255)

    order = list(range(len(arrays)))
    random.Random(0).shuffle(order)
    assert augment.mean_rgb(ds, n=3) == pytest.approx(mean_of(order[:3]), abs=1e-12, rel=0)
    assert augment.mean_rgb(ds, n=3) == pytest.approx(old_mean_rgb(ds, 3), abs=1e-7, rel=0)
    assert augment.mean_rgb(ds, n=3) != pytest.approx(mean_of(range(3)), abs=1e-6)
    # through the wrappers: a subset (all of it, and n of it), a uint8 transform, a float
    # transform (float64 sums)
    sub = data.LabelledSubset(ds, [1, 5, 6, 2])
    assert augment.mean_rgb(sub) == pytest.approx(mean_of([1, 5, 6, 2]), abs=1e-12, rel=0)
    order = list(range(4))
    random.Random(0).shuffle(order)
    picked = [sub.indices[i] for i in order[:2]]
    assert augment.mean_rgb(sub, n=2) == pytest.approx(mean_of(picked), abs=1e-12, rel=0)
    assert augment.mean_rgb(sub, n=2) != pytest.approx(mean_of(order[:2]), abs=1e-6)
    as_uint8 = data.with_transform(ds, v2.PILToTensor())
    assert augment.mean_rgb(as_uint8) == pytest.approx(reference, abs=1e-12, rel=0)
    as_float = data.with_transform(ds, v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, True)]))
    assert augment.mean_rgb(as_float) == pytest.approx(reference, abs=1e-7, rel=0)


def test_mean_rgb_streams_instead_of_gathering_pixels(monkeypatch, png_folder):
    def gather(*args, **kwargs):
        raise AssertionError("data.pixels gathers every pixel")

    folder = data.load_dataset("imagefolder", "train", png_folder[0])
    grey_images = data.TensorImages(
        torch.arange(60, dtype=torch.uint8).reshape(5, 3, 4), torch.zeros(5).long(), ["x"], "t"
    )
    expected = [old_mean_rgb(ds) for ds in (folder, grey_images)]
    monkeypatch.setattr(data, "pixels", gather)
    with pytest.raises(AssertionError, match="gathers"):
        old_mean_rgb(folder)
    for ds, old in zip((folder, grey_images), expected, strict=True):
        assert augment.mean_rgb(ds) == pytest.approx(old, abs=1e-7, rel=0)
        assert augment.mean_rgb(ds, n=2) == augment.mean_rgb(ds, n=2)


def test_mean_rgb_replicates_grey():
    class Mixed(torch.utils.data.Dataset):
        """A grey PIL image (all 10) and an RGB one (20, 40, 60), each 2 x 3 pixels."""

        def __len__(self):
            return 2

        def __getitem__(self, i):
            if i == 0:
                return Image.fromarray(np.full((2, 3), 10, np.uint8), "L"), 0
            return Image.fromarray(np.full((2, 3, 3), (20, 40, 60), np.uint8), "RGB"), 0

    # the grey image counts as (10, 10, 10): (10 + 20) / 2, (10 + 40) / 2, (10 + 60) / 2
    assert augment.mean_rgb(Mixed()) == pytest.approx((15 / 255, 25 / 255, 35 / 255), abs=1e-15)
    images = torch.full((2, 4, 4), 51, dtype=torch.uint8)
    ds = data.TensorImages(images, torch.zeros(2).long(), ["x"], "t")
    assert augment.mean_rgb(ds) == (0.2, 0.2, 0.2)


def test_mean_rgb_of_nothing_is_an_error():
    ds = data.TensorImages(torch.zeros(0, 4, 4, dtype=torch.uint8), torch.zeros(0), ["x"], "t")
    with pytest.raises(ValueError, match="no pixels"):
        augment.mean_rgb(ds)
