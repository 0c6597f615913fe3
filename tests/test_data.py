import gzip
import shutil
import socket
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from vggbook import augment, data, timing
from vggbook.data import DataError, DatasetNotFoundError, load_dataset

FILES = list(data.FASHION_MNIST_FILES)
HAVE_FMNIST = any(all((d / f).is_file() for f in FILES) for d in data.fashion_mnist_dirs(None))
needs_fmnist = pytest.mark.skipif(
    not HAVE_FMNIST,
    reason="Fashion-MNIST not found in data/fashion-mnist, $VGGBOOK_DATA or "
    "/usr/share/datasets/fashion-mnist: run `make data`",
)
HAVE_DEBIAN = all((data.DEBIAN_FASHION_MNIST / f).is_file() for f in FILES)
needs_debian = pytest.mark.skipif(
    not HAVE_DEBIAN,
    reason="Debian's dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)",
)


def fmnist_copy(tmp_path):
    src = next(d for d in data.fashion_mnist_dirs(None) if all((d / f).is_file() for f in FILES))
    for f in FILES:
        shutil.copy(src / f, tmp_path / f)
    return tmp_path


@pytest.fixture
def folder(tmp_path):
    """An ImageFolder tree of generated JPEGs: train/ (20x24 images) and val/ (18x22), classes
    dog and cat (made in that order, so that sorting them is visible), three images each."""
    rng = np.random.default_rng(0)
    for split, (h, w) in (("train", (20, 24)), ("val", (18, 22))):
        for c in ("dog", "cat"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / c / f"{i}.jpg")
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    """Fails a test that tries to reach the network (name lookups or internet sockets), and
    makes sure VGGBOOK_DOWNLOAD is not set."""
    attempts = []
    connect = socket.socket.connect

    def guarded_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError("network access attempted in a test")
        return connect(self, address)  # Unix sockets: DataLoader workers use them

    def guarded_getaddrinfo(host, *args, **kwargs):
        attempts.append(host)
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.delenv("VGGBOOK_DOWNLOAD", raising=False)
    yield attempts
    assert attempts == [], f"the test tried to reach {attempts}"


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*fashion-mnist, cifar10"):
        load_dataset("mnist", "train")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        load_dataset("fashion-mnist", "dev")


def test_test_split_means_val(folder):
    assert load_dataset("imagefolder", "test", folder)[0][0].size == (22, 18)  # val/ images
    assert load_dataset("imagefolder", "train", folder)[0][0].size == (24, 20)


@needs_fmnist
def test_fashion_mnist_counts_and_items():
    train, val = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
    assert (len(train), len(val)) == (60000, 10000)
    image, label = train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.uint8 and isinstance(label, int)
    assert len(train.classes) == 10 and train.classes[9] == "Ankle boot"
    assert set(data.class_counts(train).values()) == {6000}
    assert set(data.class_counts(val).values()) == {1000}


@needs_debian
def test_debian_copy_is_found_and_named(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "PROJECT_DATA", tmp_path / "empty")  # no project copy
    monkeypatch.delenv("VGGBOOK_DATA", raising=False)
    ds = load_dataset("fashion-mnist", "test", download=False)
    assert ds.source == "debian" and len(ds) == 10000


@needs_fmnist
def test_damaged_deflate_stream_is_a_data_error(tmp_path):
    root = fmnist_copy(tmp_path)
    packed = gzip.compress(gzip.decompress((root / FILES[3]).read_bytes()), mtime=0)
    for i in range(20, len(packed)):  # a damaged byte that zlib itself rejects
        damaged = packed[:i] + bytes([packed[i] ^ 0xFF]) + packed[i + 1 :]
        try:
            gzip.decompress(damaged)
        except zlib.error:
            break
        except (OSError, EOFError):
            pass
    else:
        pytest.fail("no damaged byte gave a zlib.error")
    (root / FILES[3]).write_bytes(damaged)
    with pytest.raises(DataError, match="t10k-labels.* is not a readable gzip file"):
        load_dataset("fashion-mnist", "test", root)


@needs_fmnist
def test_checksum_mismatch_and_corrupt_gzip(tmp_path):
    root = fmnist_copy(tmp_path)
    assert len(load_dataset("fashion-mnist", "test", root)) == 10000
    raw = bytearray(gzip.open(root / FILES[3]).read())
    raw[100] ^= 0xFF
    (root / FILES[3]).write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="checksum mismatch for .*t10k-labels"):
        load_dataset("fashion-mnist", "test", root)
    (root / FILES[2]).write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a readable gzip file"):
        load_dataset("fashion-mnist", "test", root)


