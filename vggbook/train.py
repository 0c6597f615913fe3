"""The paper's training recipe (Sec. 3.1) as a trainer.

SGD with momentum, weight decay and dropout; the learning rate divided by 10 when the
validation top-1 stops improving, at most ``max_decays`` times, then stop (or stop at the epoch
budget). Deterministic under a seed, whatever the number of DataLoader workers; a checkpoint
after every epoch, from which ``resume`` continues bit for bit; DistributedDataParallel when
started by ``torchrun``. The run directory is named, read and guarded by ``vggbook.runs``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from . import augment, data, provenance, runs
from .evaluate import accumulate, summarise, topk_correct
from .init import initialise, transfer_from
from .models import VGG, build_vgg
from .profiles import Profile
from .runs import CHECKPOINT, CONFIG, METRICS, RunDirError, RunSpec

__all__ = ["RunDirError", "NonFiniteLossError", "TrainingInterrupted", "train"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C or SIGTERM; ``exit_code`` is 128 + the signal's number."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code

    def _render_traceback_(self) -> list[str]:
        return [f"TrainingInterrupted: {self}"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the CLI's handler."""


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


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A seed for one epoch of one rank: data order and dropout depend on it alone, so a
    resumed epoch repeats the interrupted one exactly."""
    return (seed * 1_000_003 + epoch * 10_007 + rank) % 2**63


class SeededSamples(Dataset):
    """A dataset whose every item draws its augmentation from its own random stream, seeded
    by the epoch and the item's index: the same pixels whichever process or DataLoader worker
    loads it, so the weights do not depend on the number of workers or ranks."""

    def __init__(self, base: Dataset, seed: int):
        self.base, self.seed, self.epoch = base, seed, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        with torch.random.fork_rng(devices=[]):  # the caller's stream (dropout) is untouched
            torch.manual_seed(epoch_seed(self.seed, self.epoch) * 1_000_033 + i)
            return self.base[i]


def make_datasets(spec: RunSpec, data_root: str | None, download: bool | None):
    """The raw training and validation splits the run uses (its subsets)."""
    profile = spec.profile
    train_raw = data.load_dataset(profile.dataset, "train", data_root, download)
    classes = len(train_raw.classes)
    if profile.num_classes != classes:
        raise ValueError(
            f"profile field num_classes is {profile.num_classes}, but {profile.dataset} has "
            f"{classes} classes: pass --set num_classes={classes}"
        )
    val_raw = data.load_dataset(profile.dataset, "val", data_root, download)
    if profile.limit_train:
        train_raw = data.subset(train_raw, profile.limit_train, spec.seed)
    if profile.limit_val:
        val_raw = data.subset(val_raw, profile.limit_val, spec.seed)
    return train_raw, val_raw


def transforms(profile: Profile, mean: Sequence[float]):
    """The run's training and validation transforms around a mean RGB."""
    pca = (augment.IMAGENET_EIGVAL, augment.IMAGENET_EIGVEC) if profile.pca_lighting else None
    scale = profile.pixel_scale
    train_tf = augment.train_transform(
        profile.crop, profile.scale, mean=mean, pca=pca, flip=profile.flip, pixel_scale=scale
    )
    val_tf = augment.eval_transform(profile.test_scale, profile.crop, mean=mean, pixel_scale=scale)
    return train_tf, val_tf


def run_mean(train_raw, dist: Dist, device: torch.device) -> tuple[float, float, float]:
    """The training images' mean RGB, computed once (by rank 0) and shared with every rank."""
    mean = torch.zeros(3, dtype=torch.float64, device=device)
    if dist.main:
        mean += torch.tensor(augment.mean_rgb(train_raw), dtype=torch.float64, device=device)
    return tuple(dist.all_sum(mean).tolist())


def build_model(spec: RunSpec, device: torch.device) -> tuple[VGG, list[dict]]:
    """A fresh run's model, initialised by its scheme or by transfer from a net A run (the
    source must be of the same dataset, classes, width and crop)."""
    model = spec.build_model()
    report: list[dict] = []
    if spec.init.startswith("transfer:"):
        source_dir = spec.init.removeprefix("transfer:")
        ckpt = runs.load_checkpoint(source_dir)
        mine, theirs = spec.profile, runs.spec_of(ckpt, source_dir).profile
        if _data_and_shape(theirs) != _data_and_shape(mine):
            raise ValueError(
                f"--init transfer:{source_dir}: the source is {_data_and_shape(theirs)}, this run "
                f"is {_data_and_shape(mine)}: transfer from a net A of the same dataset, classes, "
                "width and crop"
            )
        initialise(model, "gaussian-width" if mine.width != 1 else "gaussian")
        report = transfer_from(runs.model_of(ckpt, source_dir)[0], model)
    else:
        initialise(model, spec.init)
    return model.to(device), report


