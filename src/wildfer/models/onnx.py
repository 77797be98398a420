"""ONNX export and onnxruntime inference.

``export_onnx(classifier, "model.onnx")`` writes a graph with a dynamic batch axis (input
``N x 1 x 48 x 48`` normalised, output logits) and the class names in its metadata.
``OnnxRunner`` runs it on onnxruntime; :func:`attach_onnx` (``Classifier.with_backend("onnx")``)
gives a classifier computing with it, so everything downstream (evaluate, wild, serve) uses it,
while ``.net`` stays available for gradients (saliency maps).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import ModelError, one_line
from ..jsonio import dumps
from ..paths import write_bytes_whole
from .runtime import OnnxRunner, import_onnxruntime, onnx_providers, resolve_device, session_options  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from .classifier import Classifier


def onnx_opsets() -> tuple[int, int]:
    """The lowest and highest ONNX opset this torch's exporter writes."""
    try:
        from torch.onnx import _constants
    except ImportError:  # pragma: no cover - a torch that moved them
        return 7, 20
    return int(getattr(_constants, "ONNX_MIN_OPSET", 7)), int(getattr(_constants, "ONNX_MAX_OPSET", 20))


def onnx_bytes(clf: Classifier, opset: int = 17, *, max_prelus: bool = True) -> bytes:
    """``clf``'s network as a serialised ONNX graph with its metadata; ``max_prelus``: each
    PReLU that can be is written as a maximum (:func:`prelus_as_max`)."""
    return _with_metadata(_exported(clf, clf.net.eval(), opset, max_prelus=max_prelus), clf)


def _exported(clf: Classifier, net, opset: int, *, fold: bool = True, max_prelus: bool = True):
    """``net`` (``clf``'s network, or a copy of it) exported as an ONNX ``ModelProto`` with a
    dynamic batch, from the faces :meth:`Classifier.to_tensor` gives it; ``fold``: constant
    folding, which also merges batch norms into convolutions; ``max_prelus``:
    :func:`prelus_as_max`."""
    import onnx

    views = getattr(clf, "face_views", None) or []
    if len(views) > 1:
        sizes = " and ".join(f"{v['size']} px {'grey' if v.get('grayscale') else 'colour'}" for v in views)
        raise ModelError(f"{clf.name or clf.arch} reads each face in {len(views)} crops ({sizes}), one per member; "
                         "an ONNX graph of it would need one input per crop, which wildfer's graphs do not "
                         "have: export each member instead")
    x = torch.zeros(1, clf.channels, clf.size, clf.size, device=clf.input_device)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, x, buf, dynamo=False, input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
            do_constant_folding=fold,
        )
    model = onnx.load_from_string(buf.getvalue())
    if not model.graph.input:  # the output did not depend on the input: a constant is no model
        raise ModelError(f"{clf.name or clf.arch}: the traced network does not read its input; no graph written")
    if max_prelus:
        prelus_as_max(model)
    return model


#: ops that pass a constant's values on unchanged, on the way from a PReLU's slope to its tensor
_VALUE_KEEPING = ("Cast", "Unsqueeze", "Reshape", "Identity")


def _constant_values(name: str, inits: dict, producers: dict) -> np.ndarray | None:
    """The values of tensor ``name`` when it is a constant (an initialiser of ``inits`` or a
    ``Constant`` node, through casts and reshapes; ``producers``: the node making each tensor),
    else ``None``."""
    from onnx import numpy_helper

    for _ in range(len(producers) + 1):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = producers.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            return None if value is None else numpy_helper.to_array(value)
        if node.op_type not in _VALUE_KEEPING:
            return None
        name = node.input[0]
    return None


def prelus_as_max(model) -> int:
    """Rewrite, in place, each ``PRelu`` node of an ONNX ``model`` whose slopes are constants
    of at most 1 as ``Max(x, slope * x)``, and each whose slopes are all at least 1 as
    ``Min(x, slope * x)``: the same numbers bit for bit (with a slope of at most 1, ``slope * x``
    is at most ``x`` exactly where ``x`` is not negative). With onnxruntime's CPU kernels for
    ``Mul`` and ``Max`` a MobileFaceNet takes a quarter to two fifths less time than with its
    ``PRelu`` kernel (``benchmarks/prelu_as_max.py``). A PReLU with slopes on both sides of 1, or
    slopes computed at run time, stays. Returns how many were rewritten."""
    from onnx import helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    nodes, done = [], 0
    for node in graph.node:
        slopes = _constant_values(node.input[1], inits, producers) if node.op_type == "PRelu" else None
        if slopes is None or slopes.size == 0 or not (slopes.max() <= 1 or slopes.min() >= 1):
            nodes.append(node)
            continue
        x, slope = node.input
        out, scaled = node.output[0], f"{node.output[0]}::slope_x"
        name = node.name or out
        nodes.append(helper.make_node("Mul", [x, slope], [scaled], name=f"{name}::mul"))
        nodes.append(helper.make_node("Max" if slopes.max() <= 1 else "Min", [x, scaled], [out], name=name))
        done += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return done


