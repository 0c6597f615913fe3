"""Evaluation: top-1 / top-5 error under the paper's test protocols (Sec. 3.2, 4.2-4.4).

- ``single``: smallest side rescaled to Q, centre crop.
- ``multiscale``: the same over a set of Q, softmax averaged.
- ``dense``: the fully-convolutional net on the whole rescaled image; the class score map is
  spatially averaged, then the softmax of the image and of its mirror averaged, over the Q set.
- ``multicrop``: 50 crops per scale (a 5x5 regular grid, each also flipped), softmax averaged.
- ``dense+multicrop``: the average of the two.
Fusion averages the softmax of several models.

"Sum-pooled" score maps: the book averages the map (the sum divided by its size). The two
differ by a positive factor, which leaves each image's arg-max unchanged but not its softmax;
averaging keeps the scores at the scale the classifier was trained at.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from tqdm.auto import tqdm

from .batches import images_of
from .data import targets
from .metrics import topk_correct
from .models import VGG, to_fully_convolutional

PROTOCOLS = ("single", "multiscale", "dense", "multicrop", "dense+multicrop")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision weights


def errors(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1 and top-5 error (percent) of class probabilities."""
    top1, top5 = topk_correct(probs, labels)
    n = len(labels)
    return {"top1_error": 100 * (1 - top1 / n), "top5_error": 100 * (1 - top5 / n), "images": n}


# The protocols. Each maps one preprocessed image batch at one scale to class probabilities.


def grid_positions(size: tuple[int, int], crop: int, grid: int = 5) -> list[tuple[int, int]]:
    """Top-left corners of ``grid`` x ``grid`` regularly spaced crops, corners included."""
    h, w = size
    ys = torch.linspace(0, h - crop, grid).round().long().tolist()
    xs = torch.linspace(0, w - crop, grid).round().long().tolist()
    return [(i, j) for i in ys for j in xs]


def grid_crops(x: torch.Tensor, crop: int, grid: int = 5) -> list[torch.Tensor]:
    """``grid`` x ``grid`` crops at regularly spaced positions, corners included."""
    return [x[..., i : i + crop, j : j + crop] for i, j in grid_positions(x.shape[-2:], crop, grid)]


def crop_probs(model: VGG, x: torch.Tensor, crop: int) -> torch.Tensor:
    """Softmax averaged over the 5x5 grid of crops and their mirrors: 50 views. A crop that
    repeats (every crop of an image no larger than the crop) is computed once and weighted
    by its count, which leaves the average as it is and saves up to 48 of the 50 passes."""
    positions = Counter(grid_positions(x.shape[-2:], crop))
    total = 0
    for (i, j), count in positions.items():
        c = x[..., i : i + crop, j : j + crop]
        total = total + count * (F.softmax(model(c), dim=1) + F.softmax(model(c.flip(-1)), dim=1))
    return total / (2 * positions.total())


def dense_probs(dense: nn.Module, x: torch.Tensor, pool: str = "mean") -> torch.Tensor:
    """Softmax of the spatially pooled score map, averaged over the image and its mirror."""
    probs = []
    for view in (x, x.flip(-1)):
        scores = dense(view)
        pooled = scores.mean((2, 3)) if pool == "mean" else scores.sum((2, 3))
        probs.append(F.softmax(pooled, dim=1))
    return torch.stack(probs).mean(0)


def views_per_image(protocol: str, scales: Sequence[int]) -> int:
    """How many network evaluations a protocol makes per image."""
    per_scale = {"single": 1, "multiscale": 1, "dense": 2, "multicrop": 50, "dense+multicrop": 52}
    return per_scale[protocol] * (1 if protocol == "single" else len(scales))


