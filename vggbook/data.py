"""Datasets: one registry, one call (``load_dataset``), clear errors for missing or bad data.

``fashion-mnist`` is the default: real data, small enough for a laptop CPU, read straight from
its four idx files (verified by checksum) wherever they are found. ``cifar10`` and
``imagenette`` come through torchvision (downloaded only on request), ``imagenet`` and
``imagefolder`` from a folder of ``train/`` and ``val/`` class folders.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, tv_tensors

PROJECT_DATA = Path(__file__).resolve().parent.parent / "data"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# SHA-256 of the decompressed idx files: Debian's package and torchvision's download hold the
# same bytes under different gzip wrappers, so the content is what is checked.
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",  # noqa: E501
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",  # noqa: E501
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


class DatasetNotFoundError(FileNotFoundError):
    """No copy of a dataset was found (or could be downloaded)."""


class DataError(ValueError):
    """A dataset is present but unusable: corrupt files, empty classes, bad checksums."""


def _display(path: Path) -> str:
    """A path as readers may see it: relative to the project when inside it."""
    try:
        return str(Path(path).resolve().relative_to(PROJECT_DATA.parent))
    except ValueError:
        return str(path)


def _downloads_allowed(download: bool | None) -> bool:
    return download if download is not None else os.environ.get("VGGBOOK_DOWNLOAD") == "1"


class TensorImages(Dataset):
    """Images held in memory as a uint8 tensor (N, H, W); items are (tv_tensors.Image, label)."""

    def __init__(
        self, images: torch.Tensor, targets: torch.Tensor, classes: list[str], source: str
    ):
        self.data, self.targets, self.classes, self.source = images, targets, classes, source

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return tv_tensors.Image(self.data[i].unsqueeze(0)), int(self.targets[i])

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.data.numpy().tobytes())
        h.update(self.targets.numpy().tobytes())
        return h.hexdigest()


def _read_idx(path: Path, expected_sha256: str) -> np.ndarray:
    try:
        raw = gzip.open(path).read()
    except (OSError, EOFError) as e:
        raise DataError(f"{_display(path)} is not a readable gzip file ({e}): replace it") from e
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected_sha256:
        raise DataError(
            f"checksum mismatch for {_display(path)} (sha256 {digest[:12]}..., expected "
            f"{expected_sha256[:12]}...): the file is corrupt or not Fashion-MNIST; replace it"
        )
    ndim = raw[3]
    shape = np.frombuffer(raw, ">u4", count=ndim, offset=4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist_dirs(root: str | Path | None) -> list[Path]:
    """The folders searched for Fashion-MNIST, in order."""
    if root is not None:
        return [Path(root), Path(root) / "fashion-mnist"]
    dirs = [PROJECT_DATA / "fashion-mnist"]
    if env := os.environ.get("VGGBOOK_DATA"):
        dirs += [Path(env) / "fashion-mnist", Path(env)]
    return [*dirs, DEBIAN_FASHION_MNIST]


def _fashion_mnist(split: str, root, download) -> TensorImages:
    prefix = "train" if split == "train" else "t10k"
    names = [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"]
    tried = fashion_mnist_dirs(root)
    folder = next((d for d in tried if all((d / n).is_file() for n in names)), None)
    if folder is None and _downloads_allowed(download):
        folder = _download_fashion_mnist(root)
    if folder is None:
        places = "; ".join(_display(d) for d in tried)
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found (looked in: {places}; downloads not allowed): "
            "run `make data`, or pass download=True / set VGGBOOK_DOWNLOAD=1, or copy the four "
            "*-ubyte.gz files "
            "into data/fashion-mnist/"
        )
    images = _read_idx(folder / names[0], FASHION_MNIST_FILES[names[0]])
    labels = _read_idx(folder / names[1], FASHION_MNIST_FILES[names[1]])
    source = "debian" if folder == DEBIAN_FASHION_MNIST else _display(folder)
    return TensorImages(
        torch.from_numpy(images.copy()),
        torch.from_numpy(labels.astype(np.int64)),
        list(FASHION_MNIST_CLASSES),
        source,
    )


def _download_fashion_mnist(root) -> Path:
    target = Path(root) if root is not None else PROJECT_DATA / "fashion-mnist"
    tmp = target.parent / ".fashion-mnist-download"
    try:
        datasets.FashionMNIST(tmp, download=True)
    except Exception as e:
        urls = ", ".join(datasets.FashionMNIST.mirrors)
        raise DatasetNotFoundError(
            f"downloading Fashion-MNIST from {urls} failed ({e}): copy the four *-ubyte.gz "
            f"files into {_display(target)}/ by hand, or install Debian's dataset-fashion-mnist"
        ) from e
    target.mkdir(parents=True, exist_ok=True)
    for name in FASHION_MNIST_FILES:
        os.replace(tmp / "FashionMNIST" / "raw" / name, target / name)
    return target


def _torchvision(name: str, factory: Callable, split: str, root, download):
    folder = Path(root) if root is not None else PROJECT_DATA / name
    allowed = _downloads_allowed(download)
    try:
        ds = factory(folder, split, allowed)
    except Exception as e:
        if allowed:
            raise DatasetNotFoundError(
                f"{name}: torchvision's download into {_display(folder)} failed ({e}): "
                f"place the extracted dataset there by hand (see torchvision.datasets)"
            ) from e
        raise DatasetNotFoundError(
            f"{name} not found in {_display(folder)} and downloads are not allowed: pass "
            "download=True (--download, VGGBOOK_DOWNLOAD=1) or place the dataset there"
        ) from e
    ds.source = f"torchvision {name}"
    return ds


def _cifar10(split, root, download):
    def factory(folder, split, dl):
        return datasets.CIFAR10(folder, train=split == "train", download=dl)

    return _torchvision("cifar10", factory, split, root, download)


def _imagenette(split, root, download):
    def factory(folder, split, dl):
        if dl and (folder / "imagenette2-320").exists():
            dl = False  # torchvision refuses to download over an existing copy
        return datasets.Imagenette(folder, split=split, size="320px", download=dl)

    return _torchvision("imagenette", factory, split, root, download)


class CheckedImageFolder(datasets.ImageFolder):
    """An ImageFolder whose files were checked up front; bad ones are an error or, with
    ``skip_bad``, dropped and listed in ``skipped``."""

    def __init__(self, root: Path, *, verify: bool = True, skip_bad: bool = False):
        if not root.is_dir():
            raise DatasetNotFoundError(f"no image folder at {_display(root)}: check the data root")
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            if not any(f.is_file() for f in d.rglob("*")):
                raise DataError(
                    f"class folder {_display(d)} holds no images: remove it or add images"
                )
        super().__init__(str(root), allow_empty=False)
        self.skipped: list[str] = []
        if verify:
            good = []
            for path, label in self.samples:
                try:
                    with Image.open(path) as im:
                        im.verify()
                    good.append((path, label))
                except (UnidentifiedImageError, OSError, SyntaxError) as e:
                    if not skip_bad:
                        raise DataError(
                            f"{_display(Path(path))} is not a readable image ({type(e).__name__}): "
                            "delete it, or pass skip_bad=True to skip such files"
                        ) from e
                    self.skipped.append(path)
            if self.skipped:
                n = len(self.skipped)
                warnings.warn(f"skipped {n} unreadable image(s) in {_display(root)}", stacklevel=2)
            self.samples = self.imgs = good
            self.targets = [label for _, label in good]
        self.source = _display(root)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for path, label in self.samples:
            h.update(f"{Path(path).relative_to(self.root)}:{label}\n".encode())
        return h.hexdigest()


def _image_folder(split, root, download, skip_bad=False, verify=True):
    if root is None:
        raise DatasetNotFoundError(
            "imagenet needs a data root holding train/ and val/ class folders"
        )
    return CheckedImageFolder(Path(root) / split, verify=verify, skip_bad=skip_bad)


REGISTRY: dict[str, Callable] = {
    "fashion-mnist": _fashion_mnist,
    "cifar10": _cifar10,
    "imagenette": _imagenette,
    "imagenet": _image_folder,
    "imagefolder": _image_folder,
}


def load_dataset(
    name: str,
    split: str,
    root: str | Path | None = None,
    download: bool | None = None,
    *,
    transform: Callable | None = None,
    skip_bad: bool = False,
    verify: bool = True,
) -> Dataset:
    """A split ("train" or "val"; "test" means "val") of (image, label) pairs with ``.classes``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(REGISTRY)}")
    split = {"test": "val"}.get(split, split)
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}: choose train or val")
    if REGISTRY[name] is _image_folder:
        ds = _image_folder(split, root, download, skip_bad=skip_bad, verify=verify)
    else:
        ds = REGISTRY[name](split, root, download)
    return with_transform(ds, transform) if transform is not None else ds


