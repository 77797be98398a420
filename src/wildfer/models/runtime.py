"""What runs a model, chosen without loading one: the device a backend computes on
(:func:`resolve_device`) and onnxruntime's module, providers and session options.

A leaf of :mod:`wildfer.models`: it imports no other module of the package (torch and
onnxruntime are imported when a function needs them), so the classifier, the ONNX and int8
runners and the loader all build on it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..errors import ModelError, one_line

#: the device names :func:`resolve_device` takes (and ``cuda:N``)
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: Any = "auto", backend: str = "torch") -> str:
    """The device ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` names here, as ``"cpu"``
    or ``"cuda:N"``, for the ``backend`` that computes (``"torch"`` or ``"onnx"``).

    ``"auto"`` is the first CUDA GPU when the backend can use one (torch:
    ``torch.cuda.is_available()``; onnx: onnxruntime's ``CUDAExecutionProvider``), else the CPU.
    A CUDA device the backend cannot use, or an unknown name, is a :class:`ModelError`.
    """
    name = str(device).strip().lower() if device is not None else "auto"
    if name not in DEVICES and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise ModelError(f"unknown device {str(device)!r}; use auto, cpu, cuda or cuda:N")
    if name == "cpu":
        return "cpu"
    missing = _cuda_missing(backend)
    if name == "auto":
        return "cpu" if missing else "cuda:0"
    if missing:
        raise ModelError(f"device {name!r}: {missing}; use cpu or auto")
    index = int(name[5:]) if ":" in name else 0
    if backend == "torch":
        import torch
    count = torch.cuda.device_count() if backend == "torch" else None
    if count is not None and index >= count:
        raise ModelError(f"device {name!r}: this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})")
    return f"cuda:{index}"


def _cuda_missing(backend: str) -> str | None:
    """Why ``backend`` cannot run on a CUDA GPU here, or ``None`` when it can."""
    if backend == "int8":
        return "the int8 backend runs on the CPU only"
    if backend == "mixed":
        return "an ensemble with members on int8 graphs runs on the CPU only"
    if backend == "onnx":
        try:  # onnxruntime is optional and slow to import: only when asked about
            providers = import_onnxruntime().get_available_providers()
        except ImportError:
            return "onnxruntime is not installed"
        if "CUDAExecutionProvider" not in providers:
            return (f"onnxruntime has no CUDAExecutionProvider here (it has {', '.join(providers) or 'none'}; "
                    f"the GPU build is the onnxruntime-gpu package)")
        return None
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install 'wildfer[train]')"
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is built without CUDA"
    return "torch finds no CUDA GPU on this machine (torch.cuda.is_available() is False)"


def has_torch() -> bool:
    """Whether torch can be imported here (found without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["torch"] is None
        return False


def import_onnxruntime():
    """``onnxruntime``, with its telemetry off.

    The client that writes a device id and an event store into the user's cache starts when
    the library loads and only obeys ``ORT_DISABLE_TELEMETRY``, which ``import wildfer`` sets
    before that; the call below also stops the events the library would send later.
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    ort.disable_telemetry_events()
    return ort


def onnx_providers(device: str) -> list:
    """onnxruntime's providers for a resolved device (``"cpu"`` or ``"cuda:N"``), best first."""
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(threads: int | None = None, spin: bool = False):
    """onnxruntime session options: ``threads`` intra-op threads, pool threads that sleep
    between calls unless ``spin`` (see :class:`OnnxRunner`), every graph optimisation, and on an x86 CPU without VNNI
    (:func:`wildfer.machine.has_vnni`) the exact int8 products: there onnxruntime's fast
    uint8 x int8 kernels add pairs of products in 16 bits, which saturate and cost the int8
    graphs 1 to 15 points of accuracy."""
    from ..machine import has_vnni

    ort = import_onnxruntime()
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    if not spin:  # idle pool threads sleep instead of spinning between calls
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not has_vnni():
        so.add_session_config_entry("session.x64quantprecision", "1")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


class OnnxRunner:
    """Logits from an ONNX model on onnxruntime: its CPU provider, or its CUDA provider for
    ``device="cuda:N"`` (a :class:`ModelError` when that provider cannot start here).

    Its pool threads sleep between calls unless ``spin``: a classifier runs between other
    work (decoding, detection, an ensemble's other members), and threads left spinning after
    a call take the cores from it. With spinning on, a one-face 720p photo took 52.2 ms instead
    of 37.7 ms through ``wild_ensemble``'s float graphs on a 2-core CPU: its second member waited
    for the first's threads (``benchmarks/results/wild_latency_spinning_epyc.json`` and
    ``wild_latency_backends_epyc.json``)."""

    def __init__(self, model: bytes | str | os.PathLike, threads: int | None = None, device: str = "cpu",
                 spin: bool = False):
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