@dataclass(frozen=True)
class Setting:
    """What a protocol evaluates: the crop the model was trained on, the test scales Q, and the
    preprocessing (mean subtraction, and the std division of torchvision's weights)."""

    crop: int
    scales: tuple[int, ...]
    normalize: v2.Normalize

    def transform(self, q: int) -> Callable:
        """The whole image, its smaller side rescaled to Q (dense and multi-crop)."""
        return v2.Compose(
            [
                v2.ToImage(),
                v2.Resize(q),
                v2.RGB(),
                v2.ToDtype(torch.float32, scale=True),
                self.normalize,
            ]
        )

    def centre_transform(self, q: int) -> Callable:
        """Rescaled to Q, then the centre crop: the single-scale protocol's view, and the
        trainer's validation (one preprocessing path for both)."""
        return v2.Compose([self.transform(q), v2.CenterCrop(self.crop)])

    @classmethod
    def of_run(cls, profile, mean: Sequence[float], protocol: str = "single") -> Setting:
        """A trained run's setting: its crop, the protocol's test scales for its S, and its
        mean RGB subtracted in its pixel units."""
        from .augment import subtract_mean

        scales = test_scales(profile.scale, profile.crop, protocol)
        return cls(profile.crop, scales, subtract_mean(mean, profile.pixel_scale))


def _collate(batch):
    images, labels = zip(*batch, strict=True)
    return list(images), torch.tensor(labels)


