"""Pictures of saliency maps: heatmap overlays on the grayscale face, and labelled grids.

Matplotlib does the colour mapping and the figure layout (Agg backend, no display needed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..figures import pyplot, save_figure
from ..paths import written_whole


def _mpl():
    import matplotlib

    return matplotlib, pyplot()


def to_numpy_map(m) -> np.ndarray:
    """A single map (``H x W``, ``1 x H x W`` or ``C x H x W``; tensor or array) -> ``H x W``
    of ``|map|`` summed over channels."""
    if hasattr(m, "detach"):
        m = m.detach().cpu().numpy()
    a = np.abs(np.asarray(m, dtype=np.float64))
    while a.ndim > 2:
        a = a.sum(0)
    return a


#: the value of a map that pictures show at full strength: its 99th percentile, so a few extreme
#: gradient pixels do not wash out the rest
MAP_PERCENTILE = 99.0


def normalize_map(m, percentile: float = MAP_PERCENTILE) -> np.ndarray:
    """``|map|`` (summed over channels) scaled to [0, 1] by its ``percentile``-th value, clipped
    above; ``percentile=100`` divides by the maximum, nothing clipped. An all-zero map stays zero.
    The one scaling of saliency maps for display."""
    a = to_numpy_map(m)
    hi = float(np.percentile(a, percentile)) if a.size else 0.0
    if hi <= 0:
        hi = float(a.max()) if a.size else 0.0
    if hi <= 0:
        return np.zeros_like(a)
    return np.clip(a / hi, 0.0, 1.0)


def face_to_gray(face) -> np.ndarray:
    """A face (uint8 ``H x W``, ``H x W x 3`` or a ``1 x H x W`` tensor) as uint8 ``H x W``."""
    if hasattr(face, "detach"):
        face = face.detach().cpu().numpy()
    f = np.asarray(face)
    if f.ndim == 3 and f.shape[0] in (1, 3) and f.shape[-1] not in (1, 3):
        f = f.mean(0)
    if f.ndim == 3:
        f = f.mean(-1)
    if f.dtype != np.uint8:
        f = f.astype(np.float64)
        lo, hi = float(f.min()), float(f.max())
        f = np.zeros_like(f) if hi <= lo else (f - lo) / (hi - lo) * 255.0
        f = f.round().astype(np.uint8)
    return f


def overlay(face, saliency, *, cmap: str = "jet", alpha: float = 0.6, percentile: float = MAP_PERCENTILE) -> np.ndarray:
    """Blend a colour-mapped saliency map on a grayscale face: ``H x W x 3`` uint8 RGB.

    The heatmap's opacity follows the saliency (``alpha`` at the strongest pixels, none where
    the map is zero), so the face stays visible where the model does not look.
    """
    matplotlib, _ = _mpl()
    gray = face_to_gray(face).astype(np.float64) / 255.0
    heat = normalize_map(saliency, percentile)
    if heat.shape != gray.shape:
        from PIL import Image

        heat = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(gray.shape[::-1], Image.BILINEAR)) / 255.0
    colors = matplotlib.colormaps[cmap](heat)[..., :3]
    a = alpha * heat[..., None]
    rgb = (1 - a) * gray[..., None] + a * colors
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def save_overlay(path: str | os.PathLike, face, saliency, *, scale: int = 4, **kw) -> Path:
    """Write one overlay as a PNG, enlarged ``scale`` times (nearest neighbour)."""
    from PIL import Image

    img = overlay(face, saliency, **kw)
    im = Image.fromarray(img)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    path = Path(path)
    with written_whole(path) as tmp:
        im.save(tmp)
    return path


def save_grid(
    cells: Sequence[Sequence[np.ndarray | None]],
    path: str | os.PathLike,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    cell_inches: float = 1.3,
    dpi: int = 100,
) -> Path:
    """A grid of images (``rows x cols`` of ``H x W`` gray or ``H x W x 3`` RGB arrays; ``None``
    leaves a cell blank) with row and column labels, written as a PNG."""
    _, plt = _mpl()
    rows = len(cells)
    cols = max((len(r) for r in cells), default=0)
    if rows == 0 or cols == 0:
        raise ValueError("empty grid")
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell_inches + 0.9, rows * cell_inches + (0.5 if title else 0.2)),
                             squeeze=False)
    for i in range(rows):
        for j in range(cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            img = cells[i][j] if j < len(cells[i]) else None
            if img is not None:
                img = np.asarray(img)
                ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="bilinear")
            if i == 0 and col_labels is not None and j < len(col_labels):
                ax.set_title(str(col_labels[j]), fontsize=8)
            if j == 0 and row_labels is not None and i < len(row_labels):
                ax.set_ylabel(str(row_labels[i]), fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=dpi)


def plot_lines(
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    path: str | os.PathLike,
    *,
    xlabel: str = "epoch",
    ylabel: str = "share of saliency",
    title: str | None = None,
    dashed: dict[str, float] | None = None,
) -> Path:
    """A line plot of several series against ``x`` (e.g. region shares over epochs);
    ``dashed`` adds horizontal reference lines (e.g. each region's area share)."""
    _, plt = _mpl()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    colors = {}
    for name, ys in series.items():
        (line,) = ax.plot(list(x), list(ys), marker="o", ms=3, label=name)
        colors[name] = line.get_color()
    for name, y in (dashed or {}).items():
        ax.axhline(y, ls="--", lw=0.8, color=colors.get(name, "gray"), alpha=0.7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if all(float(v).is_integer() for v in x):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return save_figure(fig, path, dpi=110)


def plot_curves(
    curves: dict[str, np.ndarray],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    ylabel: str = "target-class probability",
) -> Path:
    """Deletion / insertion curves (mean over images) per method."""
    _, plt = _mpl()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, c in curves.items():
        c = np.asarray(c, dtype=np.float64)
        ax.plot(np.linspace(0, 1, len(c)), c, label=name, ls="--" if name.startswith("random") else "-")
    ax.set_xlabel("fraction of pixels")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=110)


def region_picture(face, regions: dict[str, np.ndarray], *, alpha: float = 0.45) -> np.ndarray:
    """The face with each region tinted (for checking a template or landmark masks by eye)."""
    matplotlib, _ = _mpl()
    gray = face_to_gray(face).astype(np.float64) / 255.0
    rgb = np.repeat(gray[..., None], 3, axis=2)
    palette = matplotlib.colormaps["tab10"]
    for i, (name, m) in enumerate(regions.items()):
        if name == "outside":
            continue
        m = np.asarray(m, dtype=bool)
        rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(palette(i)[:3])
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
