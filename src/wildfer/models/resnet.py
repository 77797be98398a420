"""ResNet-style nets for 48x48 faces (He et al. 2016, CIFAR-style stem).

Stem: a 3x3 conv at stride 1 and no max pool (the 7x7/2 stem and pool of the ImageNet form
would shrink a 48x48 face to 12x12 before the first block). Four stages of basic blocks,
strides 1, 2, 2, 2 (48 -> 24 -> 12 -> 6), global average pool, dropout, linear.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import PooledLinearHead, kaiming_init_convs
from .registry import register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetFer(PooledLinearHead):
    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        drop: float = 0.2,
    ):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        stages = []
        c = widths[0]
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(c, w, stride=2 if (j == 0 and i > 0) else 1))
                c = w
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.build_head(c, num_classes, drop)
        kaiming_init_convs(self)
        for m in self.modules():  # zero-init the last BN of each block (Goyal et al. 2017)
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.layers(self.stem(x)))


@register_model("resnet18")
def resnet18(num_classes: int = 7, in_chans: int = 1, **kw) -> nn.Module:
    """ResNet-18 for 48x48 (3x3 stem, no pool; 64-512 channels, ~11 M params)."""
    return ResNetFer(num_classes, in_chans, **kw)


@register_model("resnet18_half")
def resnet18_half(num_classes: int = 7, in_chans: int = 1, **kw) -> nn.Module:
    """ResNet-18 at half width (32-256 channels, ~2.8 M params): a CPU-friendly ResNet."""
    kw.setdefault("widths", (32, 64, 128, 256))
    return ResNetFer(num_classes, in_chans, **kw)
