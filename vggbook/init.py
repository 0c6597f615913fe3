"""Initialisation schemes of the paper and after it, and the paper's transfer from net A.

- ``gaussian``: N(0, 0.01^2), biases zero: "1e-2 variance" as most summaries read it (std 0.01).
- ``gaussian-0.1``: N(0, 0.1^2): the paper's words taken literally (variance 1e-2, std 0.1).
- ``gaussian-width``: N(0, 0.01^2) rescaled per layer so that each layer's variance gain
  (fan-in x std^2) equals the full-width, 224-pixel model's: a small model then behaves at
  initialisation as the paper's model did.
- ``glorot``: Glorot & Bengio's uniform scheme, the paper's post-submission remark.
- ``kaiming``: He et al.'s fan-out normal for convs (torchvision's default today).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .analysis import named_layers
from .models import VGG, build_vgg

SCHEMES = ("gaussian", "gaussian-0.1", "gaussian-width", "glorot", "kaiming")
PAPER_STD = 0.01


def weight_layers(model: VGG) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
    """The conv and FC layers under their paper names (conv1_1 ... fc8)."""
    return [(n, m) for n, m in named_layers(model) if isinstance(m, nn.Conv2d | nn.Linear)]


def fan_in(layer: nn.Conv2d | nn.Linear) -> int:
    return layer.weight[0].numel()


def full_width_fan_ins(model: VGG) -> dict[str, int]:
    """Each layer's fan-in in the full-width, 224-pixel model of the same config."""
    with torch.device("meta"):
        reference = build_vgg(model.config, batch_norm=model.batch_norm)
    return {name: fan_in(layer) for name, layer in weight_layers(reference)}


def gaussian_stds(model: VGG, scheme: str = "gaussian") -> dict[str, float]:
    """The per-layer std of a Gaussian scheme."""
    if scheme == "gaussian":
        return {name: PAPER_STD for name, _ in weight_layers(model)}
    if scheme == "gaussian-0.1":
        return {name: 0.1 for name, _ in weight_layers(model)}
    if scheme == "gaussian-width":
        full = full_width_fan_ins(model)
        return {
            name: PAPER_STD * math.sqrt(full[name] / fan_in(layer))
            for name, layer in weight_layers(model)
        }
    raise ValueError(
        f"{scheme!r} is not a Gaussian scheme: choose gaussian, gaussian-0.1 or gaussian-width"
    )


def initialise(model: VGG, scheme: str) -> VGG:
    """Re-initialise every conv and FC layer of ``model`` in place (biases zero); draws from
    torch's global RNG, so ``torch.manual_seed`` fixes the result."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
    if scheme == "kaiming":
        model.reset_parameters()
        return model
    stds = gaussian_stds(model, scheme) if scheme.startswith("gaussian") else {}
    with torch.no_grad():
        for name, layer in weight_layers(model):
            if scheme == "glorot":
                nn.init.xavier_uniform_(layer.weight)
            else:
                nn.init.normal_(layer.weight, 0.0, stds[name])
            nn.init.zeros_(layer.bias)
    return model


# The paper's transfer: "the first four convolutional layers and the last three fully-connected
# layers" of net A, placed on the layers of the same stage and position in the deeper net.
TRANSFERRED = ("conv1_1", "conv2_1", "conv3_1", "conv3_2", "fc6", "fc7", "fc8")


def transfer_from(source: VGG, target: VGG) -> list[dict]:
    """Copy net A's first four convs and three FCs into ``target``; the rest stays as it is.

    Returns one row per copied layer. Raises ValueError, changing nothing, when a shape differs
    (another width, number of classes or input resolution).
    """
    if source.config not in ("A", "A-LRN"):
        raise ValueError(f"the transfer source must be net A, got config {source.config}")
    src, dst = dict(weight_layers(source)), dict(weight_layers(target))
    for name in TRANSFERRED:
        if src[name].weight.shape != dst[name].weight.shape:
            raise ValueError(
                f"cannot transfer {name}: net A has shape {tuple(src[name].weight.shape)}, "
                f"config {target.config} has {tuple(dst[name].weight.shape)}; build both with the "
                "same width, num_classes and image_size"
            )
    report = []
    with torch.no_grad():
        for name in TRANSFERRED:
            dst[name].weight.copy_(src[name].weight)
            dst[name].bias.copy_(src[name].bias)
            report.append({"layer": name, "shape": tuple(dst[name].weight.shape)})
    return report


def scheme_std(model: VGG, scheme: str) -> dict[str, float]:
    """Each layer's weight std under a scheme, in closed form."""
    if scheme.startswith("gaussian"):
        return gaussian_stds(model, scheme)
    stds = {}
    for name, layer in weight_layers(model):
        fan_out = layer.weight.shape[0] * layer.weight[0, 0].numel()
        if scheme == "glorot":  # U(-a, a) with a = sqrt(6 / (fan_in + fan_out))
            stds[name] = math.sqrt(2 / (fan_in(layer) + fan_out))
        elif scheme == "kaiming":  # torchvision: He's fan-out normal for convs, N(0, 0.01) for FCs
            stds[name] = math.sqrt(2 / fan_out) if isinstance(layer, nn.Conv2d) else 0.01
        else:
            raise ValueError(f"unknown init scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
    return stds


def variance_gains(model: VGG, scheme: str) -> dict[str, float]:
    """Closed-form gain of each layer's output variance over its input's (He et al.):
    fan-in x std^2, halved after the first layer because a ReLU zeroes half of a symmetric
    input. Max-pooling, which raises the second moment, is left out."""
    stds = scheme_std(model, scheme)
    layers = weight_layers(model)
    return {
        name: fan_in(layer) * stds[name] ** 2 * (1.0 if i == 0 else 0.5)
        for i, (name, layer) in enumerate(layers)
    }


def signal_propagation(model: VGG, x: torch.Tensor, labels: torch.Tensor) -> list[dict]:
    """Forward and backward signals at initialisation: each weight layer's output std and its
    weight-gradient norm for a cross-entropy loss, in eval mode (no dropout)."""
    outputs: dict[str, float] = {}
    layers = weight_layers(model)
    hooks = [
        layer.register_forward_hook(
            lambda m, i, o, name=name: outputs.__setitem__(name, o.detach().std().item())
        )
        for name, layer in layers
    ]
    model.eval()
    model.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(model(x), labels)
    loss.backward()
    for h in hooks:
        h.remove()
    return [
        {"layer": name, "output_std": outputs[name], "grad_norm": layer.weight.grad.norm().item()}
        for name, layer in layers
    ]
