"""Training throughput: the vggbook trainer end to end, against its old settings and its step.

Four sides, timed in one run, each with its own model and SGD (the profile's lr, momentum and
weight decay), under ``torch.use_deterministic_algorithms(True)`` as the trainer runs:

- vggbook: the trainer end to end on the profile's real training images with its real
  augmentation: ``make_datasets``, ``augment.mean_rgb``, ``TrainingData`` (the batches of
  ``.epoch(e)``, augmented a batch at a time for in-memory datasets) and ``train_one_epoch``
  in the precision ``vggbook.precision.choose`` gives the profile here (bf16 autocast where
  the hardware has bf16, channels_last where the profile asks).
- baseline: the same trainer with the old settings: the profile with ``amp=False,
  channels_last=False, batch_augment=False``: fp32, contiguous, and the per-image
  torchvision-transforms pipeline through a DataLoader.
- step: ``train_one_epoch`` alone, in the profile's precision, on ready random in-memory
  batches: no data pipeline. ``pipeline_share = 1 - vggbook / step`` is the fraction of the
  end-to-end time spent producing the data rather than in the step.
- torchvision_matched: a plain loop (forward under autocast, loss, backward, step) over
  torchvision's ``VGG(make_layers(cfg))`` with channels and FC units scaled by the width and its
  pool and FC6 set to vggbook's grid (crop // 32), in the profile's precision, on the same
  random batches as ``step``: is vggbook's step as fast as the loop everyone writes?

Data is produced in this process (``workers=0``) for both trainer sides. Each trainer side
reads its batches epoch after epoch, as training does: a round takes the next steps
(``itertools.islice`` of ``TrainingData.epoch(e)``, timed with the step), so the time to
produce every batch is included, and an epoch's start (its order and augmentation draws) falls
once per epoch, in the warm-up or in the round that crosses an epoch's end.

The timed steps are split into rounds (whole calls, nothing subtracted) that alternate between
the sides in a rotating order, so that load from other processes falls on all of them alike;
images/s is the median round. On a CPU the table also gives each side's share of the cores
(process CPU time / wall time / threads): well under 100% means other processes took the rest
and the numbers are noisy. FLOPs per image come from ``FlopCounterMode`` over one forward and
backward pass (convolutions and matrix products only); the peak is a large matrix product
timed for about a second on the same device, in each side's precision.

    python benchmarks/train_throughput.py --config A --profile tiny

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import vgg as tv

from vggbook import augment, precision
from vggbook.models import STAGES, resolve_config, scaled_width
from vggbook.precision import Precision
from vggbook.profiles import PROFILES, Profile, get_profile
from vggbook.runs import RunSpec
from vggbook.train import Dist, TrainingData, build_model, make_datasets, train_one_epoch

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
    """One thing timed: ``train`` takes (images, labels) batches, trains on them and returns
    the number of images; ``batches`` is endless, and each pass takes the next ones."""

    name: str
    model: nn.Module
    prec: Precision
    data: str  # where the batches come from: "batched", "per-image" or "synthetic"
    batches: Iterator
    train: Callable[[Iterable], int]
    rates: list[float] = field(default_factory=list)  # images/s of each timed round
    wall: float = 0.0
    cpu: float = 0.0  # CPU seconds of this process (all threads) over the timed rounds
    nondeterministic: str = ""  # the op that has no deterministic kernel, if one was hit

    def run(self, steps: int, device: torch.device) -> tuple[int, float, float]:
        """Images, wall and CPU seconds of ``steps`` steps, producing their batches included
        (the whole call). If an op has no deterministic implementation on this device, it
        says so and runs warn-only from then."""
        try:
            with determinism(warn_only=bool(self.nondeterministic)):
                sync(device)
                start, cpu = time.perf_counter(), time.process_time()
                images = self.train(itertools.islice(self.batches, steps))
                sync(device)
                return images, time.perf_counter() - start, time.process_time() - cpu
        except RuntimeError as e:
            if self.nondeterministic or "deterministic" not in str(e):
                raise
            self.nondeterministic = str(e).split(" does not have")[0].strip() or "an op"
            return self.run(steps, device)

    def record(self, steps: int, device: torch.device) -> None:
        images, wall, cpu = self.run(steps, device)
        self.rates.append(images / wall)
        self.wall, self.cpu = self.wall + wall, self.cpu + cpu

    @property
    def images_per_second(self) -> float:
        """The median round: robust to bursts of load from other processes."""
        return statistics.median(self.rates)

    @property
    def label(self) -> str:
        return f"{self.prec.name} {'NHWC' if self.prec.channels_last else 'NCHW'}"


def sgd(model: nn.Module, profile: Profile) -> torch.optim.SGD:
    return torch.optim.SGD(
        model.parameters(),
        lr=profile.lr,
        momentum=profile.momentum,
        weight_decay=profile.weight_decay,
    )


def epochs(training: TrainingData) -> Iterator:
    """The trainer's batches, epoch after epoch, as training draws them."""
    for epoch in itertools.count():
        yield from training.epoch(epoch)


