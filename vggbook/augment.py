"""The paper's augmentation (Sec. 3.1) as torchvision transforms v2.

Training: rescale the smallest side to S (fixed, or jittered per image in [Smin, Smax]), one
random crop, a random horizontal flip, AlexNet's PCA colour shift, subtraction of the training
set's mean RGB. Evaluation: rescale to Q, then a centre crop or the whole image. Grey images
are replicated to three channels so that the same model and colour pipeline apply.
Colour values are in [0, 1]; the ImageNet eigen-decomposition is for that scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from . import data, paper

# AlexNet's PCA of ImageNet's RGB pixels in [0, 1] (as in fb.resnet.torch): eigenvalues, and
# eigenvectors as columns (rows are R, G, B).
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


def scaled(size: int, crop: int) -> int:
    """A paper size (S, Q) at a profile's resolution: every size scales by crop/224."""
    return round(size * crop / paper.RECIPE["crop"])


class PCALighting(v2.Transform):
    """AlexNet's colour shift: add ``eigvec @ (alpha * eigval)`` to every pixel, with
    alpha ~ N(0, std^2) drawn per image for each principal component."""

    def __init__(
        self, eigval: Sequence[float], eigvec: Sequence[Sequence[float]], std: float = 0.1
    ):
        super().__init__()
        if std < 0:
            raise ValueError(f"the colour-shift std must be non-negative, got {std}")
        self.eigval = torch.as_tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.as_tensor(eigvec, dtype=torch.float32)
        self.std = std

    def make_params(self, flat_inputs: list) -> dict:
        alpha = torch.randn(3) * self.std
        return {"shift": self.eigvec @ (alpha * self.eigval)}

    def transform(self, inpt, params: dict):
        image = isinstance(inpt, tv_tensors.Image) or (
            isinstance(inpt, torch.Tensor) and type(inpt) is torch.Tensor and inpt.ndim >= 3
        )
        if not image:
            return inpt  # labels and the like pass through
        if not inpt.is_floating_point() or inpt.shape[-3] != 3:
            raise TypeError(
                f"PCALighting needs float RGB images in [0, 1], got {inpt.dtype} with "
                f"{inpt.shape[-3]} channel(s): put it after v2.RGB() and v2.ToDtype(float32)"
            )
        return inpt + params["shift"].to(inpt.dtype)[:, None, None]


def subtract_mean(mean: Sequence[float], pixel_scale: float = 255.0) -> v2.Normalize:
    """The paper's only preprocessing: subtract the training set's mean RGB. Values come out
    in units of ``pixel_scale`` (255: Caffe's 0-255 pixels, which the paper's Gaussian init
    was tuned for)."""
    return v2.Normalize(list(mean), [1.0 / pixel_scale] * len(mean))


def mean_rgb(ds, n: int | None = None) -> tuple[float, float, float]:
    """The mean RGB of a dataset's images in [0, 1] (over ``n`` images drawn with seed 0, as
    ``data.pixels`` draws them, or all; grey counts as R = G = B). Streamed through
    ``data.channel_sums``: exact integer sums, one block or image of pixels in memory at a time."""
    sums, count = data.channel_sums(ds, data.sample_indices(ds, n, 0))
    if count == 0:
        raise ValueError("no pixels to average: the dataset (or sample) is empty")
    return tuple(s / (count * 255) for s in sums.tolist())


