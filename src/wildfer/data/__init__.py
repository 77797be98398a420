"""Data sets: FER2013 / FER+ CSVs, image folders, manifests, torch adapters, augmentation."""

from .fer2013 import FaceArrays, load_fer2013

__all__ = ["FaceArrays", "load_fer2013"]
