"""Run directories: what identifies a run, and how its records are written, read and guarded.

A run directory holds ``checkpoint.pt`` (the record of truth: weights, optimiser, metrics and
the run itself, replaced atomically after every epoch), ``config.json`` (the run and the
environment that trained it, written once, with the first checkpoint), ``metrics.jsonl`` (one
line per epoch) and ``.lock``, which the one process writing the directory holds.
Checkpoints are read with ``weights_only=True``: loading a file never runs code from it.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .models import VGG, build_vgg, resolve_config
from .profiles import Profile

CHECKPOINT, METRICS, CONFIG, LOCK = "checkpoint.pt", "metrics.jsonl", "config.json", ".lock"

# Profile fields that do not change the weights: labels, and how the loading work is split
# (every sample's augmentation has its own random stream, so workers change nothing).
NOT_IDENTITY = frozenset({"name", "notes", "workers"})
# Fields that may change when a run is resumed: a longer budget continues the same run.
RESUMABLE = frozenset({"epochs"})


class RunDirError(ValueError):
    """The run directory (or a checkpoint) cannot be used as asked. One line, also in a
    notebook, where IPython shows ``_render_traceback_`` instead of a traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class DiskFullError(OSError):
    """No space left on the device while writing a run's file."""


@dataclass(frozen=True)
class RunSpec:
    """What a run is: the config, the seed, the initialisation and the profile."""

    config: str
    seed: int
    init: str
    profile: Profile

    @classmethod
    def of(cls, config: str, profile: Profile, seed: int = 0, init: str | None = None) -> RunSpec:
        return cls(resolve_config(config), seed, init or profile.init, profile)

    def to_json(self) -> dict:
        d = {"config": self.config, "seed": self.seed, "init": self.init}
        return json.loads(json.dumps({**d, "profile": self.profile.as_dict()}))

    @classmethod
    def from_json(cls, d: dict) -> RunSpec:
        return cls(d["config"], d["seed"], d["init"], Profile.from_dict(d["profile"]))

    def identity(self) -> dict:
        """Everything that changes the weights, flat: two runs with the same identity train
        the same weights bit for bit."""
        p = {k: v for k, v in self.profile.as_dict().items() if k not in NOT_IDENTITY}
        run = {"config": self.config, "seed": self.seed, "init": self.init}
        return json.loads(json.dumps({**run, **p}))

    def differences(self, other: RunSpec, ignore: frozenset = RESUMABLE) -> str:
        """The identity fields where ``other`` differs, as ``field: a there, b asked``."""
        a, b = self.identity(), other.identity()
        keys = sorted(k for k in a.keys() | b.keys() if k not in ignore and a.get(k) != b.get(k))
        return ", ".join(f"{k}: {a.get(k)!r} there, {b.get(k)!r} asked" for k in keys)

    def build_model(self) -> VGG:
        """The (untrained) model the run trains."""
        p = self.profile
        return build_vgg(
            self.config, p.num_classes, width=p.width, dropout=p.dropout, image_size=p.crop
        )


def run_name(
    config: str,
    *,
    init: str | None = None,
    jitter: bool = False,
    annealed: bool = False,
    seed: int | None = None,
) -> str:
    """A run's directory name, the one naming the chapters and the study share: ``A``,
    ``D-glorot``, ``D-jitter-seed2``, ``B-annealed-seed5``, ``E-transfer-seed0`` (a transfer's
    source is not named)."""
    scheme = init.split(":")[0] if init else None
    tags = ["jitter" if jitter else None, "annealed" if annealed else None, scheme]
    parts = [config, *tags, None if seed is None else f"seed{seed}"]
    return "-".join(p for p in parts if p)


