"""Evaluate the wild pipeline on a labelled manifest: how many faces are found, how many are
classified right.

The manifest is read by :func:`wildfer.data.manifest.read_manifest` (re-exported here, with
:class:`~wildfer.data.manifest.ManifestItem`), under the rules of every manifest loader:

* ``path,label[,left,top,right,bottom][,split]``: one labelled face per row (more columns,
  such as ``subject``, are ignored). Without a box the face is the photo's largest detection.
  ``split`` (or ``usage``) names the subset a row belongs to; ``split=...`` keeps the rows of
  that split by the one split rule (``val`` / ``test`` -> ``PublicTest``, a row without a
  split is ``Training``).
* ``path,boxes_left_top_w_h[,...]``: the group-photo layout, boxes ``l,t,w,h;l,t,w,h``
  and no labels (detection recall only). Rows without boxes hold no faces.

A labelled face is *found* when a detection overlaps its box with IoU >= ``iou`` or lies
inside a looser labelled box (see :func:`match_faces`; one detection per face, best matches
first), or, without a box, when the photo has any detection (the largest is taken);
``detection_recall_iou`` counts the IoU matches alone. ``accuracy`` counts every labelled face, a missed face as
wrong; ``accuracy_found`` only the found ones. Faces found by the search fallback are
counted in ``n_search`` and scored separately (``accuracy_search``). ``calibration`` says how
far the probabilities of the found faces can be trusted: their expected calibration error and
the accuracy when only the 50% / 80% most confident are answered (the top probability each
starts at is a threshold for ``Recognizer(unsure_below=...)``).
"""

from __future__ import annotations

import csv
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
# the [eval] extra; imported with the module, so evaluate-wild fails before its work, not after
from sklearn.metrics import confusion_matrix, f1_score

from ..data.csvfiles import check_unreadable
from ..data.manifest import ManifestItem, box_outside, read_manifest
from ..errors import WildferError
from ..evaluate.calibration import expected_calibration_error, risk_coverage
from .detectors import box_inside, box_iou

MISSED = "missed"


def match_faces(items: list[ManifestItem], dets, iou: float = 0.3, inside: float = 0.7) -> list[int | None]:
    """Index of the detection matched to each item of one photo (None: missed).

    Items with a box take detections one-to-one, highest IoU first, at IoU >= ``iou``. A box
    still unmatched then takes the free detection that lies most inside it, when at least
    ``inside`` of the detection's area is within the box and it is at least a quarter of the
    box's width: annotators' boxes are often much looser than a detector's (ExpW's take in
    hair and shoulders), so a correct detection can have an IoU near 0.2 (``inside=0``: IoU
    only). Items without a box take the largest remaining detection.
    """
    out: list[int | None] = [None] * len(items)
    used: set[int] = set()
    pairs = []
    for i, it in enumerate(items):
        if it.box is None:
            continue
        for j, d in enumerate(dets):
            v = box_iou(it.box, d.box)
            if v >= iou:
                pairs.append((v, i, j))
    _assign(pairs, out, used)
    if inside > 0:
        pairs = []
        for i, it in enumerate(items):
            if it.box is None or out[i] is not None:
                continue
            for j, d in enumerate(dets):
                share = box_inside(d.box, it.box)
                if j not in used and share >= inside and d.width >= 0.25 * (it.box[2] - it.box[0]):
                    pairs.append((share * d.area, i, j))
        _assign(pairs, out, used)
    for i, it in enumerate(items):
        if it.box is None:
            free = [j for j in range(len(dets)) if j not in used]
            if free:
                j = max(free, key=lambda k: dets[k].area)
                out[i] = j
                used.add(j)
    return out


def _assign(pairs: list[tuple[float, int, int]], out: list[int | None], used: set[int]) -> None:
    """Greedy one-to-one matching: ``(score, item, detection)`` pairs, best score first."""
    for _, i, j in sorted(pairs, reverse=True):
        if out[i] is None and j not in used:
            out[i] = j
            used.add(j)


