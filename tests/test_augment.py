import math

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


def test_scaled_sizes():
    assert [augment.scaled(s, 32) for s in (256, 384, 512)] == [37, 55, 73]
    assert augment.scaled(256, 224) == 256


@pytest.mark.parametrize("scale", [37, (37, 73)])
def test_train_transform_contract(scale):
    tf = augment.train_transform(32, scale, mean=(0.3, 0.3, 0.3))
    out = tf(grey())
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    assert augment.train_transform(224, (256, 512))(rgb).shape == (3, 224, 224)


def test_grey_is_replicated_before_the_colour_shift():
    torch.manual_seed(0)
    out = augment.train_transform(32, 37, pca=None)(grey())
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_jittered_scale_covers_both_ends():
    torch.manual_seed(0)
    s = augment.sample_scales((37, 73), 5000)
    assert s.min() == 37 and s.max() == 73 and len(s.unique()) == 37
    # the real resize step: the smaller side lands in [Smin, Smax]
    resize = augment.train_transform(32, (37, 73)).transforms[1]
    sides = {min(resize(grey(28, 40)).shape[-2:]) for _ in range(500)}
    assert min(sides) >= 37 and max(sides) <= 73 and len(sides) > 30


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


def test_pca_from_dataset_grey_and_colour():
    base = data.TensorImages(
        torch.randint(0, 256, (50, 8, 8), dtype=torch.uint8), torch.zeros(50).long(), ["x"], "t"
    )
    eigval, eigvec = augment.pca_from_dataset(base, n=None)
    assert eigval[1] < 1e-6 * eigval[0]
    torch.testing.assert_close(eigvec[:, 0].abs(), torch.full((3,), 3**-0.5), atol=1e-4, rtol=0)
    # coloured pixels with a known covariance
    g = torch.Generator().manual_seed(0)
    cov = torch.tensor([[0.04, 0.01, 0.0], [0.01, 0.02, 0.0], [0.0, 0.0, 0.01]])
    pix = (torch.randn(64 * 64 * 20, 3, generator=g) @ torch.linalg.cholesky(cov).T + 0.5).clamp(
        0, 1
    )
    images = [(pix[i * 4096 : (i + 1) * 4096].T.reshape(3, 64, 64), 0) for i in range(20)]
    eigval, _ = augment.pca_from_dataset(images, n=None)
    torch.testing.assert_close(eigval, torch.linalg.eigvalsh(cov).flip(0), rtol=0.05, atol=2e-4)


def test_subtract_mean_exact():
    x = torch.rand(3, 5, 5)
    mean = (0.1, 0.2, 0.3)
    expected = (x - torch.tensor(mean)[:, None, None]) * 255
    torch.testing.assert_close(augment.subtract_mean(mean)(x), expected)
    torch.testing.assert_close(augment.subtract_mean(mean, 1.0)(x), expected / 255)


def test_eval_transform_shapes():
    x = grey(28, 42)
    assert augment.eval_transform(37, 32)(x).shape == (3, 32, 32)
    assert augment.eval_transform(37)(x).shape == (3, 37, 55)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: augment.train_transform(64, (37, 73)), "S=37 is below the crop 64"),
        (lambda: augment.train_transform(32, (73, 37)), "Smin=73 exceeds Smax=37"),
        (lambda: augment.train_transform(0, 37), "crop must be positive"),
        (lambda: augment.eval_transform(30, 32), "S=30 is below the crop 32"),
        (lambda: augment.PCALighting((1, 1, 1), torch.eye(3), std=-1), "non-negative"),
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
