"""Float PyTorch weights from a quantised ONNX graph: the OpenCV model zoo's int8
MobileFaceNet (``facial_expression_recognition_mobilefacenet_2022july_int8.onnx``) into
:class:`~wildfer.models.mobilefacenet.MobileFaceNet`.

Every quantised tensor is dequantised the way onnxruntime reads it: a weight is
``(q - zero_point) * scale`` (per tensor or per output channel), a convolution's int32 bias is
``q * input_scale * weight_scale``, and the classifier's bias ``(q - zero_point) * scale``.
Batch norms are already folded into the convolutions, which is why the PyTorch net has
biased convolutions and no batch norm. Convolutions and PReLUs are matched in graph order,
which is the network's forward order; a graph of another shape is a :class:`ModelError`.

The result differs from the int8 graph by its rounding only: the graph also rounds every
activation to 8 bits, the float net does not (``tests/test_models_convert.py`` measures it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError
from .mobilefacenet import PREPROCESS, MobileFaceNet

#: the zoo model's classes, in its output order (not FER2013's)
ZOO_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

#: the zoo model's faces: those MobileFaceNet declares (112 x 112 RGB on the five-point
#: template, (x / 255 - 0.5) / 0.5)
ZOO_PREPROCESS = dict(PREPROCESS)


def _per_channel(a: np.ndarray, ndim: int) -> np.ndarray:
    """A scale or zero point, per tensor (scalar) or per output channel, broadcastable over a weight."""
    a = np.asarray(a, dtype=np.float64)
    return a if a.ndim == 0 else a.reshape((-1,) + (1,) * (ndim - 1))


def read_onnx_tensors(path: str | Path):
    """``(nodes, initialisers)`` of an ONNX file, initialisers as numpy arrays; an unreadable
    file is a :class:`ModelError` naming it."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:  # pragma: no cover - onnx comes with the onnx extra and the test extra
        raise ModelError("converting an ONNX graph needs the onnx package: pip install onnx") from None
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError and others for a file that is not a graph
        raise ModelError(f"{path}: not an ONNX graph ({type(e).__name__})") from None
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return list(model.graph.node), inits


def dequantised_layers(path: str | Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray],
                                                  tuple[np.ndarray, np.ndarray]]:
    """The float ``(weight, bias)`` of every convolution, every PReLU slope, and the final
    ``(weight, bias)`` of the classifier (``classes x features``), in graph order."""
    nodes, t = read_onnx_tensors(path)
    convs, slopes, fc_w, fc_b = [], [], None, None
    try:
        for n in nodes:
            if n.op_type == "QLinearConv":
                x_scale, w_q, w_scale, w_zp = t[n.input[1]], t[n.input[3]], t[n.input[4]], t[n.input[5]]
                nd = w_q.ndim
                w = (w_q.astype(np.float64) - _per_channel(w_zp, nd)) * _per_channel(w_scale, nd)
                b = (t[n.input[8]].astype(np.float64) * float(x_scale) * np.asarray(w_scale, dtype=np.float64)
                     if len(n.input) > 8 else np.zeros(w.shape[0]))
                convs.append((w, b))
            elif n.op_type == "Conv":
                w = t[n.input[1]].astype(np.float64)
                convs.append((w, t[n.input[2]].astype(np.float64) if len(n.input) > 2 else np.zeros(w.shape[0])))
            elif n.op_type == "PRelu":
                slopes.append(t[n.input[1]].astype(np.float64).reshape(-1))
            elif n.op_type == "QLinearMatMul":
                w_q, w_scale, w_zp = t[n.input[3]], t[n.input[4]], t[n.input[5]]
                fc_w = ((w_q.astype(np.float64) - float(w_zp)) * float(w_scale)).T
            elif n.op_type == "QLinearAdd" and fc_w is not None and fc_b is None:
                # the classifier's bias: the add right after the matmul, its second operand a constant
                b_q, b_scale, b_zp = t[n.input[3]], t[n.input[4]], t[n.input[5]]
                fc_b = (b_q.astype(np.float64) - float(b_zp)) * float(b_scale)
    except KeyError as e:
        raise ModelError(f"{path}: not a quantised MobileFaceNet graph (no tensor {e})") from None
    if fc_w is None or fc_b is None:
        raise ModelError(f"{path}: not a quantised MobileFaceNet graph (no classifier matmul + bias)")
    return convs, slopes, (fc_w, fc_b)


def mobilefacenet_from_onnx(path: str | Path) -> tuple[MobileFaceNet, tuple[str, ...]]:
    """A float :class:`MobileFaceNet` with the dequantised weights of the zoo graph at ``path``,
    and its classes (:data:`ZOO_CLASSES`, the zoo's output order)."""
    convs, slopes, (fc_w, fc_b) = dequantised_layers(path)
    net = MobileFaceNet(num_classes=fc_w.shape[0], in_chans=3)
    net.wildfer_name, net.input_size, net.in_chans = "mobilefacenet", 112, 3  # as create_model names a net
    conv_mods = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    prelu_mods = [m for m in net.modules() if isinstance(m, torch.nn.PReLU)]
    if len(convs) != len(conv_mods) or len(slopes) != len(prelu_mods):
        raise ModelError(f"{path}: not the zoo's MobileFaceNet ({len(convs)} convolutions and {len(slopes)} PReLUs; "
                         f"expected {len(conv_mods)} and {len(prelu_mods)})")
    with torch.no_grad():
        for m, (w, b) in zip(conv_mods, convs):
            if tuple(m.weight.shape) != w.shape:
                raise ModelError(f"{path}: a convolution of shape {w.shape} where MobileFaceNet has "
                                 f"{tuple(m.weight.shape)}")
            m.weight.copy_(torch.from_numpy(w))
            m.bias.copy_(torch.from_numpy(b))
        for m, s in zip(prelu_mods, slopes):
            if m.weight.shape[0] != s.shape[0]:
                raise ModelError(f"{path}: a PReLU of {s.shape[0]} channels where MobileFaceNet has {m.weight.shape[0]}")
            m.weight.copy_(torch.from_numpy(s))
        if tuple(net.fc.weight.shape) != fc_w.shape:
            raise ModelError(f"{path}: a classifier of shape {fc_w.shape}, not {tuple(net.fc.weight.shape)}")
        net.fc.weight.copy_(torch.from_numpy(fc_w))
        net.fc.bias.copy_(torch.from_numpy(fc_b))
    return net.eval(), ZOO_CLASSES
