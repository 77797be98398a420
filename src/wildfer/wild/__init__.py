"""Wild photos: find, align and classify every face.

>>> from wildfer.wild import Recognizer
>>> rec = Recognizer(model="default", detector="yunet")     # doctest: +SKIP
>>> rec.predict("group.jpg").to_dict()                      # doctest: +SKIP

Pieces: :mod:`~wildfer.wild.detectors` (face detectors behind one interface),
:mod:`~wildfer.wild.align` (FER2013-framed 48 x 48 crops), :mod:`~wildfer.wild.search` (the
fallback when nothing is found), :mod:`~wildfer.wild.recognizer` (the pipeline),
:mod:`~wildfer.wild.evaluate` (labelled manifests), :mod:`~wildfer.wild.video` (tracks and
smoothing), :mod:`~wildfer.wild.annotate` (drawing results). Saliency maps of the faces of a
photo, painted back on it, are :func:`wildfer.explain_photo`'s (:mod:`wildfer.photo_maps`).
"""

from __future__ import annotations

__all__ = ["Recognizer", "create_detector", "list_detectors", "evaluate_wild"]


def __getattr__(name):  # lazy: importing wildfer.wild must not import torch
    if name == "Recognizer":
        from .recognizer import Recognizer

        return Recognizer
    if name in ("create_detector", "list_detectors"):
        from . import detectors

        return getattr(detectors, name)
    if name == "evaluate_wild":
        from .evaluate import evaluate_wild

        return evaluate_wild
    raise AttributeError(f"module 'wildfer.wild' has no attribute {name!r}")
