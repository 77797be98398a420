"""Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke & Alemi 2017): a convolutional stem, an
inception module (``mixed_5b``), residual inception blocks A (``Block35``, x10), reduction A
(``mixed_6a``), blocks B (``Block17`` with 1x7 / 7x1 factorised convs, x20), reduction B
(``mixed_7a``), blocks C (``Block8``, x10, the last without ReLU), a 1x1 conv to 1536
channels, global average pooling, dropout and a linear classifier. Each residual block adds
its scaled (0.17 / 0.10 / 0.20) branch output to its input.

torchvision has no Inception-ResNet; names follow timm's ``inception_resnet_v2`` (the port
of Google's TensorFlow weights), so ``inception_resnet_imagenet`` (299x299x3) loads
``inception_resnet_v2-940b1cd6.pth`` (Cadene's ``last_linear`` head name is accepted too).

Adapted to 48x48 grayscale (``inception_resnet``): the original's unpadded ("valid") stem
takes 299 pixels to 35 before block A. Here every convolution and pool is padded, and the
first conv has stride 1, so the maps go 48 (stem) -> 24 -> 12 (blocks A) -> 6 (blocks B) ->
3 (blocks C): block A to C see the same 4x / 2x / 1x relation as in the original (35 / 17 / 8).
``repeats`` (default v2's 10, 20, 10) and ``width`` (scales every channel count) shrink it for
CPU budgets; the parameter shapes and names are the same in both forms.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .pretrained import InceptionForm, setup_imagenet_form
from .registry import register_model


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size, stride: int = 1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Mixed5b(nn.Module):
    """Inception-A-like module before the residual blocks: 96 + 64 + 96 + 64 channels."""

    def __init__(self, cin: int, w):
        super().__init__()
        self.branch0 = BasicConv2d(cin, w(96), 1)
        self.branch1 = nn.Sequential(BasicConv2d(cin, w(48), 1), BasicConv2d(w(48), w(64), 5, padding=2))
        self.branch2 = nn.Sequential(BasicConv2d(cin, w(64), 1), BasicConv2d(w(64), w(96), 3, padding=1),
                                     BasicConv2d(w(96), w(96), 3, padding=1))
        self.branch3 = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
                                     BasicConv2d(cin, w(64), 1))
        self.out_channels = w(96) + w(64) + w(96) + w(64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class Block35(nn.Module):
    """Residual block A (35x35 grid in the original)."""

    def __init__(self, c: int, w, scale: float = 0.17):
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(c, w(32), 1)
        self.branch1 = nn.Sequential(BasicConv2d(c, w(32), 1), BasicConv2d(w(32), w(32), 3, padding=1))
        self.branch2 = nn.Sequential(BasicConv2d(c, w(32), 1), BasicConv2d(w(32), w(48), 3, padding=1),
                                     BasicConv2d(w(48), w(64), 3, padding=1))
        self.conv2d = nn.Conv2d(w(32) + w(32) + w(64), c, 1)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1))
        return self.relu(out * self.scale + x)


class Mixed6a(nn.Module):
    """Reduction A: 3x3/2 conv, 1x1 -> 3x3 -> 3x3/2 conv, 3x3/2 max pool (concatenated)."""

    def __init__(self, cin: int, w, pad: int):
        super().__init__()
        self.branch0 = BasicConv2d(cin, w(384), 3, stride=2, padding=pad)
        self.branch1 = nn.Sequential(BasicConv2d(cin, w(256), 1), BasicConv2d(w(256), w(256), 3, padding=1),
                                     BasicConv2d(w(256), w(384), 3, stride=2, padding=pad))
        self.branch2 = nn.MaxPool2d(3, stride=2, padding=pad)
        self.out_channels = w(384) + w(384) + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class Block17(nn.Module):
    """Residual block B (17x17 grid in the original), with 1x7 and 7x1 convs."""

    def __init__(self, c: int, w, scale: float = 0.10):
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(c, w(192), 1)
        self.branch1 = nn.Sequential(BasicConv2d(c, w(128), 1),
                                     BasicConv2d(w(128), w(160), (1, 7), padding=(0, 3)),
                                     BasicConv2d(w(160), w(192), (7, 1), padding=(3, 0)))
        self.conv2d = nn.Conv2d(w(192) + w(192), c, 1)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat([self.branch0(x), self.branch1(x)], 1))
        return self.relu(out * self.scale + x)


class Mixed7a(nn.Module):
    """Reduction B: three conv branches ending in a 3x3/2 conv, plus a 3x3/2 max pool."""

    def __init__(self, cin: int, w, pad: int):
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(cin, w(256), 1), BasicConv2d(w(256), w(384), 3, stride=2, padding=pad))
        self.branch1 = nn.Sequential(BasicConv2d(cin, w(256), 1), BasicConv2d(w(256), w(288), 3, stride=2, padding=pad))
        self.branch2 = nn.Sequential(BasicConv2d(cin, w(256), 1), BasicConv2d(w(256), w(288), 3, padding=1),
                                     BasicConv2d(w(288), w(320), 3, stride=2, padding=pad))
        self.branch3 = nn.MaxPool2d(3, stride=2, padding=pad)
        self.out_channels = w(384) + w(288) + w(320) + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class Block8(nn.Module):
    """Residual block C (8x8 grid in the original), with 1x3 and 3x1 convs."""

    def __init__(self, c: int, w, scale: float = 0.20, no_relu: bool = False):
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(c, w(192), 1)
        self.branch1 = nn.Sequential(BasicConv2d(c, w(192), 1),
                                     BasicConv2d(w(192), w(224), (1, 3), padding=(0, 1)),
                                     BasicConv2d(w(224), w(256), (3, 1), padding=(1, 0)))
        self.conv2d = nn.Conv2d(w(192) + w(256), c, 1)
        self.relu = None if no_relu else nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2d(torch.cat([self.branch0(x), self.branch1(x)], 1))
        out = out * self.scale + x
        return self.relu(out) if self.relu is not None else out


class InceptionResNetV2(InceptionForm):
    """Inception-ResNet-v2; ``imagenet=True`` gives the 299-pixel form, else the 48x48 form."""

    head_modules = ("classif",)
    last_layer = ("classif",)
    head_keys = ("classif.",)
    first_conv_key = "conv2d_1a.conv"
    weight_key_aliases = {"last_linear": "classif"}

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        imagenet: bool = False,
        repeats: tuple[int, int, int] = (10, 20, 10),
        width: float = 1.0,
        drop: float = 0.2,
        input_size: int | None = None,
    ):
        super().__init__()
        if len(repeats) != 3 or min(repeats) < 1:
            raise ValueError(f"repeats must be three counts >= 1 (blocks A, B, C), got {repeats!r}")
        self.set_form(imagenet, in_chans, input_size, imagenet_px=299)
        w = lambda c: max(4, int(round(c * width)))  # noqa: E731
        p = 0 if imagenet else 1  # the original's "valid" convs and pools vs padded ones
        self.conv2d_1a = BasicConv2d(in_chans, w(32), 3, stride=2 if imagenet else 1, padding=p)
        self.conv2d_2a = BasicConv2d(w(32), w(32), 3, padding=p)
        self.conv2d_2b = BasicConv2d(w(32), w(64), 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2, padding=p)
        self.conv2d_3b = BasicConv2d(w(64), w(80), 1)
        self.conv2d_4a = BasicConv2d(w(80), w(192), 3, padding=p)
        self.maxpool_5a = nn.MaxPool2d(3, stride=2, padding=p)
        self.mixed_5b = Mixed5b(w(192), w)
        c = self.mixed_5b.out_channels
        self.repeat = nn.Sequential(*[Block35(c, w, 0.17) for _ in range(repeats[0])])
        self.mixed_6a = Mixed6a(c, w, p)
        c = self.mixed_6a.out_channels
        self.repeat_1 = nn.Sequential(*[Block17(c, w, 0.10) for _ in range(repeats[1])])
        self.mixed_7a = Mixed7a(c, w, p)
        c = self.mixed_7a.out_channels
        self.repeat_2 = nn.Sequential(*[Block8(c, w, 0.20) for _ in range(repeats[2] - 1)])
        self.block8 = Block8(c, w, no_relu=True)
        self.num_features = w(1536)
        self.conv2d_7b = BasicConv2d(c, self.num_features, 1)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(drop)
        self.classif = nn.Linear(self.num_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2d_2b(self.conv2d_2a(self.conv2d_1a(x)))
        x = self.conv2d_4a(self.conv2d_3b(self.maxpool_3a(x)))
        x = self.repeat(self.mixed_5b(self.maxpool_5a(x)))
        x = self.repeat_1(self.mixed_6a(x))
        x = self.block8(self.repeat_2(self.mixed_7a(x)))
        return self.conv2d_7b(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.imagenet:
            x = self.adapt_input(x)
        x = torch.flatten(self.global_pool(self.forward_features(x)), 1)
        return self.classif(self.head_drop(x))


def _repeats(kw: dict) -> None:
    if "repeats" in kw:
        kw["repeats"] = tuple(int(r) for r in kw["repeats"])


@register_model("inception_resnet")
def inception_resnet(num_classes: int = 7, in_chans: int = 1, **kw) -> nn.Module:
    """Inception-ResNet-v2 (blocks A/B/C, reductions A/B) adapted to 48x48: padded stride-1 stem."""
    _repeats(kw)
    return InceptionResNetV2(num_classes, in_chans, imagenet=False, **kw)


@register_model("inception_resnet_imagenet", input_size=299, in_chans=3)
def inception_resnet_imagenet(num_classes: int = 7, in_chans: int = 3, pretrained=None, freeze: str | None = None,
                              freeze_features: bool = False, **kw) -> nn.Module:
    """Inception-ResNet-v2 at 299x299x3 with timm's layer names (loads inception_resnet_v2-940b1cd6.pth)."""
    _repeats(kw)
    build = lambda: InceptionResNetV2(num_classes, in_chans, imagenet=True, **kw)  # noqa: E731
    return setup_imagenet_form(build, "inception_resnet_imagenet", pretrained, freeze, freeze_features)
