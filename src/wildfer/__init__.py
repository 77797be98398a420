"""wildfer: facial expression recognition on wild photos.

>>> import wildfer
>>> rec = wildfer.Recognizer()                              # doctest: +SKIP
>>> [f.label for f in rec.predict("photo.jpg").faces]      # doctest: +SKIP
['happy']
>>> clf = wildfer.load_model("default")                     # doctest: +SKIP
>>> maps = wildfer.get_method("smoothgrad")(clf).attribute(faces)   # doctest: +SKIP
>>> wildfer.explain_photo(rec, "photo.jpg").overlay()      # doctest: +SKIP

The names below are imported on first use, so ``import wildfer`` and ``wildfer --help`` stay
fast; each stage also has its own package (``wildfer.data``, ``.models``, ``.train``,
``.evaluate``, ``.explain``, ``.wild``, ``.serve``, ``.batch``).
"""

from __future__ import annotations

import importlib
import os

__version__ = "0.1.0"

# onnxruntime's official builds start a telemetry client as the library loads (a device id and
# an event store under ~/.cache/Microsoft/DeveloperTools/.onnxruntime, uploaded when online),
# and it only obeys this variable, read at that moment: set here, before any wildfer module
# can import onnxruntime. A value the user set is kept.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
# torch's and the face detector's OpenMP runtimes are separate copies; with the default
# (spinning) wait policy the threads of one spin on the cores while the other computes, which
# made `wildfer predict` 2x slower on a 2-core CPU (benchmarks/openmp_wait.py). Sleeping
# waits: the runtimes read this when they load, so it is set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: public name -> the module that defines it.
_EXPORTS = {
    # recognize faces in photos
    "Recognizer": "wildfer.wild",
    "create_detector": "wildfer.wild",
    "list_detectors": "wildfer.wild",
    "evaluate_wild": "wildfer.wild",
    "explain_photo": "wildfer.photo_maps",
    # models
    "load_model": "wildfer.models.loader",
    "create_model": "wildfer.models",
    "list_models": "wildfer.models",
    "register_model": "wildfer.models",
    # data, training, evaluation
    "load_dataset": "wildfer.data",
    "Trainer": "wildfer.train",
    "TrainConfig": "wildfer.train",
    "load_config": "wildfer.train",
    "evaluate": "wildfer.evaluate",
    # explanations
    "get_method": "wildfer.explain",
    "list_methods": "wildfer.explain",
    "run_audit": "wildfer.explain",
    # service and installation
    "create_app": "wildfer.serve",
    "environment": "wildfer.info",
}

#: the stage packages, importable as attributes too (``wildfer.explain.SmoothGrad``).
SUBPACKAGES = ("data", "models", "train", "evaluate", "explain", "wild", "serve", "batch")

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'wildfer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *SUBPACKAGES})
