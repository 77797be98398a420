"""Model zoo: ``create_model(name, num_classes=7, in_chans=1)``, ``list_models()``.

One module per architecture family (:data:`FAMILIES`). Imports are lazy (PEP 562) so that
``import wildfer.cli`` and ``wildfer --help``, which import :mod:`wildfer.models.commands`,
do not import torch: the first use of a name below imports its module, and the registry's
look-ups (``create_model``, ``list_models``, ``model_info``) import every family first, which
registers their factories.
"""

from __future__ import annotations

import importlib

#: the built-in the wild pipeline uses unless told otherwise (Recognizer, wildfer predict,
#: evaluate-wild, the service): the model that reads faces in web photos best. Here, not in
#: the loader, so the command line names it without importing torch.
PIPELINE_MODEL = "wild_ensemble"

#: the architecture family modules; importing one registers its models.
FAMILIES = (
    "shallow", "vggfer", "resnet", "alexnet", "vgg16", "inception", "inception_resnet",
    "mini_xception", "fastfer", "mobilefacenet",
)

#: public name -> the submodule that defines it.
_EXPORTS = {
    "create_model": "registry",
    "list_models": "registry",
    "model_info": "registry",
    "register_model": "registry",
    "ensemble_classifier": "loader",
    "load_model": "loader",
    "freeze": "pretrained",
    "load_torchvision_weights": "pretrained",
}

#: submodules reachable as attributes (``wildfer.models.vggfer``) without an explicit import.
_SUBMODULES = frozenset(FAMILIES) | {
    "registry", "pretrained", "layers", "classifier", "loader", "ensemble", "complexity", "onnx", "quantize", "commands", "convert",
}

__all__ = ["create_model", "list_models", "model_info", "register_model", "registry", "freeze", "load_model", "ensemble_classifier",
           "load_torchvision_weights"]


def register_families() -> None:
    """Import every family module, registering its models (idempotent)."""
    for fam in FAMILIES:
        importlib.import_module(f".{fam}", __name__)


def __getattr__(name: str):
    if name in _EXPORTS:
        if _EXPORTS[name] == "registry":
            register_families()
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)
