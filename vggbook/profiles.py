"""Run profiles: one place that says what a run is, and how it departs from the paper."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

from . import paper


@dataclass(frozen=True)
class Profile:
    """A full training configuration. Sizes are in pixels at the profile's own resolution."""

    name: str
    dataset: str
    num_classes: int
    crop: int  # training crop (224 in the paper)
    scale: int | tuple[int, int]  # S: fixed, or the jitter range [Smin, Smax]
    width: float = 1.0
    batch_size: int = 256
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dropout: float = 0.5
    epochs: int = 74
    patience: int = 2  # epochs without a better val top-1 before the lr is divided by 10
    max_decays: int = 3
    lr_steps: tuple[int, ...] = ()  # fixed epochs after which the lr is divided by 10 (no plateaus)
    init: str = "gaussian"
    limit_train: int | None = None  # a class-balanced subset of the images left to train on
    val_images: int | None = None  # held out of the training split (None: 1/12, data.holdout)
    workers: int = 4
    flip: bool = True
    pca_lighting: bool = True
    pixel_scale: float = 255.0  # inputs in 0-255 units minus the mean RGB, as in Caffe
    amp: bool = True  # bf16 autocast where the hardware has bf16 (vggbook.precision)
    channels_last: bool = True
    batch_augment: bool = True  # in-memory datasets augmented a batch at a time (batches.py)
    notes: tuple[str, ...] = field(
        default_factory=tuple
    )  # why it departs; figures come from fields

    def __post_init__(self):
        """Refuse impossible values, in field order: ValueError names the field, the expected
        form and the value, in one line. A JSON list for scale or notes becomes a tuple."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "scale":
                ok, expected = _scale_ok(value, self.crop), _scale_form(self.crop)
            else:
                ok, expected = _CHECKS[f.name][0](value), _CHECKS[f.name][1]
            if not ok:
                raise ValueError(f"profile field {f.name}: expected {expected}, got {value!r}")
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))

    def replace(self, **changes) -> Profile:
        """A copy with some fields changed, e.g. ``profile.replace(epochs=2)``."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown profile field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    @property
    def deviations(self) -> tuple[str, ...]:
        """How the profile departs from the paper's recipe (Sec. 3.1), read off its fields, then
        its notes: an override (``epochs=3``) shows up here."""
        r = paper.RECIPE
        found = []
        if self.dataset != "imagenet":
            found.append(f"data: {self.dataset} ({self.num_classes} classes) instead of ImageNet")
        if self.crop != r["crop"]:
            s = self.scale if isinstance(self.scale, int) else f"[{self.scale[0]}, {self.scale[1]}]"
            found.append(
                f"resolution: {self.crop} px crops, S = {s}, "
                f"every size scaled by {self.crop}/{r['crop']}"
            )
        if self.width != 1.0:
            found.append(f"width: every layer at {self.width:g} of the paper's channels")
        if self.batch_size != r["batch_size"]:
            found.append(f"batch {self.batch_size} instead of {r['batch_size']}")
        held = f"{self.val_images:,}" if self.val_images else "one in twelve"
        found.append(
            f"lr plateaus read {held} training images held out for validation (the paper "
            "read ILSVRC's validation set, its test set); the test split is only reported"
        )
        if self.limit_train:
            found.append(f"a {self.limit_train:,}-image training subset")
        if self.epochs != r["epochs"]:
            found.append(f"{self.epochs} epochs at most instead of {r['epochs']}")
        if self.lr_steps:
            after = " and ".join(str(e) for e in self.lr_steps)
            found.append(
                f"lr divided by 10 after epoch {after} for every net, instead of at validation "
                "plateaus: every net ends its schedule within the budget"
            )
        else:
            found.append(
                f"lr patience {self.patience} epoch(s) (the paper does not state one), counted "
                "once the net has left chance level: a stalled net keeps its learning rate"
            )
        if self.init != "gaussian":
            found.append(f"init: {self.init} instead of the paper's Gaussian (see chapter 4)")
        off = [n for n, on in (("flips", self.flip), ("PCA lighting", self.pca_lighting)) if not on]
        if off:
            found.append(f"augmentation without {' or '.join(off)}")
        if self.amp:
            found.append("bf16 autocast where the hardware has bf16 (the paper trained in fp32)")
        return (*found, *self.notes)

    @property
    def scale_summary(self) -> str:
        """The run's scale in one phrase, for the report: data, size, width, budget."""
        images = f"{self.limit_train:,}" if self.limit_train else "all"
        size = f"{self.crop} px, width {self.width:g}"
        return f"{self.dataset}, {size}, {images} training images, {self.epochs} epochs"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Profile:
        """The inverse of ``as_dict`` after a JSON round trip."""
        scale = d["scale"] if isinstance(d["scale"], int) else tuple(d["scale"])
        steps = tuple(d.get("lr_steps", ()))  # records older than the field: plateaus
        return cls(**{**d, "scale": scale, "notes": tuple(d["notes"]), "lr_steps": steps})