def test_md5_tables_match_torchvision():
    official = dict(datasets.FashionMNIST.resources)
    assert data.FASHION_MNIST_GZ_MD5["official"] == official
    assert set(data.FASHION_MNIST_GZ_MD5["debian"]) == set(official)


@needs_fmnist
def test_checksums_and_source(tmp_path):
    ds = load_dataset("fashion-mnist", "test")
    known = {name: {md5s[name] for md5s in data.FASHION_MNIST_GZ_MD5.values()} for name in FILES}
    assert set(ds.checksums) == set(FILES[2:])
    assert all(md5 in known[name] for name, md5 in ds.checksums.items())
    assert not ds.source.startswith(("/work", "/root"))
    (tmp_path / "copy").mkdir()
    root = fmnist_copy(tmp_path / "copy")
    assert load_dataset("fashion-mnist", "test", root).source == ".../copy"


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
    assert load_dataset("fashion-mnist", "test").source == "$VGGBOOK_DATA"
    monkeypatch.delenv("VGGBOOK_DATA")
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        load_dataset("fashion-mnist", "test", download=False)


def test_image_folder(folder):
    ds = load_dataset("imagefolder", "train", folder)
    assert ds.classes == ["cat", "dog"] and len(ds) == 6  # sorted, not in creation order
    assert all(ds.classes[label] == Path(path).parent.name for path, label in ds.samples)
    assert data.class_counts(ds) == {"cat": 3, "dog": 3} and ds.source == ".../train"
    image, label = ds[5]
    assert image.size == (24, 20) and label == 1
    shown = load_dataset("imagefolder", "train", folder, transform=augment.eval_transform(16))
    x, label = shown[5]
    assert x.shape == (3, 16, 19) and label == 1 and shown.classes == ["cat", "dog"]
    assert list(shown.targets) == list(ds.targets)


def test_image_folder_errors(folder, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="no image folder at"):
        load_dataset("imagefolder", "train", tmp_path / "missing")
    with pytest.raises(DatasetNotFoundError, match="needs a data root"):
        load_dataset("imagenet", "train")
    (folder / "train" / "emu").mkdir()
    with pytest.raises(DataError, match="class folder .*emu holds no images"):
        load_dataset("imagefolder", "train", folder)
    (folder / "train" / "emu" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="class folder .*emu holds no images"):
        load_dataset("imagefolder", "train", folder)


def test_corrupt_image_is_named_or_skipped(folder):
    bad = folder / "val" / "dog" / "x.jpg"
    bad.write_bytes(np.random.default_rng(1).bytes(300))
    with pytest.raises(DataError, match="x.jpg is not a readable image.*skip_bad=True"):
        load_dataset("imagefolder", "test", folder)
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        ds = load_dataset("imagefolder", "test", folder, skip_bad=True)
    assert len(ds) == 6 and [p.endswith("x.jpg") for p in ds.skipped] == [True]
    for f in (folder / "val" / "cat").iterdir():
        f.write_bytes(b"broken")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="cat holds no readable"):
        load_dataset("imagefolder", "test", folder, skip_bad=True)


@pytest.mark.parametrize("name", ["cifar10", "imagenette"])
def test_downloadable_datasets_say_how_to_download(tmp_path, monkeypatch, no_network, name):
    for download in (None, False):  # None: VGGBOOK_DOWNLOAD decides, and it is unset
        with pytest.raises(DatasetNotFoundError, match=r"not allowed.*download=True.*https://"):
            load_dataset(name, "train", tmp_path, download=download)
    monkeypatch.setenv("VGGBOOK_DOWNLOAD", "1")  # an explicit download=False wins
    with pytest.raises(DatasetNotFoundError, match="downloads are not allowed"):
        load_dataset(name, "test", tmp_path, download=False)
    assert list(tmp_path.iterdir()) == []  # nothing written either


def test_imagenette_from_an_extracted_copy(tmp_path, no_network):
    wnids = ["n03888257", "n01440764"]  # parachute, tench
    for k, wnid in enumerate(wnids):
        (d := tmp_path / "imagenette2-320" / "train" / wnid).mkdir(parents=True)
        for i in range(2 + k):
            Image.new("RGB", (8, 6)).save(d / f"{i}.JPEG")
    ds = load_dataset("imagenette", "train", tmp_path, download=True)  # present: no download
    assert len(ds) == 5 and ds.source == "torchvision imagenette"
    assert list(data.class_counts(ds).values()) == [3, 2]  # tench (sorted first), parachute
    assert sorted(data.subset(ds, 2, 0).targets) == [0, 1]


def test_imagenette_size_is_checked(tmp_path):
    with pytest.raises(ValueError, match="size must be one of full, 320px, 160px"):
        load_dataset("imagenette", "train", tmp_path, size="64px")
    with pytest.raises(DatasetNotFoundError, match="imagenette2-160.tgz"):
        load_dataset("imagenette", "train", tmp_path, download=False, size="160px")


