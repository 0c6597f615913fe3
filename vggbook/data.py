"""Datasets: one registry, one call (``load_dataset``), clear errors for missing or bad data.

``fashion-mnist`` is the default: real data, small enough for a laptop CPU, read straight from
its four idx files (verified by checksum) wherever they are found. ``cifar10`` and
``imagenette`` come through torchvision (downloaded only on request), ``imagenet`` and
``imagefolder`` from a folder of ``train/`` and ``val/`` class folders.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import math
import os
import random
import shutil
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, tv_tensors

from . import timing

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
# MD5 of the .gz files themselves (recorded in ``.checksums``, not required to match): the
# official ones (torchvision's FashionMNIST.resources) and Debian's dataset-fashion-mnist, whose
# gzip header lacks the stored file name, so its files are 23-24 bytes shorter with other MD5s.
# Their decompressed content has the official raw MD5s (f4a8712d..., 9018921c..., 8181f547...,
# 15d48437...) and the SHA-256s above.
FASHION_MNIST_GZ_MD5 = {
    "official": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "debian": {
        "train-images-idx3-ubyte.gz": "cf8536b0aa1a6ac5fa3f23001093305c",
        "train-labels-idx1-ubyte.gz": "10bea18fdb374794d4bb42e356e600c9",
        "t10k-images-idx3-ubyte.gz": "f78720b4224f21cce2f2ccf2d7a94c9a",
        "t10k-labels-idx1-ubyte.gz": "0d30e22e447f3c33dab9ed536400ac01",
    },
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


def _source(folder: Path) -> str:
    """Where data came from, without machine paths: ``debian``, a project-relative path,
    ``$VGGBOOK_DATA/...``, or ``.../<folder name>`` for any other root."""
    if folder == DEBIAN_FASHION_MNIST:
        return "debian"
    folder = Path(folder).resolve()
    bases = [(PROJECT_DATA.parent, "")]
    if env := os.environ.get("VGGBOOK_DATA"):
        bases.append((Path(env).resolve(), "$VGGBOOK_DATA"))
    for base, label in bases:
        if folder.is_relative_to(base):
            rel = folder.relative_to(base).as_posix()
            return "/".join(p for p in (label, "" if rel == "." else rel) if p)
    return f".../{folder.name}"


def _downloads_allowed(download: bool | None) -> bool:
    return download if download is not None else os.environ.get("VGGBOOK_DOWNLOAD") == "1"


class TensorImages(Dataset):
    """Images held in memory as a uint8 tensor (N, H, W); items are (tv_tensors.Image, label).
    ``checksums`` maps each source file to its MD5 (for Fashion-MNIST, the ``.gz`` files)."""

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        classes: list[str],
        source: str,
        checksums: dict[str, str] | None = None,
    ):
        self.data, self.targets, self.classes, self.source = images, targets, classes, source
        self.checksums = dict(checksums or {})

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return tv_tensors.Image(self.data[i].unsqueeze(0)), int(self.targets[i])

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.data.numpy().tobytes())
        h.update(self.targets.numpy().tobytes())
        return h.hexdigest()


def _read_idx(path: Path, expected_sha256: str) -> tuple[np.ndarray, str]:
    """The idx array of a .gz file whose content has the expected SHA-256, and the file's MD5."""
    packed = path.read_bytes()
    try:
        raw = gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{_display(path)} is not a readable gzip file ({e}): replace it") from e
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected_sha256:
        raise DataError(
            f"checksum mismatch for {_display(path)} (sha256 {digest[:12]}..., expected "
            f"{expected_sha256[:12]}...): the file is corrupt or not Fashion-MNIST; replace it"
        )
    ndim = raw[3]
    shape = np.frombuffer(raw, ">u4", count=ndim, offset=4)
    array = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)
    return array, hashlib.md5(packed).hexdigest()


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
    images, images_md5 = _read_idx(folder / names[0], FASHION_MNIST_FILES[names[0]])
    labels, labels_md5 = _read_idx(folder / names[1], FASHION_MNIST_FILES[names[1]])
    return TensorImages(
        torch.from_numpy(images.copy()),
        torch.from_numpy(labels.astype(np.int64)),
        list(FASHION_MNIST_CLASSES),
        _source(folder),
        {names[0]: images_md5, names[1]: labels_md5},
    )


