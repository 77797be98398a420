"""Probabilities for a data set: test-time augmentation, ensembles, and class alignment.

* TTA ``"flip"``: the face and its mirror image; ``"tencrop"``: the four corners and the centre
  at ``crop`` x ``crop`` pixels (44 of 48 by default), each resized back to the model's input
  size, each with its mirror image. The softmax outputs of the views are averaged.
* Ensembles average the (aligned) probabilities of several classifiers, equally or with
  ``weights``.
* Saved probabilities: :func:`save_probs` writes what an evaluation predicted (``wildfer
  evaluate --save-probs P.npz``); :func:`load_saved_probs` reads it back as a stand-in for the
  model(s) that made it, checked to be for the same faces and TTA, so ensembles (and their
  weights) can be searched without running the networks again (``--model P.npz``).
* Alignment: a model's output classes are matched to the data's classes *by name*, so a
  FER+ model (8 classes, its own order) evaluates on FER2013 labels (7 classes) and the other
  way round. Data classes the model lacks get probability 0 (e.g. ``contempt`` for a FER2013
  model on FER+ data); model classes the data lacks are folded away and the rest renormalised.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import DataError, ModelError
from ..labels import FER2013_CLASSES, class_alignment
from ..models.classifier import fold_classes, tta_mode, tta_views
from ..models.ensemble import ensemble_weights
from ..paths import written_whole

CHUNK = 4096  # faces per Classifier.predict_proba call
PROBS_FORMAT = "wildfer-probs-1"  # the marker key of a saved-probabilities file


def faces_fingerprint(faces: np.ndarray) -> str:
    """SHA-1 of the faces' shape and bytes: which faces a saved-probabilities file is for."""
    faces = np.ascontiguousarray(faces)
    h = hashlib.sha1(str((faces.shape, str(faces.dtype))).encode())
    h.update(faces.tobytes())
    return h.hexdigest()


@dataclass
class SavedProbs:
    """Probabilities saved by :func:`save_probs`, used in place of the model(s) that made them."""

    probs: np.ndarray  # N x C
    labels: tuple[str, ...]
    fingerprint: str
    tta: str | None
    name: str
    path: str = ""

    def check(self, faces: np.ndarray, tta: str | None) -> None:
        if len(faces) != len(self.probs) or faces_fingerprint(faces) != self.fingerprint:
            raise DataError(self.path, f"saved probabilities for {len(self.probs)} other faces, not the "
                                       f"{len(faces)} being evaluated (same data file and --split needed)")
        if (tta or None) != (self.tta or None):
            raise DataError(self.path, f"saved with --tta {self.tta or 'none'}, but this evaluation uses "
                                       f"--tta {tta or 'none'}")