def _int(v, low: int) -> bool:
    """An int (a bool is no count) of at least ``low``."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _real(v, low: float, high: float = math.inf, *, open_low: bool = False) -> bool:
    """A finite int or float in [low, high), or in (low, high) with ``open_low``."""
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return False
    return (v > low if open_low else v >= low) and v < high


def _scale_ok(v, crop: int) -> bool:
    if isinstance(v, list | tuple):
        return len(v) == 2 and all(_int(s, crop) for s in v) and v[0] <= v[1]
    return _int(v, crop)


def _scale_form(crop) -> str:
    return f"S >= crop ({crop}) as an integer or a range [Smin, Smax] with Smin <= Smax"


def _steps(v) -> bool:
    """Increasing epochs, each at least 1 (empty: the plateau rule)."""
    ok = isinstance(v, list | tuple) and all(_int(e, 1) for e in v)
    return ok and all(a < b for a, b in itertools.pairwise(v))


def _text(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


_POSITIVE = "a positive finite number"
# Each field's test and the form it expects (scale depends on crop: _scale_ok, _scale_form).
_CHECKS = {
    "name": (_text, "a non-empty string"),
    "dataset": (_text, "a non-empty string"),
    "num_classes": (lambda v: _int(v, 1), "an integer >= 1"),
    "crop": (lambda v: _int(v, 1), "an integer >= 1"),
    "width": (lambda v: _real(v, 0, open_low=True), _POSITIVE),
    "batch_size": (lambda v: _int(v, 1), "an integer >= 1"),
    "lr": (lambda v: _real(v, 0, open_low=True), _POSITIVE),
    "momentum": (lambda v: _real(v, 0, 1), "a number in [0, 1)"),
    "weight_decay": (lambda v: _real(v, 0), "a finite number >= 0"),
    "dropout": (lambda v: _real(v, 0, 1), "a number in [0, 1)"),
    "epochs": (lambda v: _int(v, 1), "an integer >= 1"),
    "patience": (lambda v: _int(v, 0), "an integer >= 0"),
    "max_decays": (lambda v: _int(v, 0), "an integer >= 0"),
    "lr_steps": (_steps, "increasing epochs >= 1, e.g. [8, 11] (empty: at val plateaus)"),
    "init": (_text, "a non-empty string (an init scheme)"),
    # 0 is accepted as "the whole split", as chapter 3's parameters document
    "limit_train": (lambda v: v is None or _int(v, 0), "none or an integer >= 0 (0: all)"),
    "val_images": (lambda v: v is None or _int(v, 1), "none (1/12 of train) or an integer >= 1"),
    "workers": (lambda v: _int(v, 0), "an integer >= 0"),
    "flip": (lambda v: isinstance(v, bool), "true or false"),
    "pca_lighting": (lambda v: isinstance(v, bool), "true or false"),
    "pixel_scale": (lambda v: _real(v, 0, open_low=True), _POSITIVE),
    "amp": (lambda v: isinstance(v, bool), "true or false"),
    "channels_last": (lambda v: isinstance(v, bool), "true or false"),
    "batch_augment": (lambda v: isinstance(v, bool), "true or false"),
    "notes": (
        lambda v: isinstance(v, list | tuple) and all(isinstance(n, str) for n in v),
        "a tuple of strings",
    ),
}


def _scaled(size: int, crop: int) -> int:
    return round(size * crop / paper.RECIPE["crop"])


def _one_gpu(dataset: str, crop: int, *notes: str) -> Profile:
    """A ten-class profile for one GPU: half width, batch 128, S jittered over the paper's
    [256, 512] scaled to the crop, Glorot."""
    return Profile(
        name=dataset,
        dataset=dataset,
        num_classes=10,
        crop=crop,
        scale=(_scaled(256, crop), _scaled(512, crop)),
        width=0.5,
        batch_size=128,
        epochs=40,
        patience=2,
        init="glorot",
        workers=8,
        notes=(
            *notes,
            "sized for one GPU in under an hour",
            "Glorot (the paper's post-submission remark): deep configs train from scratch",
        ),
    )


PROFILES = {
    "tiny": Profile(
        name="tiny",
        dataset="fashion-mnist",
        num_classes=10,
        crop=32,
        scale=_scaled(256, 32),
        width=0.25,
        batch_size=64,
        epochs=15,
        patience=1,
        init="gaussian-width",
        limit_train=16000,
        val_images=2000,
        workers=0,
        notes=(
            "Fashion-MNIST is grey: its one channel is replicated to RGB",
            "a smaller batch gives more steps per epoch on a small subset",
            "gaussian-width is the paper's N(0, 0.01) corrected for the width",
        ),
    ),
    "study": Profile(
        name="study",
        dataset="fashion-mnist",
        num_classes=10,
        crop=64,
        scale=_scaled(256, 64),
        width=0.25,
        batch_size=128,
        epochs=12,
        patience=1,
        max_decays=2,
        init="glorot",
        workers=0,
        notes=(
            "Fashion-MNIST is grey: its one channel is replicated to RGB",
            "64 px crops: the fifth stage sees 2x2 maps, and dense evaluation at Q up to 146 "
            "gives score maps up to 3x3 (the paper's reach 10x10)",
            "Glorot for every architecture (the paper's post-submission remark): depth is the "
            "only difference between the nets; chapter 4 and finding 9 study the paper's init",
            "sized for the study's 40 runs (5 seeds) on one GPU, or 3 hours a seed on a laptop",
        ),
    ),
    "cifar10": _one_gpu("cifar10", 32),
    "imagenette": _one_gpu("imagenette", 128, "Imagenette: ten easy ImageNet classes"),
    "imagenet": Profile(
        name="imagenet",
        dataset="imagenet",
        num_classes=1000,
        crop=224,
        scale=256,
        batch_size=256,
        epochs=74,
        patience=2,
        workers=8,
    ),
}


def get_profile(name: str, **overrides) -> Profile:
    """A named profile, with any field overridden; ValueError names the valid profiles."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}")
    return PROFILES[name].replace(**{k: v for k, v in overrides.items() if v is not None})


