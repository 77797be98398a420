"""VGG-16 (Simonyan & Zisserman 2015, configuration D): thirteen 3x3 convolutions in five
blocks (64, 64 | 128, 128 | 256 x 3 | 512 x 3 | 512 x 3), a 2x2 max pool after each block,
then three fully connected layers (4096, 4096, classes) with dropout; batch norm optional.

Layer names follow torchvision's ``vgg16`` / ``vgg16_bn`` (``features.N``, ``classifier.0/3/6``),
so ``vgg16_imagenet`` loads ``vgg16-397923af.pth`` and ``vgg16_bn_imagenet``
``vgg16_bn-6c64b313.pth``. With ``freeze="features"`` only the three FC layers train: the
study's baseline "pretrained VGG-16, fine-tune only the last fully connected layers".

Adapted to 48x48 grayscale (``vgg16``):

* the five pools would take 48 pixels to 1.5; the fifth pool is dropped, so blocks run at
  48, 24, 12, 6 and 3 pixels and the classifier sees 512 x 3 x 3 (no 7x7 adaptive pool);
* batch norm after every convolution by default (``bn=True``): configuration D trained from
  scratch without it needs the paper's staged initialisation;
* ``width`` scales the conv channels and ``fc`` the FC width, for CPU budgets.
"""

from __future__ import annotations

import torch.nn as nn

from .pretrained import FeaturesClassifierForm, setup_imagenet_form
from .registry import register_model

#: configuration D; "M" is a 2x2 max pool.
CFG_D: tuple = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(FeaturesClassifierForm):
    """VGG-16; ``imagenet=True`` gives torchvision's 224-pixel form, else the 48x48 form."""

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        imagenet: bool = False,
        bn: bool = True,
        width: float = 1.0,
        fc: int = 4096,
        drop: float = 0.5,
        input_size: int | None = None,
    ):
        super().__init__()
        self.set_form(imagenet, in_chans, input_size)
        cfg = list(CFG_D) if imagenet else list(CFG_D[:-1])  # 48x48: no fifth pool
        layers: list[nn.Module] = []
        c = in_chans
        pools = 0
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                pools += 1
                continue
            w = max(8, int(round(v * width)))
            layers.append(nn.Conv2d(c, w, kernel_size=3, padding=1))
            if bn:
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.ReLU(inplace=True))
            c = w
        self.features = nn.Sequential(*layers)
        if imagenet:
            self.avgpool: nn.Module = nn.AdaptiveAvgPool2d((7, 7))
            side = 7
        else:
            self.avgpool = nn.Identity()
            side = self.input_px // 2**pools
        self.classifier = nn.Sequential(
            nn.Linear(c * side * side, fc), nn.ReLU(inplace=True), nn.Dropout(drop),
            nn.Linear(fc, fc), nn.ReLU(inplace=True), nn.Dropout(drop),
            nn.Linear(fc, num_classes),
        )
        self.init_weights()


@register_model("vgg16")
def vgg16(num_classes: int = 7, in_chans: int = 1, **kw) -> nn.Module:
    """VGG-16 (13 conv + 3 FC, config D, BN) adapted to 48x48 grayscale: no fifth pool."""
    return VGG16(num_classes, in_chans, imagenet=False, **kw)


@register_model("vgg16_imagenet", input_size=224, in_chans=3)
def vgg16_imagenet(num_classes: int = 7, in_chans: int = 3, pretrained=None, freeze: str | None = None,
                   freeze_features: bool = False, **kw) -> nn.Module:
    """VGG-16 at 224x224x3 with torchvision's layer names (loads vgg16-397923af.pth)."""
    kw.setdefault("bn", False)
    build = lambda: VGG16(num_classes, in_chans, imagenet=True, **kw)  # noqa: E731
    return setup_imagenet_form(build, "vgg16_imagenet", pretrained, freeze, freeze_features)


@register_model("vgg16_bn_imagenet", input_size=224, in_chans=3)
def vgg16_bn_imagenet(num_classes: int = 7, in_chans: int = 3, pretrained=None, freeze: str | None = None,
                      freeze_features: bool = False, **kw) -> nn.Module:
    """VGG-16 with batch norm at 224x224x3, torchvision's names (loads vgg16_bn-6c64b313.pth)."""
    kw.setdefault("bn", True)
    build = lambda: VGG16(num_classes, in_chans, imagenet=True, **kw)  # noqa: E731
    return setup_imagenet_form(build, "vgg16_bn_imagenet", pretrained, freeze, freeze_features)
