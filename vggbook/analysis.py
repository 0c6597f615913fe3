"""Architecture analysis: per-layer tables and the paper's stacked-3x3 argument, computed and
measured.

FLOPs count a multiply-add as two operations (``torch.utils.flop_counter``), so they are twice
the "GFLOPS" (really GMACs) that torchvision's documentation lists.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .models import VGG, FullyConvolutionalVGG


@dataclass(frozen=True)
class Layer:
    """One row of a per-layer table; ``activation_bytes`` is the output tensor's size."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    flops: int
    activation_bytes: int
    receptive_field: int
    jump: int


def named_layers(model: VGG | FullyConvolutionalVGG) -> list[tuple[str, nn.Module]]:
    """The model's leaf layers in forward order, under the paper's names (conv3_2, fc6, ...)."""
    names, stage, index = [], 1, 0
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            index += 1
            names.append(f"conv{stage}_{index}")
        elif isinstance(m, nn.MaxPool2d):
            names.append(f"pool{stage}")
            stage, index = stage + 1, 0
        else:
            names.append(f"{_short(m)}{stage}_{index}" if index else _short(m))
    layers = list(zip(names, model.features, strict=True))
    if isinstance(model, VGG):
        layers += [("avgpool", model.avgpool), ("flatten", nn.Flatten())]
        tail = model.classifier
    else:
        tail = model.head
    fc = 6
    for m in tail:
        if isinstance(m, nn.Linear | nn.Conv2d):
            layers.append((f"fc{fc}", m))
            fc += 1
        else:
            layers.append((f"{_short(m)}{fc - 1}", m))
    return layers


def features_until(model: VGG, name: str) -> nn.Sequential:
    """The feature extractor up to layer ``name`` (e.g. "conv5_3"), with its ReLU/BN if any."""
    layers = named_layers(model)[: len(model.features)]
    names = [n for n, _ in layers]
    if name not in names:
        raise ValueError(f"no layer {name!r} in config {model.config}: choose one of {names}")
    end = names.index(name) + 1
    while end < len(layers) and not isinstance(layers[end][1], nn.Conv2d | nn.MaxPool2d):
        end += 1
    return nn.Sequential(*[m for _, m in layers[:end]])


def _short(m: nn.Module) -> str:
    return {"ReLU": "relu", "BatchNorm2d": "bn", "LocalResponseNorm": "lrn", "Dropout": "drop"}.get(
        type(m).__name__, type(m).__name__.lower()
    )


def _kernel_stride(name: str, m: nn.Module, grid: int) -> tuple[int, int]:
    if isinstance(m, nn.Conv2d | nn.MaxPool2d):
        k, s = m.kernel_size, m.stride
        return (k[0] if isinstance(k, tuple) else k), (s[0] if isinstance(s, tuple) else s)
    if name == "fc6":
        return grid, 1  # fc6 sees the whole grid x grid map, like its 7x7 conv form
    return 1, 1  # avgpool is the identity at the training resolution


def layer_table(
    model: VGG | FullyConvolutionalVGG, image_size: int | None = None, batch: int = 1
) -> list[Layer]:
    """Run one forward pass layer by layer and describe each layer's output."""
    size = image_size or getattr(model, "image_size", 224)
    channels = next(m for m in model.features if isinstance(m, nn.Conv2d)).in_channels
    x = torch.zeros(batch, channels, size, size)
    rf, jump, rows = 1, 1, []
    model_was_training = model.training
    model.eval()
    with torch.no_grad():
        for name, m in named_layers(model):
            with FlopCounterMode(display=False) as counter:
                x = m(x)
            k, s = _kernel_stride(name, m, _grid(model))
            rf, jump = rf + (k - 1) * jump, jump * s
            params = sum(p.numel() for p in m.parameters(recurse=False))
            rows.append(
                Layer(
                    name,
                    type(m).__name__,
                    tuple(x.shape),
                    params,
                    counter.get_total_flops(),
                    x.numel() * x.element_size(),
                    rf,
                    jump,
                )
            )
    model.train(model_was_training)
    return rows


def _grid(model: VGG | FullyConvolutionalVGG) -> int:
    if isinstance(model, VGG):
        return model.grid
    return model.head[0].kernel_size[0]


