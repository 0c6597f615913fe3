import pytest
import torch
import torchvision
from torch import nn

from vggbook import paper
from vggbook.models import (
    CONFIGS,
    build_vgg,
    layer_names,
    resolve_config,
    stage_layers,
    to_fully_convolutional,
)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("config", CONFIGS)
def test_parameter_counts_equal_table2(config):
    n = count(build_vgg(config))
    assert n == paper.PARAMS_EXACT[config]
    assert round(n / 1e6) == paper.TABLE2_PARAMS_M[config]


def test_config_c_count_and_1x1_convs():
    model = build_vgg("C")
    assert count(model) == 133_638_952
    kernels = [m.kernel_size for m in model.features if isinstance(m, nn.Conv2d)]
    assert kernels.count((1, 1)) == 3
    assert stage_layers("C")[2] == ["conv3-256", "conv3-256", "conv1-256"]


@pytest.mark.parametrize(
    ("config", "weight_layers"),
    [("A", 11), ("A-LRN", 11), ("B", 13), ("C", 16), ("D", 16), ("E", 19)],
)
def test_depths(config, weight_layers):
    assert len(layer_names(config)) + 3 == weight_layers


def test_lrn_only_in_a_lrn_after_first_conv():
    lrn = build_vgg("A-LRN", width=0.125).features
    kinds = [type(m).__name__ for m in lrn][:4]
    assert kinds == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPool2d"]
    assert lrn[2].size == 5 and lrn[2].beta == 0.75 and lrn[2].k == 2.0
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in build_vgg("A").modules())


def test_aliases_and_unknown_config():
    assert [resolve_config(a) for a in ("vgg11", "vgg13", "vgg16", "VGG19", "d")] == list("ABDED")
    with pytest.raises(ValueError, match="unknown VGG config 'F'.*A, A-LRN, B, C, D, E"):
        build_vgg("F")


@pytest.mark.parametrize(
    "name",
    ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"],
)
def test_torchvision_state_dicts_load_strictly_and_agree(name):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)().eval()
    model = build_vgg(name.removesuffix("_bn"), batch_norm=name.endswith("_bn")).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    assert count(model) == paper.TORCHVISION[name][2]
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [32, 40, 64, 96])
def test_small_inputs_and_grid(size):
    model = build_vgg("A", 10, width=0.125, image_size=size)
    assert model.grid == size // 32
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10)
    assert model.classifier[0].in_features == 64 * (size // 32) ** 2


def test_width_scales_every_layer():
    model = build_vgg("D", 10, width=0.25, image_size=32)
    widths = [m.out_channels for m in model.features if isinstance(m, nn.Conv2d)]
    assert widths == [16] * 2 + [32] * 2 + [64] * 3 + [128] * 6
    assert [m.out_features for m in model.classifier if isinstance(m, nn.Linear)] == [
        1024,
        1024,
        10,
    ]


@pytest.mark.parametrize(
    "kwargs",
    [{"width": 0}, {"image_size": 16}, {"dropout": 1.0}],
)
def test_impossible_parameters(kwargs):
    with pytest.raises(ValueError):
        build_vgg("A", **kwargs)


def test_dense_equals_logits_at_training_size_and_maps_at_larger():
    torch.manual_seed(0)
    model = build_vgg("D", 20, width=0.125, image_size=64, batch_norm=True).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2)
    dense = to_fully_convolutional(model).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        scores = dense(x)
        assert scores.shape == (3, 20, 1, 1)
        torch.testing.assert_close(scores.flatten(1), model(x), rtol=1e-4, atol=1e-5)
        assert dense(torch.randn(1, 3, 96, 96)).shape == (1, 20, 2, 2)


def test_dense_full_size_map_is_6x6_at_384():
    model = build_vgg("A", width=0.0625)
    dense = to_fully_convolutional(model).eval()
    with torch.no_grad():
        assert dense(torch.randn(1, 3, 384, 384)).shape == (1, 1000, 6, 6)


def test_dense_copy_is_independent():
    model = build_vgg("A", 10, width=0.125, image_size=32)
    dense = to_fully_convolutional(model)
    with torch.no_grad():
        dense.features[0].weight.zero_()
        dense.head[0].weight.zero_()
    assert model.features[0].weight.abs().sum() > 0
    assert model.classifier[0].weight.abs().sum() > 0