def _with_metadata(model, clf: Classifier, **extra: str) -> bytes:
    """``model`` serialised with ``clf``'s classes, preprocessing and architecture (what
    :class:`~wildfer.models.runtime.OnnxRunner` reads back) and ``extra`` in its metadata."""
    meta = {"classes": dumps(list(clf.classes)), "preprocess": dumps(clf.preprocess),
            "arch": clf.arch, "producer": "wildfer", **extra}
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    return model.SerializeToString()


#: the format a weights graph names in its metadata (:func:`weights_graph_bytes`)
WEIGHTS_GRAPH_FORMAT = "wildfer-weights-graph-v1"


def weights_graph_bytes(clf: Classifier, *, half: bool = True, meta: dict | None = None, opset: int = 17) -> bytes:
    """The float ONNX graph of ``clf``'s network that also carries its weights for torch: no
    batch norm is folded into a convolution, so every initialiser is one tensor of the state
    dict under its own name (a tensor the exporter shares with another is named in the
    ``state_aliases`` metadata). ``half``: weights stored as fp16 (running statistics stay
    fp32), each cast to fp32 by the graph itself, so onnxruntime computes in fp32 with exactly
    the weights torch reads back (:func:`graph_state_dict`). ``meta`` joins the metadata."""
    import onnx
    from onnx import helper, numpy_helper

    net = clf.net.eval()
    if half:  # the network computes with the weights the file will hold
        net = copy.deepcopy(net)
        with torch.no_grad():
            for k, v in net.state_dict().items():
                if v.is_floating_point() and "running_" not in k:
                    v.copy_(v.half().float())
    model = _exported(clf, net, opset, fold=False)  # every batch norm stays a tensor of its own
    state = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    inits = {t.name: t for t in model.graph.initializer}
    arrays = {name: numpy_helper.to_array(t) for name, t in inits.items()}
    aliases = {}
    for k, v in state.items():
        if k in inits:
            continue
        same = next((n for n, a in arrays.items() if a.shape == v.shape and a.dtype == v.dtype and np.array_equal(a, v)), None)
        if same is None:
            raise ModelError(f"{clf.name or clf.arch}: the ONNX export lost weight {k}; it cannot carry the weights")
        aliases[k] = same
    if half:
        casts = []
        for name, t in list(inits.items()):
            a = arrays[name]
            if a.dtype != np.float32 or "running_" in name or name not in state:
                continue
            t.CopyFrom(numpy_helper.from_array(a.astype(np.float16), name))
            cast = f"{name}::fp32"
            for node in model.graph.node:
                node.input[:] = [cast if i == name else i for i in node.input]
            casts.append(helper.make_node("Cast", [name], [cast], to=onnx.TensorProto.FLOAT, name=f"cast:{name}"))
        nodes = casts + list(model.graph.node)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return _with_metadata(model, clf, format=WEIGHTS_GRAPH_FORMAT, state_aliases=dumps(aliases),
                          metadata=dumps(meta or {}))


def graph_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state dict a weights graph (:func:`weights_graph_bytes`) carries, as numpy arrays
    (fp16 weights as they are stored: the loader casts each to its tensor's dtype)."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - a damaged file is the user's to replace
        raise ModelError(f"{path}: cannot read ONNX graph ({one_line(e)})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("format") != WEIGHTS_GRAPH_FORMAT:
        raise ModelError(f"{path}: not a wildfer weights graph (no {WEIGHTS_GRAPH_FORMAT!r} in its metadata); "
                         f"an exported graph runs with backend onnx only")
    state = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for k, same in json.loads(meta.get("state_aliases") or "{}").items():
        state[k] = state[same]
    return {k: v for k, v in state.items() if not k.startswith("onnx::")}


def export_onnx(model: Classifier, out: str | os.PathLike, opset: int = 17) -> Path:
    """Export a classifier (``load_model(name)`` gives one for a built-in name or a checkpoint)
    to an ONNX file, written whole."""
    clf = model
    if not hasattr(clf, "net"):
        raise ModelError(f"export_onnx takes a classifier, not {type(model).__name__}: load it with "
                         "wildfer.models.load_model first")
    return write_bytes_whole(out, onnx_bytes(clf, opset))


def attach_onnx(clf: Classifier, threads: int | None = None, device: str = "cpu") -> Classifier:
    """A new classifier computing ``clf``'s logits with onnxruntime (same probabilities, usually
    faster on CPU); ``clf`` is left as it was.

    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (the CUDA provider when
    onnxruntime has it, see :func:`wildfer.models.classifier.resolve_device`); the torch network,
    kept for saliency maps, is on the CPU (a copy when ``clf``'s is elsewhere)."""
    target = resolve_device(device, "onnx")
    runner = OnnxRunner(onnx_bytes(clf), threads=threads, device=target)
    net = clf.net if clf.input_device.type == "cpu" else copy.deepcopy(clf.net).to("cpu")
    return dataclasses.replace(clf, module=net, runner=runner, backend="onnx", device=target)
