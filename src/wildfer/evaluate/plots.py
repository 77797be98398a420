"""Figures for evaluation reports (matplotlib, headless ``Agg`` backend).

* :func:`plot_confusion`: the row-normalised confusion matrix as a heatmap with class names and
  percentages in every cell, rows = true class (the study's figure).
* :func:`plot_reliability`: a reliability diagram (accuracy per confidence bin against the
  diagonal, gaps shaded, bin counts underneath) with the ECE in the title.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..figures import pyplot, save_figure


def plot_confusion(confusion: Sequence[Sequence[float]], labels: Sequence[str], path: str | Path,
                   title: str = "Confusion matrix (row-normalised)") -> Path:
    """Heatmap of the row-normalised ``confusion`` (counts or fractions) to ``path`` (PNG)."""
    plt = pyplot()
    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.1 * n + 2.2, 1.0 * n + 1.6), dpi=110)
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            v = norm[i, j]
            ax.text(j, i, f"{100 * v:.0f}%", ha="center", va="center", fontsize=9,
                    color="white" if v > 0.55 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title)
    return save_figure(fig, path)


def plot_reliability(calibration: dict, ece: float, path: str | Path, title: str = "Reliability diagram") -> Path:
    """Reliability diagram from :func:`wildfer.evaluate.metrics.calibration_bins` output."""
    plt = pyplot()
    edges = np.asarray(calibration["edges"])
    width = np.diff(edges)
    centers = edges[:-1] + width / 2
    acc = np.array([np.nan if a is None else a for a in calibration["accuracy"]], dtype=np.float64)
    conf = np.array([np.nan if c is None else c for c in calibration["confidence"]], dtype=np.float64)
    count = np.asarray(calibration["count"], dtype=np.float64)
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(5.2, 6.2), dpi=110, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    has = ~np.isnan(acc)
    ax.bar(centers[has], acc[has], width=width[has], edgecolor="black", color="tab:blue", alpha=0.8, label="accuracy")
    gap_lo = np.minimum(acc, conf)[has]
    ax.bar(centers[has], np.abs(acc - conf)[has], bottom=gap_lo, width=width[has], color="tab:red", alpha=0.3,
           edgecolor="tab:red", hatch="//", label="gap")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title} (ECE {100 * ece:.2f}%)")
    ax.legend(loc="upper left", fontsize=8)
    axh.bar(centers, count, width=width, color="gray", edgecolor="black")
    axh.set_xlabel("confidence (top-1 probability)")
    axh.set_ylabel("samples")
    return save_figure(fig, path)