def trainer_side(name, spec, prec, batches, data, device) -> Side:
    """``vggbook.train``'s model, optimiser and ``train_one_epoch`` over ``batches``."""
    model = build_model(spec, device)[0].to(memory_format=prec.memory_format)
    optimizer, dist = sgd(model, spec.profile), Dist()

    def train(batches: Iterable) -> int:
        return int(train_one_epoch(model, batches, optimizer, prec, dist, device)[0][3])

    return Side(name, model, prec, data, batches, train)


def plain_side(name, model, profile, prec, batches, device) -> Side:
    """The loop everyone writes: forward (autocast), loss, backward, step."""
    optimizer = sgd(model, profile)

    def train(batches: Iterable) -> int:
        model.train()
        images = 0
        for x, y in batches:
            x = x.to(device, non_blocking=True, memory_format=prec.memory_format)
            y = y.to(device, non_blocking=True)
            with prec.autocast(device):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images += len(y)
        return images

    return Side(name, model, prec, "synthetic", batches, train)


def training_flops(model: nn.Module, profile: Profile, prec: Precision, device) -> float:
    """FLOPs of one training step's forward and backward pass, per image."""
    b, crop = profile.batch_size, profile.crop
    x = torch.randn(b, 3, crop, crop, device=device).contiguous(memory_format=prec.memory_format)
    y = torch.randint(profile.num_classes, (b,), device=device)
    with determinism(warn_only=True), FlopCounterMode(display=False) as counter:
        with prec.autocast(device):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / b


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


