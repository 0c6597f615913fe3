"""Small plotting helpers shared by the chapters."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch


def show(ax, image: torch.Tensor, title: str = "") -> None:
    """Draw a (C, H, W) image with values in [0, 1] (clipped); one channel is drawn in grey."""
    x = image.detach().float().clamp(0, 1)
    if x.shape[0] == 1:
        ax.imshow(x[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(x.permute(1, 2, 0))
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def image_grid(rows: list[list[tuple[str, torch.Tensor]]], size: float = 1.8):
    """A figure with one row per list of (title, image)."""
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(size * ncols, size * len(rows)), squeeze=False
    )
    for ax_row, row in zip(axes, rows, strict=True):
        for ax in ax_row:
            ax.axis("off")
        for ax, (title, image) in zip(ax_row, row, strict=False):
            show(ax, image, title)
    fig.tight_layout()
    return fig