def save_probs(path: str | os.PathLike, probs: np.ndarray, faces: np.ndarray, labels: Sequence[str], *,
               name: str, tta: str | None = None) -> Path:
    """Write ``probs`` (N x C, columns ``labels``) for ``faces`` so :func:`load_saved_probs` can
    stand in for the model later (``.npz``, float64 so that reports match to the last tie;
    ~0.2 MB for PublicTest)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ModelError(f"{path}: saved probabilities need a .npz file name")
    with written_whole(path) as tmp:
        np.savez_compressed(tmp, **{PROBS_FORMAT: np.array(1)}, probs=np.asarray(probs, np.float64),
                            labels=np.array(list(labels)), fingerprint=np.array(faces_fingerprint(faces)),
                            tta=np.array(tta or "none"), name=np.array(name))
    return path


def load_saved_probs(path: str | os.PathLike) -> SavedProbs:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            if PROBS_FORMAT not in z.files:
                raise DataError(path, "not a saved-probabilities file (write one with wildfer evaluate --save-probs)")
            probs = np.asarray(z["probs"], np.float64)
            labels = tuple(str(c) for c in z["labels"])
            tta = str(z["tta"])
            return SavedProbs(probs=probs, labels=labels, fingerprint=str(z["fingerprint"]),
                              tta=None if tta == "none" else tta, name=str(z["name"]), path=str(path))
    except (OSError, ValueError, KeyError) as e:
        raise DataError(path, f"unreadable saved probabilities ({e})") from None


def resolve_models(models, *, data_classes: Sequence[str] | None = None, device: str | None = None,
                   backend: str | None = None) -> list:
    """Classifiers from a classifier, a name/path, or a list of them (``"a,b"`` strings split).

    An 8-class FER+ model evaluated against FER2013's classes is mapped with
    :func:`wildfer.models.loader.with_fer2013_classes`. ``device`` (``auto``, ``cpu``, ``cuda``,
    ``cuda:N``) puts every classifier there; ``None``: given ones stay, names load on the CPU.
    ``backend`` (``torch``, ``onnx``, ``int8``): how every classifier computes; ``None``: given
    ones keep theirs, names run on torch.
    """
    from ..models.loader import Classifier, load_model, with_fer2013_classes

    if isinstance(models, (str, os.PathLike, Classifier)) or not isinstance(models, Iterable):
        models = [models]
    out = []
    for m in models:
        if isinstance(m, str) and "," in m and not os.path.exists(m):
            out.extend(resolve_models([s for s in m.split(",") if s.strip()], data_classes=data_classes, device=device,
                                      backend=backend))
            continue
        if isinstance(m, SavedProbs):
            out.append(m)
            continue
        if isinstance(m, (str, os.PathLike)) and str(m).strip().endswith(".npz"):
            out.append(load_saved_probs(str(m).strip()))
            continue
        if isinstance(m, (str, os.PathLike)):  # load_model finds a checkpoint's int8 graph beside it
            clf = load_model(str(m).strip(), device=device or "cpu", backend=backend or "auto")
        else:
            clf = m.to(device) if device is not None and isinstance(m, Classifier) else m
            if backend not in (None, "auto") and isinstance(clf, Classifier) and backend != clf.backend:
                clf = clf.with_backend(backend, **({} if device is None else {"device": device}))
        if data_classes is not None and tuple(data_classes) == FER2013_CLASSES and tuple(clf.labels) != FER2013_CLASSES:
            if isinstance(clf, Classifier):
                clf = with_fer2013_classes(clf)
        out.append(clf)
    if not out:
        raise ModelError("no model given")
    return out


def model_name(clf) -> str:
    return str(getattr(clf, "name", "") or getattr(clf, "arch", "") or type(clf).__name__)


def align_probs(probs: np.ndarray, model_labels: Sequence[str], data_classes: Sequence[str]) -> np.ndarray:
    """Re-index ``probs`` (N x C_model) to the data's classes (N x C_data) by class name,
    renormalised (:func:`wildfer.models.classifier.fold_classes`)."""
    return fold_classes(probs, class_alignment(model_labels, data_classes))


def predict_proba(models, faces: np.ndarray, data_classes: Sequence[str] | None = None, *, tta: str | None = None,
                  batch_size: int = 256, crop: int = 44, weights: Sequence[float] | None = None,
                  device: str | None = None) -> np.ndarray:
    """Averaged probabilities (N x C) of one or more classifiers over the TTA views of ``faces``.

    Each classifier resizes views to its own input size (``Classifier.to_tensor``). With
    ``data_classes`` the output columns follow those classes (see :func:`align_probs`).
    ``weights``: one per model (normalised); equal by default. A :class:`SavedProbs` member
    gives its saved probabilities, after checking they are for these faces and this TTA.
    ``device``: where the classifiers run (:func:`resolve_models`).
    """
    clfs = resolve_models(models, data_classes=data_classes, device=device)
    w = ensemble_weights(weights, len(clfs))
    labels = list(data_classes) if data_classes is not None else list(clfs[0].labels)
    tta = tta_mode(tta)
    for clf in clfs:  # a mismatched file stops the evaluation before any network runs
        if isinstance(clf, SavedProbs):
            clf.check(faces, tta)
    views = None
    total = None
    for wi, clf in zip(w, clfs):
        if isinstance(clf, SavedProbs):
            p = align_probs(clf.probs, list(clf.labels), labels)
        else:
            views = tta_views(np.asarray(faces), tta, crop) if views is None else views
            acc = None
            for v in views:
                # chunks bound the float copy Classifier.to_tensor makes (28,709 faces = 265 MB at once)
                p = np.concatenate([np.asarray(clf.predict_proba(v[i : i + CHUNK], batch_size=batch_size),
                                               dtype=np.float64) for i in range(0, len(v), CHUNK)])
                acc = p if acc is None else acc + p
            p = align_probs(acc / len(views), list(clf.labels), labels)
        total = wi * p if total is None else total + wi * p
    return total
