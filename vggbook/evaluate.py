"""Evaluation: top-1 / top-5 over a dataset split, batched, with a progress bar."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm


def topk_correct(
    logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)
) -> list[int]:
    """How many rows have the target among their k highest scores, for each k."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == target[:, None]
    return [int(hits[:, :k].any(1).sum()) for k in ks]


@torch.no_grad()
def accumulate(
    model: nn.Module,
    loader,
    device: torch.device | str = "cpu",
    *,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Sums over a loader: [cross-entropy, top-1 hits, top-5 hits, images] (float64)."""
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for x, y in tqdm(loader, desc="eval", leave=False, disable=not progress):
        x = x.to(device, non_blocking=True, memory_format=fmt)
        y = y.to(device, non_blocking=True)
        with torch.autocast(
            device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=amp
        ):
            logits = model(x)
        logits = logits.float()
        top1, top5 = topk_correct(logits, y)
        sums += torch.tensor(
            [F.cross_entropy(logits, y, reduction="sum").item(), top1, top5, len(y)],
            dtype=torch.float64,
            device=device,
        )
    return sums


def summarise(sums: torch.Tensor) -> dict[str, float]:
    """Loss and accuracies (percent) from ``accumulate``'s sums."""
    loss, top1, top5, n = sums.tolist()
    n = max(n, 1)
    return {"loss": loss / n, "top1": 100 * top1 / n, "top5": 100 * top5 / n, "images": int(n)}


def evaluate(model: nn.Module, loader, device: torch.device | str = "cpu", **kwargs) -> dict:
    """Cross-entropy, top-1 / top-5 accuracy and error (percent) of ``model`` over ``loader``."""
    result = summarise(accumulate(model, loader, device, **kwargs))
    return {**result, "top1_error": 100 - result["top1"], "top5_error": 100 - result["top5"]}


def evaluate_run(
    run_dir: str,
    protocol: str = "single",
    *,
    data_root: str | None = None,
    download: bool | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> dict:
    """Evaluate a trained run on its validation split under a test protocol."""
    from torch.utils.data import DataLoader

    from . import augment, data
    from .profiles import Profile
    from .runs import load_config, load_model

    if protocol != "single":
        raise ValueError(f"unknown protocol {protocol!r}: choose single")
    model, spec = load_model(run_dir)
    profile = Profile.from_dict(spec["profile"])
    mean = load_config(run_dir)["mean_rgb"]
    val = data.load_dataset(profile.dataset, "val", data_root, download)
    if profile.limit_val:
        val = data.subset(val, profile.limit_val, spec["seed"])
    tf = augment.eval_transform(
        profile.test_scale, profile.crop, mean=mean, pixel_scale=profile.pixel_scale
    )
    loader = DataLoader(data.with_transform(val, tf), batch_size=batch_size)
    result = evaluate(model, loader, progress=progress)
    settings = {"protocol": protocol, "Q": profile.test_scale, "crop": profile.crop}
    return {**settings, **{k: result[k] for k in ("top1_error", "top5_error", "images")}}
