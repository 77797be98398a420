"""Saliency maps you can check: methods, pictures, face regions and trust tests.

>>> from wildfer.explain import get_method, region_shares
>>> maps = get_method("smoothgrad")(clf).attribute(faces, target=None)   # doctest: +SKIP
>>> region_shares(maps)                                                 # doctest: +SKIP
{'eyes': 0.21, 'brows': 0.09, 'nose': 0.11, 'mouth': 0.27, 'face_other': 0.25, 'outside': 0.07}

* :mod:`.methods` - ``VanillaGradient``, ``SmoothGrad``, ``IntegratedGradients``, ``GradCAM``,
  ``GradCAMPlusPlus``, ``Occlusion`` (and ``RandomMap``) behind
  ``Method(model).attribute(x, target=None)``; ``get_method(name)``.
* :mod:`.regions` - a landmark template for aligned 48x48 crops, masks from 5 landmarks for
  wild faces, ``region_shares``.
* :mod:`.plot` - heatmap overlays and grids.
* :mod:`.audit` - cascading parameter randomization (Adebayo et al. 2018) and
  deletion / insertion faithfulness against random maps.
* :mod:`.studies` - saliency over training epochs, model comparison, region tables.

Heavy imports (torch, matplotlib) happen on first use of a name.
"""

from __future__ import annotations

import importlib

#: the saliency methods offered by name (the audit's default, the service's ``?method=``, the
#: commands' defaults), in that order; importing it imports no torch
SALIENCY_METHODS = ("vanilla", "smoothgrad", "ig", "gradcam", "occlusion")

_EXPORTS = {
    "Attribution": "methods",
    "VanillaGradient": "methods",
    "SmoothGrad": "methods",
    "IntegratedGradients": "methods",
    "GradCAM": "methods",
    "GradCAMPlusPlus": "methods",
    "Occlusion": "methods",
    "RandomMap": "methods",
    "MethodError": "methods",
    "get_method": "methods",
    "create_method": "methods",
    "list_methods": "methods",
    "register_method": "methods",
    "conv_layers": "methods",
    "REGIONS": "regions",
    "template_regions": "regions",
    "landmark_regions": "regions",
    "region_shares": "regions",
    "region_areas": "regions",
    "overlay": "plot",
    "save_grid": "plot",
    "randomization_test": "audit",
    "faithfulness": "audit",
    "run_audit": "audit",
}

__all__ = sorted([*_EXPORTS, "SALIENCY_METHODS"])


def __getattr__(name: str):
    if name in _EXPORTS:
        mod = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(mod, name)
    raise AttributeError(f"module 'wildfer.explain' has no attribute {name!r}")
