"""Run directories: ``config.json``, ``metrics.jsonl`` and ``checkpoint.pt``, read back."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .models import VGG, build_vgg

CHECKPOINT, METRICS, CONFIG = "checkpoint.pt", "metrics.jsonl", "config.json"


def default_run_dir(root: str | Path, profile: str, config: str, **settings) -> Path:
    """``root/profile/config``, suffixed by every setting given a value (``seed=1`` adds
    ``-seed1``), so that runs under different settings never share a directory."""
    name = "-".join([config] + [f"{k}{v}" for k, v in settings.items() if v is not None])
    return Path(root) / profile / name.replace(":", "").replace("/", "_")


def load_model(path: str | Path, map_location: str = "cpu") -> tuple[VGG, dict]:
    """A trained model and its run spec from a run directory or a checkpoint file."""
    path = Path(path)
    ckpt_file = path / CHECKPOINT if path.is_dir() else path
    if not ckpt_file.exists():
        raise FileNotFoundError(f"no checkpoint at {ckpt_file}: train a run there first")
    ckpt = torch.load(ckpt_file, map_location=map_location, weights_only=False)
    spec = ckpt["run"]
    model = model_for(spec)
    model.load_state_dict(ckpt["model"])
    return model.eval(), spec


def model_for(spec: dict) -> VGG:
    """The (untrained) model a run spec describes."""
    p = spec["profile"]
    return build_vgg(
        spec["config"],
        p["num_classes"],
        width=p["width"],
        dropout=p["dropout"],
        image_size=p["crop"],
    )


def load_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of a run."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        raise FileNotFoundError(f"no {METRICS} in {run_dir}: train the run first")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_config(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / CONFIG).read_text())


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