def evaluate_wild(manifest: str | Path, recognizer=None, *, model: Any = None, mode: str = "detect",
                  detector: str = "yunet", iou: float = 0.3, limit: int | None = None, split: str | None = None,
                  save_predictions: str | Path | None = None,
                  progress: Callable[[int, int], None] | None = None, **recognizer_kw) -> dict[str, Any]:
    """Run the pipeline over a manifest and return the metrics (see the module docstring).

    ``recognizer`` (a :class:`~wildfer.wild.Recognizer`) is used as is; otherwise one is
    built from ``model``, ``detector``, ``mode`` and ``recognizer_kw``. ``split`` keeps the
    rows of that split (see :func:`~wildfer.data.manifest.read_manifest`), ``limit`` the first ``limit`` faces.
    ``save_predictions`` writes one CSV row per face (path, label, prediction, found, one
    probability column per class). ``progress(done, total)`` is called after each photo.
    """
    from .recognizer import Recognizer

    items = read_manifest(manifest, split=split)
    if limit:
        items = items[: int(limit)]
    rec = recognizer or Recognizer(model=model, detector=detector, mode=mode, **recognizer_kw)
    t0 = time.perf_counter()
    matches = _match_photos(rec, items, iou, progress)
    # the rules of every data loader: rows whose photo cannot be read, or whose box lies outside
    # it, are listed and left out (not scored as missed faces); too many of them is an error
    bad = matches.bad_rows
    check_unreadable(manifest, len(bad), len(items), matches.unreadable[0]["error"] if matches.unreadable else None)
    if bad:
        keep = [k for k in range(len(items)) if k not in bad]
        items = [items[k] for k in keep]
        matches = replace(matches, crops=[matches.crops[k] for k in keep],
                          via_search=[matches.via_search[k] for k in keep], by_iou=[matches.by_iou[k] for k in keep])
    labels = tuple(rec.labels)
    pred, face_probs = _classify_found(rec, matches.crops, labels)
    seconds = time.perf_counter() - t0
    found = [c is not None for c in matches.crops]
    if save_predictions is not None:
        write_predictions(save_predictions, items, pred, face_probs, found, labels)
    out = _run_summary(manifest, split, rec, iou, items, matches, seconds)
    labelled = [k for k in range(len(items)) if items[k].label is not None]
    if not labelled:
        out.update({"accuracy": None, "accuracy_found": None, "accuracy_search": None, "macro_f1": None,
                    "labels": list(labels), "confusion": None, "confusion_columns": None, "per_class": {},
                    "calibration": None})
        return out
    out.update(_label_metrics([items[k].label for k in labelled], [pred[k] for k in labelled], labels,
                              [found[k] for k in labelled], [matches.via_search[k] for k in labelled],
                              [matches.by_iou[k] for k in labelled]))
    scored = [k for k in labelled if found[k] and items[k].label in labels]
    out["calibration"] = _calibration(face_probs[scored], [labels.index(items[k].label) for k in scored])
    return out


def _calibration(probs: np.ndarray, y: list[int]) -> dict[str, Any] | None:
    """How far the found faces' probabilities can be trusted: the expected calibration error
    and the accuracy when only the 50% / 80% / 100% most confident faces are answered, with the
    top probability each share starts at (:func:`wildfer.evaluate.calibration.risk_coverage`)."""
    if not y:
        return None
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum(1, keepdims=True)  # float32 rows, summed again in float64
    return {"n": len(y), "ece": round(expected_calibration_error(p, y), 4),
            "risk_coverage": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
                              for r in risk_coverage(p, y)]}


@dataclass
class PhotoMatches:
    """What detection and alignment found for each face of a manifest (one entry per face)."""

    crops: list[np.ndarray | None]  # the aligned crop of the detection matched to the face; None: missed
    via_search: list[bool]  # matched to a face the search fallback found
    by_iou: list[bool]  # matched by IoU with the labelled box (or the face has no box)
    n_images: int
    n_detections: int
    unreadable: list[dict[str, str]]
    bad_rows: set[int] = field(default_factory=set)  # faces left out: photo unreadable, box outside it


def _match_photos(rec, items: list[ManifestItem], iou: float,
                  progress: Callable[[int, int], None] | None) -> PhotoMatches:
    """Detect and align each photo of ``items`` once and match its detections to its faces
    (:func:`match_faces`); unreadable photos are listed, their faces missed."""
    by_image: "OrderedDict[Path, list[int]]" = OrderedDict()
    for k, it in enumerate(items):
        by_image.setdefault(it.path, []).append(k)
    m = PhotoMatches([None] * len(items), [False] * len(items), [False] * len(items), len(by_image), 0, [])
    for done, (path, ks) in enumerate(by_image.items(), start=1):
        try:
            work = rec.prepare(path)  # detection + alignment, classified later in one batch
        except WildferError as e:
            m.unreadable.append({"path": str(path), "error": str(e)})
            m.bad_rows.update(ks)
            work = None
        if work is not None:
            m.n_detections += len(work.dets)
            for k in ks:
                outside = items[k].box and box_outside(items[k].box, work.width, work.height)
                if outside:
                    m.bad_rows.add(k)
                    m.unreadable.append({"path": str(path), "error": f"{path}, row {items[k].row}: {outside}"})
            ks = [k for k in ks if k not in m.bad_rows]
            # the whole-photo path has one "face", the photo: it stands for the photo's labelled face
            faces = [replace(items[k], box=None) if rec.mode == "whole" else items[k] for k in ks]
            for k, face, j in zip(ks, faces, match_faces(faces, work.dets, iou)):
                if j is not None:
                    m.crops[k] = work.face_input(j)
                    m.via_search[k] = "search" in work.dets[j].flags
                    m.by_iou[k] = face.box is None or box_iou(face.box, work.dets[j].box) >= iou
        if progress:
            progress(done, len(by_image))
    return m


