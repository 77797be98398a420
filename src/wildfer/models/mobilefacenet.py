"""MobileFaceNet (Chen et al. 2018): a face-recognition backbone that reads 112 x 112 RGB faces
aligned on five landmarks, in the form the OpenCV model zoo's expression model ships it.

The zoo's graph has its batch norms folded into the convolutions, so every convolution here
carries a bias and there is no batch norm: the net is exactly the graph, and
:func:`wildfer.models.convert.mobilefacenet_from_onnx` fills it from the zoo's int8 file.
Fine-tune it with a small learning rate (no batch norm re-centres the activations).

Layout (``setting`` rows are expansion t, output channels c, repeats n, first stride s):

* ``conv1`` 3x3/2 conv + PReLU (112 -> 56), ``dw_conv1`` depthwise 3x3 + PReLU;
* inverted-residual ``blocks``: 1x1 expand + PReLU, depthwise 3x3 + PReLU, 1x1 project
  (linear), with a skip connection where shape allows;
* ``conv2`` 1x1 to 512 + PReLU (7 x 7), ``linear7`` depthwise 7x7 (global, linear),
  ``linear1`` 1x1 512 -> 512 (linear): the 512-d embedding (:meth:`MobileFaceNet.embed`);
* ``fc``: the classifier head, sized to the label set (dropout ``drop`` before it).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model

#: (expansion, channels, repeats, first stride) of the bottleneck stages
SETTING = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))

#: the embedding width
EMBED = 512

#: where the five landmarks (eyes, nose tip, mouth corners) go in a 112 x 112 face: the
#: face-recognition template (ArcFace's, which the OpenCV model zoo's expression model uses)
TEMPLATE_112 = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041))

#: its faces: 112 x 112 RGB on the five-point template, scaled (x / 255 - 0.5) / 0.5
PREPROCESS = {"size": 112, "mean": 0.5, "std": 0.5, "grayscale": False, "align": "template",
              "template": [list(p) for p in TEMPLATE_112]}


def conv(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, prelu: bool = True) -> nn.Sequential:
    """``k x k`` convolution with a bias (a folded batch norm), then PReLU unless linear."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=True)]
    if prelu:
        layers.append(nn.PReLU(cout))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    """Inverted residual: expand (1x1), depthwise (3x3), project (1x1, linear)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        self.conv = nn.Sequential(conv(cin, mid), conv(mid, mid, 3, stride, groups=mid), conv(mid, cout, prelu=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    def __init__(self, num_classes: int = 7, in_chans: int = 3, drop: float = 0.0, input_size: int = 112):
        super().__init__()
        if input_size % 16:
            raise ValueError(f"mobilefacenet input_size must be a multiple of 16, not {input_size}")
        self.conv1 = conv(in_chans, 64, 3, 2)
        self.dw_conv1 = conv(64, 64, 3, 1, groups=64)
        blocks, cin = [], 64
        for t, c, n, s in SETTING:
            for i in range(n):
                blocks.append(Bottleneck(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.conv2 = conv(cin, EMBED)
        side = input_size // 16
        self.linear7 = conv(EMBED, EMBED, side, groups=EMBED, prelu=False)
        self.linear7[0].padding = (0, 0)
        self.linear1 = conv(EMBED, EMBED, prelu=False)
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(EMBED, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 512-d face embedding (before the classifier head)."""
        x = self.blocks(self.dw_conv1(self.conv1(x)))
        return torch.flatten(self.linear1(self.linear7(self.conv2(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.embed(x)))


@register_model(input_size=112, in_chans=3, preprocess=PREPROCESS)
def mobilefacenet(num_classes: int = 7, in_chans: int = 3, **kw) -> nn.Module:
    """MobileFaceNet: 112x112 RGB faces on a five-point template, 512-d embedding (~1 M params)"""
    return MobileFaceNet(num_classes=num_classes, in_chans=in_chans, **kw)
