"""VGG-style FER nets after Khaireddin & Chen (2021), "Facial Emotion Recognition: State of
the Art Performance on FER2013".

Four stages of two 3x3 conv-BN-ReLU blocks and a 2x2 max pool (48 -> 24 -> 12 -> 6 -> 3),
then dropout and fully connected layers. The paper's net has 4096-wide FC layers (~ 40 M
parameters); ``vggfer`` keeps the conv trunk and uses a narrower head so fp16 weights fit in
the package, ``vggfer_paper`` is the paper's width.

``input_size`` sets the face side the net reads; ``head_side`` average-pools the last map to
that side first, so a net for 96-pixel faces (``input_size=96, head_side=3``) has exactly the
weights of a 48-pixel one and starts from them.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .registry import register_model


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class VGGFer(nn.Module):
    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        fc: int = 1024,
        fc_layers: int = 2,
        drop: float = 0.4,
        input_size: int = 48,
        head_side: int | None = None,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for w in widths:
            layers += [conv_bn(c, w), conv_bn(w, w), nn.MaxPool2d(2)]
            c = w
        side = input_size // (2 ** len(widths))
        if head_side is not None and head_side != side:
            layers.append(nn.AdaptiveAvgPool2d(head_side))  # a larger input reuses a 48-pixel net's head
            side = head_side
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        d = c * side * side
        for _ in range(fc_layers):
            head += [nn.Dropout(drop), nn.Linear(d, fc), nn.ReLU(inplace=True)]
            d = fc
        head += [nn.Dropout(drop), nn.Linear(d, num_classes)]
        self.classifier = nn.Sequential(*head)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("vggfer")
def vggfer(num_classes: int = 7, in_chans: int = 1, **kw) -> nn.Module:
    """VGG-style FER net (Khaireddin & Chen 2021 trunk, 1024-wide head, ~10 M params)."""
    return VGGFer(num_classes, in_chans, **kw)


@register_model("vggfer_paper")
def vggfer_paper(num_classes: int = 7, in_chans: int = 1, **kw) -> nn.Module:
    """Khaireddin & Chen 2021's VGG variant at the paper's width (4096-wide FC, ~ 40 M params)."""
    kw.setdefault("fc", 4096)
    return VGGFer(num_classes, in_chans, **kw)


@register_model("vggfer_small")
def vggfer_small(num_classes: int = 7, in_chans: int = 1, **kw) -> nn.Module:
    """Half-width VGG-style FER net (32-256 channels, 256-wide head): fast CPU model."""
    kw.setdefault("widths", (32, 64, 128, 256))
    kw.setdefault("fc", 256)
    return VGGFer(num_classes, in_chans, **kw)