def test_subset_and_counts_from_sample_lists():
    class Samples:  # like torchvision's Imagenette: labels only in a (path, label) list
        classes = ["a", "b"]
        _samples = [(f"{i}.jpg", i % 2) for i in range(10)]

        def __len__(self):
            return 10

    ds = Samples()
    assert data.class_counts(data.with_transform(ds, lambda x: x)) == {"a": 5, "b": 5}
    assert sorted(data.subset(ds, 4, 0).targets) == [0, 0, 1, 1]


@needs_fmnist
def test_mean_std_subsample_depends_on_seed_only():
    ds = load_dataset("fashion-mnist", "test")
    torch.manual_seed(0)
    a = data.mean_std(ds, n=50, seed=3)
    torch.manual_seed(1)
    assert data.mean_std(ds, n=50, seed=3) == a != data.mean_std(ds, n=50, seed=4)
    assert data.mean_std(ds)[0][0] == pytest.approx(ds.data.double().mean().item() / 255)


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
    assert all(base.targets[i] == t for i, t in zip(a.indices, a.targets, strict=True))
    before = data.dataset_checksum(a)
    base.data[a.indices[0]] += 1
    assert data.dataset_checksum(a) != before
    uneven = data.subset(base, 22, 5)  # 22 = 4 x 5 + 2: the last two from the remainder
    assert len(uneven) == 22 and sorted(data.class_counts(uneven).values()) == [5, 5, 6, 6]
    assert len(set(uneven.indices)) == 22
    assert data.subset(base, 100) is base
    with pytest.raises(ValueError, match="at least one item"):
        data.subset(base, 0)


def test_subset_reads_the_labels_once():
    class Listed:  # labels in a Python list, like ImageFolder or CIFAR-10
        classes = list("abcdefghij")
        reads = 0

        @property
        def targets(self):
            self.reads += 1
            return [i % 10 for i in range(50_000)]

        def __len__(self):
            return 50_000

    ds = Listed()
    part = data.subset(ds, 2000, 0)
    # not once per chosen item (which took 13 s here: 2000 conversions of 50,000 labels)
    assert ds.reads < 10 and set(data.class_counts(part).values()) == {200}


def test_checksum_changes_with_content():
    images = torch.zeros(4, 2, 2, dtype=torch.uint8)
    a = data.TensorImages(images.clone(), torch.arange(4), list("abcd"), "t")
    b = data.TensorImages(images.clone(), torch.arange(4), list("abcd"), "t")
    assert data.dataset_checksum(a) == data.dataset_checksum(b)
    b.data[0, 0, 0] = 1
    assert data.dataset_checksum(a) != data.dataset_checksum(b)


@pytest.fixture(scope="module")
def augmented():
    """32 random grey 28x28 images under the full training transform (random S, crop, flip,
    colour shift)."""
    g = torch.Generator().manual_seed(0)
    base = data.TensorImages(
        torch.randint(0, 256, (32, 28, 28), dtype=torch.uint8, generator=g),
        torch.arange(32) % 4,
        list("abcd"),
        "t",
    )
    return data.with_transform(base, augment.train_transform(32, (37, 73), mean=(0.5,) * 3))


def first_batch(ds, seed, workers, shuffle=False):
    loader = data.make_loader(ds, 8, shuffle=shuffle, seed=seed, workers=workers)
    return next(iter(loader))


def test_loader_with_workers_depends_on_its_seed_only(augmented):
    # shuffle=False: the same images in the same order, so only the augmentation can differ
    torch.manual_seed(1)
    x, y = first_batch(augmented, 7, workers=2)
    torch.manual_seed(2)  # the main process's RNG must not matter
    x2, y2 = first_batch(augmented, 7, workers=2)
    x3, y3 = first_batch(augmented, 8, workers=2)
    assert x.shape == (8, 3, 32, 32) and y.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert torch.equal(y, y3) and not torch.equal(x, x3)
    # shuffled: order and augmentation both come from the seed
    assert torch.equal(
        first_batch(augmented, 7, 2, shuffle=True)[0], first_batch(augmented, 7, 2, shuffle=True)[0]
    )


def test_loader_in_process_follows_torch_manual_seed(augmented):
    batches = []
    for global_seed in (3, 3, 4):
        torch.manual_seed(global_seed)
        batches.append(first_batch(augmented, 7, workers=0)[0])
    assert torch.equal(batches[0], batches[1]) and not torch.equal(batches[0], batches[2])