def _schedule(profile: Profile) -> str:
    if profile.lr_steps:
        return f"/10 after epochs {', '.join(map(str, profile.lr_steps))}"
    return f"/10 after {profile.patience + 1} epochs without gain, {profile.max_decays} times"


def compare_with_paper(profile: Profile) -> list[dict]:
    """The recipe's settings beside the paper's (Sec. 3.1), one row per setting."""
    r = paper.RECIPE
    (s1, s2), (smin, smax) = r["scale_single"], r["scale_jitter"]
    paper_scale = f"{s1} or {s2}, or [{smin}, {smax}]"
    rows = [
        (
            "dataset",
            "ImageNet (ILSVRC-2012), 1000 classes",
            f"{profile.dataset}, {profile.num_classes} classes",
        ),
        ("training crop", r["crop"], profile.crop),
        ("scale S", paper_scale, profile.scale),
        ("width multiplier", 1.0, profile.width),
        ("batch size", r["batch_size"], profile.batch_size),
        ("momentum", r["momentum"], profile.momentum),
        ("weight decay", r["weight_decay"], profile.weight_decay),
        ("dropout (FC6, FC7)", r["dropout"], profile.dropout),
        ("learning rate", r["lr"], profile.lr),
        ("lr schedule", "/10 at val plateaus, 3 times", _schedule(profile)),
        ("epochs", r["epochs"], profile.epochs),
        ("initialisation", "N(0, 1e-2) (net A)", profile.init),
        (
            "flip, colour shift",
            "yes, yes",
            f"{'yes' if profile.flip else 'no'}, {'yes' if profile.pca_lighting else 'no'}",
        ),
    ]
    return [
        {"setting": name, "paper": str(p), "this run": str(t), "same": str(p) == str(t)}
        for name, p, t in rows
    ]
