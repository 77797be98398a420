"""Probabilities for a data set: test-time augmentation, ensembles, and class alignment.

* TTA ``"flip"``: the face and its mirror image; ``"tencrop"``: the four corners and the centre
  at ``crop`` x ``crop`` pixels (44 of 48 by default), each resized back to the model's input
  size, each with its mirror image. The softmax outputs of the views are averaged.
* Ensembles average the (aligned) probabilities of several classifiers.
* Alignment: a model's output classes are matched to the data's classes *by name*, so a
  FER+ model (8 classes, its own order) evaluates on FER2013 labels (7 classes) and the other
  way round. Data classes the model lacks get probability 0 (e.g. ``contempt`` for a FER2013
  model on FER+ data); model classes the data lacks are folded away and the rest renormalised.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

from ..errors import ModelError
from ..labels import FER2013_CLASSES

TTA_MODES = (None, "none", "flip", "tencrop")
CHUNK = 4096  # faces per Classifier.predict_proba call


def resolve_models(models, *, data_classes: Sequence[str] | None = None) -> list:
    """Classifiers from a classifier, a name/path, or a list of them (``"a,b"`` strings split).

    An 8-class FER+ model evaluated against FER2013's classes is mapped with
    :func:`wildfer.models.loader.with_fer2013_classes`.
    """
    from ..models.loader import Classifier, load_model, with_fer2013_classes

    if isinstance(models, (str, os.PathLike, Classifier)) or not isinstance(models, Iterable):
        models = [models]
    out = []
    for m in models:
        if isinstance(m, str) and "," in m and not os.path.exists(m):
            out.extend(resolve_models([s for s in m.split(",") if s.strip()], data_classes=data_classes))
            continue
        clf = m if not isinstance(m, (str, os.PathLike)) else load_model(str(m).strip())
        if data_classes is not None and tuple(data_classes) == FER2013_CLASSES and tuple(clf.labels) != FER2013_CLASSES:
            if isinstance(clf, Classifier):
                clf = with_fer2013_classes(clf)
        out.append(clf)
    if not out:
        raise ModelError("no model given")
    return out


def model_name(clf) -> str:
    return str(getattr(clf, "name", "") or getattr(clf, "arch", "") or type(clf).__name__)


def alignment_matrix(model_labels: Sequence[str], data_classes: Sequence[str]) -> np.ndarray | None:
    """``C_data x C_model`` 0/1 matrix mapping model outputs onto data classes by name; ``None``
    when they already agree. Raises :class:`ModelError` when no class name is shared."""
    model_labels, data_classes = list(model_labels), list(data_classes)
    if model_labels == data_classes:
        return None
    m = np.zeros((len(data_classes), len(model_labels)), dtype=np.float64)
    for j, c in enumerate(model_labels):
        if c in data_classes:
            m[data_classes.index(c), j] = 1.0
    if m.sum() == 0:
        raise ModelError(f"the model's classes {model_labels} share no name with the data's {data_classes}")
    return m


def align_probs(probs: np.ndarray, model_labels: Sequence[str], data_classes: Sequence[str]) -> np.ndarray:
    """Re-index ``probs`` (N x C_model) to the data's classes (N x C_data), renormalised."""
    m = alignment_matrix(model_labels, data_classes)
    if m is None:
        return probs
    p = probs @ m.T
    return p / np.clip(p.sum(1, keepdims=True), 1e-12, None)


def tta_views(faces: np.ndarray, tta: str | None, crop: int = 44) -> list[np.ndarray]:
    """The views of ``faces`` (N x H x W uint8) that one TTA mode averages over."""
    faces = np.asarray(faces)
    if tta in (None, "none", ""):
        return [faces]
    flip = lambda a: np.ascontiguousarray(a[..., ::-1])  # noqa: E731
    if tta == "flip":
        return [faces, flip(faces)]
    if tta == "tencrop":
        h, w = faces.shape[-2:]
        ch, cw = min(crop, h), min(crop, w)
        oy, ox = (h - ch) // 2, (w - cw) // 2
        origins = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), (oy, ox)]
        crops = [np.ascontiguousarray(faces[..., y : y + ch, x : x + cw]) for y, x in origins]
        return crops + [flip(c) for c in crops]
    raise ModelError(f"unknown TTA mode {tta!r} (flip | tencrop)")


def predict_proba(models, faces: np.ndarray, data_classes: Sequence[str] | None = None, *, tta: str | None = None,
                  batch_size: int = 256, crop: int = 44) -> np.ndarray:
    """Averaged probabilities (N x C) of one or more classifiers over the TTA views of ``faces``.

    Each classifier resizes views to its own input size (``Classifier.to_tensor``). With
    ``data_classes`` the output columns follow those classes (see :func:`align_probs`).
    """
    clfs = resolve_models(models, data_classes=data_classes)
    labels = list(data_classes) if data_classes is not None else list(clfs[0].labels)
    views = tta_views(faces, tta, crop)
    total = None
    for clf in clfs:
        acc = None
        for v in views:
            # chunks bound the float copy Classifier.to_tensor makes (28,709 faces = 265 MB at once)
            p = np.concatenate([np.asarray(clf.predict_proba(v[i : i + CHUNK], batch_size=batch_size), dtype=np.float64)
                                for i in range(0, len(v), CHUNK)])
            acc = p if acc is None else acc + p
        p = align_probs(acc / len(views), list(clf.labels), labels)
        total = p if total is None else total + p
    return total / len(clfs)
