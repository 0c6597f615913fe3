import math

import pytest
import torch

from vggbook.init import (
    SCHEMES,
    TRANSFERRED,
    gaussian_stds,
    initialise,
    transfer_from,
    weight_layers,
)
from vggbook.models import build_vgg


def small(config="A", **kw):
    return build_vgg(config, 10, width=0.25, image_size=32, **kw)


@pytest.mark.parametrize(("scheme", "std"), [("gaussian", 0.01), ("gaussian-0.1", 0.1)])
def test_gaussian_statistics(scheme, std):
    torch.manual_seed(0)
    model = initialise(build_vgg("D", width=0.25, image_size=64), scheme)
    for name, layer in weight_layers(model):
        w = layer.weight
        tol = 5 * std / math.sqrt(w.numel())  # 5 standard errors
        assert abs(w.mean().item()) < tol, name
        assert abs(w.std().item() - std) < 5 * std * math.sqrt(2 / w.numel()) + 1e-6, name
        assert layer.bias.abs().sum() == 0


def test_width_corrected_gain_equals_full_width():
    model = small("D")
    full = build_vgg("D")
    stds = gaussian_stds(model, "gaussian-width")
    for (name, layer), (_, ref) in zip(weight_layers(model), weight_layers(full), strict=True):
        gain_small = layer.weight[0].numel() * stds[name] ** 2
        gain_full = ref.weight[0].numel() * 0.01**2
        assert gain_small == pytest.approx(gain_full), name
    assert stds["conv1_1"] == pytest.approx(0.01)  # fan-in 27 at every width
    assert stds["conv2_1"] == pytest.approx(0.02)  # a quarter of the fan-in: twice the std


def test_glorot_bounds():
    torch.manual_seed(0)
    model = initialise(small(), "glorot")
    for _, layer in weight_layers(model):
        fan_in = layer.weight[0].numel()
        fan_out = layer.weight.shape[0] * layer.weight[0, 0].numel()
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > 0.9 * bound


def test_seeded_and_unknown_scheme():
    a = initialise(small(), "gaussian")
    torch.manual_seed(1)
    b = initialise(small(), "gaussian")
    torch.manual_seed(1)
    c = initialise(small(), "gaussian")
    assert torch.equal(b.features[0].weight, c.features[0].weight)
    assert not torch.equal(a.features[0].weight, b.features[0].weight)
    with pytest.raises(ValueError, match="unknown init scheme 'he'.*kaiming"):
        initialise(small(), "he")
    assert "glorot" in SCHEMES


@pytest.mark.parametrize("config", ["B", "C", "D", "E"])
def test_transfer_copies_exactly_the_named_layers(config):
    torch.manual_seed(0)
    source, target = small("A"), small(config)
    before = {n: m.weight.clone() for n, m in weight_layers(target)}
    report = transfer_from(source, target)
    assert [r["layer"] for r in report] == list(TRANSFERRED)
    src = dict(weight_layers(source))
    for name, layer in weight_layers(target):
        if name in TRANSFERRED:
            assert torch.equal(layer.weight, src[name].weight) and torch.equal(
                layer.bias, src[name].bias
            )
        else:
            assert torch.equal(layer.weight, before[name]), name
    # conv1_2 of the deeper net stays random: net A has no such layer.
    assert "conv1_2" in dict(weight_layers(target)) and "conv1_2" not in src


@pytest.mark.parametrize(
    ("target_kwargs", "match"),
    [({"width": 0.5}, "cannot transfer conv1_1"), ({"num_classes": 5}, "cannot transfer fc8")],
)
def test_transfer_mismatch_is_clear_and_changes_nothing(target_kwargs, match):
    source = small("A")
    kw = {"width": 0.25, "image_size": 32, "num_classes": 10, **target_kwargs}
    target = build_vgg("D", kw.pop("num_classes"), **kw)
    before = [p.clone() for p in target.parameters()]
    with pytest.raises(ValueError, match=match):
        transfer_from(source, target)
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters(), strict=True))


def test_transfer_source_must_be_a():
    with pytest.raises(ValueError, match="must be net A"):
        transfer_from(small("B"), small("D"))
