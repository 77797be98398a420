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
activation to 8 bits, the float net does not. :func:`round_like_graph` makes the float net
compute as the graph does (integer convolutions, onnxruntime's x86 residual adds), which gives
the graph's logits exactly (``tests/test_models_convert.py``, ``benchmarks/convert_agreement.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

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
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("producer") == "wildfer":  # wildfer's own graph, not the zoo's
        if meta.get("format"):
            raise ModelError(f"{path}: a weights graph needs its {path.stem}.json beside it")
        raise ModelError(f"{path}: a graph written by 'wildfer export', to run on onnxruntime as it is (its input "
                         "and classes are in its metadata); --model and load_model read a weights graph (a .onnx "
                         "with its .json beside it) or the OpenCV zoo's int8 MobileFaceNet")
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


def activation_grids(path: str | Path) -> dict[str, list]:
    """The 8-bit grids ``(scale, zero_point)`` on which the graph at ``path`` rounds its
    activations, in graph order: ``input``, after each convolution (``convs``; a quantised one
    adds its input and weight scales), each PReLU
    (``prelus``, ``None`` where the graph keeps the value in float), each residual add
    (``adds``: the output's grid, then the shortcut's and the block's), and the classifier's input,
    product and output (``fc``)."""
    nodes, t = read_onnx_tensors(path)
    quantize_of = {n.input[0]: (t[n.input[1]], t[n.input[2]]) for n in nodes if n.op_type == "QuantizeLinear"}
    grids: dict[str, list] = {"input": [], "convs": [], "prelus": [], "adds": [], "fc": []}
    for n in nodes:
        if n.op_type == "QLinearConv":
            if not grids["input"]:
                grids["input"].append((t[n.input[1]], t[n.input[2]]))
            grids["convs"].append((t[n.input[6]], t[n.input[7]], t[n.input[1]], t[n.input[4]]))
        elif n.op_type == "Conv":
            grids["convs"].append(quantize_of.get(n.output[0]))
        elif n.op_type == "PRelu":
            grids["prelus"].append(quantize_of.get(n.output[0]))
        elif n.op_type == "QLinearMatMul":
            grids["fc"] = [(t[n.input[1]], t[n.input[2]]), (t[n.input[6]], t[n.input[7]])]
        elif n.op_type == "QLinearAdd":
            if len(grids["fc"]) == 2:
                grids["fc"].append((t[n.input[6]], t[n.input[7]]))
            else:
                grids["adds"].append(tuple(t[n.input[i]] for i in (6, 7, 1, 2, 4, 5)))
    return grids


def _round_to(x: torch.Tensor, grid) -> torch.Tensor:
    """``x`` rounded onto an 8-bit grid as ONNX QuantizeLinear + DequantizeLinear do it."""
    if grid is None:
        return x
    scale, zp = grid[:2]
    lo, hi = (0, 255) if np.asarray(zp).dtype == np.uint8 else (-128, 127)
    scale, zp = float(scale), float(zp)
    return (torch.clamp(torch.round(x / scale) + zp, lo, hi) - zp) * scale


def _integer_conv(m: torch.nn.Conv2d, x: torch.Tensor, grid) -> torch.Tensor:
    """A convolution as QLinearConv computes it: integer products and sums (exact in float32
    at these sizes), the int32 bias, then one float32 rescale onto the output grid."""
    y_scale, y_zp, x_scale, w_scale = grid
    sx, sw = np.float32(x_scale), np.asarray(w_scale, dtype=np.float32)
    w_step = torch.from_numpy(sw.reshape(-1, 1, 1, 1) if sw.ndim else sw.reshape(1, 1, 1, 1))
    b_step = torch.from_numpy((sx * sw).reshape(-1) if sw.ndim else (sx * sw).reshape(1))
    qx = torch.round(x / float(sx))
    acc = F.conv2d(qx, torch.round(m.weight / w_step), torch.round(m.bias / b_step), m.stride, m.padding,
                   m.dilation, m.groups)
    multiplier = torch.from_numpy(np.asarray(sx * sw / np.float32(y_scale), dtype=np.float32))
    lo, hi = (0, 255) if np.asarray(y_zp).dtype == np.uint8 else (-128, 127)
    q = torch.clamp(torch.round(acc * multiplier.reshape(-1, 1, 1) if multiplier.ndim else acc * multiplier)
                    + float(y_zp), lo, hi)
    return (q - float(y_zp)) * float(y_scale)


def _qlinear_add(a: torch.Tensor, b: torch.Tensor, grid) -> torch.Tensor:
    """A residual add as onnxruntime's QLinearAdd computes it on x86 (its AVX2 kernel): both
    inputs' 8-bit integers scaled onto the output grid in float32 by fused multiply-adds, then
    rounded to even. Adding the dequantised values instead is a step off for some input pairs,
    and those steps compound over the later layers."""
    c_scale, c_zp, a_scale, a_zp, b_scale, b_zp = grid
    f32 = np.float32
    ratio_a, ratio_b = f32(f32(a_scale) / f32(c_scale)), f32(f32(b_scale) / f32(c_scale))
    fixed = f32(f32(int(c_zp)) - f32(f32(ratio_a * f32(int(a_zp))) + f32(ratio_b * f32(int(b_zp)))))
    qa = torch.round(a / float(a_scale)).double() + int(a_zp)
    qb = torch.round(b / float(b_scale)).double() + int(b_zp)
    # float64 holds each product and sum exactly, so one cast to float32 rounds as a fused multiply-add does
    partial = (qb * float(ratio_b) + float(fixed)).float().double()
    value = (qa * float(ratio_a) + partial).float()
    lo, hi = (0, 255) if np.asarray(c_zp).dtype == np.uint8 else (-128, 127)
    return (torch.clamp(torch.round(value), lo, hi) - int(c_zp)) * float(c_scale)


def round_like_graph(net: MobileFaceNet, path: str | Path) -> list:
    """Hooks that make ``net`` compute as the int8 graph at ``path`` does (its activations on
    the graph's 8-bit grids, integer convolutions, onnxruntime's x86 residual adds), so its
    outputs can be compared with the graph's exactly (the conversion's check).
    Returns the hook handles: ``for h in handles: h.remove()`` undoes it."""
    g = activation_grids(path)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    prelus = [m for m in net.modules() if isinstance(m, torch.nn.PReLU)]
    adds = [m for m in net.modules() if getattr(m, "residual", False)]
    if (len(convs), len(prelus), len(adds), len(g["fc"])) != (len(g["convs"]), len(g["prelus"]), len(g["adds"]), 3):
        raise ModelError(f"{path}: its activation grids do not match MobileFaceNet's layers")
    handles = [convs[0].register_forward_pre_hook(lambda m, a: (_round_to(a[0], g["input"][0]),))]
    for m, grid in zip(convs, g["convs"]):
        if grid is not None and len(grid) == 4:  # quantised: integer arithmetic
            handles.append(m.register_forward_hook(lambda m, a, out, grid=grid: _integer_conv(m, a[0], grid)))
        else:
            handles.append(m.register_forward_hook(lambda m, a, out, grid=grid: _round_to(out, grid)))
    for m, grid in zip(prelus, g["prelus"]):
        handles.append(m.register_forward_hook(lambda m, a, out, grid=grid: _round_to(out, grid)))
    for m, grid in zip(adds, g["adds"]):
        block: dict[str, torch.Tensor] = {}  # the block's rounded output, kept for the add
        handles.append(m.conv[-1].register_forward_hook(lambda m, a, out, block=block: block.update(y=out)))
        handles.append(m.register_forward_hook(
            lambda m, a, out, grid=grid, block=block: _qlinear_add(a[0], block.pop("y"), grid)))
    fc_in, fc_mm, fc_out = g["fc"]

    def fc_rounded(m, a, out):
        product = _round_to(_round_to(a[0], fc_in) @ m.weight.T, fc_mm)
        return _round_to(product + m.bias, fc_out)

    handles.append(net.fc.register_forward_hook(fc_rounded))
    return handles
