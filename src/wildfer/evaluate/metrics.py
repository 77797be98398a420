"""Classification metrics from predicted probabilities, computed with scikit-learn.

:func:`compute_metrics` turns ``y_true`` (N,) and ``probs`` (N x C) into the JSON-ready report
every evaluation writes: accuracy, macro-F1, per-class precision / recall / F1 / support,
top-2 accuracy, the confusion matrix (counts, rows = true class) and its row-normalised form,
and calibration (expected calibration error over equal-width confidence bins, plus the
per-bin numbers behind a reliability diagram).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
# the [eval] extra; imported with the module, so a command fails before its work, not after
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support, top_k_accuracy_score

#: Number of equal-width confidence bins for ECE and the reliability diagram.
ECE_BINS = 15


def calibration_bins(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, list]:
    """Per-bin calibration numbers over top-1 confidence in ``n_bins`` equal-width bins.

    Returns ``edges`` (n_bins + 1), and per bin ``count``, mean ``confidence`` and
    ``accuracy`` (``None`` for empty bins), as plain lists for JSON.
    """
    y_true = np.asarray(y_true)
    conf = probs.max(1)
    correct = (probs.argmax(1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin i holds (edges[i], edges[i+1]]; a confidence of exactly 0 goes to the first bin
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        mean_acc = np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan)
    return {
        "edges": [float(e) for e in edges],
        "count": [int(c) for c in count],
        "confidence": [None if np.isnan(c) else float(c) for c in mean_conf],
        "accuracy": [None if np.isnan(a) else float(a) for a in mean_acc],
    }


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE (Guo et al. 2017): sum over bins of |accuracy - confidence| weighted by bin size."""
    b = calibration_bins(y_true, probs, n_bins)
    n = max(1, int(np.sum(b["count"])))
    return float(sum(c / n * abs(a - p) for c, a, p in zip(b["count"], b["accuracy"], b["confidence"]) if c))


def compute_metrics(y_true, probs, labels: Sequence[str], n_bins: int = ECE_BINS) -> dict:
    """The full report for true labels ``y_true`` (ints in ``0..C-1``) and ``probs`` (N x C).

    Keys: ``n``, ``labels``, ``accuracy``, ``macro_f1``, ``top2_accuracy``, ``per_class``
    (name -> precision, recall, f1, support), ``confusion`` (counts, rows = true class),
    ``confusion_normalized`` (rows sum to 1; rows with no samples are zeros), ``ece``,
    ``calibration`` (per-bin numbers), ``nll`` (mean negative log-likelihood).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    labels = list(labels)
    c = len(labels)
    if probs.ndim != 2 or probs.shape[1] != c:
        raise ValueError(f"probs must be N x {c}, got {probs.shape}")
    if probs.shape[0] != y_true.shape[0]:
        raise ValueError(f"{y_true.shape[0]} labels but {probs.shape[0]} predictions")
    if y_true.size == 0:
        raise ValueError("nothing to evaluate (0 samples)")
    ids = list(range(c))
    pred = probs.argmax(1)
    cm = confusion_matrix(y_true, pred, labels=ids)
    rows = cm.sum(1, keepdims=True)
    cm_norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    prec, rec, f1, sup = precision_recall_fscore_support(y_true, pred, labels=ids, zero_division=0)
    top2 = top_k_accuracy_score(y_true, probs, k=min(2, c), labels=ids) if c > 2 else 1.0
    nll = float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, None))))
    calib = calibration_bins(y_true, probs, n_bins)
    return {
        "n": int(y_true.size),
        "labels": labels,
        "accuracy": float(accuracy_score(y_true, pred)),
        "macro_f1": float(f1_score(y_true, pred, labels=ids, average="macro", zero_division=0)),
        "top2_accuracy": float(top2),
        "per_class": {
            name: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(sup[i])}
            for i, name in enumerate(labels)
        },
        "confusion": cm.astype(int).tolist(),
        "confusion_normalized": [[round(float(v), 6) for v in r] for r in cm_norm],
        "ece": expected_calibration_error(y_true, probs, n_bins),
        "ece_bins": n_bins,
        "calibration": calib,
        "nll": nll,
    }
