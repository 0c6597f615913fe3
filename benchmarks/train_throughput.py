"""Training throughput: the vggbook trainer's step against a plain loop over torchvision's VGG.

All sides train on the same synthetic in-memory batches (random images and labels: no decoding,
no augmentation) with the same batch, input size and optimizer (SGD, momentum 0.9, weight decay
5e-4, lr 0.01), under ``torch.use_deterministic_algorithms(True)`` as the trainer runs.

- vggbook: the trainer's own code path: the model from ``vggbook.train.build_model``, and
  ``vggbook.train.train_one_epoch`` called on a ``TensorDataset`` (workers=0), timed whole.
- torchvision: ``torchvision.models.vgg.VGG(make_layers(cfg))`` with every channel count and the
  4096-unit FC layers scaled by the width. Its head keeps the 7x7 adaptive pool, so on inputs
  smaller than 224 px its FC6 sees a 7x7 grid (the feature map repeated) and is larger.
- torchvision matched: the same net with the pool and FC6 set to vggbook's grid (crop // 32):
  the like-for-like comparison.

The timed steps are split into rounds (whole calls, nothing subtracted) that alternate between
the sides in a rotating order, so that load from other processes falls on all of them alike;
images/s is the median round. On a CPU the table also gives each side's share of the cores
(process CPU time / wall time / threads): well under 100% means other processes took the rest
and the numbers are noisy. FLOPs per image come from
``FlopCounterMode`` over one forward and backward pass (convolutions and matrix products only);
the peak is a large matrix product timed for about a second on the same device and precision.

    python benchmarks/train_throughput.py --config A --profile tiny

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import vgg as tv

from vggbook.models import STAGES, resolve_config, scaled_width
from vggbook.profiles import PROFILES, get_profile
from vggbook.train import Dist, build_model, run_spec, train_one_epoch

# torchvision's make_layers builds 3x3 convs only: configs A, B, D and E (vgg11/13/16/19).
TORCHVISION_CONFIGS = ("A", "B", "D", "E")


def torchvision_vgg(config: str, width: float, classes: int, dropout: float, grid: int) -> tv.VGG:
    """torchvision's VGG with channels and hidden units scaled by ``width``; its avgpool and
    FC6 take a ``grid`` x ``grid`` map (torchvision's own is 7)."""
    cfg: list[int | str] = []
    for s, codes in enumerate(STAGES[config]):
        cfg += [scaled_width(min(64 * 2**s, 512), width)] * len(codes) + ["M"]
    model = tv.VGG(tv.make_layers(cfg), num_classes=classes, dropout=dropout)
    channels, hidden = cfg[-2], scaled_width(4096, width)
    model.avgpool = nn.AdaptiveAvgPool2d((grid, grid))
    # Its Linear layers are sized for 512 channels and 4096 units: rebuild them at this width,
    # initialised as torchvision does, keeping its ReLU and Dropout modules in place.
    for i, (n_in, n_out) in {0: (channels * grid * grid, hidden), 3: (hidden, hidden),
                             6: (hidden, classes)}.items():  # fmt: skip
        fc = nn.Linear(n_in, n_out)
        nn.init.normal_(fc.weight, 0, 0.01)
        nn.init.zeros_(fc.bias)
        model.classifier[i] = fc
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def determinism(warn_only: bool):
    """Deterministic algorithms, or (``warn_only``) the same with the alerts silenced."""
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    try:
        with warnings.catch_warnings():
            if warn_only:
                warnings.filterwarnings("ignore", message=".*deterministic.*")
            yield
    finally:
        torch.use_deterministic_algorithms(True)


@dataclass
class Side:
    """One thing timed: ``epoch(dataset)`` trains once over the dataset."""

    name: str
    model: nn.Module
    epoch: Callable[[TensorDataset], object]
    rates: list[float] = field(default_factory=list)  # images/s of each timed round
    wall: float = 0.0
    cpu: float = 0.0  # CPU seconds of this process (all threads) over the timed rounds
    nondeterministic: str = ""  # the op that has no deterministic kernel, if one was hit

    def run(self, dataset: TensorDataset, device: torch.device) -> tuple[float, float]:
        """Wall and CPU seconds of one pass (the whole call). If an op of the model has no
        deterministic implementation on this device, it says so and runs warn-only from then."""
        try:
            with determinism(warn_only=bool(self.nondeterministic)):
                sync(device)
                start, cpu = time.perf_counter(), time.process_time()
                self.epoch(dataset)
                sync(device)
                return time.perf_counter() - start, time.process_time() - cpu
        except RuntimeError as e:
            if self.nondeterministic or "deterministic" not in str(e):
                raise
            self.nondeterministic = str(e).split(" does not have")[0].strip() or "an op"
            return self.run(dataset, device)

    def record(self, dataset: TensorDataset, device: torch.device) -> None:
        wall, cpu = self.run(dataset, device)
        self.rates.append(len(dataset) / wall)
        self.wall, self.cpu = self.wall + wall, self.cpu + cpu

    @property
    def images_per_second(self) -> float:
        """The median round: robust to bursts of load from other processes."""
        return statistics.median(self.rates)


def plain_epoch(model, optimizer, batch, device, amp, fmt):
    """The loop everyone writes: forward (autocast), loss, backward, step."""
    cuda = device.type == "cuda"

    def epoch(dataset: TensorDataset) -> None:
        model.train()
        loader = DataLoader(
            dataset, batch_size=batch, shuffle=True, drop_last=True, pin_memory=cuda
        )
        for x, y in loader:
            x = x.to(device, non_blocking=True, memory_format=fmt)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return epoch


def training_flops(model: nn.Module, batch: int, crop: int, classes: int, device, amp, fmt):
    """FLOPs of one training step's forward and backward pass, per image."""
    x = torch.randn(batch, 3, crop, crop, device=device).contiguous(memory_format=fmt)
    y = torch.randint(classes, (batch,), device=device)
    with determinism(warn_only=True), FlopCounterMode(display=False) as counter:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """FLOP/s of an n x n matrix product (2 n^3 per product), timed for about ``seconds``."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(2):
        a @ b
    sync(device)
    reps, elapsed, chunk = 0, 0.0, 1
    while elapsed < seconds:
        sync(device)
        start = time.perf_counter()
        for _ in range(chunk):
            a @ b
        sync(device)
        took = time.perf_counter() - start
        reps, elapsed = reps + chunk, elapsed + took
        if took < 0.05:  # few syncs per second: launch and sync overheads stay out of it
            chunk *= 2
    return 2 * n**3 * reps / elapsed


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", default="A", help="A, B, D or E (or vgg11, vgg13, vgg16, vgg19)")
    p.add_argument("--profile", default="tiny", choices=list(PROFILES))
    p.add_argument("--steps", type=int, default=30, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per side first")
    p.add_argument("--rounds", type=int, default=5, help="the timed steps split into rounds")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast, CUDA only (default: the profile's)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="CUDA only (default: the profile's)",
    )
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    args = p.parse_args()
    config = resolve_config(args.config)
    if config not in TORCHVISION_CONFIGS:
        p.error(f"config {config} has no torchvision counterpart: choose A, B, D or E")
    args.config = config
    for name in ("steps", "rounds", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must be at least 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available here")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:  # as the trainer does, before the first cuBLAS call
        torch.cuda.set_device(device)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)

    prof = get_profile(args.profile, amp=args.amp, channels_last=args.channels_last, workers=0)
    amp, channels_last = prof.amp and cuda, prof.channels_last and cuda  # as in train.py
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    b, crop, width, classes = prof.batch_size, prof.crop, prof.width, prof.num_classes
    grid = crop // 32

    def dataset(steps: int, seed: int) -> TensorDataset:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(steps * b, 3, crop, crop, generator=g)
        return TensorDataset(x, torch.randint(classes, (steps * b,), generator=g))

    def sgd(model: nn.Module) -> torch.optim.SGD:
        return torch.optim.SGD(
            model.parameters(), lr=prof.lr, momentum=prof.momentum, weight_decay=prof.weight_decay
        )

    ours, _ = build_model(run_spec(args.config, prof, 0), prof.init, device)
    if channels_last:
        ours = ours.to(memory_format=torch.channels_last)
    ours_opt, calls = sgd(ours), iter(range(10**9))
    sides = [
        Side(
            "vggbook",
            ours,
            lambda ds: train_one_epoch(
                ours, ds, ours_opt, prof, 0, next(calls), Dist(), device, False
            ),
        )
    ]
    for name, g in (("torchvision", 7), ("torchvision_matched", grid)):
        model = torchvision_vgg(args.config, width, classes, prof.dropout, g)
        model = model.to(device, memory_format=fmt)
        sides.append(Side(name, model, plain_epoch(model, sgd(model), b, device, amp, fmt)))

    rounds = min(args.rounds, args.steps)
    chunks = [
        dataset(args.steps // rounds + (r < args.steps % rounds), r + 1) for r in range(rounds)
    ]
    if args.warmup:
        warm = dataset(args.warmup, 0)
        for side in sides:
            side.run(warm, device)
    for r, chunk in enumerate(chunks):
        for side in sides[r % len(sides) :] + sides[: r % len(sides)]:
            side.record(chunk, device)

    flops = {s.name: training_flops(s.model, b, crop, classes, device, amp, fmt) for s in sides}
    fc6 = {s.name: next(m for m in s.model.classifier if isinstance(m, nn.Linear)) for s in sides}
    tf32 = cuda and not amp and torch.backends.cudnn.allow_tf32  # the convs' fp32 math mode
    precision = "bf16" if amp else "tf32" if tf32 else "fp32"
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        peak = matmul_peak(device, torch.bfloat16 if amp else torch.float32)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous

    rate = {s.name: s.images_per_second for s in sides}
    share = {s.name: s.cpu / s.wall / args.threads for s in sides}
    achieved = {name: rate[name] * flops[name] for name in rate}
    device_name = torch.cuda.get_device_name(device) if cuda else cpu_name()
    print(
        f"VGG {args.config}, profile {prof.name}: batch {b}, crop {crop}, width {width}, "
        f"{device_name}, {args.threads} threads, {precision}"
        f"{', channels_last' if channels_last else ''}; {args.steps} steps in {rounds} rounds "
        f"after {args.warmup} warm-up"
    )
    print(
        f"{'':21s}{'images/s':>10s}{'rounds min-max':>17s}{'MFLOP/img':>11s}"
        f"{'FC6 in x out':>16s}{'of peak':>9s}{'CPU share' if not cuda else '':>11s}"
    )
    for s in sides:
        fc = fc6[s.name]
        print(
            f"{s.name:21s}{rate[s.name]:10.1f}{min(s.rates):8.1f}-{max(s.rates):<8.1f}"
            f"{flops[s.name] / 1e6:11.1f}{f'{fc.in_features} x {fc.out_features}':>16s}"
            f"{achieved[s.name] / peak:9.1%}" + (f"{share[s.name]:11.0%}" if not cuda else "")
        )
    print(
        f"ratio vggbook/torchvision {rate['vggbook'] / rate['torchvision']:.3f}, "
        f"vggbook/torchvision_matched {rate['vggbook'] / rate['torchvision_matched']:.3f}"
    )
    if grid != 7:
        print(
            f"torchvision's 7x7 adaptive pool repeats the {grid}x{grid} feature map into 7x7: "
            f"its FC6 has {fc6['torchvision'].in_features // fc6['vggbook'].in_features}x the "
            "inputs of vggbook's; 'torchvision_matched' pools to vggbook's grid instead"
        )
    if not cuda and (args.amp or args.channels_last):
        print("--amp and --channels-last apply on CUDA only (as in the trainer): ignored here")
    for s in sides:
        if s.nondeterministic:
            print(f"{s.name}: {s.nondeterministic} has no deterministic kernel: timed warn-only")
    print(
        f"vggbook achieved {achieved['vggbook'] / 1e9:.2f} GFLOP/s; "
        f"{precision} matmul peak {peak / 1e9:.1f} GFLOP/s"
    )
    print(
        json.dumps(
            {
                "vggbook_images_per_second": round(rate["vggbook"], 1),
                "baseline_images_per_second": round(rate["torchvision"], 1),
                "baseline_matched_images_per_second": round(rate["torchvision_matched"], 1),
                "ratio": round(rate["vggbook"] / rate["torchvision"], 3),
                "ratio_matched": round(rate["vggbook"] / rate["torchvision_matched"], 3),
                "peak_fraction": round(achieved["vggbook"] / peak, 4),
                "peak_flops": round(peak),
                "peak_precision": precision,
                "flops_per_image": round(flops["vggbook"]),
                "baseline_flops_per_image": round(flops["torchvision"]),
                "baseline_fc6_in_features": fc6["torchvision"].in_features,
                "vggbook_fc6_in_features": fc6["vggbook"].in_features,
                "device": device.type,
                "device_name": device_name,
                "config": args.config,
                "profile": prof.name,
                "batch": b,
                "crop": crop,
                "width": width,
                "amp": amp,
                "channels_last": channels_last,
                "threads": args.threads,
                "steps": args.steps,
                "warmup": args.warmup,
                "rounds": rounds,
                "cpu_share": {k: round(v, 2) for k, v in share.items()} if not cuda else None,
                "nondeterministic": {
                    s.name: s.nondeterministic for s in sides if s.nondeterministic
                },
            }
        )
    )


if __name__ == "__main__":
    main()
