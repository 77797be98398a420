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
from .runtime import import_onnxruntime, onnx_providers, resolve_device, session_options  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from .classifier import Classifier


def onnx_opsets() -> tuple[int, int]:
    """The lowest and highest ONNX opset this torch's exporter writes."""
    try:
        from torch.onnx import _constants
    except ImportError:  # pragma: no cover - a torch that moved them
        return 7, 20
    return int(getattr(_constants, "ONNX_MIN_OPSET", 7)), int(getattr(_constants, "ONNX_MAX_OPSET", 20))


def onnx_bytes(clf: Classifier, opset: int = 17) -> bytes:
    net = clf.net.eval()
    x = torch.zeros(1, clf.channels, clf.size, clf.size, device=clf.input_device)  # the faces to_tensor gives it
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, x, buf, dynamo=False, input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
        )
    import onnx

    model = onnx.load_from_string(buf.getvalue())
    meta = {"classes": dumps(list(clf.classes)), "preprocess": dumps(clf.preprocess),
            "arch": clf.arch, "producer": "wildfer"}
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    return model.SerializeToString()


def export_onnx(model: Classifier, out: str | os.PathLike, opset: int = 17) -> Path:
    """Export a classifier (``load_model(name)`` gives one for a built-in name or a checkpoint)
    to an ONNX file, written whole."""
    clf = model
    if not hasattr(clf, "net"):
        raise ModelError(f"export_onnx takes a classifier, not {type(model).__name__}: load it with "
                         "wildfer.models.load_model first")
    return write_bytes_whole(out, onnx_bytes(clf, opset))


class OnnxRunner:
    """Logits from an ONNX model on onnxruntime: its CPU provider, or its CUDA provider for
    ``device="cuda:N"`` (a :class:`ModelError` when that provider cannot start here)."""

    def __init__(self, model: bytes | str | os.PathLike, threads: int | None = None, device: str = "cpu",
                 spin: bool = True):
        ort = import_onnxruntime()
        so = session_options(threads, spin)
        src = model if isinstance(model, bytes) else str(model)
        shown = model if not isinstance(model, bytes) else "<onnx>"
        self.threads, self.device = threads, device
        try:
            self.session = ort.InferenceSession(src, sess_options=so, providers=onnx_providers(device))
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"{shown}: cannot load ONNX model ({one_line(e)})") from None
        if device.startswith("cuda") and "CUDAExecutionProvider" not in self.session.get_providers():
            # onnxruntime falls back to the CPU when the CUDA provider's libraries do not load
            raise ModelError(f"device {device!r}: onnxruntime's CUDAExecutionProvider did not start here (CUDA or "
                             f"cuDNN libraries missing?); use cpu or auto")
        self.input_name = self.session.get_inputs()[0].name
        meta = self.session.get_modelmeta().custom_metadata_map
        self.classes = tuple(json.loads(meta["classes"])) if "classes" in meta else None
        self.preprocess = json.loads(meta["preprocess"]) if "preprocess" in meta else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def attach_onnx(clf: Classifier, threads: int | None = None, device: str = "cpu") -> Classifier:
    """A new classifier computing ``clf``'s logits with onnxruntime (same probabilities, usually
    faster on CPU); ``clf`` is left as it was.

    ``device``: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (the CUDA provider when
    onnxruntime has it, see :func:`wildfer.models.classifier.resolve_device`); the torch network,
    kept for saliency maps, is on the CPU (a copy when ``clf``'s is elsewhere)."""
    target = resolve_device(device, "onnx")
    runner = OnnxRunner(onnx_bytes(clf), threads=threads, device=target)
    net = clf.net if clf.input_device.type == "cpu" else copy.deepcopy(clf.net).to("cpu")
    return dataclasses.replace(clf, net=net, runner=runner, backend="onnx", device=target)
