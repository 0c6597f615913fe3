import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torchvision.transforms import v2

from vggbook import evaluate as ev
from vggbook.models import build_vgg

ROOT = Path(__file__).resolve().parent.parent


class Images(torch.utils.data.Dataset):
    """Random images of one size (or of several sizes) with labels."""

    def __init__(self, n=6, sizes=((40, 48),), classes=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.items = [
            (
                torch.randint(0, 256, (3, *sizes[i % len(sizes)]), dtype=torch.uint8, generator=g),
                i % classes,
            )
            for i in range(n)
        ]
        self.classes = list(range(classes))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_vgg("A", 4, width=0.125, image_size=32).eval()


def setting(scales=(40,), crop=32):
    return ev.Setting(crop, scales, v2.Normalize([0.5] * 3, [1 / 255] * 3))


def test_grid_crops_positions():
    x = torch.arange(40 * 48).reshape(1, 1, 40, 48)
    crops = ev.grid_crops(x, 32)
    assert len(crops) == 25 and all(c.shape[-2:] == (32, 32) for c in crops)
    assert torch.equal(crops[0], x[..., :32, :32]) and torch.equal(crops[-1], x[..., 8:, 16:])


@pytest.mark.parametrize(
    ("protocol", "views"),
    [("single", 1), ("multiscale", 3), ("dense", 6), ("multicrop", 150), ("dense+multicrop", 156)],
)
def test_protocol_shapes_and_view_counts(model, protocol, views):
    scales = (32, 40, 48)
    probs, labels = ev.predict(model, Images(), protocol, setting(scales))
    assert probs.shape == (6, 4) and labels.tolist() == [0, 1, 2, 3, 0, 1]
    torch.testing.assert_close(probs.sum(1), torch.ones(6))
    assert ev.views_per_image(protocol, scales) == views


def test_dense_equals_single_at_the_training_size(model):
    s = setting((32,))
    ds = Images(sizes=((32, 32),))
    single, _ = ev.predict(model, ds, "single", s)
    dense, _ = ev.predict(model, ds, "dense", s)
    # dense averages the image and its mirror; single sees the image only
    mirrored = Images(sizes=((32, 32),))
    mirrored.items = [(x.flip(-1), y) for x, y in ds.items]
    single_flip, _ = ev.predict(model, mirrored, "single", s)
    torch.testing.assert_close(dense, (single + single_flip) / 2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("size", "passes"), [(40, 50), (34, 18), (32, 2)])
def test_multicrop_averages_every_view_once_each_crop(model, size, passes):
    """Square images: at 34 px the grid's 25 crops are 9 distinct ones, at 32 px (the crop)
    one; each is computed once, and the average stays that of the 50 views."""
    x = ev.Setting(32, (size,), v2.Normalize([0.0] * 3, [1.0] * 3)).transform(size)(
        Images(sizes=((size, size),)).items[0][0]
    )
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        probs = ev.crop_probs(model, x[None], 32)
    hook.remove()
    views = [v for c in ev.grid_crops(x[None], 32) for v in (c, c.flip(-1))]
    with torch.no_grad():
        manual = torch.stack([torch.softmax(model(v), 1) for v in views]).mean(0)
    assert len(views) == 50 and len(calls) == passes
    torch.testing.assert_close(probs, manual)


@pytest.mark.parametrize("protocol", ["single", "dense", "multicrop"])
def test_channels_last_gives_the_same_probabilities(model, protocol):
    s = setting((32, 40))
    contiguous, _ = ev.predict(model, Images(), protocol, s)
    last, _ = ev.predict(model, Images(), protocol, s, channels_last=True)
    torch.testing.assert_close(last, contiguous, rtol=1e-4, atol=1e-6)


def test_sum_pooling_keeps_the_argmax(model):
    from vggbook.models import to_fully_convolutional

    dense = to_fully_convolutional(model).eval()
    x = torch.randn(5, 3, 64, 72)
    with torch.no_grad():
        mean, total = ev.dense_probs(dense, x, "mean"), ev.dense_probs(dense, x, "sum")
    for view in (x, x.flip(-1)):
        with torch.no_grad():
            scores = dense(view)
        assert torch.equal(scores.mean((2, 3)).argmax(1), scores.sum((2, 3)).argmax(1))
    assert not torch.allclose(mean, total)


def test_mixed_sizes_are_evaluated_one_by_one(model):
    ds = Images(sizes=((40, 48), (48, 40), (64, 40)))
    probs, _ = ev.predict(model, ds, "dense", setting((32, 40)))
    assert probs.shape == (6, 4)


def test_fusion_arithmetic():
    a = torch.tensor([[0.6, 0.4], [0.2, 0.8]])
    b = torch.tensor([[0.2, 0.8], [0.4, 0.6]])
    torch.testing.assert_close(ev.fuse([a, b]), torch.tensor([[0.4, 0.6], [0.3, 0.7]]))
    assert ev.errors(ev.fuse([a, b]), torch.tensor([0, 1]))["top1_error"] == 50.0
    with pytest.raises(ValueError):
        ev.fuse([])


def test_errors_and_scales():
    probs = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    assert ev.errors(probs, torch.tensor([2, 1])) == {
        "top1_error": 50.0,
        "top5_error": 0.0,
        "images": 2,
    }
    assert ev.test_scales(256, 224, "single") == (256,)
    assert ev.test_scales(256, 224, "multiscale") == (224, 256, 288)
    assert ev.test_scales((256, 512), 224, "dense") == (256, 384, 512)
    assert ev.test_scales((37, 73), 32, "multiscale") == (37, 55, 73)


def test_bad_protocol_and_scale(model):
    with pytest.raises(ValueError, match="unknown protocol 'tencrop'"):
        ev.predict(model, Images(), "tencrop", setting())
    with pytest.raises(ValueError, match="below the crop"):
        ev.predict(model, Images(), "multiscale", setting((24, 40)))


def test_torchvision_weights_path(tmp_path):
    """Weights saved from a random torchvision model, evaluated on a generated ImageFolder."""
    torch.manual_seed(0)
    reference = torchvision.models.vgg11(num_classes=3).eval()
    torch.save(reference.state_dict(), tmp_path / "vgg11.pth")
    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        (tmp_path / "tree" / "val" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (230, 250, 3), dtype=np.uint8)).save(
                tmp_path / "tree" / "val" / c / f"{i}.png"
            )
    result = ev.evaluate_weights(str(tmp_path / "vgg11.pth"), "A", str(tmp_path / "tree"))
    assert result["images"] == 6 and result["config"] == "A" and not result["batch_norm"]
    # the same numbers as torchvision's own model under its own preprocessing
    ds = torchvision.datasets.ImageFolder(str(tmp_path / "tree" / "val"))
    tf = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(256),
            v2.CenterCrop(224),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(ev.IMAGENET_MEAN, ev.IMAGENET_STD),
        ]
    )
    with torch.no_grad():
        logits = torch.stack([reference(tf(img)[None])[0] for img, _ in ds])
    expected = ev.errors(torch.softmax(logits, 1), torch.tensor(ds.targets))
    assert result["top1_error"] == expected["top1_error"]
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="cannot read weights file"):
        ev.evaluate_weights(str(bad), "A", str(tmp_path / "tree"))


def test_cli_evaluate_needs_a_source():
    p = subprocess.run(
        [sys.executable, "-m", "vggbook", "evaluate"], cwd=ROOT, capture_output=True, text=True
    )
    assert p.returncode == 2 and "one of the arguments --run-dir --weights is required" in p.stderr
    p = subprocess.run(
        [sys.executable, "-m", "vggbook", "evaluate", "--weights", "x.pth"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and "--weights needs --data-root" in p.stderr