def book_run(
    profile: str,
    config: str,
    init: str | None = None,
    seed: int | None = None,
    root: str = "../runs",
) -> str:
    """Where the book's chapters keep a run of ``profile``: chapter 3's nets at
    ``root/profile/A``, chapter 4's initialisation runs at ``root/profile/init/D-glorot-seed0``."""
    if init is None:
        return f"{root}/{profile}/{run_name(config, seed=seed)}"
    return f"{root}/{profile}/init/{run_name(config, init=init, seed=seed)}"


def default_run_dir(root: str | Path, profile: str, config: str, **settings) -> Path:
    """``root/profile/config``, suffixed by every setting given a value (``seed=1`` adds
    ``-seed1``), so that runs under different settings never share a directory."""
    name = "-".join([config] + [f"{k}{v}" for k, v in settings.items() if v is not None])
    return Path(root) / profile / name.replace(":", "").replace("/", "_")


# Writing: atomic files, and one writer per directory.

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_atomic(data: bytes, path: Path) -> None:
    """Write to a unique temporary file in the same folder, fsync, then rename over ``path``:
    a crash at any moment leaves either the old file or the new one. DiskFullError names the
    file when the device is full."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 is for the temporary name only
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a power cut
        finally:
            os.close(folder)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            message = f"no space left on device while writing {path}"
            raise DiskFullError(errno.ENOSPC, message) from e
        raise
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_checkpoint(state: dict, path: Path) -> None:
    """``torch.save`` into memory, then ``write_atomic``: a write error is a plain OSError."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(buffer.getvalue(), path)


