"""mini-Xception (Arriaga, Ploeger & Valdenegro 2017, "Real-time Convolutional Neural Networks
for Emotion and Gender Classification"): a light fully convolutional FER net (~60 k
parameters) built for 48x48 grayscale faces.

Two plain 3x3 convolutions (8 channels, unpadded: 48 -> 44), then four Xception-style
residual modules (16, 32, 64, 128 channels): two depthwise separable 3x3 convolutions with
batch norm and a 3x3 / 2 max pool, added to a 1x1 / stride 2 convolution of the module's
input (44 -> 22 -> 11 -> 6 -> 3). A 3x3 convolution to one map per class and global average
pooling replace fully connected layers. No adaptation is needed: the paper's input is FER2013.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model


class SeparableConv2d(nn.Module):
    """Keras' SeparableConv2D: a depthwise 3x3 then a pointwise 1x1 convolution, no bias."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, kernel_size, padding=kernel_size // 2, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionModule(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))
        self.body = nn.Sequential(
            SeparableConv2d(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            SeparableConv2d(cout, cout), nn.BatchNorm2d(cout),
            nn.MaxPool2d(3, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class MiniXception(nn.Module):
    def __init__(self, num_classes: int = 7, in_chans: int = 1, base: int = 8,
                 widths: tuple[int, ...] = (16, 32, 64, 128), drop: float = 0.0):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, base, 3, bias=False), nn.BatchNorm2d(base), nn.ReLU(inplace=True),
            nn.Conv2d(base, base, 3, bias=False), nn.BatchNorm2d(base), nn.ReLU(inplace=True),
        )
        mods, c = [], base
        for w in widths:
            mods.append(XceptionModule(c, w))
            c = w
        self.blocks = nn.Sequential(*mods)
        self.drop = nn.Dropout(drop)
        self.classifier = nn.Conv2d(c, num_classes, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.classifier(self.drop(self.blocks(self.stem(x))))
        return torch.flatten(self.pool(x), 1)


@register_model("mini_xception")
def mini_xception(num_classes: int = 7, in_chans: int = 1, **kw) -> nn.Module:
    """mini-Xception (Arriaga et al. 2017): depthwise separable residual modules, ~60 k params."""
    if "widths" in kw:
        kw["widths"] = tuple(kw["widths"])
    return MiniXception(num_classes, in_chans, **kw)
