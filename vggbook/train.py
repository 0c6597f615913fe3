"""The paper's training recipe (Sec. 3.1) as a trainer.

SGD with momentum, weight decay and dropout; the learning rate divided by 10 when the
validation top-1 stops improving, at most ``max_decays`` times, then stop (or stop at the epoch
budget); or divided after the fixed epochs of the profile's ``lr_steps``. Deterministic under a
seed, whatever the number of DataLoader workers; a checkpoint after every epoch, from which
``resume`` continues bit for bit; DistributedDataParallel when started by ``torchrun``. The run
directory is named, read and guarded by ``vggbook.runs``.
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
from torch.optim.lr_scheduler import MultiStepLR, ReduceLROnPlateau
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from . import augment, batches, data, metrics, precision, provenance, runs, timing
from .evaluate import Setting
from .init import initialise, transfer_from
from .metrics import accumulate, summarise
from .models import VGG
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
        cpu = torch.default_generator  # (torch.manual_seed would also queue CUDA's: slow)
        caller = cpu.get_state()  # the caller's stream (dropout) is left as it was
        cpu.manual_seed((epoch_seed(self.seed, self.epoch) * 1_000_033 + i) % 2**63)
        try:
            return self.base[i]
        finally:
            cpu.set_state(caller)


def make_datasets(spec: RunSpec, data_root: str | None, download: bool | None):
    """The run's training images and its validation images, both from the training split:
    the validation set is held out (``data.holdout``), then ``limit_train`` subsets the rest.
    The test split is never read here."""
    profile = spec.profile
    train_raw = data.load_dataset(profile.dataset, "train", data_root, download)
    classes = len(train_raw.classes)
    if profile.num_classes != classes:
        raise ValueError(
            f"profile field num_classes is {profile.num_classes}, but {profile.dataset} has "
            f"{classes} classes: pass --set num_classes={classes}"
        )
    train_raw, val_raw = data.holdout(train_raw, profile.val_images)
    if profile.limit_train:
        train_raw = data.subset(train_raw, profile.limit_train, spec.seed)
    return train_raw, val_raw


class TrainingData:
    """The run's training images, one epoch of batches at a time: augmented a batch at a time
    when the dataset is held in memory (``vggbook.batches``), else per image by DataLoader
    workers. Either way every image's draws depend on the epoch and its index alone, and the
    order on the epoch alone: the weights do not depend on the workers or the batching."""

    def __init__(
        self,
        raw,
        profile: Profile,
        mean: Sequence[float],
        seed: int,
        dist: Dist,
        device: torch.device | str = "cpu",
    ):
        self.profile, self.seed, self.dist, self.size = profile, seed, dist, len(raw)
        self.device = device  # where batched augmentation finishes each batch
        pca = (augment.IMAGENET_EIGVAL, augment.IMAGENET_EIGVEC) if profile.pca_lighting else None
        options = dict(mean=mean, pca=pca, flip=profile.flip, pixel_scale=profile.pixel_scale)
        images = batches.images_of(raw) if profile.batch_augment else None
        if images is not None:
            self.pipeline = "batched"
            self.batch = batches.BatchAugment(images, profile.crop, profile.scale, **options)
            self.labels = data.targets(raw)
        else:
            self.pipeline = "per-image"
            tf = augment.train_transform(profile.crop, profile.scale, **options)
            self.dataset = SeededSamples(data.with_transform(raw, tf), seed)

    @property
    def steps(self) -> int:
        """Optimiser steps per epoch."""
        return self.size // self.profile.batch_size

    def epoch(self, epoch: int):
        """This rank's (images, labels) batches of one epoch (full batches only)."""
        dist, batch_size = self.dist, self.profile.batch_size // self.dist.world
        order = DistributedSampler(
            range(self.size), dist.world, dist.rank, shuffle=True, seed=self.seed, drop_last=True
        )
        order.set_epoch(epoch)
        if self.pipeline == "batched":
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            return batches.epoch_batches(
                self.batch, self.labels, order, batch_size, generator, self.device
            )
        self.dataset.epoch = epoch
        return DataLoader(
            self.dataset,
            batch_size=batch_size,
            sampler=order,
            drop_last=True,
            num_workers=self.profile.workers,
            worker_init_fn=data.seed_worker,
            generator=torch.Generator().manual_seed(epoch_seed(self.seed, epoch)),
            pin_memory=torch.cuda.is_available(),
        )


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
    training = TrainingData(train_raw, profile, mean, spec.seed, dist, device)
    prec = precision.choose(profile.amp, profile.channels_last, device)
    if ckpt and ckpt["precision"] != prec.name:
        raise RunDirError(
            f"run directory {run_dir} trained in {ckpt['precision']}, and here it would go on in "
            f"{prec.reason}: resume it on a machine like the one that started it"
        )
    if ckpt:
        model, transferred = spec.build_model().to(device), ckpt["transferred"]
        model.load_state_dict(ckpt["model"])
    else:
        model, transferred = build_model(spec, device)
    model = model.to(memory_format=prec.memory_format)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=profile.lr,
        momentum=profile.momentum,
        weight_decay=profile.weight_decay,
    )
    if profile.lr_steps:  # the same epochs for every net
        scheduler = MultiStepLR(optimizer, list(profile.lr_steps), gamma=0.1)
    else:
        scheduler = ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=profile.patience)
    history, decays, done = [], 0, 0
    if ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        history, decays, done = ckpt["metrics"], ckpt["decays"], ckpt["epoch"]
    net = DistributedDataParallel(model) if dist.world > 1 else model
    setting = Setting.of_run(profile, mean, "single")  # chapter 5's single-scale view
    val_ds = data.with_transform(val_raw, setting.centre_transform(setting.scales[0]))
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
        "precision": prec.reason,
        "augmentation": training.pipeline,
    }

    # The epoch loop: train, validate, maybe divide the lr, save.
    epoch, saving = done, False
    try:
        for epoch in range(done, profile.epochs):
            lr = optimizer.param_groups[0]["lr"]
            seconds = time.perf_counter()
            torch.manual_seed(epoch_seed(spec.seed, epoch, dist.rank))  # dropout
            bar = tqdm(training.epoch(epoch), f"epoch {epoch + 1}", training.steps, leave=False,
                       mininterval=2, disable=not (progress and dist.main))  # fmt: skip
            sums, losses = train_one_epoch(net, bar, optimizer, prec, dist, device, epoch)
            train_stats = summarise(dist.all_sum(sums))
            seconds = time.perf_counter() - seconds
            val = summarise(dist.all_sum(accumulate(model, val_loader, device)))
            if profile.lr_steps:
                scheduler.step()
            elif val["top1"] > runs.CHANCE_TOP1:  # a stalled net keeps its learning rate
                scheduler.step(val["top1"])
            decayed = optimizer.param_groups[0]["lr"] < lr
            decays += decayed
            # a plateau after the last allowed decay (fixed steps run the whole budget)
            stopped = not profile.lr_steps and decays > profile.max_decays
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
                    "loss_every_10_steps": losses,
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
                        "precision": prec.name,
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


