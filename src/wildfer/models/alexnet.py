"""AlexNet (Krizhevsky, Sutskever & Hinton 2012): five convolutions and three fully connected
layers, ReLU, overlapping 3x3 / stride 2 max pools, dropout 0.5 before each hidden FC layer.

Layer names and channel counts follow torchvision's ``alexnet`` (64, 192, 384, 256, 256; the
single-GPU "one weird trick" variant), so ``alexnet_imagenet`` loads ``alexnet-owt-7be5be79.pth``.

Adapted to 48x48 grayscale (``alexnet``):

* conv1 is 5x5 / stride 2 (instead of 11x11 / stride 4 on 224 pixels): a 48-pixel face keeps
  24x24 positions after it, as the original keeps 55 of 224;
* the three overlapping 3x3 / stride 2 pools are kept, padded by 1, so the maps go
  48 -> 24 (conv1) -> 12 -> 6 -> 3, the same four halvings the original makes (55 -> 27 -> 13 -> 6);
* no adaptive 6x6 average pool: the classifier sees the 256 x 3 x 3 map directly;
* optional local response normalisation after conv1 and conv2 (``lrn=True``) as in the paper
  (torchvision drops it; it is off by default);
* ``width`` scales every channel count and ``fc`` the hidden FC width (4096) for CPU budgets.
"""

from __future__ import annotations

import torch.nn as nn

from .pretrained import FeaturesClassifierForm, setup_imagenet_form
from .registry import register_model


def _ch(c: int, width: float) -> int:
    return max(8, int(round(c * width)))


class AlexNet(FeaturesClassifierForm):
    """AlexNet; ``imagenet=True`` gives torchvision's 224-pixel form, else the 48x48 form."""

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        imagenet: bool = False,
        width: float = 1.0,
        fc: int = 4096,
        drop: float = 0.5,
        lrn: bool = False,
        input_size: int | None = None,
    ):
        super().__init__()
        self.set_form(imagenet, in_chans, input_size)
        c1, c2, c3, c4, c5 = (_ch(c, width) for c in (64, 192, 384, 256, 256))
        if imagenet:
            conv1 = nn.Conv2d(in_chans, c1, kernel_size=11, stride=4, padding=2)
            pool = dict(kernel_size=3, stride=2)
        else:
            conv1 = nn.Conv2d(in_chans, c1, kernel_size=5, stride=2, padding=2)
            pool = dict(kernel_size=3, stride=2, padding=1)
        norm = (lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)) if lrn else (lambda: nn.Identity())
        # indices 0, 3, 6, 8, 10 hold the convolutions, as in torchvision (LRN rides in the
        # ReLU slots so the keys do not move)
        self.features = nn.Sequential(
            conv1, nn.Sequential(nn.ReLU(inplace=True), norm()), nn.MaxPool2d(**pool),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2), nn.Sequential(nn.ReLU(inplace=True), norm()), nn.MaxPool2d(**pool),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(**pool),
        )
        if imagenet:
            self.avgpool: nn.Module = nn.AdaptiveAvgPool2d((6, 6))
            side = 6
        else:
            self.avgpool = nn.Identity()
            side = _out_side(self.input_px)
        self.classifier = nn.Sequential(
            nn.Dropout(drop), nn.Linear(c5 * side * side, fc), nn.ReLU(inplace=True),
            nn.Dropout(drop), nn.Linear(fc, fc), nn.ReLU(inplace=True),
            nn.Linear(fc, num_classes),
        )
        self.init_weights()


def _out_side(n: int) -> int:
    """Side of the last map of the 48x48 form: conv1 /2, then three padded 3/2 pools."""
    n = (n + 2 * 2 - 5) // 2 + 1
    for _ in range(3):
        n = (n + 2 - 3) // 2 + 1
    return n


@register_model("alexnet")
def alexnet(num_classes: int = 7, in_chans: int = 1, **kw) -> nn.Module:
    """AlexNet (5 conv + 3 FC) adapted to 48x48 grayscale: 5x5/2 conv1, padded 3/2 pools."""
    return AlexNet(num_classes, in_chans, imagenet=False, **kw)


@register_model("alexnet_imagenet", input_size=224, in_chans=3)
def alexnet_imagenet(num_classes: int = 7, in_chans: int = 3, pretrained=None, freeze: str | None = None,
                     freeze_features: bool = False, **kw) -> nn.Module:
    """AlexNet at 224x224x3 with torchvision's layer names (loads alexnet-owt-7be5be79.pth)."""
    build = lambda: AlexNet(num_classes, in_chans, imagenet=True, **kw)  # noqa: E731
    return setup_imagenet_form(build, "alexnet_imagenet", pretrained, freeze, freeze_features)
