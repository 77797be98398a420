"""Image-folder data sets and manifest CSVs -> :class:`~wildfer.data.fer2013.FaceArrays`.

Two layouts of folders are understood:

* ``root/<class>/*.jpg`` (any depth below the class folder); every image gets ``usage``
  (``"Training"`` unless told otherwise);
* ``root/<split>/<class>/*.jpg`` with split folders such as ``train/`` and ``test/`` (the
  common FER2013 image-folder release), split folders named by
  :data:`~wildfer.data.fer2013.SPLIT_NAMES` (``train`` -> ``Training``, ``val`` / ``test`` ->
  ``PublicTest``, ``private`` -> ``PrivateTest`` ...).

A manifest (``path,label[,left,top,right,bottom][,split]``) is read by
:func:`wildfer.data.manifest.read_manifest`, with its rules for columns, paths, labels, boxes
and splits; a malformed header or row is a :class:`DataError` naming the row.

Class names are normalised (:func:`wildfer.labels.normalize_label`: ``anger`` -> ``angry``,
``happiness`` -> ``happy`` ...). Each image is read with :func:`read_image`, turned to
grayscale, cropped to its box when it has one, and resized to ``size x size``.

Bad images never stop a load and are never dropped silently: an unreadable, truncated or
missing image, a box outside its image, a file that is not an image, or a label outside the
classes asked for is skipped and listed in ``meta["skipped"]`` as ``(path, problem)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from ..errors import DataError, ImageError
from ..labels import FER2013_CLASSES, FERPLUS_CLASSES, normalize_label
from .csvfiles import check_unreadable
from .fer2013 import SPLIT_NAMES, FaceArrays
from .images import is_image_file, read_image, to_gray
from .manifest import KNOWN_LABELS, box_outside, read_manifest, row_usage
from .paths import data_path, not_found_hint


def resolve_classes(labels: Iterable[str], classes: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """The class list for normalised ``labels``.

    ``classes``: a sequence of names, ``"fer2013"``, ``"ferplus"``, or None to pick FER2013's
    7 classes unless a FER+-only class (contempt) appears, then FER+'s 8.
    """
    if classes is None:
        found = set(labels)
        return FERPLUS_CLASSES if "contempt" in found else FER2013_CLASSES
    if isinstance(classes, str):
        key = classes.lower()
        if key == "fer2013":
            return FER2013_CLASSES
        if key == "ferplus":
            return FERPLUS_CLASSES
        raise DataError("classes", f"unknown class set {classes!r}; use 'fer2013', 'ferplus' or a list of names")
    return tuple(normalize_label(c) for c in classes)


#: Fewest pixels a face (the image, or its box) may have on a side; smaller ones hold no face.
MIN_FACE_SIDE = 8


def face_from_image(src, box: Sequence[float] | None = None, size: int = 48, *, name: str | None = None) -> np.ndarray:
    """Read ``src`` (see :func:`read_image`), make it grayscale, crop to ``box``
    (``left, top, right, bottom`` in pixels, clipped to the image) and resize to
    ``size x size`` uint8. Raises :class:`ImageError` for an unusable image or box, or
    a face smaller than :data:`MIN_FACE_SIDE` on a side.
    """
    gray = to_gray(read_image(src, name=name))
    label = name or str(src)
    if box is not None:
        h, w = gray.shape
        left, top, right, bottom = (float(v) for v in box)
        if not (right > left and bottom > top):
            raise ImageError(label, f"bad box (left={left:g}, top={top:g}, right={right:g}, bottom={bottom:g}): empty")
        x0, y0 = max(0, int(round(left))), max(0, int(round(top)))
        x1, y1 = min(w, int(round(right))), min(h, int(round(bottom)))
        outside = box_outside((left, top, right, bottom), w, h)
        if outside:
            raise ImageError(label, outside)
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise ImageError(label, f"box ({left:g}, {top:g}, {right:g}, {bottom:g}) covers less than one pixel")
        gray = gray[y0:y1, x0:x1]
    if min(gray.shape) < MIN_FACE_SIDE:
        what = "face box" if box is not None else "image"
        raise ImageError(label, f"{what} too small to hold a face ({gray.shape[1]}x{gray.shape[0]} px; "
                                f"at least {MIN_FACE_SIDE}x{MIN_FACE_SIDE})")
    if gray.shape != (size, size):
        gray = np.asarray(Image.fromarray(gray).resize((size, size), Image.Resampling.BILINEAR))
    return np.ascontiguousarray(gray, dtype=np.uint8)


def _assemble(
    items: list[tuple[Path, str, str, tuple | None, int | None]],
    skipped: list[tuple[str, str]],
    classes: str | Sequence[str] | None,
    size: int,
    source: Path,
    meta: dict,
) -> FaceArrays:
    """Read every ``(path, label, usage, box, row)`` item into FaceArrays, skipping bad ones in
    item order."""
    names = resolve_classes([normalize_label(it[1]) for it in items], classes)
    index = {c: i for i, c in enumerate(names)}
    images, labels, usages, rows, paths = [], [], [], [], []
    for path, raw_label, usage, box, row in items:
        where = f"row {row}: " if row is not None else ""
        lab = normalize_label(raw_label)
        if lab not in index:
            skipped.append((str(path), f"{where}unknown label {raw_label!r} (known: {', '.join(names)})"))
            continue
        try:
            img = face_from_image(path, box, size, name=str(path))
        except ImageError as e:
            skipped.append((str(path), f"{where}{e.problem}"))
            continue
        images.append(img)
        labels.append(index[lab])
        usages.append(usage)
        rows.append(-1 if row is None else row)
        paths.append(str(path))
    meta = {**meta, "skipped": skipped, "n_skipped": len(skipped)}
    if not images:
        first = f"; first: {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise DataError(source, f"no usable images ({len(skipped)} skipped{first})")
    check_unreadable(source, len(skipped), len(skipped) + len(images),
                     f"{skipped[0][0]}: {skipped[0][1]}" if skipped else None)
    return FaceArrays(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        usage=np.asarray(usages, dtype="U16"),
        classes=tuple(names),
        rows=None if all(r < 0 for r in rows) else np.asarray(rows, dtype=np.int64),
        source=str(source),
        meta=meta,
        paths=np.asarray(paths),
    )


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _sorted(paths: Iterable[Path]) -> list[Path]:
    """Case-insensitive path order (``Anger`` beside ``anger``), stable across file systems."""
    return sorted(paths, key=lambda p: (str(p).lower(), str(p)))


def _class_dir_items(class_dir: Path, usage: str, skipped: list) -> list:
    items = []
    for f in _sorted(p for p in class_dir.rglob("*") if p.is_file() and _visible(p)):
        if any(part.startswith(".") for part in f.relative_to(class_dir).parts):
            continue  # files inside hidden folders (.ipynb_checkpoints ...) are not data
        if not is_image_file(f):
            skipped.append((str(f), f"not an image file ({f.suffix or 'no extension'})"))
            continue
        items.append((f, class_dir.name, usage, None, None))
    return items


def _is_split_layout(subdirs: list[Path]) -> bool:
    known = set(FERPLUS_CLASSES) | set(FER2013_CLASSES)
    names = [d.name for d in subdirs]
    has_split = any(n.strip().lower() in SPLIT_NAMES for n in names)
    has_class = any(normalize_label(n) in known for n in names)
    return has_split and not has_class


def load_image_folder(
    root: str | os.PathLike,
    *,
    classes: str | Sequence[str] | None = None,
    size: int = 48,
    usage: str = "Training",
) -> FaceArrays:
    """Load ``root/<class>/*`` or ``root/<split>/<class>/*`` (see module docstring).

    ``usage`` names the split for the ``root/<class>/`` layout. Images lying outside a class
    folder, non-image files and unreadable images are skipped and listed in ``meta["skipped"]``.
    """
    root = data_path(root)
    if not root.exists():
        raise DataError(root, f"folder {not_found_hint(root)}")
    if not root.is_dir():
        raise DataError(root, "is not a folder")
    skipped: list[tuple[str, str]] = []
    subdirs = _sorted(d for d in root.iterdir() if d.is_dir() and _visible(d))
    items: list = []

    def stray_images(folder: Path, what: str) -> None:
        for f in _sorted(p for p in folder.iterdir() if p.is_file() and _visible(p) and is_image_file(p)):
            skipped.append((str(f), f"image lies outside a class folder ({what}); its label is unknown"))

    if _is_split_layout(subdirs):
        layout = "splits"
        stray_images(root, "expected root/<split>/<class>/")
        for d in subdirs:
            key = d.name.strip().lower()
            if key not in SPLIT_NAMES:
                skipped.append((str(d), f"folder is not a split ({', '.join(sorted(SPLIT_NAMES))}); skipped"))
                continue
            stray_images(d, "expected root/<split>/<class>/")
            for cdir in _sorted(c for c in d.iterdir() if c.is_dir() and _visible(c)):
                items += _class_dir_items(cdir, SPLIT_NAMES[key], skipped)
    else:
        layout = "classes"
        stray_images(root, "expected root/<class>/")
        for cdir in subdirs:
            items += _class_dir_items(cdir, usage, skipped)
    if not items and not skipped:
        raise DataError(root, "no class folders with images (expected root/<class>/*.jpg or root/train/<class>/*.jpg)")
    return _assemble(items, skipped, classes, size, root, {"format": "folder", "layout": layout})


def load_manifest(
    path: str | os.PathLike,
    *,
    classes: str | Sequence[str] | None = None,
    size: int = 48,
    usage: str = "Training",
) -> FaceArrays:
    """Load a manifest CSV (``path,label[,left,top,right,bottom][,split]``) read by
    :func:`wildfer.data.manifest.read_manifest`; ``usage`` is the usage of rows without a split.

    A malformed manifest or row (no ``path`` / ``label`` column, an empty path, an unknown
    label, a bad box) raises :class:`DataError` naming the row (header = row 0); a row whose
    image is missing or unreadable, whose box lies outside its image, or whose label is not one
    of ``classes`` is skipped and listed in ``meta["skipped"]`` with its row number.
    """
    known = None if classes is None or isinstance(classes, str) else [normalize_label(c) for c in classes]
    faces = read_manifest(path, labelled=True, known=None if known is None else KNOWN_LABELS | set(known))
    items = [(it.path, it.label, row_usage(it.split, usage), it.box, it.row) for it in faces]
    return _assemble(items, [], classes, size, data_path(path), {"format": "manifest"})


def skipped_summary(data: FaceArrays, limit: int = 10) -> list[str]:
    """Human-readable lines for ``data.meta["skipped"]`` (at most ``limit``, then a count)."""
    skipped = data.meta.get("skipped") or []
    lines = [f"{p}: {problem}" for p, problem in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"... and {len(skipped) - limit} more")
    return lines


__all__ = ["load_image_folder", "load_manifest", "face_from_image", "resolve_classes", "skipped_summary"]