class Transformed(Dataset):
    """A dataset with a transform applied to its images; keeps ``classes`` and ``targets``."""

    def __init__(self, base: Dataset, transform: Callable):
        self.base, self.transform = base, transform
        self.classes = base.classes

    @property
    def targets(self):
        return self.base.targets

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, label = self.base[i]
        return self.transform(image), label

    def fingerprint(self) -> str:
        return fingerprint(self.base)


def with_transform(ds: Dataset, transform: Callable) -> Transformed:
    return Transformed(ds, transform)


class LabelledSubset(Dataset):
    """A subset that keeps ``classes`` and ``targets``."""

    def __init__(self, base: Dataset, indices: list[int]):
        self.base, self.indices, self.classes = base, indices, base.classes
        self.targets = [int(_targets(base)[i]) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[self.indices[i]]

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{fingerprint(self.base)}:{self.indices}".encode()).hexdigest()


def _targets(ds: Dataset) -> torch.Tensor:
    return torch.as_tensor(ds.targets)


def subset(ds: Dataset, n: int, seed: int = 0) -> Dataset:
    """A class-balanced random subset of ``n`` items (the same for the same seed)."""
    if n >= len(ds):
        return ds
    if n < 1:
        raise ValueError(f"a subset needs at least one item, got {n}")
    targets = _targets(ds)
    gen = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(targets == c).flatten() for c in range(len(ds.classes))]
    shuffled = [idx[torch.randperm(len(idx), generator=gen)] for idx in per_class]
    quota = n // len(per_class)
    chosen = [i for idx in shuffled for i in idx[:quota].tolist()]
    rest = torch.cat([idx[quota:] for idx in shuffled])
    chosen += rest[torch.randperm(len(rest), generator=gen)[: n - len(chosen)]].tolist()
    return LabelledSubset(ds, sorted(chosen))


