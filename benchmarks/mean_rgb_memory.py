"""Peak memory and time of the training set's mean RGB: gathering every pixel against streaming.

Generates an ImageFolder tree ``<root>/train/<class>/<i>.jpg`` (by default 20,000 random 64x64
RGB JPEGs in 10 classes, seed 0) in a temporary directory, or in ``--root`` (kept, and reused
when it already holds the asked-for number of images). Each measurement runs in its own
process, which reports its peak resident memory (``getrusage(RUSAGE_SELF).ru_maxrss``) and the
seconds of the mean alone:

- baseline: ``import torch`` and vggbook, then ``data.load_dataset("imagefolder", "train", root)``
  (the file index, each file verified): what every side pays before any pixel is read;
- before: the approach being replaced (``data.pixels`` as it was, then ``mean_rgb``): every
  image decoded to float32, all of them concatenated, the whole copied to float64, averaged;
- after: ``vggbook.augment.mean_rgb`` on the same dataset: per-channel integer sums streamed
  one decoded uint8 image at a time.

"mean MiB" is the peak less the baseline's: the memory the mean itself needs.

    python benchmarks/mean_rgb_memory.py                       # 20,000 images, 64x64
    python benchmarks/mean_rgb_memory.py --images 2000 --size 32 --root /tmp/folder

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("baseline", "before", "after")


def generate(root: Path, images: int, size: int, classes: int, seed: int) -> None:
    """``images`` random RGB JPEGs of ``size`` x ``size`` under root/train/<class>/, dealt
    round-robin to ``classes`` folders; nothing is written when they are already there."""
    import numpy as np
    from PIL import Image

    train = root / "train"
    if train.is_dir() and sum(1 for _ in train.rglob("*.jpg")) == images:
        return
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (train / f"class{c:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        # a random colour per image plus noise, so that images and channels differ
        tint = rng.integers(0, 128, 3)
        pixels = (rng.integers(0, 128, (size, size, 3)) + tint).astype(np.uint8)
        Image.fromarray(pixels, "RGB").save(train / f"class{i % classes:02d}" / f"{i}.jpg")


def old_pixels(ds):
    """THE BASELINE BEING REPLACED: the old ``data.pixels(ds)`` (n=None) for an image folder:
    every image decoded to float32 in [0, 1], kept in a list, concatenated to (N_pixels, 3)."""
    import random

    import torch

    from vggbook.data import image_tensor

    order = list(range(len(ds)))
    random.Random(0).shuffle(order)
    chunks = []
    for i in order:
        x = image_tensor(ds[i][0])
        chunks.append(x.expand(3, -1, -1).reshape(3, -1).T)
    return torch.cat(chunks)


def old_mean_rgb(ds) -> list[float]:
    """THE BASELINE BEING REPLACED: the old ``augment.mean_rgb``: the gathered pixels copied to
    float64 and averaged (the float32 list is freed on return, as it was)."""
    return old_pixels(ds).double().mean(0).tolist()


def measure(mode: str, root: Path) -> dict:
    """Runs one mode in this process and returns its peak RSS and seconds."""
    import torch  # noqa: F401  (part of the baseline)

    from vggbook import augment, data

    start = time.perf_counter()
    ds = data.load_dataset("imagefolder", "train", root)
    loaded = time.perf_counter()
    mean = None
    if mode == "before":
        mean = old_mean_rgb(ds)
    elif mode == "after":
        mean = list(augment.mean_rgb(ds))
    end = time.perf_counter()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "mode": mode,
        "images": len(ds),
        "peak_mib": peak_kib / 1024,
        "load_seconds": loaded - start,
        "seconds": end - loaded if mode != "baseline" else 0.0,
        "mean": mean,
    }


def run(mode: str, root: Path) -> dict:
    """``measure`` in a fresh Python process (so that peaks do not carry over)."""
    out = subprocess.run(
        [sys.executable, __file__, "--measure", mode, "--root", str(root)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="where the image folder is made (kept)")
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.root)))
        return

    with tempfile.TemporaryDirectory(prefix="mean_rgb_") as tmp:
        root = args.root or Path(tmp)
        start = time.perf_counter()
        generate(root, args.images, args.size, args.classes, args.seed)
        print(f"image folder: {args.images} images of {args.size}x{args.size} "
              f"({time.perf_counter() - start:.1f} s to make or find)")  # fmt: skip
        results = {mode: run(mode, root) for mode in MODES}

    base = results["baseline"]["peak_mib"]
    pixels = args.images * args.size * args.size
    print(f"{pixels * 3:,} pixel values; all of them as float32 + float64: "
          f"{pixels * 3 * 12 / 2**20:,.0f} MiB")  # fmt: skip
    print(f"{'mode':<10}{'peak MiB':>10}{'mean MiB':>10}{'seconds':>10}  mean RGB")
    for mode, r in results.items():
        mean = ", ".join(f"{m:.9f}" for m in r["mean"]) if r["mean"] else "-"
        seconds = r["seconds"] if mode != "baseline" else r["load_seconds"]
        print(f"{mode:<10}{r['peak_mib']:>10.0f}{r['peak_mib'] - base:>10.0f}{seconds:>10.2f}  "
              f"{mean}")  # fmt: skip
    before, after = results["before"], results["after"]
    difference = max(abs(a - b) for a, b in zip(before["mean"], after["mean"], strict=True))
    print("baseline seconds: import + file index (verified); before/after: the mean alone")
    print(f"largest difference between the means: {difference:.2e} (float32 rounding in before)")
    summary = {
        "images": args.images,
        "size": args.size,
        "baseline_peak_mib": round(base, 1),
        "peak_mib_before": round(before["peak_mib"], 1),
        "peak_mib_after": round(after["peak_mib"], 1),
        "mean_mib_before": round(before["peak_mib"] - base, 1),
        "mean_mib_after": round(after["peak_mib"] - base, 1),
        "seconds_before": round(before["seconds"], 2),
        "seconds_after": round(after["seconds"], 2),
        "max_abs_difference": difference,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
