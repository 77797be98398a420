"""Data sets: FER2013 / FER+ CSVs, image folders, manifests, torch adapters, augmentation.

>>> from wildfer.data import load_fer2013, load_ferplus, load_dataset     # doctest: +SKIP
>>> train = load_dataset("fer2013.csv.gz", "train")                      # doctest: +SKIP
>>> val = load_dataset("faces.csv", "val")         # a manifest's split column  # doctest: +SKIP

:func:`load_dataset` reads every format (``dataset=`` forces one, :mod:`wildfer.data.formats`)
and selects rows by one split rule (:func:`wildfer.data.splits.select_split`). Every manifest is
read by :func:`read_manifest` (:mod:`wildfer.data.manifest`). Everything loads into
:class:`FaceArrays` (N x 48 x 48 uint8 images, labels, usage).
Torch adapters (:class:`FaceDataset`, :func:`make_loader`) import torch lazily.
"""

from .fer2013 import FaceArrays, load_fer2013

__all__ = [
    "FaceArrays",
    "load_fer2013",
    "load_ferplus",
    "load_dataset",
    "read_manifest",
    "select_split",
    "FaceDataset",
    "make_loader",
]

_LAZY = {
    "load_ferplus": "ferplus",
    "load_dataset": "formats",
    "read_manifest": "manifest",
    "select_split": "splits",
    "FaceDataset": "torchdata",
    "make_loader": "torchdata",
}


def __getattr__(name):  # lazy: torch and PIL are imported only when needed
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'wildfer.data' has no attribute {name!r}")
