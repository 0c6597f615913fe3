"""The paper's published figures, the single source for every comparison table in the book.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
arXiv:1409.1556v6 (ICLR 2015); torchvision's published weights for its VGG models.
Errors are ILSVRC-2012 validation top-1 / top-5 in percent.
"""

from __future__ import annotations

# Table 2: parameters in millions, and the exact counts (1000 classes) as torchvision counts them.
TABLE2_PARAMS_M = {"A": 133, "A-LRN": 133, "B": 133, "C": 134, "D": 138, "E": 144}
PARAMS_EXACT = {
    "A": 132_863_336,
    "A-LRN": 132_863_336,
    "B": 133_047_848,
    "C": 133_638_952,
    "D": 138_357_544,
    "E": 143_667_240,
}

# Table 3 (single test scale) and Table 4 (multi-scale test): {config: {train S: (top1, top5)}}.
TABLE3 = {
    "A": {"256": (29.6, 10.4)},
    "A-LRN": {"256": (29.7, 10.5)},
    "B": {"256": (28.7, 9.9)},
    "C": {"256": (28.1, 9.4), "384": (28.1, 9.3), "256-512": (27.3, 8.8)},
    "D": {"256": (27.0, 8.8), "384": (26.8, 8.7), "256-512": (25.6, 8.1)},
    "E": {"256": (27.3, 9.0), "384": (26.9, 8.7), "256-512": (25.5, 8.0)},
}
TABLE4 = {
    "B": {"256": (28.2, 9.6)},
    "C": {"256": (27.7, 9.2), "384": (27.8, 9.2), "256-512": (26.3, 8.2)},
    "D": {"256": (26.6, 8.6), "384": (26.5, 8.6), "256-512": (24.8, 7.5)},
    "E": {"256": (26.9, 8.7), "384": (26.7, 8.6), "256-512": (24.8, 7.5)},
}
# Table 5: S in [256, 512], Q = {256, 384, 512}.
TABLE5 = {
    "D": {"dense": (24.8, 7.5), "multi-crop": (24.6, 7.5), "multi-crop & dense": (24.4, 7.2)},
    "E": {"dense": (24.8, 7.5), "multi-crop": (24.6, 7.4), "multi-crop & dense": (24.4, 7.1)},
}
# Table 6: (top-1 val, top-5 val, top-5 test); None where the paper gives no figure.
TABLE6 = {
    "ILSVRC submission (7 nets)": (24.7, 7.5, 7.3),
    "D+E dense": (24.0, 7.1, 7.0),
    "D+E multi-crop": (23.9, 7.2, None),
    "D+E multi-crop & dense": (23.7, 6.8, 6.8),
}

# torchvision's weights: (acc@1, acc@5, params, GMACs), single 224 centre crop.
TORCHVISION = {
    "vgg11": (69.020, 88.628, 132_863_336, 7.609),
    "vgg11_bn": (70.370, 89.810, 132_868_840, 7.609),
    "vgg13": (69.928, 89.246, 133_047_848, 11.308),
    "vgg13_bn": (71.586, 90.374, 133_053_736, 11.308),
    "vgg16": (71.592, 90.382, 138_357_544, 15.470),
    "vgg16_bn": (73.360, 91.516, 138_365_992, 15.470),
    "vgg19": (72.376, 90.876, 143_667_240, 19.632),
    "vgg19_bn": (74.218, 91.842, 143_678_248, 19.632),
}

# The training recipe (Sec. 3.1).
RECIPE = {
    "batch_size": 256,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "dropout": 0.5,
    "lr": 1e-2,
    "lr_decay_factor": 0.1,
    "lr_decays": 3,
    "epochs": 74,
    "crop": 224,
    "scale_single": (256, 384),
    "scale_jitter": (256, 512),
}

# Sec. 4.1: B with each pair of 3x3 convs replaced by one 5x5 conv "measured to have 7% higher
# top-1 error than that of B (on a center crop)": a relative figure.
SHALLOW_5X5_RELATIVE = 0.07