def _download_fashion_mnist(root) -> Path:
    target = Path(root) if root is not None else PROJECT_DATA / "fashion-mnist"
    tmp = target / ".download"
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
    shutil.rmtree(tmp, ignore_errors=True)  # the decompressed copies torchvision also made
    return target


def _torchvision(name: str, factory: Callable, split: str, root, download, url: str):
    folder = Path(root) if root is not None else PROJECT_DATA / name
    allowed = _downloads_allowed(download)
    archive = url.rsplit("/", 1)[-1]
    try:
        ds = factory(folder, split, allowed)
    except Exception as e:
        if allowed:
            raise DatasetNotFoundError(
                f"{name}: torchvision's download of {url} into {_display(folder)} failed ({e}): "
                f"download {archive} by hand and extract it into {_display(folder)}/"
            ) from e
        raise DatasetNotFoundError(
            f"{name} not found in {_display(folder)} and downloads are not allowed: pass "
            f"download=True (--download, VGGBOOK_DOWNLOAD=1) to fetch {url}, or extract "
            f"{archive} into {_display(folder)}/"
        ) from e
    ds.source = f"torchvision {name}"
    return ds


def _cifar10(split, root, download):
    def factory(folder, split, dl):
        return datasets.CIFAR10(folder, train=split == "train", download=dl)

    return _torchvision("cifar10", factory, split, root, download, datasets.CIFAR10.url)


def _imagenette(split, root, download, size: str = "320px"):
    archives = datasets.Imagenette._ARCHIVES
    if size not in archives:
        raise ValueError(f"imagenette size must be one of {', '.join(archives)}, got {size!r}")
    url = archives[size][0]

    def factory(folder, split, dl):
        if dl and (folder / url.rsplit("/", 1)[-1].removesuffix(".tgz")).exists():
            dl = False  # torchvision refuses to download over an existing copy
        return datasets.Imagenette(folder, split=split, size=size, download=dl)

    return _torchvision("imagenette", factory, split, root, download, url)


def _is_image_name(path: Path) -> bool:
    return datasets.folder.has_file_allowed_extension(path.name, datasets.folder.IMG_EXTENSIONS)


class CheckedImageFolder(datasets.ImageFolder):
    """An ImageFolder whose files were checked up front; bad ones are an error or, with
    ``skip_bad``, dropped and listed in ``skipped``."""

    def __init__(self, root: Path, *, verify: bool = True, skip_bad: bool = False):
        if not root.is_dir():
            raise DatasetNotFoundError(
                f"no image folder at {_display(root)}: check the data root, which must hold "
                "train/<class>/<image> and val/<class>/<image>"
            )
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            if not any(f.is_file() and _is_image_name(f) for f in d.rglob("*")):
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
                warnings.warn(f"skipped {n} unreadable image(s) in {_display(root)}", stacklevel=4)
            self.samples = self.imgs = good
            self.targets = [label for _, label in good]
            left = set(self.targets)
            for c, name in enumerate(self.classes):
                if c not in left:
                    raise DataError(
                        f"class folder {_display(root / name)} holds no readable images "
                        f"({n} skipped in all): replace them or remove the folder"
                    )
        self.source = _source(root)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for path, label in self.samples:
            h.update(f"{Path(path).relative_to(self.root)}:{label}\n".encode())
        return h.hexdigest()


