import pytest
import torch
from torch import nn

from vggbook import analysis
from vggbook.models import build_vgg, to_fully_convolutional


@pytest.fixture(scope="module")
def table_d():
    return {r.name: r for r in analysis.layer_table(build_vgg("D"), 224)}


def test_receptive_fields_of_d(table_d):
    assert table_d["conv1_1"].receptive_field == 3
    assert table_d["conv3_3"].receptive_field == 40
    assert table_d["conv5_3"].receptive_field == 196
    assert table_d["pool5"].receptive_field == 212
    assert table_d["pool5"].jump == 32


def test_flops_params_memory_of_d(table_d):
    rows = list(table_d.values())
    total = analysis.summary(rows)
    assert total["params"] == 138_357_544
    assert total["flops"] == pytest.approx(2 * 15.470e9, rel=1e-3)  # torchvision: 15.47 GMACs
    c = table_d["conv1_2"]  # 224*224 outputs x 64 filters x (3*3*64) MACs, x2 FLOPs
    assert c.flops == 2 * 224 * 224 * 64 * 3 * 3 * 64
    assert c.activation_bytes == 64 * 224 * 224 * 4
    assert table_d["fc6"].params == 512 * 7 * 7 * 4096 + 4096
    assert table_d["pool5"].output_shape == (1, 512, 7, 7)


def test_table_of_dense_net_matches_shapes():
    model = build_vgg("A", 10, width=0.125, image_size=32)
    rows = analysis.layer_table(to_fully_convolutional(model), 64)
    assert rows[-1].name == "fc8" and rows[-1].output_shape == (1, 10, 2, 2)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_stack_vs_single_closed_form(n):
    c = 8
    stack, single = analysis.stack_vs_single(n, c, size=10)
    assert stack.receptive_field == single.receptive_field == 2 * n + 1
    assert stack.params == 9 * n * c * c and single.params == (2 * n + 1) ** 2 * c * c
    assert stack.nonlinearities == n and single.nonlinearities == 1
    assert stack.activation_bytes == n * single.activation_bytes


def test_paper_numbers_27_vs_49():
    stack, single = analysis.stack_vs_single(3, 256)
    assert stack.params == 27 * 256**2 and single.params == 49 * 256**2


@pytest.mark.parametrize("n", [2, 3])
def test_measured_designs_equal_closed_form(n):
    torch.manual_seed(0)
    expected = analysis.stack_vs_single(n, 8, size=24)
    measured = [analysis.measure_design(net, 8, 24) for net in analysis.stack_modules(n, 8)]
    assert measured == expected


def test_effective_receptive_field_of_conv5_3():
    torch.manual_seed(0)
    model = build_vgg("D", width=0.125)
    assert analysis.effective_receptive_field(analysis.features_until(model, "conv5_3"), 224) == 196
    assert analysis.effective_receptive_field(analysis.features_until(model, "conv2_1"), 64) == 10


def test_features_until_unknown_layer():
    with pytest.raises(ValueError, match="no layer 'conv3_4'"):
        analysis.features_until(build_vgg("A", width=0.125), "conv3_4")


def test_named_layers_cover_model():
    model = build_vgg("C", width=0.125, batch_norm=True)
    names = [n for n, _ in analysis.named_layers(model)]
    assert names.count("conv3_3") == 1 and "bn3_3" in names and names[-1] == "fc8"
    assert len(names) == len(model.features) + 2 + len(model.classifier)
    assert isinstance(dict(analysis.named_layers(model))["conv3_3"], nn.Conv2d)
