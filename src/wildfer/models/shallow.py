"""The study's shallow CNN: [conv - relu - 2x2 max pool] - [affine - relu] - [affine].

Hidden size 500 as in the study; filter count and size are configurable.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model


class ShallowCNN(nn.Module):
    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        num_filters: int = 32,
        filter_size: int = 5,
        hidden: int = 500,
        input_size: int = 48,
        weight_scale: float | None = None,
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, num_filters, filter_size, padding=filter_size // 2)
        self.pool = nn.MaxPool2d(2)
        flat = num_filters * (input_size // 2) ** 2
        self.fc1 = nn.Linear(flat, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        if weight_scale is not None:  # the study's small Gaussian init (cs231n style)
            for m in (self.conv, self.fc1, self.fc2):
                nn.init.normal_(m.weight, std=weight_scale)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv(x)))
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


@register_model("shallow")
def shallow(num_classes: int = 7, in_chans: int = 1, **kw) -> nn.Module:
    """The study's 3-layer CNN (conv-relu-pool, affine-relu, affine), hidden 500."""
    return ShallowCNN(num_classes=num_classes, in_chans=in_chans, **kw)
