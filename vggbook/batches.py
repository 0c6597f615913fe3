"""The paper's training augmentation on whole batches, for datasets held in memory.

Fashion-MNIST and CIFAR-10 fit in memory as one uint8 tensor. Augmenting them a batch at a time
(rescale to S, a random crop per image, a random flip, AlexNet's colour shift, the mean RGB) is
two orders of magnitude faster than the per-image transforms of ``augment.train_transform``,
and draws from the same distribution: per image, S uniform on the integers of [Smin, Smax], a
crop offset uniform over the positions that fit, a flip with probability 1/2 and colour-shift
weights from N(0, std^2); under fixed draws the pixels are those of the per-image path (a test
compares both). With a fixed S the images are rescaled once, not every epoch.

Every image's draws for an epoch come from one generator seeded by the epoch and are indexed by
the image's position in the dataset: the batch, the process and the rank that take an image do
not change them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import v2

from . import augment, data, timing

RESIZE_CHUNK = 4096  # images rescaled at a time, to bound the temporary float copy


def images_of(ds) -> torch.Tensor | None:
    """A dataset's images as one uint8 tensor (N, C, H, W) when it holds them in memory
    untransformed (TensorImages, CIFAR-10, subsets of those); None otherwise."""
    if isinstance(ds, data.LabelledSubset):
        base = images_of(ds.base)
        return None if base is None else base[torch.as_tensor(ds.indices, dtype=torch.long)]
    if getattr(ds, "transform", None) is not None:
        return None
    array = getattr(ds, "data", None)
    if isinstance(array, np.ndarray) and array.dtype == np.uint8 and array.ndim == 4:
        return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()  # CIFAR-10: N, H, W, C
    if isinstance(array, torch.Tensor) and array.dtype == torch.uint8 and array.ndim == 3:
        return array.unsqueeze(1)  # TensorImages: N, H, W (grey)
    return None


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images with their smaller side rescaled to ``size``, as ``v2.Resize(size)``."""
    return torch.cat([v2.functional.resize(chunk, [size]) for chunk in images.split(RESIZE_CHUNK)])


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(H, W) after ``v2.Resize(size)``: the smaller side ``size``, the other in proportion."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


@dataclass(frozen=True)
class Draws:
    """One epoch's random parameters, one row per image of the dataset."""

    scale: torch.Tensor  # (N,) S
    top: torch.Tensor  # (N,) crop offsets in the rescaled image
    left: torch.Tensor
    flip: torch.Tensor  # (N,) bool
    shift: torch.Tensor  # (N, 3) colour shift, eigvec @ (alpha * eigval), alpha ~ N(0, std^2)


