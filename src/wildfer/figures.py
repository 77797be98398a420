"""Figures: headless pyplot, and one way to write a figure (whole, then closed) for every plot
wildfer makes (evaluation reports, saliency pictures, timelines, data grids, experiments).

A leaf: matplotlib is imported when a figure is first made. It comes with the ``[plots]``
extra (and with ``[eval]`` and ``[train]``), not with the light install: :func:`has_matplotlib`
says whether it is there without importing it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .paths import written_whole


def has_matplotlib() -> bool:
    """Whether matplotlib is installed (looked up, not imported)."""
    import importlib.util

    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False


def pyplot():
    """``matplotlib.pyplot`` on the headless ``Agg`` backend (unless another was chosen already)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, *, dpi: float | None = None, tight: bool = True) -> Path:
    """Lay ``fig`` out (``tight``), write it to ``path`` under a temporary name and rename it when
    whole, then close it, whatever happened; returns the path."""
    if tight:
        fig.tight_layout()
    path = Path(path)
    try:
        with written_whole(path) as tmp:
            fig.savefig(tmp, **({} if dpi is None else {"dpi": dpi}))
    finally:
        pyplot().close(fig)
    return path