def fingerprint(ds: Dataset) -> str:
    """SHA-256 of a dataset's content (images and labels, or file list and labels)."""
    if hasattr(ds, "fingerprint"):
        return ds.fingerprint()
    h = hashlib.sha256()
    if hasattr(ds, "data"):  # e.g. CIFAR-10: an array of images
        h.update(np.ascontiguousarray(ds.data).tobytes())
    for path, label in getattr(ds, "_samples", getattr(ds, "samples", [])):
        h.update(f"{Path(path).name}:{label}\n".encode())
    h.update(str(list(getattr(ds, "targets", []))).encode())
    return h.hexdigest()


def dataset_checksum(ds: Dataset) -> str:
    """A short content checksum for provenance."""
    return fingerprint(ds)[:16]


def class_counts(ds: Dataset) -> dict[str, int]:
    counts = torch.bincount(_targets(ds), minlength=len(ds.classes)).tolist()
    return dict(zip(ds.classes, counts, strict=True))


def image_tensor(image) -> torch.Tensor:
    """A (C, H, W) float tensor in [0, 1] from a PIL image or uint8 tensor image."""
    if isinstance(image, Image.Image):
        image = torch.from_numpy(np.asarray(image).copy())
        image = image.unsqueeze(0) if image.ndim == 2 else image.permute(2, 0, 1)
    return image.float() / 255 if image.dtype == torch.uint8 else image.float()


def pixels(ds: Dataset, n: int | None = None, seed: int = 0) -> torch.Tensor:
    """RGB pixels of up to ``n`` images (grey replicated), as an (N_pixels, 3) tensor."""
    if isinstance(ds, TensorImages):
        idx = torch.arange(len(ds)) if n is None else torch.randperm(len(ds))[:n]
        return (ds.data[idx].float() / 255).reshape(-1, 1).expand(-1, 3)
    order = list(range(len(ds)))
    random.Random(seed).shuffle(order)
    chunks = []
    for i in order[: n or len(ds)]:
        x = image_tensor(ds[i][0])
        chunks.append(x.expand(3, -1, -1).reshape(3, -1).T)
    return torch.cat(chunks)


def mean_std(ds: Dataset, n: int | None = None) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units."""
    p = pixels(ds, n).double()
    return p.mean(0).tolist(), p.std(0).tolist()


def seed_worker(worker_id: int) -> None:
    """Seed numpy and random in a DataLoader worker from torch's per-worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    ds: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    workers: int = 0,
    drop_last: bool = False,
    sampler=None,
) -> DataLoader:
    """A DataLoader whose order depends on ``seed`` alone. Augmentation draws from torch's RNG:
    in workers (``workers > 0``) it is seeded from ``seed`` too; in the main process
    (``workers=0``) call ``torch.manual_seed`` first."""
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed),
        drop_last=drop_last,
        persistent_workers=workers > 0,
    )


def measure_throughput(
    ds: Dataset, batch_size: int, workers: int, batches: int, seed: int = 0
) -> float:
    """Images per second of iterating a loader over ``ds`` (after one warm-up batch)."""
    loader = make_loader(ds, batch_size, shuffle=True, seed=seed, workers=workers, drop_last=True)
    it = iter(loader)
    next(it)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        try:
            x, _ = next(it)
        except StopIteration:
            break
        seen += len(x)
    return seen / (time.perf_counter() - start)