def summary(rows: list[Layer]) -> dict[str, int]:
    """Totals: parameters, FLOPs and the memory of the conv/pool/FC outputs (one image each)."""
    stored = [r for r in rows if r.kind in ("Conv2d", "MaxPool2d", "Linear")]
    return {
        "params": sum(r.params for r in rows),
        "flops": sum(r.flops for r in rows),
        "activation_bytes": sum(r.activation_bytes for r in stored),
    }


def as_records(rows: list[Layer]) -> list[dict]:
    """Rows as plain dicts (e.g. for ``pandas.DataFrame``)."""
    return [asdict(r) for r in rows]


# The paper's argument (Sec. 2.3): a stack of n 3x3 convs vs one (2n+1)x(2n+1) conv.


@dataclass(frozen=True)
class Design:
    """One design at C channels in and out on an HxH map (biases left out, as in Sec. 2.3)."""

    name: str
    receptive_field: int
    params: int
    flops: int
    nonlinearities: int
    activation_bytes: int


def stack_vs_single(
    n: int, channels: int, size: int = 56, bytes_per_value: int = 4
) -> list[Design]:
    """Closed-form costs: n stacked 3x3 convs vs one (2n+1)x(2n+1) conv (27C^2 vs 49C^2 at n=3)."""
    if n < 1 or channels < 1 or size < 1:
        raise ValueError(f"n, channels and size must be positive, got {n}, {channels}, {size}")
    k, c2, hw = 2 * n + 1, channels**2, size**2
    stack_params, single_params = n * 9 * c2, k * k * c2
    out_bytes = channels * hw * bytes_per_value
    return [
        Design(f"{n} x conv3x3", k, stack_params, 2 * stack_params * hw, n, n * out_bytes),
        Design(f"1 x conv{k}x{k}", k, single_params, 2 * single_params * hw, 1, out_bytes),
    ]


def stack_modules(n: int, channels: int) -> list[nn.Sequential]:
    """The two designs as modules (same padding, no bias), to measure them."""
    stack = nn.Sequential(
        *[
            layer
            for _ in range(n)
            for layer in (nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.ReLU())
        ]
    )
    k = 2 * n + 1
    single = nn.Sequential(nn.Conv2d(channels, channels, k, 1, k // 2, bias=False), nn.ReLU())
    return [stack, single]


def measure_design(net: nn.Sequential, channels: int, size: int) -> Design:
    """Measure a design on a real tensor: parameters, FLOPs, ReLUs, stored conv outputs, ERF."""
    x = torch.randn(1, channels, size, size)
    stored = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: stored.append(o.numel() * o.element_size()))
        for m in net
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    for h in hooks:
        h.remove()
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    name = f"{len(convs)} x conv{convs[0].kernel_size[0]}x{convs[0].kernel_size[0]}"
    return Design(
        name,
        effective_receptive_field(net, size, channels=channels),
        sum(p.numel() for p in net.parameters()),
        counter.get_total_flops(),
        sum(isinstance(m, nn.ReLU) for m in net),
        sum(stored),
    )


def effective_receptive_field(
    net: nn.Module, image_size: int, *, channels: int = 3, samples: int = 4, seed: int = 0
) -> int:
    """Measured receptive field: the extent of the input pixels whose gradient reaches the
    centre output unit (nonzero anywhere over a few random inputs)."""
    return int(max(_gradient_extent(input_gradient(net, image_size, channels, samples, seed))))


def input_gradient(
    net: nn.Module, image_size: int, channels: int = 3, samples: int = 4, seed: int = 0
) -> torch.Tensor:
    """|d(centre output unit) / d(input)| summed over samples and channels, an (H, W) map."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, channels, image_size, image_size, generator=gen, requires_grad=True)
    was_training = net.training
    net.eval()
    y = net(x)
    net.train(was_training)
    h, w = y.shape[-2:]
    (grad,) = torch.autograd.grad(y[..., h // 2, w // 2].sum(), x)
    return grad.abs().sum((0, 1))


def _gradient_extent(grad: torch.Tensor) -> tuple[int, int]:
    rows, cols = torch.nonzero(grad > 0, as_tuple=True)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
