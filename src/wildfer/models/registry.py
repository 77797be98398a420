"""A timm-style model registry: ``@register_model`` on a factory, then ``create_model(name)``.

Each architecture family lives in its own module under :mod:`wildfer.models`; importing
:mod:`wildfer.models` is lazy, so the look-ups below first import every family (once), which
registers their factories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch.nn as nn

from ..errors import ModelError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    factory: Callable[..., nn.Module]
    family: str
    input_size: int
    in_chans: int
    description: str
    #: how the architecture's faces are cut and scaled, over DEFAULT_PREPROCESS (FER2013's 48-pixel
    #: grey framing): size, mean, std, grayscale, align ("fer2013" or "template") and template
    preprocess: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelInfo] = {}
_families_loaded = False


def _ensure_families() -> None:
    """Import every family module once, so that look-ups see all built-in models even when
    only this module was imported (the package init imports nothing eagerly)."""
    global _families_loaded
    if _families_loaded:
        return
    _families_loaded = True
    try:
        from . import register_families

        register_families()
    except BaseException:
        _families_loaded = False
        raise


def register_model(
    name: str | None = None,
    *,
    input_size: int = 48,
    in_chans: int = 1,
    description: str = "",
    preprocess: dict | None = None,
):
    """Decorator: register ``fn(num_classes=7, in_chans=1, **kw) -> nn.Module`` under ``name``."""

    def deco(fn):
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} registered twice")
        family = fn.__module__.rsplit(".", 1)[-1]
        doc = description or (fn.__doc__ or "").strip().splitlines()[0:1]
        if isinstance(doc, list):
            doc = doc[0] if doc else ""
        _REGISTRY[key] = ModelInfo(key, fn, family, input_size, in_chans, doc, dict(preprocess or {}))
        return fn

    return deco


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is an fnmatch pattern (``"vgg*"``)."""
    import fnmatch

    _ensure_families()
    names = sorted(_REGISTRY)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def model_info(name: str) -> ModelInfo:
    _ensure_families()
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return _REGISTRY[name]


def factory_kwargs(model_kwargs: dict | None) -> dict:
    """``model_kwargs`` as a factory takes them: the lists a JSON or YAML file gives (block
    widths, repeats) as tuples, which also makes them hashable."""
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in (model_kwargs or {}).items()}


def create_model(name: str, num_classes: int = 7, in_chans: int | None = None, **kwargs) -> nn.Module:
    """Build a registered model. ``in_chans`` defaults to the architecture's own (1 for 48x48);
    ``kwargs`` go to its factory through :func:`factory_kwargs`."""
    info = model_info(name)
    kwargs = factory_kwargs(kwargs)
    if in_chans is None:
        in_chans = info.in_chans
    model = info.factory(num_classes=num_classes, in_chans=in_chans, **kwargs)
    model.wildfer_name = name  # type: ignore[attr-defined]
    model.input_size = int(kwargs.get("input_size", info.input_size))  # type: ignore[attr-defined]
    model.in_chans = in_chans  # type: ignore[attr-defined]
    return model
