"""``evaluate(model_or_models, arrays, tta=None)``: one call from faces to the full report.

>>> from wildfer.data.fer2013 import load_fer2013                    # doctest: +SKIP
>>> from wildfer.evaluate import evaluate                            # doctest: +SKIP
>>> test = load_fer2013("fer2013.csv.gz").split("PublicTest")       # doctest: +SKIP
>>> r = evaluate("default", test, tta="flip")                         # doctest: +SKIP
>>> r["accuracy"], r["macro_f1"], r["confusion"][3][3]               # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.fer2013 import FaceArrays
from ..errors import DataError, WildferError
from ..jsonio import write_json
from .metrics import ECE_BINS, compute_metrics
from ..models.classifier import tta_mode
from ..models.ensemble import ensemble_weights
from .predict import model_name, predict_proba, resolve_models, save_probs


def split_name(arrays: FaceArrays) -> str:
    names = sorted({str(u) for u in np.unique(arrays.usage)}) if len(arrays) else []
    return names[0] if len(names) == 1 else ("+".join(names) if names else "")


def evaluate(models, arrays: FaceArrays, tta: str | None = None, batch_size: int = 256, *, crop: int = 44,
             n_bins: int = ECE_BINS, return_probs: bool = False, weights: Sequence[float] | None = None,
             save_probs_to: str | os.PathLike | None = None, device: str | None = None,
             backend: str | None = None) -> dict:
    """Evaluate a classifier (or a list of them, as an ensemble) on ``arrays``.

    ``models``: :class:`~wildfer.models.loader.Classifier` objects, built-in names, checkpoint
    paths or run folders (a list, or ``"a,b"``, is an ensemble: probabilities are averaged,
    equally or by ``weights``), or ``.npz`` files written by ``save_probs_to`` (the
    probabilities an earlier evaluation of the same faces with the same TTA saved).
    ``tta``: ``None``, ``"flip"`` or ``"tencrop"``. Returns the metrics of
    :func:`~wildfer.evaluate.metrics.compute_metrics` plus ``model``, ``models``, ``split``,
    ``tta`` and ``dataset``; with ``return_probs`` also ``probs`` (N x C numpy, not JSON).
    ``device``: where the classifiers run, ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``
    (``None``: given classifiers stay where they are, names load on the CPU); ``backend``: how
    they compute, ``"auto"``, ``"torch"``, ``"onnx"`` or ``"int8"`` (``None`` or ``"auto"``: given ones keep
    theirs, names load on their default, :func:`~wildfer.models.loader.default_backend`).
    """
    tta = tta_mode(tta)
    if len(arrays) == 0:
        raise DataError(arrays.source or "data", "no samples to evaluate")
    clfs = resolve_models(models, data_classes=arrays.classes, device=device, backend=backend)
    w = ensemble_weights(weights, len(clfs))  # normalised, for the report
    probs = predict_proba(clfs, arrays.images, arrays.classes, tta=tta, batch_size=batch_size, crop=crop,
                          weights=weights)
    report = compute_metrics(arrays.labels, probs, list(arrays.classes), n_bins=n_bins)
    names = [model_name(c) for c in clfs]
    report.update({
        "model": names[0] if len(names) == 1 else "ensemble(" + ",".join(names) + ")",
        "models": names,
        "weights": [round(float(x), 6) for x in w] if weights is not None else None,
        "split": split_name(arrays),
        "tta": tta,
        "backend": sorted({getattr(c, "backend", "probabilities") for c in clfs}),
        "data": arrays.source,
    })
    if save_probs_to is not None:
        report["saved_probs"] = str(save_probs(save_probs_to, probs, arrays.images, arrays.classes,
                                               name=report["model"], tta=tta))
    if return_probs:
        report["probs"] = probs
    return report


# ----------------------------------------------------------------------------- data for `wildfer evaluate`


def load_eval_data(path: str | os.PathLike, split: str | None = "PublicTest", *, dataset: str = "fer2013",
                   ferplus_labels: str | os.PathLike | None = None) -> FaceArrays:
    """Faces and labels for ``wildfer evaluate``, through :func:`wildfer.data.load_dataset`.

    * a FER2013 CSV (``emotion,pixels,Usage``, plain or gzipped) or pack (``wildfer data pack``): its ``split`` rows (``"all"`` =
      every row); with ``ferplus_labels`` (or ``dataset="ferplus"``, which looks for
      ``fer2013new.csv`` beside the CSV) FER+ majority labels with 8 classes;
    * an image folder (``root/<class>/*``) or a manifest CSV (``path,label[,box]``): all its
      faces unless ``split`` names one of its usages (the default ``"PublicTest"`` takes all
      the faces of a folder or manifest without that split).
    """
    from ..data.formats import detect_format, load_dataset, select_split

    path = Path(path)
    if not path.exists():
        raise DataError(path, "file or folder not found")
    if dataset not in ("fer2013", "ferplus"):
        raise WildferError(f"unknown dataset {dataset!r} (fer2013 | ferplus)")
    fmt = detect_format(path)
    data = load_dataset(path, dataset="ferplus" if fmt == "fer2013" and dataset == "ferplus" else fmt,
                        labels=ferplus_labels)
    if data.meta.get("format") in ("folder", "manifest"):
        if split == "PublicTest" and "PublicTest" not in data.usages():
            split = None  # the default: a folder or manifest without that split is used whole
    else:
        split = split or "PublicTest"
    return select_split(data, split)


def save_json(report: dict, path: str | os.PathLike) -> Path:
    """``report`` without its probabilities as ``path`` (strict JSON, see :func:`wildfer.jsonio.json_ready`),
    with the machine it was measured on."""
    from ..machine import machine

    saved = {k: v for k, v in report.items() if k != "probs"}
    saved.setdefault("machine", machine())  # what the numbers were measured on, and when
    return write_json(path, saved)


def write_figures(report: dict, out: str | os.PathLike, stem: str = "") -> dict[str, Path]:
    """Confusion heatmap and reliability diagram PNGs for ``report`` in folder ``out``."""
    from .plots import plot_confusion, plot_reliability

    out = Path(out)
    title = f"{report.get('model', '')} on {report.get('split', '')}".strip()
    pre = f"{stem}_" if stem else ""
    return {
        "confusion": plot_confusion(report["confusion"], report["labels"], out / f"{pre}confusion.png",
                                    title=f"{title}\nacc {100 * report['accuracy']:.1f}%, macro-F1 {100 * report['macro_f1']:.1f}%"),
        "reliability": plot_reliability(report["calibration"], report["ece"], out / f"{pre}reliability.png",
                                        title="Reliability"),
    }


def print_report(report: dict, console=None) -> None:
    """Rich tables: headline numbers, per-class precision/recall/F1, row-normalised confusion."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    labels: Sequence[str] = report["labels"]
    tta = report.get("tta") or "none"
    # model names, splits and class names are the user's text (paths, folder names): never markup
    console.print(
        f"[bold]{escape(str(report.get('model', '')))}[/] on {escape(str(report.get('split', '')))} "
        f"(n={report['n']}, tta={tta}): "
        f"accuracy [bold]{100 * report['accuracy']:.2f}%[/], macro-F1 {100 * report['macro_f1']:.2f}%, "
        f"top-2 {100 * report['top2_accuracy']:.2f}%, ECE {100 * report['ece']:.2f}%",
        highlight=False,
    )
    t = Table(title="per class", title_justify="left")
    for col in ("class", "precision", "recall", "F1", "support"):
        t.add_column(col, justify="left" if col == "class" else "right")
    for name in labels:
        pc = report["per_class"][name]
        t.add_row(escape(name), f"{100 * pc['precision']:.1f}", f"{100 * pc['recall']:.1f}", f"{100 * pc['f1']:.1f}", str(pc["support"]))
    console.print(t)
    cm = Table(title="confusion (% of true class; rows = true, columns = predicted)", title_justify="left")
    cm.add_column("true \\ pred")
    for name in labels:
        cm.add_column(escape(name[:8]), justify="right")
    for i, name in enumerate(labels):
        row = report["confusion_normalized"][i]
        cm.add_row(escape(name), *[(f"[bold]{100 * v:.0f}[/]" if i == j else f"{100 * v:.0f}") for j, v in enumerate(row)])
    console.print(cm)