def _data_and_shape(p: Profile) -> str:
    return f"{p.dataset}, {p.num_classes} classes, width {p.width:g}, crop {p.crop}"


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
    """Train ``config`` under ``profile`` into ``run_dir``; returns the per-epoch metrics.
    A finished run is returned as it is, its directory untouched."""
    dist = Dist.setup()
    spec, run_dir = RunSpec.of(config, profile, seed, init), Path(run_dir)
    if profile.batch_size % dist.world:
        raise ValueError(
            f"batch size {profile.batch_size} must be a multiple of the {dist.world} "
            "processes: the global batch is split evenly across them"
        )
    with runs.RunLock(run_dir) if dist.main else contextlib.nullcontext():
        ckpt = runs.resume_point(run_dir, spec, resume)
        if ckpt is not None and (ckpt["stopped"] or ckpt["epoch"] >= profile.epochs):
            return ckpt["metrics"]
        return _train(spec, run_dir, ckpt, dist, data_root, download, progress)


def _train(spec, run_dir, ckpt, dist, data_root, download, progress) -> list[dict]:
    profile = spec.profile
    device = torch.device(f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(spec.seed)

    # Data, model, optimiser: fresh, or as the checkpoint left them.
    train_raw, val_raw = make_datasets(spec, data_root, download)
    mean = tuple(ckpt["mean_rgb"]) if ckpt else run_mean(train_raw, dist, device)
    train_tf, val_tf = transforms(profile, mean)
    train_ds = SeededSamples(data.with_transform(train_raw, train_tf), spec.seed)
    val_ds = data.with_transform(val_raw, val_tf)
    if ckpt:
        model, transferred = spec.build_model().to(device), ckpt["transferred"]
        model.load_state_dict(ckpt["model"])
    else:
        model, transferred = build_model(spec, device)
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
    history, decays, done = [], 0, 0
    if ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        history, decays, done = ckpt["metrics"], ckpt["decays"], ckpt["epoch"]
    net = DistributedDataParallel(model) if dist.world > 1 else model
    val_loader = DataLoader(
        Subset(val_ds, range(dist.rank, len(val_ds), dist.world)),
        batch_size=profile.batch_size // dist.world,
        num_workers=profile.workers,
        worker_init_fn=data.seed_worker,
    )
    config_record = {
        "run": spec.to_json(),
        "environment": provenance.environment(),
        "world_size": dist.world,
        "mean_rgb": list(mean),
        "dataset_checksum": data.dataset_checksum(train_raw),
        "transferred": transferred,
    }

    # The epoch loop: train, validate, maybe divide the lr, save.
    epoch, saving = done, False
    try:
        for epoch in range(done, profile.epochs):
            lr = optimizer.param_groups[0]["lr"]
            seconds = time.perf_counter()
            train_ds.epoch = epoch
            sums = train_one_epoch(
                net, train_ds, optimizer, profile, spec.seed, epoch, dist, device, progress
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
            history.append(
                {
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
            )
            if dist.main:  # the checkpoint first: the other records never run ahead of it
                saving = True
                runs.save_checkpoint(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "epoch": epoch + 1,
                        "decays": decays,
                        "metrics": history,
                        "run": spec.to_json(),
                        "mean_rgb": list(mean),
                        "transferred": transferred,
                        "stopped": stopped,
                    },
                    run_dir / CHECKPOINT,
                )
                done, saving = epoch + 1, False
                lines = "".join(json.dumps(r) + "\n" for r in history)
                runs.write_atomic(lines.encode(), run_dir / METRICS)
                if not (run_dir / CONFIG).exists():  # written once: the training environment
                    record = json.dumps(config_record, indent=2).encode()
                    runs.write_atomic(record, run_dir / CONFIG)
            if stopped:
                break
    except KeyboardInterrupt as e:
        during = f"{'while saving the checkpoint of' if saving else 'in'} epoch {epoch + 1}"
        raise TrainingInterrupted(
            f"interrupted {during}; {_intact(run_dir, done)}: rerun with --resume",
            143 if isinstance(e, Terminated) else 130,
        ) from None
    except runs.DiskFullError as e:
        raise RuntimeError(f"{e.strerror}; {_intact(run_dir, done)}") from None
    except NonFiniteLossError as e:
        raise NonFiniteLossError(f"{e}; {_intact(run_dir, done)}") from None
    if dist.world > 1:
        tdist.barrier()
    return history


def _intact(run_dir: Path, done: int) -> str:
    if done:
        return f"the checkpoint of epoch {done} in {run_dir} is intact"
    return f"no checkpoint exists yet in {run_dir} (nothing to resume: a rerun starts afresh)"


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
    torch.manual_seed(epoch_seed(seed, epoch, dist.rank))  # dropout (see SeededSamples)
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
                "init"
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
