import gzip
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from vggbook import augment, data
from vggbook.data import DataError, DatasetNotFoundError, load_dataset

FILES = list(data.FASHION_MNIST_FILES)
HAVE_FMNIST = any(all((d / f).is_file() for f in FILES) for d in data.fashion_mnist_dirs(None))
needs_fmnist = pytest.mark.skipif(not HAVE_FMNIST, reason="Fashion-MNIST absent: run `make data`")


def fmnist_copy(tmp_path):
    src = next(d for d in data.fashion_mnist_dirs(None) if all((d / f).is_file() for f in FILES))
    for f in FILES:
        shutil.copy(src / f, tmp_path / f)
    return tmp_path


@pytest.fixture
def folder(tmp_path):
    """An ImageFolder tree of generated JPEGs: train/ and val/, classes cat and dog."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / c / f"{i}.jpg")
    return tmp_path


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*fashion-mnist, cifar10"):
        load_dataset("mnist", "train")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_dataset("fashion-mnist", "dev")


@needs_fmnist
def test_fashion_mnist_counts_and_items():
    train, val = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    assert (len(train), len(val)) == (60000, 10000)
    image, label = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.uint8 and isinstance(label, int)
    assert len(train.classes) == 10 and train.classes[9] == "Ankle boot"
    assert set(data.class_counts(train).values()) == {6000}
    assert set(data.class_counts(val).values()) == {1000}


@needs_fmnist
def test_checksum_mismatch_and_corrupt_gzip(tmp_path):
    root = fmnist_copy(tmp_path)
    assert len(load_dataset("fashion-mnist", "val", root)) == 10000
    raw = bytearray(gzip.open(root / FILES[3]).read())
    raw[100] ^= 0xFF
    (root / FILES[3]).write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="checksum mismatch for .*t10k-labels"):
        load_dataset("fashion-mnist", "val", root)
    (root / FILES[2]).write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a readable gzip file"):
        load_dataset("fashion-mnist", "val", root)


def test_not_found_lists_places_and_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("fashion-mnist", "train", tmp_path, download=False)
    assert str(tmp_path) in str(e.value) and "make data" in str(e.value)
    assert "\n" not in str(e.value)


@needs_fmnist
def test_vggbook_data_environment_variable(tmp_path, monkeypatch):
    fmnist_copy(tmp_path)
    monkeypatch.setattr(data, "PROJECT_DATA", tmp_path / "project" / "nowhere")
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    monkeypatch.setenv("VGGBOOK_DATA", str(tmp_path))
    assert load_dataset("fashion-mnist", "val").source == str(tmp_path)
    monkeypatch.delenv("VGGBOOK_DATA")
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        load_dataset("fashion-mnist", "val", download=False)


def test_image_folder(folder):
    ds = load_dataset("imagefolder", "train", folder)
    assert ds.classes == ["cat", "dog"] and len(ds) == 6
    image, label = ds[5]
    assert image.size == (24, 20) and label == 1


def test_image_folder_errors(folder, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no image folder at"):
        load_dataset("imagefolder", "train", tmp_path / "missing")
    with pytest.raises(DatasetNotFoundError, match="needs a data root"):
        load_dataset("imagenet", "train")
    (folder / "train" / "emu").mkdir()
    with pytest.raises(DataError, match="class folder .*emu holds no images"):
        load_dataset("imagefolder", "train", folder)


def test_corrupt_image_is_named_or_skipped(folder):
    bad = folder / "val" / "dog" / "x.jpg"
    bad.write_bytes(np.random.default_rng(1).bytes(300))
    with pytest.raises(DataError, match="x.jpg is not a readable image.*skip_bad=True"):
        load_dataset("imagefolder", "val", folder)
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        ds = load_dataset("imagefolder", "val", folder, skip_bad=True)
    assert len(ds) == 6 and [p.endswith("x.jpg") for p in ds.skipped] == [True]


@pytest.mark.parametrize("name", ["cifar10", "imagenette"])
def test_downloadable_datasets_say_how_to_download(tmp_path, name):
    with pytest.raises(DatasetNotFoundError, match="download=True"):
        load_dataset(name, "train", tmp_path, download=False)


def test_subset_is_balanced_and_seeded(folder):
    base = data.TensorImages(
        torch.arange(100, dtype=torch.uint8).reshape(100, 1, 1).expand(100, 2, 2).clone(),
        torch.arange(100) % 4,
        list("abcd"),
        "test",
    )
    a, b, c = data.subset(base, 20, 0), data.subset(base, 20, 0), data.subset(base, 20, 1)
    assert len(a) == 20 and a.classes == list("abcd")
    assert data.class_counts(a) == {k: 5 for k in "abcd"}
    assert a.indices == b.indices and a.indices != c.indices
    assert data.dataset_checksum(a) == data.dataset_checksum(b) != data.dataset_checksum(c)
    base.data[a.indices[0]] += 1
    assert (
        data.dataset_checksum(a) != data.dataset_checksum(b) or a.fingerprint() != c.fingerprint()
    )


def test_checksum_changes_with_content():
    images = torch.zeros(4, 2, 2, dtype=torch.uint8)
    a = data.TensorImages(images.clone(), torch.arange(4), list("abcd"), "t")
    b = data.TensorImages(images.clone(), torch.arange(4), list("abcd"), "t")
    assert data.dataset_checksum(a) == data.dataset_checksum(b)
    b.data[0, 0, 0] = 1
    assert data.dataset_checksum(a) != data.dataset_checksum(b)


def first_batch(ds, seed, workers):
    torch.manual_seed(seed)
    return next(iter(data.make_loader(ds, 8, shuffle=True, seed=seed, workers=workers)))[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_determinism(workers):
    base = data.TensorImages(
        torch.randint(0, 255, (64, 28, 28), dtype=torch.uint8),
        torch.arange(64) % 4,
        list("abcd"),
        "t",
    )
    ds = data.with_transform(base, augment.train_transform(32, (37, 73), mean=(0.5,) * 3))
    assert torch.equal(first_batch(ds, 0, workers), first_batch(ds, 0, workers))
    assert not torch.equal(first_batch(ds, 0, workers), first_batch(ds, 1, workers))