def _image_folder(split, root, download, skip_bad=False, verify=True):
    if root is None:
        raise DatasetNotFoundError(
            "an image-folder dataset (imagenet, imagefolder) needs a data root holding "
            "train/ and val/ class folders: pass root= or --data-root"
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
    **options,
) -> Dataset:
    """A split ("train" or "test") of (image, label) pairs with ``.classes``. "test" is the
    dataset's evaluation split (Fashion-MNIST's t10k, an image tree's ``val/`` folder, as
    ILSVRC's validation set was the paper's test set); validation images for training
    decisions are held out of "train" (``holdout``), never taken from it.

    ``download=None`` means: only if ``VGGBOOK_DOWNLOAD=1``. ``skip_bad`` and ``verify`` apply
    to image folders; ``options`` go to the dataset's loader (imagenette: ``size="320px"``).
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(REGISTRY)}")
    if split not in ("train", "test"):
        raise ValueError(
            f"unknown split {split!r}: choose train or test (validation images are held out "
            "of train by data.holdout)"
        )
    split = "val" if split == "test" else split  # the loaders' own name for it
    if REGISTRY[name] is _image_folder:
        ds = _image_folder(split, root, download, skip_bad=skip_bad, verify=verify, **options)
    else:
        ds = REGISTRY[name](split, root, download, **options)
    return with_transform(ds, transform) if transform is not None else ds


class Transformed(Dataset):
    """A dataset with a transform applied to its images; keeps ``classes`` and ``targets``."""

    def __init__(self, base: Dataset, transform: Callable):
        self.base, self.transform = base, transform
        self.classes = base.classes

    @property
    def targets(self):
        return targets(self.base)

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
        self.targets = targets(base)[torch.as_tensor(indices, dtype=torch.long)].tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.base[self.indices[i]]

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{fingerprint(self.base)}:{self.indices}".encode()).hexdigest()


def targets(ds: Dataset) -> torch.Tensor:
    """All labels, from ``targets`` or (Imagenette) the (path, label) sample list."""
    if hasattr(ds, "targets"):
        return torch.as_tensor(ds.targets)
    base = getattr(ds, "base", ds)  # a Transformed dataset
    samples = base._samples if hasattr(base, "_samples") else base.samples
    return torch.as_tensor([label for _, label in samples])


def subset(ds: Dataset, n: int, seed: int = 0) -> Dataset:
    """A class-balanced random subset of ``n`` items (the same for the same seed)."""
    if n >= len(ds):
        return ds
    if n < 1:
        raise ValueError(f"a subset needs at least one item, got {n}")
    labels = targets(ds)
    gen = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(labels == c).flatten() for c in range(len(ds.classes))]
    shuffled = [idx[torch.randperm(len(idx), generator=gen)] for idx in per_class]
    quota = n // len(per_class)
    chosen = [i for idx in shuffled for i in idx[:quota].tolist()]
    rest = torch.cat([idx[quota:] for idx in shuffled])
    chosen += rest[torch.randperm(len(rest), generator=gen)[: n - len(chosen)]].tolist()
    return LabelledSubset(ds, sorted(chosen))


HOLDOUT_SEED = 0  # one validation set per dataset, whatever the run's seed
MAX_HOLDOUT = 10_000


def holdout_size(n_train: int, val_images: int | None) -> int:
    """How many training images are held out for validation: ``val_images``, or by default
    one in twelve (5,000 of Fashion-MNIST's 60,000), at most ``MAX_HOLDOUT``."""
    if val_images is None:
        return min(n_train // 12, MAX_HOLDOUT)
    if not 0 < val_images < n_train:
        raise ValueError(
            f"val_images must be between 1 and {n_train - 1} (the training split's size "
            f"minus one), got {val_images}"
        )
    return val_images


def holdout(ds: Dataset, val_images: int | None = None) -> tuple[Dataset, Dataset]:
    """The training split cut in two: (the images to train on, the validation images), the
    latter a class-balanced subset drawn with ``HOLDOUT_SEED``, the same for every run."""
    held = subset(ds, holdout_size(len(ds), val_images), HOLDOUT_SEED)
    kept = sorted(set(range(len(ds))) - set(held.indices))
    return LabelledSubset(ds, kept), held


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
    counts = torch.bincount(targets(ds), minlength=len(ds.classes)).tolist()
    return dict(zip(ds.classes, counts, strict=True))


def image_tensor(image) -> torch.Tensor:
    """A (C, H, W) float tensor in [0, 1] from a PIL image or uint8 tensor image."""
    if isinstance(image, Image.Image):
        image = torch.from_numpy(np.asarray(image).copy())
        image = image.unsqueeze(0) if image.ndim == 2 else image.permute(2, 0, 1)
    return image.float() / 255 if image.dtype == torch.uint8 else image.float()


def sample_indices(ds: Dataset, n: int | None, seed: int) -> list[int] | None:
    """The indices of the ``n`` images drawn with ``seed`` (None: all, in order), as
    ``pixels`` draws them: a seeded permutation for in-memory images, a shuffle otherwise."""
    if n is None:
        return None
    if isinstance(ds, TensorImages):
        return torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    order = list(range(len(ds)))
    random.Random(seed).shuffle(order)
    return order[: n or len(ds)]


def pixels(ds: Dataset, n: int | None = None, seed: int = 0) -> torch.Tensor:
    """RGB pixels of up to ``n`` images drawn with ``seed`` (grey replicated), as an
    (N_pixels, 3) tensor (float64 for in-memory grey data, where it is an expanded view).
    Holds every pixel at once: for samples (the colour PCA); sums go through ``channel_sums``."""
    idx = sample_indices(ds, n, seed)
    if isinstance(ds, TensorImages):
        images = ds.data if idx is None else ds.data[torch.as_tensor(idx, dtype=torch.long)]
        return (images.float() / 255).double().reshape(-1, 1).expand(-1, 3)
    chunks = []
    for i in range(len(ds)) if idx is None else idx:
        x = image_tensor(ds[i][0])
        chunks.append(x.expand(3, -1, -1).reshape(3, -1).T)
    return torch.cat(chunks)


CHUNK_VALUES = 1 << 22  # pixel values (bytes of uint8) per block summed from in-memory arrays


def _raw_array(ds: Dataset):
    """A dataset's in-memory uint8 images, (N, H, W) or (N, H, W, C), when its items are those
    images untransformed (TensorImages, CIFAR-10); None otherwise."""
    array = getattr(ds, "data", None)
    if getattr(ds, "transform", None) is not None or getattr(ds, "transforms", None) is not None:
        return None
    if isinstance(array, np.ndarray | torch.Tensor) and array.dtype in (np.uint8, torch.uint8):
        grey = array.ndim == 3
        if (grey or (array.ndim == 4 and array.shape[-1] in (1, 3))) and len(array) == len(ds):
            return array
    return None


def _uint8_image(image) -> torch.Tensor:
    """A (C, H, W) tensor (C = 1 or 3) of an item's image, uint8 where the image is (PIL images,
    uint8 tensors), else float as given (taken to be in [0, 1])."""
    if isinstance(image, Image.Image):
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        image = torch.from_numpy(np.array(image))  # a writable copy: torch warns on read-only
        image = image.unsqueeze(0) if image.ndim == 2 else image.permute(2, 0, 1)
    image = torch.as_tensor(image)
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        shape = tuple(image.shape)
        raise ValueError(f"expected a grey or RGB image (1 or 3 channels), got shape {shape}")
    return image


def _blocks(ds: Dataset, indices: list[int] | None):
    """The pixels of the images at ``indices`` (all when None), a bounded block at a time: (C, P)
    tensors, C = 1 (grey) or 3, uint8 or (transformed images) float in [0, 1]."""
    if isinstance(ds, LabelledSubset):
        mapped = ds.indices if indices is None else [ds.indices[i] for i in indices]
        yield from _blocks(ds.base, list(mapped))
        return
    array = _raw_array(ds)
    if array is not None:
        per = max(1, CHUNK_VALUES // max(1, math.prod(array.shape[1:])))
        total = len(array) if indices is None else len(indices)
        for start in range(0, total, per):
            if indices is None:
                chunk = torch.as_tensor(array[start : start + per])
            else:
                at = np.asarray(indices[start : start + per], dtype=np.int64)
                at = torch.from_numpy(at) if torch.is_tensor(array) else at
                chunk = torch.as_tensor(array[at])
            channels = 1 if chunk.ndim == 3 else chunk.shape[-1]
            yield chunk.reshape(-1, channels).T
        return
    for i in range(len(ds)) if indices is None else indices:
        image = _uint8_image(ds[i][0])
        yield image.reshape(image.shape[0], -1)


def _moments(ds: Dataset, indices: list[int] | None, squares: bool):
    """Per-channel sums and (with ``squares``) sums of squares of the pixel values on the 0-255
    scale, the pixel count per channel, and whether they are exact: Python integers while every
    image is uint8, floats once one is not."""
    sums, sq, count, exact = [0, 0, 0], [0, 0, 0], 0, True
    for block in _blocks(ds, indices):
        if block.dtype == torch.uint8:
            s = block.sum(1, dtype=torch.int64).tolist()
            q = (block.to(torch.int64) ** 2).sum(1).tolist() if squares else [0] * len(s)
        else:
            exact, x = False, block.double() * 255
            s, q = x.sum(1).tolist(), (x * x).sum(1).tolist()
        if len(s) == 1:  # grey: R = G = B
            s, q = s * 3, q * 3
        sums = [total + part for total, part in zip(sums, s, strict=True)]
        sq = [total + part for total, part in zip(sq, q, strict=True)]
        count += block.shape[1]
    return sums, sq, count, exact


def channel_sums(ds: Dataset, indices: list[int] | None = None) -> tuple[torch.Tensor, int]:
    """Per-channel (R, G, B) sums of the pixel values (0-255 scale) of the images at ``indices``
    (all when None), and the number of pixels per channel; grey counts as R = G = B.

    Streams: one block of in-memory images (TensorImages, a uint8 ``.data`` array as CIFAR-10's)
    or one decoded image (image folders, wrappers) at a time, never all pixels. The sums are
    exact int64 when every image is uint8 (PIL, uint8 tensors); float64 when a transform gave
    float images (taken to be in [0, 1], scaled by 255)."""
    sums, _, count, exact = _moments(ds, indices, squares=False)
    return torch.tensor(sums, dtype=torch.int64 if exact else torch.float64), count


def mean_std(ds: Dataset, n: int | None = None, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (unbiased) in [0, 1] units, over ``n`` images drawn with
    ``seed`` (or all), streamed: exact integer sums and sums of squares for uint8 images."""
    sums, sq, count, exact = _moments(ds, sample_indices(ds, n, seed), squares=True)
    if count == 0:
        raise ValueError("no pixels to average: the dataset (or sample) is empty")
    mean = [s / (count * 255) for s in sums]
    if count < 2:
        return mean, [math.nan] * 3
    var = []
    for s, q in zip(sums, sq, strict=True):
        if exact:  # integers to the last step, a correctly rounded division: no cancellation
            var.append((count * q - s * s) / (count * (count - 1) * 255**2))
        else:
            var.append(max(q - s * s / count, 0.0) / ((count - 1) * 255**2))
    return mean, [math.sqrt(v) for v in var]


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
    """Images per second of iterating a loader over ``ds``, ``batches`` batches at a time (the
    best of repeats: ``timing.best_rate``) after one warm-up batch; epochs follow one another."""
    loader = make_loader(ds, batch_size, shuffle=True, seed=seed, workers=workers, drop_last=True)
    stream = itertools.chain.from_iterable(itertools.repeat(loader))
    next(stream)
    return timing.best_rate(lambda: sum(len(x) for x, _ in itertools.islice(stream, batches)))
