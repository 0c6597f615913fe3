"""Provenance: what produced a chapter's numbers, printed without machine paths."""

from __future__ import annotations

import os
import platform
import subprocess
import types
from pathlib import Path

import torch
import torchvision

import vggbook

_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def parameters(namespace: dict) -> dict:
    """The chapter's parameters: call it right after the parameters cell, before any import."""
    return {
        k: v
        for k, v in namespace.items()
        if not k.startswith("_")
        and k not in _IPYTHON_NAMES
        and k != "DEFAULTS"
        and not isinstance(v, types.ModuleType | types.FunctionType | type)
    }


def is_default(params: dict, defaults: dict) -> bool:
    """Whether a chapter runs on its written parameters: its parameters cell ends with
    ``DEFAULTS = dict(globals())``, and papermill's values arrive in a later cell."""
    return all(k in defaults and defaults[k] == v for k, v in params.items())


def git_commit() -> str:
    """The project's git commit (with ``-dirty`` for uncommitted changes), or ``unknown``;
    ``VGGBOOK_GIT_COMMIT`` names it for a copy of the tree without its history."""
    if named := os.environ.get("VGGBOOK_GIT_COMMIT"):
        return named
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def device_name() -> str:
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({platform.machine()})"


def cpu_model() -> str:
    """The CPU's model and the vector kernels torch runs on it, which decide its rounding."""
    model = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        model = names[0].split(":", 1)[1].strip() if names else model
    return f"{model}; {torch.backends.cpu.get_cpu_capability()}"


def environment() -> dict:
    """Versions, commit, device, CPU and threads: what a run records beside its numbers."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "vggbook": vggbook.__version__,
        "git_commit": git_commit(),
        "device": device_name(),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "platform": f"{platform.system()} {platform.release()}",
    }


def report(params: dict, **extra) -> dict:
    """Print and return a chapter's provenance: environment, seed, dataset checksum, parameters."""
    record = {**environment(), **extra, "parameters": params}
    width = max(map(len, record))
    for key, value in record.items():
        print(f"{key:<{width}}  {value}")
    return record
