"""The VGG networks of Table 1, built from one compact specification.

Every configuration is five stages, each a string of layer codes; the stage ``s`` (0-based)
has ``64 * 2**s`` channels, capped at 512. Codes: ``3`` a 3x3 conv (stride 1, pad 1), ``1`` a
1x1 conv (config C), ``5`` a 5x5 conv (pad 2: the B-5x5 variant of Sec. 4.1, each pair of B's
3x3 convs replaced by one 5x5 of the same receptive field), ``L`` local response
normalisation (A-LRN). Each stage ends in a 2x2
max-pool of stride 2. With default arguments a model has torchvision's layout
(``features``, ``avgpool``, ``classifier``) and loads torchvision's ``vgg11``...``vgg19_bn``
state dicts strictly.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

STAGES: dict[str, tuple[str, ...]] = {
    "A": ("3", "3", "33", "33", "33"),
    "A-LRN": ("3L", "3", "33", "33", "33"),
    "B": ("33", "33", "33", "33", "33"),
    "C": ("33", "33", "331", "331", "331"),
    "D": ("33", "33", "333", "333", "333"),
    "E": ("33", "33", "3333", "3333", "3333"),
    "B-5x5": ("5", "5", "5", "5", "5"),
}
ALIASES = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}
CONFIGS = ("A", "A-LRN", "B", "C", "D", "E")  # Table 1; STAGES adds the B-5x5 variant

# AlexNet's LRN: b = a / (k + alpha * sum(a^2))^beta over n=5 channels, k=2, alpha=1e-4,
# beta=0.75. PyTorch divides alpha by n, so it gets alpha * n.
LRN = {"size": 5, "alpha": 1e-4 * 5, "beta": 0.75, "k": 2.0}


class LocalResponseNorm(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm``'s numbers from shifted sums over the channel window: its own
    ``avg_pool3d`` has no deterministic CUDA backward, and runs here are reproducible."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x.pow(2), (0, 0, 0, 0, self.size // 2, (self.size - 1) // 2))
        window = sum(padded[:, i : i + x.shape[1]] for i in range(self.size))
        return x / (self.k + self.alpha / self.size * window).pow(self.beta)


def resolve_config(config: str) -> str:
    """The canonical name ("A" ... "E") of a config or alias; ValueError if unknown."""
    by_upper = {name.upper(): name for name in STAGES}
    name = ALIASES.get(config.lower(), by_upper.get(config.upper(), config))
    if name not in STAGES:
        valid = ", ".join([*STAGES, *ALIASES])
        raise ValueError(f"unknown VGG config {config!r}: choose one of {valid}")
    return name


def scaled_width(channels: int, width: float) -> int:
    """A layer width under the width multiplier (at least 1)."""
    return max(1, round(channels * width))


def layer_names(config: str) -> list[str]:
    """Paper names of the weight-carrying conv layers, e.g. ``conv3_2``, in order."""
    stages = STAGES[resolve_config(config)]
    return [
        f"conv{s + 1}_{i + 1}"
        for s, codes in enumerate(stages)
        for i in range(sum(c in "315" for c in codes))
    ]


def stage_layers(config: str, width: float = 1.0) -> list[list[str]]:
    """Each stage's layers in Table 1's notation (``conv3-64``, ``conv1-256``, ``LRN``)."""
    return [
        [
            "LRN" if code == "L" else f"conv{code}-{scaled_width(min(64 * 2**s, 512), width)}"
            for code in codes
        ]
        for s, codes in enumerate(STAGES[resolve_config(config)])
    ]


class VGG(nn.Module):
    """A VGG network; ``image_size`` sets the classifier's input grid (image_size // 32)."""

    def __init__(
        self,
        config: str = "D",
        num_classes: int = 1000,
        *,
        width: float = 1.0,
        batch_norm: bool = False,
        dropout: float = 0.5,
        image_size: int = 224,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.config = resolve_config(config)
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}: use e.g. 0.25 for a small run")
        if image_size < 32:
            raise ValueError(f"image_size must be at least 32 (five 2x2 pools), got {image_size}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.width, self.batch_norm, self.image_size = width, batch_norm, image_size
        self.grid = image_size // 32
        layers: list[nn.Module] = []
        channels = in_channels
        for s, codes in enumerate(STAGES[self.config]):
            out = scaled_width(min(64 * 2**s, 512), width)
            for code in codes:
                if code == "L":
                    layers.append(LocalResponseNorm(**LRN))
                    continue
                k = int(code)
                layers.append(nn.Conv2d(channels, out, kernel_size=k, padding=k // 2))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out))
                layers.append(nn.ReLU(inplace=True))
                channels = out
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((self.grid, self.grid))
        hidden = scaled_width(4096, width)
        self.classifier = nn.Sequential(
            nn.Linear(channels * self.grid**2, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torchvision's initialisation; `vggbook.init` offers the paper's schemes."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if x.shape[-2:] != (self.grid, self.grid):  # an identity at the training resolution,
            x = self.avgpool(x)  # skipped there: its CUDA backward is not deterministic
        return self.classifier(torch.flatten(x, 1))


def build_vgg(
    config: str,
    num_classes: int = 1000,
    *,
    width: float = 1.0,
    batch_norm: bool = False,
    dropout: float = 0.5,
    image_size: int = 224,
    in_channels: int = 3,
) -> VGG:
    """Build config "A", "A-LRN", "B", "C", "D" or "E" (or "vgg11/13/16/19")."""
    return VGG(
        config,
        num_classes,
        width=width,
        batch_norm=batch_norm,
        dropout=dropout,
        image_size=image_size,
        in_channels=in_channels,
    )


class FullyConvolutionalVGG(nn.Module):
    """The paper's dense-evaluation net: FC6 as a grid x grid conv, FC7/FC8 as 1x1 convs.

    It returns the class score map (N, classes, H', W'); at the training resolution H'=W'=1.
    """

    def __init__(self, features: nn.Sequential, head: nn.Sequential) -> None:
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def to_fully_convolutional(model: VGG) -> FullyConvolutionalVGG:
    """Convert a trained VGG into its dense-evaluation form, sharing no tensors with it."""
    fcs = [m for m in model.classifier if isinstance(m, nn.Linear)]
    channels = fcs[0].in_features // model.grid**2
    convs = []
    for i, fc in enumerate(fcs):
        k = model.grid if i == 0 else 1
        in_ch = channels if i == 0 else fc.in_features
        conv = nn.Conv2d(in_ch, fc.out_features, kernel_size=k)
        with torch.no_grad():
            conv.weight.copy_(fc.weight.reshape(fc.out_features, in_ch, k, k))
            conv.bias.copy_(fc.bias)
        convs.append(conv)
    dropout = next(m.p for m in model.classifier if isinstance(m, nn.Dropout))
    head = nn.Sequential(
        convs[0],
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        convs[1],
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        convs[2],
    )
    fcn = FullyConvolutionalVGG(copy.deepcopy(model.features), head)
    return fcn.to(fcs[0].weight.device).train(model.training)