class BatchAugment:
    """``augment.train_transform`` applied to batches of in-memory uint8 images."""

    def __init__(
        self,
        images: torch.Tensor,
        crop: int,
        scale: int | tuple[int, int],
        *,
        mean: Sequence[float] | None = None,
        pca: tuple | None = (augment.IMAGENET_EIGVAL, augment.IMAGENET_EIGVEC),
        pca_std: float = 0.1,
        flip: bool = True,
        pixel_scale: float = 255.0,
    ):
        augment.train_transform(crop, scale, mean=mean, pca=None)  # the same input checks
        self.crop, self.flip, self.pca_std = crop, flip, pca_std
        self.smin, self.smax = (scale, scale) if isinstance(scale, int) else scale
        self.images = resize(images, self.smin) if self.smin == self.smax else images
        self.pca = None if pca is None else tuple(torch.tensor(p, dtype=torch.float32) for p in pca)
        self.normalize = None if mean is None else augment.subtract_mean(mean, pixel_scale)

    def __len__(self) -> int:
        return len(self.images)

    def draws(self, generator: torch.Generator) -> Draws:
        """Every image's parameters for one epoch, from ``generator``."""
        n, (h, w) = len(self.images), self.images.shape[-2:]
        scale = torch.randint(self.smin, self.smax + 1, (n,), generator=generator)
        if self.smin == self.smax:
            h_s, w_s = torch.full((n,), h), torch.full((n,), w)
        else:
            shapes = torch.tensor([resized_shape(h, w, int(s)) for s in scale])
            h_s, w_s = shapes[:, 0], shapes[:, 1]

        def offset(room: torch.Tensor) -> torch.Tensor:  # uniform on 0 .. room
            u = torch.rand(n, dtype=torch.float64, generator=generator)
            return (u * (room + 1)).floor().long()

        top, left = offset(h_s - self.crop), offset(w_s - self.crop)
        flip = torch.rand(n, generator=generator) < 0.5
        alpha = torch.randn(n, 3, generator=generator) * self.pca_std
        shift = torch.zeros(n, 3) if self.pca is None else alpha * self.pca[0] @ self.pca[1].T
        return Draws(scale, top, left, flip & self.flip, shift)

    def __call__(self, indices: torch.Tensor, draws: Draws) -> torch.Tensor:
        """The augmented float32 (B, 3, crop, crop) batch of the images at ``indices``."""
        return self.finish(self.crops(indices, draws), indices, draws)

    def crops(self, indices: torch.Tensor, draws: Draws) -> torch.Tensor:
        """The uint8 crop of each image at ``indices``, rescaled to its S: one resize per
        distinct S over all the images given (an epoch's worth at once)."""
        if self.smin == self.smax:
            return self._crop(self.images[indices], draws.top[indices], draws.left[indices])
        out = torch.empty(len(indices), self.images.shape[1], self.crop, self.crop,
                          dtype=torch.uint8)  # fmt: skip
        scales = draws.scale[indices]
        for s in scales.unique().tolist():
            at = (scales == s).nonzero().flatten()
            chosen = indices[at]
            rescaled = resize(self.images[chosen], s)
            out[at] = self._crop(rescaled, draws.top[chosen], draws.left[chosen])
        return out

    def finish(self, crops: torch.Tensor, indices: torch.Tensor, draws: Draws) -> torch.Tensor:
        """Flip, to float in [0, 1], colour shift and mean subtraction of the images' crops."""
        x = crops.clone()
        flips = draws.flip[indices].to(x.device)
        x[flips] = x[flips].flip(-1)
        x = v2.functional.to_dtype(x, torch.float32, scale=True).expand(-1, 3, -1, -1)
        if self.pca is not None:
            x = x + draws.shift[indices][:, :, None, None].to(x.device)
        return self.normalize(x) if self.normalize is not None else x

    def _crop(self, images: torch.Tensor, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
        """A crop x crop window per image, at its own offset."""
        c = self.crop
        windows = zip(images, top.tolist(), left.tolist(), strict=True)
        return torch.stack([image[:, t : t + c, u : u + c] for image, t, u in windows])


def epoch_batches(
    augment_batch: BatchAugment,
    labels: torch.Tensor,
    order: Sequence[int],
    batch_size: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch's (images, labels) batches over the indices in ``order`` (full batches only).
    The epoch's crops are cut first, in one pass (uint8: N x C x crop x crop bytes); each
    batch's crops are finished (flip, colour, mean) on ``device``, a quarter of the bytes of
    the float batch crossing to a GPU."""
    draws = augment_batch.draws(generator)
    order = torch.as_tensor(list(order), dtype=torch.long)
    order = order[: len(order) // batch_size * batch_size]
    crops = augment_batch.crops(order, draws)
    for start in range(0, len(order), batch_size):
        at = slice(start, start + batch_size)
        x = crops[at].to(device, non_blocking=True)
        yield augment_batch.finish(x, order[at], draws), labels[order[at]]


def throughput(augment_batch: BatchAugment, batch_size: int, n_batches: int, seed: int = 0):
    """Images/s of making the same ``n_batches`` augmented batches, an epoch's draws included
    (the best of repeats: ``timing.best_rate``)."""
    n = min(n_batches * batch_size, len(augment_batch)) // batch_size * batch_size
    order = torch.randperm(len(augment_batch), generator=torch.Generator().manual_seed(seed))
    labels = torch.zeros(len(augment_batch), dtype=torch.long)

    def run() -> int:
        generator = torch.Generator().manual_seed(seed)
        for _ in epoch_batches(augment_batch, labels, order[:n].tolist(), batch_size, generator):
            pass
        return n

    return timing.best_rate(run)