@torch.no_grad()
def predict(
    model: VGG,
    dataset,
    protocol: str,
    setting: Setting,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (N, classes) of every image of ``dataset`` under ``protocol``,
    and the labels, in fp32 (``channels_last``: the same sums in another order, faster on a
    CPU). Images of unequal sizes are evaluated one by one."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.eval().to(device, memory_format=layout)
    dense = None
    if "dense" in protocol:
        dense = to_fully_convolutional(model).eval().to(memory_format=layout)
    scales = setting.scales[:1] if protocol == "single" else setting.scales
    too_small = [q for q in scales if q < setting.crop]
    if too_small:
        raise ValueError(
            f"test scales {too_small} are below the crop {setting.crop}: use Q >= crop"
        )
    total_probs, labels = None, None
    centre = protocol in ("single", "multiscale")
    in_memory = images_of(dataset)  # one uint8 tensor: transformed a batch at a time
    for q in scales:
        tf = setting.centre_transform(q) if centre else setting.transform(q)
        if in_memory is not None:
            loader = zip(
                in_memory.split(batch_size), targets(dataset).split(batch_size), strict=True
            )
        else:
            loader = DataLoader(dataset, batch_size=batch_size, collate_fn=_collate)
        chunks, ys = [], []
        for images, y in tqdm(loader, desc=f"{protocol} Q={q}", leave=False, disable=not progress):
            if in_memory is not None:
                groups = [tf(images).to(device)]
            else:
                xs = [tf(image).to(device) for image in images]
                same = len({x.shape for x in xs}) == 1
                groups = [torch.stack(xs)] if same else [x[None] for x in xs]
            groups = [g.contiguous(memory_format=layout) for g in groups]
            chunks += [_probs(model, dense, g, protocol, setting.crop) for g in groups]
            ys.append(y)
        probs = torch.cat(chunks).float().cpu()
        total_probs = probs if total_probs is None else total_probs + probs
        labels = torch.cat(ys)
    return total_probs / len(scales), labels


def _probs(model, dense, x, protocol: str, crop: int) -> torch.Tensor:
    if protocol in ("single", "multiscale"):  # x is the centre crop already
        return F.softmax(model(x), dim=1)
    if protocol == "dense":
        return dense_probs(dense, x)
    if protocol == "multicrop":
        return crop_probs(model, x, crop)
    return (dense_probs(dense, x) + crop_probs(model, x, crop)) / 2


def fuse(probabilities: Sequence[torch.Tensor]) -> torch.Tensor:
    """Model fusion: the average of several models' class probabilities."""
    if not probabilities:
        raise ValueError("fusion needs at least one model's probabilities")
    return torch.stack(list(probabilities)).mean(0)


def test_scales(scale: int | Sequence[int], crop: int, protocol: str) -> tuple[int, ...]:
    """The paper's test scales at a profile's resolution: Q = S for a fixed S (or the middle
    of a jitter range) for one scale; {S-32, S, S+32} or {Smin, middle, Smax} for several."""
    from .augment import scaled

    if isinstance(scale, int):
        step = scaled(32, crop)
        return (scale,) if protocol == "single" else (scale - step, scale, scale + step)
    smin, smax = scale
    middle = (smin + smax) // 2
    return (middle,) if protocol == "single" else (smin, middle, smax)


def run_predictions(
    run_dir: str,
    protocol: str,
    *,
    data_root=None,
    download=None,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Probabilities of a trained run on the whole test split, with the protocol's settings,
    in fp32 in the memory layout it trained in (its training decisions read held-out training
    images, never these)."""
    from . import data
    from .runs import load_checkpoint, model_of

    ckpt = load_checkpoint(run_dir)
    model, spec = model_of(ckpt, run_dir)
    setting = Setting.of_run(spec.profile, ckpt["mean_rgb"], protocol)
    test = data.load_dataset(spec.profile.dataset, "test", data_root, download)
    layout = {"channels_last": spec.profile.channels_last}
    probs, labels = predict(
        model, test, protocol, setting, batch_size=batch_size, device=device, progress=progress,
        **layout,
    )  # fmt: skip
    info = {
        "protocol": protocol,
        "Q": list(setting.scales),
        "crop": setting.crop,
        "views_per_image": views_per_image(protocol, setting.scales),
        **layout,
    }
    return probs, labels, info


def evaluate_run(
    run_dir: str,
    protocol: str = "single",
    *,
    fuse_with: Sequence[str] = (),
    data_root=None,
    download=None,
    batch_size: int = 64,
    progress: bool = False,
) -> dict:
    """Top-1 / top-5 error of a run (fused with other runs, if given) under a protocol."""
    probs, labels, info = run_predictions(
        run_dir,
        protocol,
        data_root=data_root,
        download=download,
        batch_size=batch_size,
        progress=progress,
    )
    for other in fuse_with:
        p, other_labels, _ = run_predictions(
            other, protocol, data_root=data_root, download=download, batch_size=batch_size
        )
        if not torch.equal(other_labels, labels):
            raise ValueError(f"cannot fuse {other}: it was tested on other images")
        probs = probs + p
    probs = probs / (1 + len(fuse_with))
    return {**info, "runs": [str(run_dir), *map(str, fuse_with)], **errors(probs, labels)}


def evaluate_weights(
    weights: str,
    config: str,
    data_root: str,
    protocol: str = "single",
    *,
    dataset: str = "imagefolder",
    batch_size: int = 32,
    progress: bool = False,
) -> dict:
    """Evaluate a local file of torchvision VGG weights (e.g. ``vgg16-397923af.pth``, which
    you download yourself) on the ``val/`` folder of an ImageNet-style tree. Preprocessing is
    torchvision's (ImageNet mean and std); the scales are the paper's for S = 256."""
    from . import data
    from .models import build_vgg

    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # missing, truncated or not a state dict
        raise ValueError(
            f"cannot read weights file {weights} ({type(e).__name__}): "
            "pass a torchvision VGG state dict saved with torch.save"
        ) from e
    if not isinstance(state, dict) or "classifier.6.weight" not in state:
        raise ValueError(
            f"{weights} is not a torchvision VGG state dict (no classifier.6.weight): pass a "
            "file such as vgg16-397923af.pth"
        )
    batch_norm = any("running_mean" in k for k in state)
    classes = state["classifier.6.weight"].shape[0]
    model = build_vgg(config, classes, batch_norm=batch_norm)
    model.load_state_dict(state)
    setting = Setting(
        224, test_scales(256, 224, protocol), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    )
    test = data.load_dataset(dataset, "test", data_root)  # the tree's val/ folder
    probs, labels = predict(
        model, test, protocol, setting, batch_size=batch_size, progress=progress
    )
    return {
        "protocol": protocol,
        "Q": list(setting.scales),
        "crop": 224,
        "weights": str(weights),
        "config": model.config,
        "batch_norm": batch_norm,
        **errors(probs, labels),
    }