def pca_from_dataset(ds, n: int | None = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors (columns) of the RGB pixel covariance.
    A grey dataset has one non-zero eigenvalue, along (1, 1, 1)/sqrt(3)."""
    p = data.pixels(ds, n).double()
    eigval, eigvec = torch.linalg.eigh(torch.cov(p.T))
    order = eigval.argsort(descending=True)
    return eigval[order].clamp(min=0).float(), eigvec[:, order].float()


def _check(crop: int, smin: int, name: str = "S") -> None:
    if crop < 1:
        raise ValueError(f"crop must be positive, got {crop}")
    if smin < crop:
        raise ValueError(
            f"the smallest scale {name}={smin} is below the crop {crop}: use {name} >= crop"
        )


def train_transform(
    crop: int = 224,
    scale: int | tuple[int, int] = (256, 512),
    *,
    mean: Sequence[float] | None = None,
    pca: tuple | None = (IMAGENET_EIGVAL, IMAGENET_EIGVEC),
    pca_std: float = 0.1,
    flip: bool = True,
    pixel_scale: float = 255.0,
) -> v2.Compose:
    """The training pipeline: rescale to S (fixed or jittered), random crop, flip, colour
    shift, mean subtraction; returns a float32 (3, crop, crop) tensor."""
    if isinstance(scale, int):
        _check(crop, scale)
        resize = v2.Resize(scale)
    else:
        smin, smax = scale
        if smin > smax:
            raise ValueError(
                f"Smin={smin} exceeds Smax={smax}: give the jitter range as (Smin, Smax)"
            )
        _check(crop, smin)
        resize = v2.RandomResize(smin, smax + 1)  # sizes in [Smin, Smax], both included
    steps = [v2.ToImage(), resize, v2.RandomCrop(crop)]
    steps += [v2.RandomHorizontalFlip()] if flip else []
    steps += [v2.RGB(), v2.ToDtype(torch.float32, scale=True)]
    steps += [PCALighting(*pca, std=pca_std)] if pca is not None else []
    steps += [subtract_mean(mean, pixel_scale)] if mean is not None else []
    return v2.Compose(steps)


def eval_transform(
    q: int,
    crop: int | None = None,
    *,
    mean: Sequence[float] | None = None,
    pixel_scale: float = 255.0,
) -> v2.Compose:
    """The test pipeline: rescale the smallest side to Q, then a centre crop or the whole image."""
    if crop is not None:
        _check(crop, q, "Q")
    steps = [v2.ToImage(), v2.Resize(q)]
    steps += [v2.CenterCrop(crop)] if crop is not None else []
    steps += [v2.RGB(), v2.ToDtype(torch.float32, scale=True)]
    steps += [subtract_mean(mean, pixel_scale)] if mean is not None else []
    return v2.Compose(steps)


def sample_scales(scale: int | tuple[int, int], n: int) -> torch.Tensor:
    """``n`` draws of S from the training pipeline's own resize step (under torch's RNG)."""
    resize = train_transform(1, scale, pca=None, flip=False).transforms[1]
    if isinstance(resize, v2.Resize):
        return torch.full((n,), resize.size[0] if isinstance(resize.size, list) else resize.size)
    image = torch.zeros(1, 1, 1)
    return torch.tensor([resize.make_params([image])["size"][0] for _ in range(n)])


def stages(
    image,
    crop: int,
    scale: int | tuple[int, int],
    *,
    mean: Sequence[float] | None = None,
    pca: tuple | None = (IMAGENET_EIGVAL, IMAGENET_EIGVEC),
    pca_std: float = 0.1,
) -> list[tuple[str, torch.Tensor]]:
    """The training pipeline one step at a time, for pictures: (step name, float image in
    [0, 1] units) after each step; the mean-subtracted image is shown shifted by 0.5. The flip
    is applied for certain."""
    steps = train_transform(crop, scale, mean=mean, pca=pca, pca_std=pca_std, pixel_scale=1.0)
    names = {
        v2.Resize: "rescaled to S",
        v2.RandomResize: "rescaled to S (jittered)",
        v2.RandomCrop: "random crop",
        v2.RandomHorizontalFlip: "flipped",
        PCALighting: "colour shift",
        v2.Normalize: "mean subtracted",
    }
    x, out = image, [("original", v2.ToDtype(torch.float32, scale=True)(v2.ToImage()(image)))]
    for t in steps.transforms:
        x = v2.functional.horizontal_flip(x) if isinstance(t, v2.RandomHorizontalFlip) else t(x)
        if type(t) in names:
            shown = x if x.is_floating_point() else x.float() / 255
            shown = shown + 0.5 if isinstance(t, v2.Normalize) else shown
            out.append((names[type(t)], shown))
    return out
