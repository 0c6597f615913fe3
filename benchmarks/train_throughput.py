"""Training throughput: the vggbook trainer's step against a plain loop over torchvision's VGG.

Both sides train on the same synthetic in-memory batches (data loading excluded) with the same
optimizer, batch and input size. vggbook runs its real epoch function (`train_one_epoch`); the
baseline is a plain loop over torchvision's `VGG` class built with the same widths, as is (its
7x7 adaptive pool makes FC6 49x larger on a 32 px input) and matched to vggbook's grid. The
achieved FLOP/s are compared with this machine's measured matrix-multiply peak.

    python benchmarks/train_throughput.py --config A --profile tiny
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import vgg as tv

from vggbook.models import STAGES, build_vgg, resolve_config, scaled_width
from vggbook.profiles import get_profile
from vggbook.train import Dist, train_one_epoch


def torchvision_vgg(config: str, width: float, classes: int, matched: bool) -> nn.Module:
    cfg: list = []
    for s, codes in enumerate(STAGES[config]):
        cfg += [scaled_width(min(64 * 2**s, 512), width)] * len(codes) + ["M"]
    model = tv.VGG(tv.make_layers(cfg), num_classes=classes, dropout=0.5)
    # torchvision's head assumes 512 x 7 x 7 inputs and 4096 units: scale it like the convs.
    grid, channels, hidden = (1 if matched else 7), cfg[-2], scaled_width(4096, width)
    model.avgpool = nn.AdaptiveAvgPool2d(grid)
    model.classifier = nn.Sequential(
        nn.Linear(channels * grid * grid, hidden), nn.ReLU(True), nn.Dropout(0.5),
        nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(0.5),
        nn.Linear(hidden, classes),
    )  # fmt: skip
    return model


def plain_loop(model, loader, optimizer, device, amp, fmt) -> None:
    model.train()
    for x, y in loader:
        x, y = x.to(device, memory_format=fmt), y.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def plain_rate(model, make_optimizer, warm, run, batch, amp, fmt) -> float:
    """Images/s of the plain loop over ``run`` after one pass over ``warm``."""
    device = next(model.parameters()).device
    optimizer = make_optimizer(model)
    for ds in (warm, run):
        loader = DataLoader(ds, batch_size=batch, shuffle=True, drop_last=True)
        elapsed = timed(lambda: plain_loop(model, loader, optimizer, device, amp, fmt), device)  # noqa: B023
    return len(run) / elapsed


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    reps, elapsed = 0, 0.0
    while elapsed < 1.0:
        elapsed += timed(lambda: a @ b, device)
        reps += 1
    return 2 * n**3 * reps / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="A")
    p.add_argument("--profile", default="tiny")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    p.add_argument("--channels-last", action="store_true", help="(CUDA)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    config = resolve_config(args.config)
    prof = get_profile(args.profile, amp=args.amp, channels_last=args.channels_last, workers=0)
    amp = prof.amp and device.type == "cuda"
    fmt = (
        torch.channels_last
        if prof.channels_last and device.type == "cuda"
        else torch.contiguous_format
    )
    b, crop = prof.batch_size, prof.crop

    def data(steps: int) -> TensorDataset:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(steps * b, 3, crop, crop, generator=g)
        return TensorDataset(x, torch.randint(prof.num_classes, (steps * b,), generator=g))

    def sgd(model):
        return torch.optim.SGD(
            model.parameters(), lr=prof.lr, momentum=prof.momentum, weight_decay=prof.weight_decay
        )

    results = {}
    ours = build_vgg(config, prof.num_classes, width=prof.width, image_size=crop).to(
        device, memory_format=fmt
    )
    opt = sgd(ours)
    warm, run = data(args.warmup), data(args.steps)
    step = lambda ds: train_one_epoch(ours, ds, opt, prof, 0, 0, Dist(), device, False)  # noqa: E731
    step(warm)
    results["vggbook"] = args.steps * b / timed(lambda: step(run), device)
    for name, matched in (("baseline", False), ("baseline_matched", True)):
        model = torchvision_vgg(config, prof.width, prof.num_classes, matched)
        results[name] = plain_rate(model.to(device, memory_format=fmt), sgd, warm, run, b, amp, fmt)

    x = torch.randn(b, 3, crop, crop, device=device).to(memory_format=fmt)
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            F.cross_entropy(
                ours(x).float(), torch.zeros(b, dtype=torch.long, device=device)
            ).backward()
    flops_per_image = counter.get_total_flops() / b
    peak = matmul_peak(device, torch.bfloat16 if amp else torch.float32)
    achieved = results["vggbook"] * flops_per_image

    print(f"{'':20s} images/s")
    for name, value in results.items():
        print(f"{name:20s} {value:10.1f}")
    print(
        f"training FLOPs/image {flops_per_image / 1e6:.1f} M; "
        f"achieved {achieved / 1e9:.2f} GFLOP/s; matmul peak {peak / 1e9:.1f} GFLOP/s"
    )
    print(
        json.dumps(
            {
                "vggbook_images_per_second": round(results["vggbook"], 1),
                "baseline_images_per_second": round(results["baseline"], 1),
                "baseline_matched_images_per_second": round(results["baseline_matched"], 1),
                "ratio": round(results["vggbook"] / results["baseline"], 3),
                "ratio_matched": round(results["vggbook"] / results["baseline_matched"], 3),
                "peak_fraction": round(achieved / peak, 4),
                "peak_flops": round(peak),
                "flops_per_image": round(flops_per_image),
                "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(),
                "config": config,
                "profile": prof.name,
                "batch": b,
                "crop": crop,
                "width": prof.width,
                "amp": amp,
                "channels_last": fmt == torch.channels_last,
                "threads": args.threads,
            }
        )
    )


if __name__ == "__main__":
    main()