def _classify_found(rec, crops: list[np.ndarray | None], labels: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """``(prediction, probabilities)`` per face: the classifier runs once over the found faces'
    crops; a missed face is predicted :data:`MISSED` with NaN probabilities."""
    from .recognizer import stack_faces

    found = np.flatnonzero([c is not None for c in crops])
    pred: list[str] = [MISSED] * len(crops)
    face_probs = np.full((len(crops), len(labels)), np.nan, dtype=np.float32)
    if len(found):
        face_probs[found] = rec.classifier.predict_proba(stack_faces([crops[k] for k in found]), tta=rec.tta)
        for k in found:
            pred[k] = labels[int(face_probs[k].argmax())]
    return pred, face_probs


def _run_summary(manifest, split, rec, iou: float, items: list[ManifestItem], m: PhotoMatches,
                 seconds: float) -> dict[str, Any]:
    """The settings of a run and its counts over every face, labelled or not."""
    n = len(items)
    n_found = sum(c is not None for c in m.crops)
    return {
        "manifest": str(manifest),
        "split": split,
        "model": rec.classifier.name or rec.classifier.arch,
        "backend": getattr(rec.classifier, "backend_label", None),
        "mode": rec.mode,
        "detector": None if rec.mode == "whole" else rec.detector.name,
        "max_side": None if rec.mode == "whole" else rec.detector.max_side,
        "iou_threshold": iou,
        "align": {"margin": rec.align.margin, "center_y": rec.align.center_y, "rotate": rec.align.rotate,
                  "size": rec.align.size, "template": rec.align.template is not None, "views": len(rec.aligns)},
        "tta": rec.tta,
        "full_decode": rec.full_decode,
        "n": n,
        "n_images": m.n_images,
        "n_found": n_found,
        "n_search": int(sum(m.via_search)),
        "n_detections": m.n_detections,
        "detection_recall": n_found / n if n else None,
        "unreadable": m.unreadable,
        "seconds": round(seconds, 2),
        "images_per_s": round(m.n_images / seconds, 2) if seconds > 0 else None,
    }


def _label_metrics(y_true: list[str], y_pred: list[str], labels: tuple[str, ...], found: list[bool],
                   search: list[bool], by_iou: list[bool]) -> dict[str, Any]:
    """Recall, accuracy (overall, of found faces, by detector and by search), macro-F1 and the
    confusion matrix (with a ``missed`` column) over the labelled faces."""
    present = [c for c in labels if c in set(y_true)] + sorted(set(y_true) - set(labels))
    correct = [t == p for t, p in zip(y_true, y_pred)]
    cols = present + [MISSED]
    cm = confusion_matrix(y_true, y_pred, labels=cols)[: len(present)]
    return {
        "n": len(y_true),
        "n_found": int(sum(found)),
        "detection_recall": sum(found) / len(y_true),
        "detection_recall_iou": sum(by_iou) / len(y_true),
        "accuracy": float(np.mean(correct)),
        "accuracy_found": float(np.mean([c for c, f in zip(correct, found) if f])) if any(found) else None,
        "accuracy_detector": (float(np.mean([c for c, f, s in zip(correct, found, search) if f and not s]))
                              if any(f and not s for f, s in zip(found, search)) else None),
        "accuracy_search": (float(np.mean([c for c, s in zip(correct, search) if s])) if any(search) else None),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "labels": present,
        "confusion": cm.tolist(),
        "confusion_columns": cols,
        "per_class": {c: {"n": int(cm[i].sum()), "recall": float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None,
                          "found": int(cm[i].sum() - cm[i, -1])} for i, c in enumerate(present)},
    }


def write_predictions(path: str | Path, items: list[ManifestItem], pred: list[str], probs: np.ndarray,
                      found: list[bool], labels: tuple[str, ...]) -> Path:
    """One CSV row per face: path, manifest row, label, prediction (``missed`` when no face
    was found), found (0/1) and each class's probability (empty for a missed face)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "row", "label", "prediction", "found", *(f"p_{c}" for c in labels)])
        for it, p, pr, f in zip(items, pred, probs, found):
            w.writerow([str(it.path), it.row, it.label or "", p, int(f),
                        *(f"{v:.5f}" if f else "" for v in pr)])
    tmp.replace(path)
    return path


def read_predictions(path: str | Path, labels: tuple[str, ...] | list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A :func:`write_predictions` file back as arrays over ``labels``: the true label's index
    (-1 for a label outside them), found (bool) and the probabilities (N x C; a missed face's
    are uniform, as a guess would be)."""
    labels = list(labels)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    missing = [f"p_{c}" for c in labels if rows and f"p_{c}" not in rows[0]]
    if missing or (rows and not {"label", "found"} <= set(rows[0])):
        raise WildferError(f"{path}: not a file of evaluate-wild --save-predictions over {labels} "
                           f"(columns missing: {', '.join(missing) or 'label / found'})")
    y = np.array([labels.index(r["label"]) if r["label"] in labels else -1 for r in rows], dtype=np.int64)
    found = np.array([r["found"] == "1" for r in rows], dtype=bool)
    probs = np.array([[float(r[f"p_{c}"]) if r["found"] == "1" else 1.0 / len(labels) for c in labels]
                      for r in rows], dtype=np.float64).reshape(len(rows), len(labels))
    return y, found, probs


__all__ = ["evaluate_wild", "match_faces", "read_manifest", "ManifestItem", "write_predictions", "read_predictions",
           "MISSED"]
