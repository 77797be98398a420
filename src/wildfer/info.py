"""What this installation is and what it will use: versions, the face detector that
``detector="yunet"`` gives here, the classifier backends, built-in models and folders.

>>> from wildfer.info import environment
>>> environment()["detector"]["active"]                      # doctest: +SKIP
'yunet'
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """A JSON-able description of this installation (``wildfer info`` prints it)."""
    import torch

    from . import __version__
    from .data.cache import cache_dir
    from .models.loader import PIPELINE_MODEL, builtin_models, resolve_device
    from .models.quantize import shipped_int8
    from .wild.detectors import available_detectors, create_detector

    try:
        import onnxruntime as ort

        onnx = {"version": ort.__version__, "providers": ort.get_available_providers()}
    except ImportError:
        onnx = None
    cuda = torch.cuda.is_available()
    return {
        "wildfer": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {d: _version(d) for d in ("torch", "numpy", "opencv-python-headless", "onnxruntime", "yuface",
                                               "fastapi", "uvicorn")},
        "torch": {"threads": torch.get_num_threads(), "cuda": cuda,
                  "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []},
        "onnxruntime": onnx,
        "detector": {"default": "yunet", "active": create_detector("yunet").name, "available": available_detectors()},
        "backends": {"predict": "torch", "serve": "onnxruntime" if onnx else "torch"},
        # what device="auto" (the commands' --device default) picks here, per backend
        "device": {"auto": resolve_device("auto"), "auto onnx": resolve_device("auto", backend="onnx")},
        "models": {"pipeline": PIPELINE_MODEL, "builtin": builtin_models(),
                   "int8": [m for m in builtin_models() if shipped_int8(m).is_file()]},
        "folders": {"cache": str(cache_dir()), "data (WILDFER_DATA)": os.environ.get("WILDFER_DATA")},
        "executable": sys.executable,
    }
