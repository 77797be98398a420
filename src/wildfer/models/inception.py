"""GoogLeNet / Inception-v1 (Szegedy et al. 2015): a convolutional stem, nine inception modules
(3a, 3b | 4a-4e | 5a, 5b; each concatenates a 1x1, a 1x1->3x3, a 1x1->"5x5" and a
3x3-pool->1x1 branch), max pools between the groups, global average pooling, dropout 0.2 and
one linear layer; two auxiliary classifiers on 4a and 4d (optional, ``aux_logits=True``).

Names and channel counts follow torchvision's ``googlenet`` (conv + batch norm ``BasicConv2d``,
and its 3x3 kernel in the "5x5" branch, pytorch/vision#906), so ``inception_imagenet`` loads
``googlenet-1378be20.pth``.

Adapted to 48x48 grayscale (``inception``):

* stem: conv1 is 3x3 / stride 1 (instead of 7x7 / 2) and is followed by the first 3x3 / 2 max
  pool, so conv2/conv3 run at 24 pixels (the original: 56 of 224);
* the module groups run at 12 (3a, 3b), 6 (4a-4e) and 3 pixels (5a, 5b) where the original
  runs at 28 / 14 / 7: the stride-2 conv1 is the one downsampling step the small input drops;
* auxiliary heads average-pool their 6x6 input to 4x4 like the original's 14x14 -> 4x4;
* ``width`` scales every channel count, for CPU budgets.

With ``aux_logits=True`` the model returns ``(logits, aux2, aux1)`` in training mode (as
torchvision does; the wildfer Trainer expects plain logits, so it is off by default) and plain
logits in eval mode.
"""

from __future__ import annotations

from collections import namedtuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .pretrained import InceptionForm, setup_imagenet_form
from .registry import register_model

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])

#: torchvision's module table: in-channels are derived; (1x1, 3x3red, 3x3, 5x5red, 5x5, pool proj).
MODULES = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3) -> ReLU, torchvision's building block."""

    def __init__(self, cin: int, cout: int, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    def __init__(self, cin: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int):
        super().__init__()
        self.branch1 = BasicConv2d(cin, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(cin, pool_proj, kernel_size=1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    def __init__(self, cin: int, num_classes: int, width: float = 1.0, drop: float = 0.7):
        super().__init__()
        c, f = _ch(128, width), _ch(1024, width)
        self.conv = BasicConv2d(cin, c, kernel_size=1)
        self.fc1 = nn.Linear(c * 16, f)
        self.fc2 = nn.Linear(f, num_classes)
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.adaptive_avg_pool2d(x, (4, 4)))
        x = F.relu(self.fc1(torch.flatten(x, 1)), inplace=True)
        return self.fc2(F.dropout(x, self.drop, training=self.training))


def _ch(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


class GoogLeNet(InceptionForm):
    """GoogLeNet; ``imagenet=True`` gives torchvision's 224-pixel form, else the 48x48 form."""

    head_modules = ("fc", "aux1", "aux2")
    last_layer = ("fc",)
    head_keys = ("fc.", "aux1.fc2.", "aux2.fc2.")
    optional_keys = ("aux1.", "aux2.")
    first_conv_key = "conv1.conv"

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        imagenet: bool = False,
        aux_logits: bool = False,
        width: float = 1.0,
        drop: float = 0.2,
        input_size: int | None = None,
    ):
        super().__init__()
        self.set_form(imagenet, in_chans, input_size)
        self.aux_logits = aux_logits
        w = lambda c: _ch(c, width)  # noqa: E731
        if imagenet:
            self.conv1 = BasicConv2d(in_chans, w(64), kernel_size=7, stride=2, padding=3)
            self.maxpool1: nn.Module = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        else:
            self.conv1 = BasicConv2d(in_chans, w(64), kernel_size=3, stride=1, padding=1)
            self.maxpool1 = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = BasicConv2d(w(64), w(64), kernel_size=1)
        self.conv3 = BasicConv2d(w(64), w(192), kernel_size=3, padding=1)
        pool = (lambda: nn.MaxPool2d(3, stride=2, ceil_mode=True)) if imagenet else (lambda: nn.MaxPool2d(3, stride=2, padding=1))
        self.maxpool2 = pool()
        c = w(192)
        mods = {}
        for name, spec in MODULES.items():
            m = Inception(c, *(w(v) for v in spec))
            mods[name] = m
            c = m.out_channels
        self.inception3a, self.inception3b = mods["3a"], mods["3b"]
        self.maxpool3 = pool()
        self.inception4a, self.inception4b, self.inception4c = mods["4a"], mods["4b"], mods["4c"]
        self.inception4d, self.inception4e = mods["4d"], mods["4e"]
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a, self.inception5b = mods["5a"], mods["5b"]
        if aux_logits:
            self.aux1: nn.Module | None = InceptionAux(mods["4a"].out_channels, num_classes, width)
            self.aux2: nn.Module | None = InceptionAux(mods["4d"].out_channels, num_classes, width)
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(drop)
        self.fc = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):  # torchvision: truncated normal, std 0.01
                nn.init.trunc_normal_(m.weight, std=0.01, a=-0.02, b=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor):
        if self.imagenet:
            x = self.adapt_input(x)
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if (self.aux1 is not None and self.training) else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if (self.aux2 is not None and self.training) else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


@register_model("inception")
def inception(num_classes: int = 7, in_chans: int = 1, **kw) -> nn.Module:
    """GoogLeNet / Inception-v1 (9 inception modules) adapted to 48x48: 3x3/1 stem, one pool fewer."""
    return GoogLeNet(num_classes, in_chans, imagenet=False, **kw)


@register_model("inception_imagenet", input_size=224, in_chans=3)
def inception_imagenet(num_classes: int = 7, in_chans: int = 3, pretrained=None, freeze: str | None = None,
                       freeze_features: bool = False, **kw) -> nn.Module:
    """GoogLeNet at 224x224x3 with torchvision's layer names (loads googlenet-1378be20.pth)."""
    build = lambda: GoogLeNet(num_classes, in_chans, imagenet=True, **kw)  # noqa: E731
    return setup_imagenet_form(build, "inception_imagenet", pretrained, freeze, freeze_features)