def peak(amp: bool, device: torch.device) -> tuple[str, float]:
    """The math a precision runs in ("bf16"; on a GPU in fp32, the convolutions' default TF32)
    and the matmul peak in it."""
    tf32 = device.type == "cuda" and not amp and torch.backends.cudnn.allow_tf32
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        flops = matmul_peak(device, torch.bfloat16 if amp else torch.float32)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return ("bf16" if amp else "tf32" if tf32 else "fp32"), flops


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
        help="bf16 autocast where the hardware has bf16 (default: the profile's)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels_last memory format (default: the profile's)",
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

    # The profile as asked, and the old settings; data produced in this process for both.
    prof = get_profile(args.profile, amp=args.amp, channels_last=args.channels_last, workers=0)
    old = prof.replace(amp=False, channels_last=False, batch_augment=False)
    prec = precision.choose(prof.amp, prof.channels_last, device)
    old_prec = precision.choose(old.amp, old.channels_last, device)
    b, crop, width, classes = prof.batch_size, prof.crop, prof.width, prof.num_classes
    spec, old_spec = RunSpec.of(args.config, prof, 0), RunSpec.of(args.config, old, 0)

    train_raw, _ = make_datasets(spec, None, None)
    mean = augment.mean_rgb(train_raw)
    training = TrainingData(train_raw, prof, mean, spec.seed, Dist(), device)
    old_training = TrainingData(train_raw, old, mean, spec.seed, Dist(), device)
    if training.steps == 0:
        raise SystemExit(f"{len(train_raw)} training images: fewer than one batch of {b}")

    # Ready batches for the sides without a pipeline: a few, reused in turn.
    g = torch.Generator().manual_seed(0)
    synthetic = [
        (torch.randn(b, 3, crop, crop, generator=g), torch.randint(classes, (b,), generator=g))
        for _ in range(min(args.steps, 4))
    ]
    tv_model = torchvision_vgg(args.config, width, classes, prof.dropout, crop // 32)
    tv_model = tv_model.to(device, memory_format=prec.memory_format)
    sides = [
        trainer_side("vggbook", spec, prec, epochs(training), training.pipeline, device),
        trainer_side(
            "baseline", old_spec, old_prec, epochs(old_training), old_training.pipeline, device
        ),
        trainer_side("step", spec, prec, itertools.cycle(synthetic), "synthetic", device),
        plain_side("torchvision_matched", tv_model, prof, prec, itertools.cycle(synthetic), device),
    ]

    rounds = min(args.rounds, args.steps)
    if args.warmup:
        for side in sides:
            side.run(args.warmup, device)
    for r in range(rounds):
        steps = args.steps // rounds + (r < args.steps % rounds)
        for side in sides[r % len(sides) :] + sides[: r % len(sides)]:
            side.record(steps, device)

    flops = {s.name: training_flops(s.model, prof, s.prec, device) for s in sides}
    peaks = {amp: peak(amp, device) for amp in sorted({prec.amp, old_prec.amp})}
    rate = {s.name: s.images_per_second for s in sides}
    share = {s.name: s.cpu / s.wall / args.threads for s in sides}
    of_peak = {s.name: rate[s.name] * flops[s.name] / peaks[s.prec.amp][1] for s in sides}
    ratio = rate["vggbook"] / rate["baseline"]
    pipeline_share = 1 - rate["vggbook"] / rate["step"]
    device_name = torch.cuda.get_device_name(device) if cuda else cpu_name()

    print(
        f"VGG {args.config}, profile {prof.name}: batch {b}, crop {crop}, width {width}, "
        f"{device_name}, {args.threads} threads; {args.steps} steps per side in {rounds} "
        f"rounds after {args.warmup} warm-up; {prec.reason}"
    )
    print(
        f"{'':21s}{'data':>10s}{'precision':>11s}{'images/s':>10s}{'rounds min-max':>17s}"
        f"{'MFLOP/img':>11s}{'of peak':>9s}{'CPU share' if not cuda else '':>11s}"
    )
    for s in sides:
        print(
            f"{s.name:21s}{s.data:>10s}{s.label:>11s}{rate[s.name]:10.1f}"
            f"{min(s.rates):8.1f}-{max(s.rates):<8.1f}{flops[s.name] / 1e6:11.1f}"
            f"{of_peak[s.name]:9.1%}" + (f"{share[s.name]:11.0%}" if not cuda else "")
        )
    print(
        f"vggbook/baseline {ratio:.3f}; producing the data takes {pipeline_share:.1%} of "
        f"vggbook's time (1 - vggbook/step); step/torchvision_matched "
        f"{rate['step'] / rate['torchvision_matched']:.3f}"
    )
    print(
        "matmul peak "
        + ", ".join(f"{name} {flops_s / 1e9:.1f} GFLOP/s" for name, flops_s in peaks.values())
        + f"; vggbook achieves {rate['vggbook'] * flops['vggbook'] / 1e9:.2f} GFLOP/s"
    )
    for s in sides:
        if s.nondeterministic:
            print(f"{s.name}: {s.nondeterministic} has no deterministic kernel: timed warn-only")
    print(
        json.dumps(
            {
                "end_to_end_images_per_second": round(rate["vggbook"], 1),
                "baseline_images_per_second": round(rate["baseline"], 1),
                "ratio": round(ratio, 3),
                "step_images_per_second": round(rate["step"], 1),
                "torchvision_matched_images_per_second": round(rate["torchvision_matched"], 1),
                "step_vs_torchvision_matched": round(rate["step"] / rate["torchvision_matched"], 3),
                "pipeline_share": round(pipeline_share, 3),
                "peak_fraction": round(of_peak["vggbook"], 4),
                "baseline_peak_fraction": round(of_peak["baseline"], 4),
                "peak_flops": round(peaks[prec.amp][1]),
                "peak_precision": peaks[prec.amp][0],
                "baseline_peak_flops": round(peaks[old_prec.amp][1]),
                "flops_per_image": round(flops["vggbook"]),
                "config": args.config,
                "profile": prof.name,
                "batch": b,
                "crop": crop,
                "width": width,
                "precision": prec.reason,
                "amp": prec.amp,
                "channels_last": prec.channels_last,
                "pipeline": training.pipeline,
                "baseline_precision": old_prec.reason,
                "baseline_pipeline": old_training.pipeline,
                "device": device.type,
                "device_name": device_name,
                "threads": args.threads,
                "steps": args.steps,
                "warmup": args.warmup,
                "rounds": rounds,
                "round_images_per_second": {s.name: [round(v, 1) for v in s.rates] for s in sides},
                "cpu_share": {k: round(v, 2) for k, v in share.items()} if not cuda else None,
                "nondeterministic": {
                    s.name: s.nondeterministic for s in sides if s.nondeterministic
                },
            }
        )
    )


if __name__ == "__main__":
    main()