LOSS_EVERY = 10  # steps per entry of a metrics record's training-loss curve


def train_one_epoch(
    net: nn.Module,
    batches,
    optimizer: torch.optim.Optimizer,
    prec: precision.Precision,
    dist: Dist,
    device: torch.device,
    epoch: int = 0,
) -> tuple[torch.Tensor, list[float]]:
    """One pass of SGD over ``batches`` of (images, labels) in epoch ``epoch`` (0-based, for
    messages). Returns the summed [loss, top-1 hits, top-5 hits, images] on the device, and
    the mean training loss of every ``LOSS_EVERY`` steps (this rank's). The forward pass runs
    under the precision's autocast, the loss in fp32; the NaN guard is the step's one
    synchronisation."""
    net.train()
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    losses = []
    for step, (x, y) in enumerate(batches):
        x = x.to(device, non_blocking=True, memory_format=prec.memory_format)
        y = y.to(device, non_blocking=True)
        with prec.autocast(device):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
        total = dist.all_sum(loss.detach().double().reshape(1))  # every rank sees a NaN
        if not torch.isfinite(total).all():
            lr = optimizer.param_groups[0]["lr"]
            raise NonFiniteLossError(
                f"the training loss became {total.item()} at epoch {epoch + 1}, step {step + 1} "
                f"(lr {lr:g}): lower the learning rate or change the init"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sums += metrics.batch_sums(logits.detach().float(), y, loss)
        losses.append(loss.detach())
    curve = torch.stack(losses).float() if losses else torch.zeros(0)
    chunks = curve.split(LOSS_EVERY)
    return sums, [round(c.mean().item(), 5) for c in chunks]


def step_throughput(config: str, profile: Profile, steps: int = 20, warmup: int = 3) -> float:
    """Images/s of the trainer's step alone (forward in the profile's precision, loss,
    backward, SGD) on one synthetic in-memory batch, the best of repeats (``timing.best_rate``):
    what the input pipeline must keep up with."""
    device = torch.device("cpu")
    prec = precision.choose(profile.amp, profile.channels_last, device)
    model = RunSpec.of(config, profile).build_model().to(memory_format=prec.memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=profile.lr, momentum=profile.momentum)
    x = torch.randn(profile.batch_size, 3, profile.crop, profile.crop)
    y = torch.randint(profile.num_classes, (profile.batch_size,))
    train_one_epoch(model, [(x, y)] * warmup, optimizer, prec, Dist(), device)

    def run() -> int:
        train_one_epoch(model, [(x, y)] * steps, optimizer, prec, Dist(), device)
        return steps * profile.batch_size

    return timing.best_rate(run)


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
