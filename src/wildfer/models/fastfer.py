"""fastfer: a narrow VGG-style net designed for throughput on a CPU (thousands of faces per
second on two cores), for batch jobs and the HTTP service.

Design, measured on a 2-core AMD EPYC CPU (AVX2, ~15 G multiply-adds per second
per core in small convolutions, ``benchmarks/train_throughput.py``), where a net of M
million multiply-adds classifies at most about 30,000 / M faces per second on two cores:

* the stem convolution has stride 2 and so does the first conv of the next stage
  (48 -> 24 -> 12): full-resolution layers dominate the cost of FER nets (vggfer_small spends
  ~20 M of its 118 M multiply-adds in one 48x48 layer);
* 3x3 conv-BN-ReLU layers 16 | 32, 32 | 64, 64, 128 at 24, 12 and 6 pixels (stride-2 convs
  instead of pools), global average pooling and one linear layer: ~6.7 M multiply-adds and
  ~0.15 M parameters;
* channels-last memory layout (measured ~30 % faster than NCHW with one thread here);
* in eval mode each conv and its batch norm run as one convolution with folded weights
  (computed on the fly, so the state dict stays a plain conv + BN one and training is
  unchanged): batch norm's extra pass over memory costs as much as a narrow conv here.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import PooledLinearHead, kaiming_init_convs
from .registry import register_model


class ConvBNReLU(nn.Module):
    """3x3 conv -> BN -> ReLU; in eval mode one convolution with BN folded into it."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        return self.conv.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or not self.bn.track_running_stats:
            return F.relu(self.bn(self.conv(x)), inplace=True)
        w, b = self.folded()
        if x.is_contiguous(memory_format=torch.channels_last):
            w = w.contiguous(memory_format=torch.channels_last)
        return F.relu(F.conv2d(x, w, b, self.conv.stride, self.conv.padding), inplace=True)


class FastFer(PooledLinearHead):
    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 1,
        stem: int = 16,
        widths: tuple[int, ...] = (32, 64, 128),
        depths: tuple[int, ...] = (2, 2, 1),
        strides: tuple[int, ...] = (2, 2, 1),
        drop: float = 0.2,
        channels_last: bool = True,
    ):
        super().__init__()
        if not (len(widths) == len(depths) == len(strides)):
            raise ValueError("widths, depths and strides need one entry per stage")
        self.channels_last = channels_last
        layers: list[nn.Module] = [ConvBNReLU(in_chans, stem, stride=2)]
        c = stem
        for w, d, s in zip(widths, depths, strides):
            for j in range(d):
                layers.append(ConvBNReLU(c, w, stride=s if j == 0 else 1))
                c = w
        self.features = nn.Sequential(*layers)
        self.build_head(c, num_classes, drop)
        kaiming_init_convs(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:  # free for a 1-channel input; the layers then stay channels-last
            x = x.contiguous(memory_format=torch.channels_last)
        return self.forward_head(self.features(x))


@register_model("fastfer")
def fastfer(num_classes: int = 7, in_chans: int = 1, **kw) -> nn.Module:
    """Narrow VGG-style net with a stride-4 entry for CPU throughput (~6.7 M MACs, BN folded at eval)."""
    for k in ("widths", "depths", "strides"):
        if k in kw:
            kw[k] = tuple(kw[k])
    model = FastFer(num_classes, in_chans, **kw)
    return model.to(memory_format=torch.channels_last) if model.channels_last else model
