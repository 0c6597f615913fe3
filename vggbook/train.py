"""The paper's training recipe (Sec. 3.1) as a trainer.

SGD with momentum, weight decay and dropout; the learning rate divided by 10 when the
validation top-1 stops improving, at most ``max_decays`` times, then stop (or stop at the epoch
budget). Deterministic under a seed; a checkpoint after every epoch, written atomically, from
which ``resume`` continues bit for bit; DistributedDataParallel when started by ``torchrun``.

A run directory holds ``config.json`` (the run and its environment), ``metrics.jsonl`` (one
line per epoch) and ``checkpoint.pt``.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm.auto import tqdm

from . import augment, data, provenance
from .evaluate import accumulate, summarise, topk_correct
from .init import initialise, transfer_from
from .models import VGG, build_vgg, resolve_config
from .profiles import Profile
from .runs import CHECKPOINT, CONFIG, METRICS, load_model, model_for

# Fields that may change when a run is resumed: they do not change what is computed.
RESUMABLE = {"epochs", "workers"}


class RunDirError(ValueError):
    """The run directory cannot be used as asked."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class Dist:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls) -> Dist:
        if "RANK" not in os.environ:
            return cls()
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if not tdist.is_initialized():
            tdist.init_process_group(backend)
        return cls(tdist.get_rank(), tdist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            tdist.all_reduce(t)
        return t


def run_spec(config: str, profile: Profile, seed: int, init: str | None = None) -> dict:
    """What identifies a run: the config, the seed, the init and the whole profile."""
    spec = {"config": resolve_config(config), "seed": seed, "init": init or profile.init}
    return json.loads(json.dumps({**spec, "profile": profile.as_dict()}))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A seed for one epoch of one rank: data order, augmentation and dropout depend on it
    alone, so a resumed epoch repeats the interrupted one exactly."""
    return (seed * 1_000_003 + epoch * 10_007 + rank) % 2**63


def rng_states() -> dict:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_atomic(obj: object, path: Path) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over ``path``:
    a crash at any moment leaves either the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def check_run_dir(run_dir: Path, spec: dict, resume: bool) -> dict | None:
    """The checkpoint to resume from, or None for a fresh run; RunDirError if the directory
    holds another run, or holds this one and ``resume`` was not asked for."""
    config_file, ckpt_file = run_dir / CONFIG, run_dir / CHECKPOINT
    if config_file.exists():
        stored = json.loads(config_file.read_text())["run"]
        diff = _differences(stored, spec)
        if diff:
            raise RunDirError(
                f"run directory {run_dir} holds a different run ({diff}): "
                "choose another --run-dir or delete that one"
            )
    if not ckpt_file.exists():
        return None
    if not resume:
        raise RunDirError(
            f"run directory {run_dir} already holds this run: pass --resume to continue it "
            "or choose another --run-dir"
        )
    try:
        return torch.load(ckpt_file, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise RunDirError(
            f"cannot read {ckpt_file} ({type(e).__name__}): delete it to restart"
        ) from e


def _differences(stored: dict, spec: dict) -> str:
    flat = lambda d: {**{k: v for k, v in d.items() if k != "profile"}, **d["profile"]}  # noqa: E731
    a, b = flat(stored), flat(spec)
    keys = sorted(k for k in a.keys() | b.keys() if k not in RESUMABLE and a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} there, {b.get(k)!r} asked" for k in keys)


def make_datasets(profile: Profile, seed: int, data_root: str | None, download: bool | None):
    """Training and validation datasets with the profile's transforms, and the mean RGB."""
    train_raw = data.load_dataset(profile.dataset, "train", data_root, download)
    val_raw = data.load_dataset(profile.dataset, "val", data_root, download)
    if profile.limit_train:
        train_raw = data.subset(train_raw, profile.limit_train, seed)
    if profile.limit_val:
        val_raw = data.subset(val_raw, profile.limit_val, seed)
    mean = augment.mean_rgb(train_raw)
    pca = (augment.IMAGENET_EIGVAL, augment.IMAGENET_EIGVEC) if profile.pca_lighting else None
    scale = profile.pixel_scale
    train_tf = augment.train_transform(
        profile.crop, profile.scale, mean=mean, pca=pca, flip=profile.flip, pixel_scale=scale
    )
    val_tf = augment.eval_transform(profile.test_scale, profile.crop, mean=mean, pixel_scale=scale)
    return data.with_transform(train_raw, train_tf), data.with_transform(val_raw, val_tf), mean


def build_model(spec: dict, init: str, device: torch.device) -> tuple[VGG, list[dict]]:
    """The run's model, initialised by a scheme or by transfer from a net A run."""
    p = spec["profile"]
    model = model_for(spec)
    report: list[dict] = []
    if init.startswith("transfer:"):
        initialise(model, "gaussian-width" if p["width"] != 1 else "gaussian")
        source, _ = load_model(init.removeprefix("transfer:"))
        report = transfer_from(source, model)
    else:
        initialise(model, init)
    return model.to(device), report


def train(
    config: str,
    profile: Profile,
    run_dir: str | Path,
    *,
    seed: int = 0,
    init: str | None = None,
    data_root: str | None = None,
    download: bool | None = None,
    resume: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Train ``config`` under ``profile`` into ``run_dir``; returns the per-epoch metrics."""
    dist = Dist.setup()
    run_dir = Path(run_dir)
    spec = run_spec(config, profile, seed, init)
    validate(profile, dist)
    ckpt = check_run_dir(run_dir, spec, resume)
    device = torch.device(f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    seed_everything(seed)

    train_ds, val_ds, mean = make_datasets(profile, seed, data_root, download)
    model, transferred = build_model(spec, spec["init"], device)
    cuda = device.type == "cuda"
    amp, channels_last = profile.amp and cuda, profile.channels_last and cuda
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=profile.lr,
        momentum=profile.momentum,
        weight_decay=profile.weight_decay,
    )
    scheduler = ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=profile.patience)
    history, decays, start = [], 0, 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        history, decays, start = ckpt["metrics"], ckpt["decays"], ckpt["epoch"]
        set_rng_states(ckpt["rng"])
        if ckpt["stopped"]:
            return history
    elif dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if dist.main:
        write_text_atomic(
            json.dumps(
                {
                    "run": spec,
                    "environment": provenance.environment(),
                    "world_size": dist.world,
                    "mean_rgb": [float(m) for m in mean],
                    "dataset_checksum": data.dataset_checksum(train_ds),
                    "transferred": transferred,
                },
                indent=2,
            ),
            run_dir / CONFIG,
        )
    net = DistributedDataParallel(model) if dist.world > 1 else model
    val_loader = DataLoader(
        Subset(val_ds, range(dist.rank, len(val_ds), dist.world)),
        batch_size=profile.batch_size // dist.world,
        num_workers=profile.workers,
        worker_init_fn=data.seed_worker,
    )

    for epoch in range(start, profile.epochs):
        lr = optimizer.param_groups[0]["lr"]
        seconds = time.perf_counter()
        sums = train_one_epoch(
            net, train_ds, optimizer, profile, seed, epoch, dist, device, progress
        )
        train_stats = summarise(dist.all_sum(sums))
        seconds = time.perf_counter() - seconds
        val = summarise(
            dist.all_sum(
                accumulate(model, val_loader, device, amp=amp, channels_last=channels_last)
            )
        )
        scheduler.step(val["top1"])
        decayed = optimizer.param_groups[0]["lr"] < lr
        decays += decayed
        stopped = decays > profile.max_decays  # a plateau after the last allowed decay
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": train_stats["loss"],
            "train_top1": train_stats["top1"],
            "val_loss": val["loss"],
            "val_top1": val["top1"],
            "val_top5": val["top5"],
            "lr_decayed_after": decayed and not stopped,
            "seconds": seconds,
            "images_per_second": train_stats["images"] / seconds,
        }
        history.append(record)
        if dist.main:  # the checkpoint first: metrics.jsonl never runs ahead of it
            save_atomic(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                    "decays": decays,
                    "metrics": history,
                    "rng": rng_states(),
                    "run": spec,
                    "mean_rgb": [float(m) for m in mean],
                    "stopped": stopped,
                },
                run_dir / CHECKPOINT,
            )
            write_text_atomic("".join(json.dumps(r) + "\n" for r in history), run_dir / METRICS)
        if stopped:
            break
    if dist.world > 1:
        tdist.barrier()
    return history


def validate(profile: Profile, dist: Dist) -> None:
    """Clear errors for impossible runs, before any work is done."""
    if profile.epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {profile.epochs}")
    if profile.batch_size < 1 or profile.batch_size % dist.world:
        raise ValueError(
            f"batch size {profile.batch_size} must be a positive multiple of the "
            f"{dist.world} processes: the global batch is split evenly across them"
        )
    if profile.lr <= 0 or not math.isfinite(profile.lr):
        raise ValueError(f"learning rate must be positive, got {profile.lr}")


def train_one_epoch(
    net: nn.Module,
    dataset,
    optimizer: torch.optim.Optimizer,
    profile: Profile,
    seed: int,
    epoch: int,
    dist: Dist,
    device: torch.device,
    progress: bool,
) -> torch.Tensor:
    """One pass over the training set; returns [loss, top-1 hits, top-5 hits, images] sums."""
    torch.manual_seed(epoch_seed(seed, epoch, dist.rank))  # augmentation (workers=0), dropout
    sampler = DistributedSampler(
        dataset, num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    loader = DataLoader(
        dataset,
        batch_size=profile.batch_size // dist.world,
        sampler=sampler,
        drop_last=True,
        num_workers=profile.workers,
        worker_init_fn=data.seed_worker,
        generator=torch.Generator().manual_seed(epoch_seed(seed, epoch, dist.rank)),
        pin_memory=device.type == "cuda",
    )
    cuda = device.type == "cuda"
    fmt = torch.channels_last if profile.channels_last and cuda else torch.contiguous_format
    net.train()
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    # mininterval 2 s: few messages, for a notebook client's output queue drops them past ~1000
    bar = tqdm(
        loader,
        desc=f"epoch {epoch + 1}",
        leave=False,
        mininterval=2,
        disable=not (progress and dist.main),
    )
    for step, (x, y) in enumerate(bar):
        x = x.to(device, non_blocking=True, memory_format=fmt)
        y = y.to(device, non_blocking=True)
        with torch.autocast(
            device_type=device.type, dtype=torch.bfloat16, enabled=profile.amp and cuda
        ):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
        total = dist.all_sum(loss.detach().double().reshape(1))  # every rank sees a NaN
        if not torch.isfinite(total).all():
            raise NonFiniteLossError(
                f"the training loss became {total.item()} at epoch {epoch + 1}, step {step + 1} "
                f"(lr {optimizer.param_groups[0]['lr']:g}): lower the learning rate or change the "
                "init; the checkpoint of the last finished epoch is kept"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        top1, top5 = topk_correct(logits.detach().float(), y)
        sums += torch.tensor(
            [loss.item() * len(y), top1, top5, len(y)], dtype=torch.float64, device=device
        )
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return sums


def step_throughput(config: str, profile: Profile, steps: int = 20, warmup: int = 3) -> float:
    """Images/s of the training step alone (forward, loss, backward, SGD) on synthetic
    in-memory batches: what the input pipeline must keep up with."""
    model = build_vgg(
        config, profile.num_classes, width=profile.width, image_size=profile.crop
    ).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=profile.lr, momentum=profile.momentum)
    x = torch.randn(profile.batch_size, 3, profile.crop, profile.crop)
    y = torch.randint(profile.num_classes, (profile.batch_size,))
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return steps * profile.batch_size / (time.perf_counter() - start)


def expected_decays(val_top1: list[float], patience: int, threshold: float = 1e-4) -> list[int]:
    """The epochs after which the plateau rule divides the lr, recomputed from the validation
    top-1 alone (an independent check of the scheduler's record)."""
    best, bad, decays = -math.inf, 0, []
    for epoch, value in enumerate(val_top1, start=1):
        if value > best * (1 + threshold):
            best, bad = value, 0
        else:
            bad += 1
        if bad > patience:
            decays.append(epoch)
            bad = 0
    return decays
