"""int8 classifiers: static QDQ quantisation on onnxruntime, and the ``int8`` backend.

A classifier's ONNX export is quantised once with calibration faces (weights per channel to
int8, activations to uint8 with percentile ranges), and onnxruntime then runs its
convolutions with integer kernels (VNNI on CPUs that have it). Depthwise convolutions
(one filter per channel, as in MobileFaceNet) stay in float: each output there rests on nine
weights, too few for int8 rounding to average out, and they are a small share of the
multiply-adds (:func:`depthwise_convs`)::

    wildfer export wild --int8 --calibrate $WILDFER_DATA/fer2013/fer2013.csv.gz --onnx wild.int8.onnx

The built-ins whose int8 graph ships (``weights/<name>.int8.onnx``) run it with
``load_model(name, backend="int8")`` or ``clf.with_backend("int8")``; a checkpoint or
``.safetensors`` file finds its graph beside it (``<file>.int8.onnx``). A graph is shipped
only where it keeps FER2013 PublicTest within half a point of the float model
(``benchmarks/results/int8.json``).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError
from ..paths import write_bytes_whole

if TYPE_CHECKING:
    from .classifier import Classifier

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
SUFFIX = ".int8.onnx"
#: calibration faces drawn from what the user gives (seeded, so a graph can be made again)
CALIBRATION_FACES = 512


def calibration_faces(faces: np.ndarray, n: int = CALIBRATION_FACES, seed: int = 0) -> np.ndarray:
    """``n`` of ``faces`` (uint8 N x H x W), drawn without replacement with ``seed``."""
    faces = np.asarray(faces)
    if len(faces) <= n:
        return faces
    return faces[np.random.default_rng(seed).choice(len(faces), n, replace=False)]


def depthwise_convs(graph) -> list[str]:
    """The names of the depthwise ``Conv`` nodes of an ONNX ``graph`` (``group`` equal to the
    input channels, more than one): :func:`quantize_int8` keeps them in float."""
    shapes = {t.name: t for t in graph.initializer}
    names = []
    for node in graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type != "Conv" or group <= 1 or len(node.input) < 2 or node.input[1] not in shapes:
            continue
        w = shapes[node.input[1]]  # out_channels x in_channels / group x kH x kW
        if w.dims[1] == 1 and group == w.dims[0]:
            names.append(node.name)
    return names


def quantize_int8(clf: Classifier, faces: np.ndarray, *, batch: int = 32) -> bytes:
    """The int8 (QDQ) ONNX graph of ``clf``, its activation ranges calibrated on ``faces``
    (uint8 ``N x H x W`` in the classifier's input size, as :meth:`Classifier.to_tensor` takes).
    Depthwise convolutions stay in float (:func:`depthwise_convs`), and so do PReLUs, each
    written as a maximum after quantisation (:func:`~wildfer.models.onnx.prelus_as_max`)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    from .onnx import onnx_bytes, prelus_as_max

    if len(faces) == 0:
        raise ModelError("int8 calibration needs at least one face")

    class Faces(CalibrationDataReader):
        def __init__(self):
            xs = (clf.to_tensor(faces[i:i + batch]).cpu().numpy() for i in range(0, len(faces), batch))
            self.batches = ({"input": x} for x in xs)

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre, out = (os.path.join(tmp, f) for f in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        Path(fp32).write_bytes(onnx_bytes(clf, max_prelus=False))
        quant_pre_process(fp32, pre)
        quantize_static(pre, out, Faces(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.Percentile,
                        nodes_to_exclude=depthwise_convs(onnx.load(pre).graph))
        model = onnx.load(out)
        prelus_as_max(model)
        return model.SerializeToString()


def export_int8(clf: Classifier, out: str | os.PathLike, faces: np.ndarray) -> Path:
    """Write the int8 graph of ``clf`` to ``out``, calibrated on :data:`CALIBRATION_FACES` of
    ``faces`` (uint8 ``N x H x W``, e.g. a data set's Training images; drawn seeded)."""
    return write_bytes_whole(out, quantize_int8(clf, calibration_faces(faces)))


def shipped_int8(name: str) -> Path:
    """The path a built-in's shipped int8 graph has (whether or not that built-in ships one)."""
    return WEIGHTS / f"{name}{SUFFIX}"


def int8_graph(clf: Classifier, source: str | os.PathLike | None = None) -> Path:
    """Where ``clf``'s int8 graph is: beside ``source`` (a weights file), or shipped for a
    built-in; a :class:`ModelError` saying how to make one when there is none."""
    src = Path(source) if source else None
    candidates = [Path(str(src) + SUFFIX), src.with_suffix(SUFFIX)] if src and src.is_file() else []
    if clf.name:
        candidates.append(shipped_int8(clf.name))
    for path in candidates:
        if path.is_file():
            return path
    raise ModelError(f"model {clf.name or source!r} has no int8 graph; make one with 'wildfer export MODEL --int8 "
                     f"--calibrate FACES --onnx MODEL{SUFFIX}' (next to the weights file) or use backend torch or onnx")


def attach_int8(clf: Classifier, threads: int | None = None, source: str | os.PathLike | None = None,
                graph: str | os.PathLike | None = None) -> Classifier:
    """A new classifier computing ``clf``'s logits with its int8 graph on onnxruntime's CPU
    provider; the float torch network stays for saliency maps."""
    from .runtime import OnnxRunner

    path = Path(graph) if graph else int8_graph(clf, source)
    runner = OnnxRunner(path, threads=threads, device="cpu")  # pool threads sleep between calls
    if runner.classes is not None and tuple(runner.classes) != tuple(clf.classes):
        raise ModelError(f"{path}: int8 graph's classes {runner.classes} differ from the model's {tuple(clf.classes)}")
    # the torch network, where there is one, stays for saliency maps (on the CPU); one still to
    # be read from a weights graph is read when first asked for
    net = clf.module
    if net is not None and clf.input_device.type != "cpu":
        net = copy.deepcopy(net).to("cpu")
    return dataclasses.replace(clf, module=net, runner=runner, backend="int8", device="cpu")
