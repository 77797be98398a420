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
    """A JSON-able description of this installation (``wildfer info`` prints it). Without
    torch (the light install) its entry says so and how to add it."""
    from . import __version__
    from .data.cache import cache_dir
    from .errors import TORCH_INSTALL
    from .models.loader import PIPELINE_MODEL, builtin_models, default_backend, member_backends, resolve_device
    from .models.quantize import shipped_int8
    from .wild.detectors import available_detectors, create_detector

    try:
        import onnxruntime as ort

        onnx = {"version": ort.__version__, "providers": ort.get_available_providers()}
    except ImportError:
        onnx = None
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        cuda = torch.cuda.is_available()
        torch_info = {"threads": torch.get_num_threads(), "cuda": cuda,
                      "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda
                      else []}
    else:
        torch_info = {"installed": False, "needed for": "training, saliency maps, export, backend torch",
                      "install": TORCH_INSTALL}
    return {
        "wildfer": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {d: _version(d) for d in ("torch", "numpy", "opencv-python-headless", "onnxruntime", "yuface",
                                               "fastapi", "uvicorn", "scikit-learn")},
        "torch": torch_info,
        "onnxruntime": onnx,
        "detector": {"default": "yunet", "active": create_detector("yunet").name, "available": available_detectors()},
        # what --backend auto (every command's default) runs the pipeline's model on
        "backends": {"predict": default_backend(PIPELINE_MODEL), "serve": default_backend(PIPELINE_MODEL),
                     "members": member_backends(PIPELINE_MODEL)},
        # what device="auto" (the commands' --device default) picks here, per backend
        "device": {"auto": resolve_device("auto") if torch is not None else "cpu",
                   "auto onnx": resolve_device("auto", backend="onnx")},
        "models": {"pipeline": PIPELINE_MODEL, "builtin": builtin_models(),
                   "int8": [m for m in builtin_models() if shipped_int8(m).is_file()]},
        "folders": {"cache": str(cache_dir()), "data (WILDFER_DATA)": os.environ.get("WILDFER_DATA")},
        "executable": sys.executable,
    }