class ArrayImages(torch.utils.data.Dataset):
    """CIFAR-10's layout: a uint8 (N, H, W, 3) numpy ``data`` array, PIL images as items."""

    def __init__(self, array, transform=None):
        self.data, self.transform, self.reads = array, transform, 0

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        self.reads += 1
        image = Image.fromarray(self.data[i])
        return (self.transform(image) if self.transform else image), 0


def test_channel_sums_exact_and_in_bounded_blocks(monkeypatch, folder):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (11, 4, 5, 3), dtype=np.uint8)
    grey = torch.from_numpy(rng.integers(0, 256, (9, 6, 7), dtype=np.uint8))
    tensor_images = data.TensorImages(grey, torch.zeros(9).long(), ["x"], "t")
    monkeypatch.setattr(data, "CHUNK_VALUES", 100)  # 1 CIFAR-like image, 2 grey ones a block
    for ds, sizes in ((ArrayImages(array), {60}), (tensor_images, {84, 42})):
        assert {b.numel() for b in data._blocks(ds, None)} == sizes
    # the array fast path reads no item; its sums are exact integers
    cifar = ArrayImages(array)
    sums, count = data.channel_sums(cifar)
    assert cifar.reads == 0 and sums.dtype == torch.int64 and count == 11 * 20
    assert sums.tolist() == array.reshape(-1, 3).sum(0, dtype=np.int64).tolist()
    picked = array[[2, 7]].reshape(-1, 3).sum(0, dtype=np.int64)
    assert data.channel_sums(cifar, [2, 7])[0].tolist() == picked.tolist()
    # a dataset with a transform is read item by item (the array is not what it gives)
    flipped = ArrayImages(array, transform=lambda im: im.transpose(Image.FLIP_LEFT_RIGHT))
    assert data.channel_sums(flipped)[0].tolist() == sums.tolist() and flipped.reads == 11
    # grey: R = G = B, and a subset maps to the base's images
    g_sums, g_count = data.channel_sums(data.LabelledSubset(tensor_images, [8, 0, 3]))
    assert g_sums.tolist() == [int(grey[[8, 0, 3]].long().sum())] * 3 and g_count == 3 * 42
    # image folders: one image per block, its decoded pixels
    ds = load_dataset("imagefolder", "train", folder)
    assert [b.shape for b in data._blocks(ds, None)] == [(3, 20 * 24)] * len(ds)
    decoded = np.concatenate([np.asarray(Image.open(p).convert("RGB")) for p, _ in ds.samples])
    sums, count = data.channel_sums(ds)
    assert sums.tolist() == decoded.reshape(-1, 3).sum(0, dtype=np.int64).tolist()
    assert count == 6 * 20 * 24


def test_mean_std_streams_and_matches_float64_reference(monkeypatch, folder):
    ds = load_dataset("imagefolder", "train", folder)
    decoded = np.concatenate([np.asarray(Image.open(p).convert("RGB")) for p, _ in ds.samples])
    flat = decoded.reshape(-1, 3).astype(np.float64) / 255
    monkeypatch.setattr(data, "pixels", lambda *a, **k: pytest.fail("gathered every pixel"))
    mean, std = data.mean_std(ds)
    np.testing.assert_allclose(mean, flat.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, flat.std(0, ddof=1), rtol=0, atol=1e-12)
    # float images (a transform to [0, 1]): float64 sums, to float32's precision
    as_float = data.with_transform(
        ds, lambda im: torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255
    )
    assert data.channel_sums(as_float)[0].dtype == torch.float64
    f_mean, f_std = data.mean_std(as_float)
    np.testing.assert_allclose(f_mean, flat.mean(0), rtol=0, atol=1e-7)
    np.testing.assert_allclose(f_std, flat.std(0, ddof=1), rtol=0, atol=1e-7)
    # grey in-memory images: the same mean and std in every channel
    grey = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (5, 3, 4), dtype=np.uint8))
    g_mean, g_std = data.mean_std(data.TensorImages(grey, torch.zeros(5).long(), ["x"], "t"))
    values = grey.double().flatten() / 255
    assert g_mean == pytest.approx([values.mean().item()] * 3, abs=1e-12, rel=0)
    assert g_std == pytest.approx([values.std().item()] * 3, abs=1e-12, rel=0)


def test_throughput_reads_past_an_epoch_s_end():
    class Counted(torch.utils.data.Dataset):
        reads = 0

        def __len__(self):
            return 8

        def __getitem__(self, i):
            Counted.reads += 1
            return torch.zeros(3), 0

    rate = data.measure_throughput(Counted(), batch_size=2, workers=0, batches=10)
    assert rate > 0
    # 1 warm-up batch, then at least timing.REPEATS repeats of 10 batches of 2 images
    assert Counted.reads >= 2 * (1 + timing.REPEATS * 10)
