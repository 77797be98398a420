"""Labelled wild photos -> training faces, through the same detect -> align path as inference.

>>> from wildfer.wild.crops import crop_manifest
>>> train = crop_manifest("expw.csv", split="train")          # doctest: +SKIP
>>> train.images.shape, train.meta["n_found"]                   # doctest: +SKIP
((3348, 48, 48), 3321)

Each photo of a labelled manifest (``path,label[,left,top,right,bottom][,split]``, read by
:func:`wildfer.data.manifest.read_manifest`) is decoded and searched by the detector once;
every labelled face is matched to a detection (as :func:`~wildfer.wild.evaluate.match_faces`
does: by IoU with its box or lying inside it; the largest detection when the row has no box) and cut out with the pipeline's alignment, so a model
trained on these crops sees faces framed exactly as :class:`~wildfer.wild.Recognizer` will
show them. A face the detector misses is framed from its labelled box (no landmarks, so no
rotation) and marked ``found = False``; a row without a box whose photo has no detection is
skipped. Unreadable photos are skipped and listed in ``meta["skipped"]`` as ``(path, problem)``.

The result is cached as one ``.npz`` per (manifest, detector, alignment) in the wildfer cache
folder, so an epoch over the crops costs nothing but the forward passes. The cache is keyed
on the manifest file (path, size, modification time): edit the manifest, or pass
``cache=False``, after changing its images.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from ..data import cache as data_cache
from ..data.fer2013 import FaceArrays
from ..data.manifest import ManifestItem, read_manifest, row_usage
from ..data.paths import data_path
from ..data.splits import split_rows
from ..errors import WildferError
from ..labels import FER2013_CLASSES
from .align import AlignConfig, align_face, face_pixels
from .detectors import Detection, create_detector
from .evaluate import match_faces

#: bump when the crop recipe changes, so old cache files are not reused
CROP_VERSION = 3  # 3: detector "yunet" is the ONNX graph (float boxes, not the C build's integers)


def crop_manifest(manifest: str | Path, *, split: str | None = None, detector: str = "yunet", max_side: int = 640,
                  align: AlignConfig | None = None, iou: float = 0.3, colour: bool = False, cache: bool = True,
                  cache_dir: str | Path | None = None,
                  progress: Callable[[int, int], None] | None = None) -> FaceArrays:
    """The labelled faces of ``manifest`` as :class:`~wildfer.data.fer2013.FaceArrays` of
    aligned crops (FER2013's 7 classes): the rows of ``split`` by the one split rule
    (:func:`~wildfer.data.splits.split_rows`: ``train`` keeps the rows whose ``split`` is
    ``train`` or ``Training``, a row without one counts as ``Training``); every row with
    ``split=None`` or ``"all"``. ``colour``: RGB crops (``N x 3 x size x size``) for a
    classifier of colour faces, instead of grey ones.

    ``usage`` holds each row's usage (``Training``, ``PublicTest`` ...), ``paths`` its photo, ``rows`` its manifest row;
    ``meta["found"]`` (bool per face) says whether the detector found it, ``meta["landmarks"]``
    (N x 5 x 2, crop pixels, NaN without landmarks) where it put the landmarks.
    """
    align = align or AlignConfig()
    manifest = data_path(manifest)
    recipe = {"v": CROP_VERSION, "detector": detector, "max_side": max_side, "iou": iou, "align": asdict(align)}
    salt = json.dumps({**recipe, "colour": True} if colour else recipe, sort_keys=True)
    items = read_manifest(manifest, labelled=True)  # validates the manifest before any cache lookup or detection
    directory = data_cache.cache_dir(cache_dir) / "wild_crops"
    key = data_cache.file_key(manifest, salt)
    arrays = data_cache.load(key, directory) if cache else None
    if arrays is None:
        arrays = _crop_items(items, detector, max_side, align, iou, colour, progress)
        if cache:
            data_cache.save(key, directory, arrays)
    return _to_faces(arrays, manifest, split)


def _crop_items(items: list[ManifestItem], detector: str, max_side: int, align: AlignConfig, iou: float,
                colour: bool, progress: Callable[[int, int], None] | None) -> dict[str, np.ndarray]:
    from ..data.images import read_image

    det = create_detector(detector, max_side=max_side)
    by_photo: dict[Path, list[int]] = {}
    for k, it in enumerate(items):
        by_photo.setdefault(it.path, []).append(k)
    n, size = len(items), align.size
    images = np.zeros((n, 3, size, size) if colour else (n, size, size), dtype=np.uint8)
    landmarks = np.full((n, 5, 2), np.nan, dtype=np.float32)
    found = np.zeros(n, dtype=bool)
    keep = np.zeros(n, dtype=bool)
    problems: list[str] = [""] * n
    for done, (path, ks) in enumerate(by_photo.items(), start=1):
        try:
            rgb = read_image(path)
        except WildferError as e:
            for k in ks:
                problems[k] = str(e)
        else:
            pixels = face_pixels(rgb, colour)
            dets = det.detect(rgb)
            for k, j in zip(ks, match_faces([items[k] for k in ks], dets, iou)):
                if j is not None:
                    face, found[k] = dets[j], True
                elif items[k].box is not None:
                    face = Detection(items[k].box, 0.0, None)
                else:
                    problems[k] = f"{path}: no face found and no box to fall back on"
                    continue
                images[k], m = align_face(pixels, face, align, det.name)
                keep[k] = True
                if face.landmarks is not None:
                    lm = np.asarray(face.landmarks, dtype=np.float64).reshape(5, 2)
                    landmarks[k] = lm @ m[:, :2].T + m[:, 2]
        if progress:
            progress(done, len(by_photo))
    label_ix = {c: i for i, c in enumerate(FER2013_CLASSES)}
    labels = np.array([label_ix.get(it.label or "", -1) for it in items], dtype=np.int64)
    for k, it in enumerate(items):
        if keep[k] and labels[k] < 0:
            keep[k], problems[k] = False, f"{it.path}: label {it.label!r} is not one of FER2013's 7 classes"
    return {
        "images": images, "labels": labels, "landmarks": landmarks, "found": found, "keep": keep,
        "usage": np.array([it.split or "" for it in items]), "paths": np.array([str(it.path) for it in items]),
        "rows": np.array([it.row for it in items], dtype=np.int64), "problems": np.array(problems),
    }


def _to_faces(a: dict[str, np.ndarray], manifest: Path, split: str | None) -> FaceArrays:
    usage = np.array([row_usage(u) for u in a["usage"].astype(str)], dtype=str)
    rows = split_rows(usage, split, manifest)
    if rows is None:
        rows = np.ones(len(usage), dtype=bool)
    skipped = [(str(p), str(msg)) for p, msg in zip(a["paths"][rows], a["problems"][rows]) if msg]
    sel = rows & a["keep"]
    found = a["found"][sel]
    return FaceArrays(
        images=a["images"][sel], labels=a["labels"][sel], usage=usage[sel], classes=FER2013_CLASSES,
        rows=a["rows"][sel], source=str(manifest), paths=a["paths"][sel],
        meta={"format": "wild-crops", "skipped": skipped, "found": found, "n_found": int(found.sum()),
              "landmarks": a["landmarks"][sel]},
    )