class RunLock:
    """An exclusive lock on a run directory (``fcntl.flock`` on its ``.lock`` file, which names
    the holder's PID), held while a process writes the directory. Taking it creates the
    directory, proves it writable and removes temporary files a killed writer left behind."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise RunDirError(
                f"cannot write to run directory {self.run_dir} ({e.strerror}): "
                "choose a writable --run-dir"
            ) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise RunDirError(
                f"run directory {self.run_dir} is in use by process {holder}: wait for it to "
                "finish or choose another --run-dir"
            ) from None
        for stale in self.run_dir.glob(".*.tmp"):
            stale.unlink()
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
            tempfile.TemporaryFile(dir=self.run_dir).close()  # new files can be made here
        except OSError as e:
            self.__exit__()
            raise RunDirError(
                f"cannot write to run directory {self.run_dir} ({e.strerror}): "
                "choose a writable --run-dir"
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# Reading: checkpoints without running code, run records, and the guard on reuse.

_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")  # what weights_only refused to import


def load_checkpoint(path: str | Path) -> dict:
    """A run's checkpoint (a run directory or the file itself), loaded with ``weights_only``;
    RunDirError in one line naming the file when it is missing, truncated or foreign."""
    path = Path(path)
    file = path / CHECKPOINT if path.is_dir() else path
    if not file.exists():
        raise RunDirError(f"no checkpoint at {file}: train a run there first")
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # every failure (truncated, foreign, code) becomes one line
        found = _REFUSED_GLOBAL.search(str(e))
        why = f"it asks to import {found[1]}, refused" if found else type(e).__name__
        raise RunDirError(
            f"{file} is not a readable vggbook checkpoint ({why}): delete it, or point at the "
            "run directory that `vggbook train` wrote"
        ) from None
    if not (isinstance(ckpt, dict) and {"model", "run", "epoch", "mean_rgb"} <= ckpt.keys()):
        raise RunDirError(
            f"{file} is not a vggbook checkpoint (no run record in it): point at the run "
            "directory that `vggbook train` wrote"
        )
    return ckpt


def spec_of(ckpt: dict, where: str | Path) -> RunSpec:
    """The run a checkpoint records; RunDirError when it was written by another version."""
    try:
        return RunSpec.from_json(ckpt["run"])
    except (KeyError, TypeError, ValueError) as e:
        raise RunDirError(
            f"{where} records a run this version cannot read ({e}): retrain it"
        ) from None


def model_of(ckpt: dict, where: str | Path) -> tuple[VGG, RunSpec]:
    """The trained model of a loaded checkpoint, in eval mode, and its run."""
    spec = spec_of(ckpt, where)
    model = spec.build_model()
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError:
        raise RunDirError(
            f"{where}: its weights do not fit the config and profile it records: retrain it"
        ) from None
    return model.eval(), spec


def load_model(path: str | Path) -> tuple[VGG, RunSpec]:
    """A trained model and its run, from a run directory or a checkpoint file."""
    return model_of(load_checkpoint(path), path)


def require(run_dir: str | Path, parameter: str, producer: str) -> Path:
    """``run_dir`` if it holds a trained run, else RunDirError naming the parameter that
    pointed there and what produces such a run (a chapter or a command)."""
    if not (Path(run_dir) / CHECKPOINT).is_file():
        raise RunDirError(f"{parameter}: no trained run at {run_dir}: {producer} produces it")
    return Path(run_dir)


def resume_point(run_dir: Path, spec: RunSpec, resume: bool) -> dict | None:
    """The checkpoint to continue from, or None for a fresh run. RunDirError when the
    directory holds another run (by the checkpoint's own record and by ``config.json``), holds
    this one and ``resume`` was not asked for, or holds records without a checkpoint."""
    ckpt_file, config_file = run_dir / CHECKPOINT, run_dir / CONFIG
    if not ckpt_file.exists():
        if config_file.exists() or (run_dir / METRICS).exists():
            raise RunDirError(
                f"run directory {run_dir} holds records but no {CHECKPOINT}: delete the "
                "directory to start again, or choose another --run-dir"
            )
        return None
    ckpt = load_checkpoint(ckpt_file)
    records = [(CHECKPOINT, spec_of(ckpt, ckpt_file))]
    if config_file.exists():
        records.append((CONFIG, spec_of(load_config(run_dir), config_file)))
    for name, stored in records:
        if diff := stored.differences(spec):
            raise RunDirError(
                f"run directory {run_dir} holds a different run (by its {name}: {diff}): "
                "choose another --run-dir or delete that one"
            )
    if not resume:
        raise RunDirError(
            f"run directory {run_dir} already holds this run: pass --resume to continue it "
            "or choose another --run-dir"
        )
    return ckpt


def load_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of a run."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        raise RunDirError(f"no {METRICS} in {run_dir}: train the run first")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_config(run_dir: str | Path) -> dict:
    """``config.json``: the run (``run``), its environment, mean RGB and data checksum."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise RunDirError(f"no {CONFIG} in {run_dir}: train the run first")
    return json.loads(path.read_text())


# Validation top-1 (%) of a ten-class run: at or below CHANCE_TOP1 it has not left chance level
# (10 %); above TRAINED_TOP1 it has trained.
CHANCE_TOP1, TRAINED_TOP1 = 15.0, 60.0


def outcome(final_top1: float, diverged: bool = False) -> str:
    """How a run ended: "diverges", "stalls" (at chance), "trains" or "trains partly"."""
    if diverged:
        return "diverges"
    if final_top1 <= CHANCE_TOP1:
        return "stalls"
    return "trains" if final_top1 > TRAINED_TOP1 else "trains partly"


def curve_summary(
    history: list[dict], target_top1: float, chance_top1: float = CHANCE_TOP1
) -> dict:
    """How a run's validation top-1 went: epochs run, final value, the first epoch at
    ``target_top1``, and the epochs spent at chance level (top-1 <= ``chance_top1``) at first."""
    top1 = [r["val_top1"] for r in history]
    reached = next((r["epoch"] for r in history if r["val_top1"] >= target_top1), None)
    stalled = next((i for i, v in enumerate(top1) if v > chance_top1), len(top1))
    return {
        "epochs run": len(top1),
        "final val top-1": top1[-1] if top1 else float("nan"),
        f"epochs to {target_top1:g} %": reached,
        "epochs stalled at chance": stalled,
    }
