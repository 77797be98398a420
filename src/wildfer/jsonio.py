"""JSON as wildfer writes it: one conversion to JSON-safe values and one way to write a file.

* :func:`json_ready` - numpy scalars and arrays, torch tensors, paths and tuples as plain
  Python values, keys as strings, NaN / inf as ``None`` (strict JSON has no NaN).
* :func:`dumps` - strict JSON text of :func:`json_ready`'s value (one JSON Lines record with
  the default ``indent=None``).
* :func:`write_json` - a ``.json`` file of it, its folder made, ending in a newline.

numpy and torch are not imported here: a value can only be one of their types once its
library is loaded, so they are looked up in :data:`sys.modules`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path, PurePath
from typing import Any

from .paths import write_text_whole


def json_ready(obj: Any) -> Any:
    """``obj`` as values :func:`json.dumps` writes as strict JSON: dicts (keys as strings),
    lists (from lists, tuples, numpy arrays and torch tensors), Python numbers (from numpy
    scalars; ``None`` for NaN and inf), strings (from paths), booleans and ``None``."""
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        return json_ready(obj.detach().cpu().tolist())
    if np is not None:
        if isinstance(obj, np.ndarray):
            return json_ready(obj.tolist())
        if isinstance(obj, np.generic):
            obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of ``obj`` (see :func:`json_ready`); one line with ``indent=None``."""
    return json.dumps(json_ready(obj), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` to ``path`` as strict JSON (see :func:`json_ready`) with a final newline,
    making its folder first, whole (:func:`wildfer.paths.written_whole`); the path written."""
    return write_text_whole(path, dumps(obj, indent=indent) + "\n")


__all__ = ["json_ready", "dumps", "write_json"]
