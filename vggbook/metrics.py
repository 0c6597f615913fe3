"""Sums a classifier's metrics are made of: cross-entropy, top-1 and top-5 hits, images.

They stay on the device as one float64 tensor per pass (no synchronisation per batch) and add
across processes with one all-reduce; ``summarise`` turns them into means and percentages.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm


def topk_hits(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)):
    """How many rows have the target among their k highest scores, for each k (a tensor on
    the logits' device)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = top == target[:, None]
    return torch.stack([hits[:, :k].any(1).sum() for k in ks])


def topk_correct(
    logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...] = (1, 5)
) -> list[int]:
    """``topk_hits`` as Python integers."""
    return topk_hits(logits, target, ks).tolist()


def batch_sums(logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """[summed cross-entropy, top-1 hits, top-5 hits, images] of one batch, given its mean loss."""
    hits = topk_hits(logits, target).double()
    n = torch.tensor([float(len(target))], dtype=torch.float64, device=logits.device)
    return torch.cat([(loss.detach().double() * len(target)).reshape(1), hits, n])


@torch.no_grad()
def accumulate(
    model: nn.Module, loader, device: torch.device | str = "cpu", *, progress: bool = False
) -> torch.Tensor:
    """``batch_sums`` added over a loader, in fp32 (float64 sums)."""
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for x, y in tqdm(loader, desc="eval", leave=False, mininterval=2, disable=not progress):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x).float()
        sums += batch_sums(logits, y, F.cross_entropy(logits, y))
    return sums


def summarise(sums: torch.Tensor) -> dict[str, float]:
    """Loss and accuracies (percent) from the sums."""
    loss, top1, top5, n = sums.tolist()
    n = max(n, 1)
    return {"loss": loss / n, "top1": 100 * top1 / n, "top5": 100 * top5 / n, "images": int(n)}
