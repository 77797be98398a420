"""Pieces several model families share.

:class:`PooledLinearHead` is the end of the 48x48 nets that pool globally: average pool ->
dropout -> one linear layer, held as the modules ``pool``, ``drop`` and ``fc``. Those names
are part of the state-dict keys that shipped weights and checkpoints rely on, so they must
not change. :func:`kaiming_init_convs` is the He et al. initialisation the families use for
their convolutions.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class PooledLinearHead(nn.Module):
    """Base for nets ending in global average pooling, dropout and a linear classifier.

    Subclasses call :meth:`build_head` after building their trunk (so parameters are created,
    and drawn from the random generator, trunk first, then the head) and end ``forward``
    with :meth:`forward_head` (timm's name for the same step).
    """

    def build_head(self, channels: int, num_classes: int, drop: float) -> None:
        """Add ``pool`` (global average), ``drop`` (dropout ``drop``) and ``fc`` (linear)."""
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(channels, num_classes)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map ``N x C x H x W`` -> logits ``N x num_classes``."""
        return self.fc(self.drop(torch.flatten(self.pool(x), 1)))


def kaiming_init_convs(net: nn.Module) -> None:
    """He-normal (fan-out, ReLU gain) weights for every convolution in ``net``; other layers
    keep PyTorch's defaults."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
