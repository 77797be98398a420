"""Manifest CSVs: the one reader of the rows of every manifest wildfer takes (training faces,
labelled-photo evaluation, wild crops for training).

A manifest is a CSV (plain or gzipped) with a header, in one of two layouts:

* ``path,label[,left,top,right,bottom][,split]``: one labelled face per row. Without a box the
  face is the whole image (training) or the photo's largest detection (the wild pipeline).
* ``path,boxes_left_top_w_h[,...]``: detection only, no labels; ``boxes_left_top_w_h`` holds a
  photo's faces as ``l,t,w,h;l,t,w,h``, and a row without boxes holds no face.

The rules, the same for every caller:

* columns are found by name, case-insensitively: the path in :data:`PATH_COLUMNS`, the label in
  :data:`LABEL_COLUMNS`, the split in ``split`` or ``usage``; other columns are ignored. A box
  needs all four of ``left,top,right,bottom``; ``boxes_left_top_w_h`` goes with neither a label
  nor those four columns; ``split`` and ``usage`` are one column, not both;
* paths are relative to the manifest's folder (absolute paths are kept);
* labels are normalised (:func:`wildfer.labels.normalize_label`: ``Happiness`` -> ``happy``) and
  must be one of the known expressions (FER2013's and FER+'s classes);
* a row's split is its usage by the one split rule (:func:`wildfer.data.splits.split_rows`;
  ``train`` -> ``Training``, ``val`` / ``test`` -> ``PublicTest`` ...); a row without one is
  ``Training``;
* a malformed header or row (no path or label column, an empty path or label, an unknown label,
  a box that is not 4 finite numbers or is empty) is a :class:`~wildfer.errors.DataError`, one
  line naming the manifest and the row (header = row 0). What needs the image to be known (a
  missing or unreadable file, a box outside the image) is left to the caller, which skips and
  lists such rows (:func:`~wildfer.data.csvfiles.check_unreadable`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Sequence

import numpy as np

from ..errors import DataError
from ..labels import FER2013_CLASSES, FERPLUS_CLASSES, normalize_label
from .csvfiles import csv_rows, require_file
from .fer2013 import USAGES, usage_name
from .paths import data_path, not_found_hint
from .splits import split_rows

#: Names a path column goes by, first found first taken.
PATH_COLUMNS = ("path", "file", "filename", "image", "image_path")
#: Names a label column goes by, first found first taken.
LABEL_COLUMNS = ("label", "emotion", "expression", "class")
BOX_COLUMNS = ("left", "top", "right", "bottom")
#: The detection-only layout's column of boxes, ``l,t,w,h;l,t,w,h``.
GROUP_BOXES = "boxes_left_top_w_h"
SPLIT_COLUMNS = ("split", "usage")
#: Every expression a manifest's label may name (after normalisation).
KNOWN_LABELS = frozenset(FER2013_CLASSES) | frozenset(FERPLUS_CLASSES)
#: The labelled layout, as error messages show it.
LAYOUT = "path,label[,left,top,right,bottom][,split]"

Box = tuple[float, float, float, float]


@dataclass
class ManifestItem:
    """One face of a manifest: its image, normalised label (None in a detection-only manifest),
    box (``left, top, right, bottom`` in pixels; None: the whole image), row (header = 0) and
    split as written (None when the manifest has no split column)."""

    path: Path
    label: str | None
    box: Box | None
    row: int
    split: str | None = None

    @property
    def usage(self) -> str:
        """The row's usage by the one split rule (``Training`` without a split)."""
        return row_usage(self.split)


def row_usage(split: str | None, default: str = USAGES[0]) -> str:
    """The usage a manifest row's split names (:func:`~wildfer.data.fer2013.usage_name`),
    ``default`` for an empty or absent one."""
    return usage_name(split) if split and split.strip() else default


@dataclass(frozen=True)
class _Columns:
    """Where each column a manifest may have sits in its rows (None: absent)."""

    path: int
    label: int | None
    label_name: str | None
    box: tuple[int, int, int, int] | None
    groups: int | None
    split: int | None


def _columns(manifest: Path, header: list[str], labelled: bool) -> _Columns:
    """The manifest's columns from its header; a :class:`DataError` (row 0) for a header no
    layout fits."""
    cols = [h.strip().lower() for h in header]
    shown = f"wrong header {','.join(header)[:80]!r}"

    def first(names: Sequence[str]) -> str | None:
        return next((c for c in names if c in cols), None)

    path, label, split = first(PATH_COLUMNS), first(LABEL_COLUMNS), first(SPLIT_COLUMNS)
    if path is None:
        raise DataError(manifest, f"{shown}: no path column ({', '.join(PATH_COLUMNS)}); expected {LAYOUT}", row=0)
    groups = GROUP_BOXES in cols
    if label is None and (labelled or not groups):
        also = (f" ({GROUP_BOXES} alone is the detection-only layout, which has no labels)" if groups
                else "" if labelled else f" (or {GROUP_BOXES} for a detection-only manifest)")
        raise DataError(manifest, f"{shown}: no label column ({', '.join(LABEL_COLUMNS)}){also}; "
                                  f"expected {LAYOUT}", row=0)
    box = [c for c in BOX_COLUMNS if c in cols]
    if box and len(box) < 4:
        raise DataError(manifest, f"{shown}: a box needs all four columns left,top,right,bottom", row=0)
    if groups and (label is not None or box):
        raise DataError(manifest, f"{shown}: {GROUP_BOXES} is the detection-only layout, without labels or "
                                  "left,top,right,bottom (a labelled face's box goes in those four)", row=0)
    if all(c in cols for c in SPLIT_COLUMNS):
        raise DataError(manifest, f"{shown}: both a split and a usage column; keep one", row=0)
    return _Columns(cols.index(path), None if label is None else cols.index(label), label,
                    tuple(cols.index(c) for c in BOX_COLUMNS) if box else None,  # type: ignore[arg-type]
                    cols.index(GROUP_BOXES) if groups else None, None if split is None else cols.index(split))


def parse_box(manifest, row: int, cells: Sequence[str], width_height: bool = False) -> Box:
    """Four cells as a box ``(left, top, right, bottom)``; ``width_height``: the cells are
    ``left, top, width, height``. A :class:`DataError` naming ``row`` when they are not 4
    finite numbers or the box is empty."""
    text = ",".join(cells)
    layout = "left,top,width,height" if width_height else "left,top,right,bottom"
    try:
        v = [float(c) for c in cells]
    except ValueError:
        v = []
    if len(v) != 4:
        raise DataError(manifest, f"bad box {text!r}: needs 4 numbers, {layout}", row=row)
    if not all(math.isfinite(x) for x in v):
        raise DataError(manifest, f"bad box {text!r}: not all finite numbers", row=row)
    left, top, right, bottom = (v[0], v[1], v[0] + v[2], v[1] + v[3]) if width_height else v
    if right <= left or bottom <= top:
        why = "width or height <= 0" if width_height else "right <= left or bottom <= top"
        raise DataError(manifest, f"bad box {text!r}: empty ({why})", row=row)
    return (left, top, right, bottom)


def box_outside(box: Sequence[float], width: int, height: int) -> str | None:
    """The problem with ``box`` on a ``width x height`` image when none of it lies on the image,
    else None (a box partly outside is clipped by whoever cuts the face)."""
    left, top, right, bottom = box
    if right <= 0 or bottom <= 0 or left >= width or top >= height:
        return f"box ({left:g}, {top:g}, {right:g}, {bottom:g}) lies outside the {width}x{height} image"
    return None


def _row_items(manifest: Path, cols: _Columns, row_no: int, row: list[str],
               known: Collection[str]) -> list[ManifestItem]:
    """The faces of one data row (a detection-only row holds as many as it has boxes)."""
    def cell(i: int | None) -> str:
        return row[i].strip() if i is not None and i < len(row) else ""

    rel = cell(cols.path)
    if not rel:
        raise DataError(manifest, "empty path", row=row_no)
    path = Path(rel) if Path(rel).is_absolute() else manifest.parent / rel
    split = None if cols.split is None else cell(cols.split)
    if cols.groups is not None:
        spec = cell(cols.groups)
        return [ManifestItem(path, None, parse_box(manifest, row_no, part.split(","), width_height=True), row_no, split)
                for part in (spec.split(";") if spec else ())]
    raw = cell(cols.label)
    if not raw:
        raise DataError(manifest, f"empty {cols.label_name}", row=row_no)
    label = normalize_label(raw)
    if label not in known:
        raise DataError(manifest, f"unknown label {raw!r} (known: {', '.join(sorted(known))})", row=row_no)
    box = None
    if cols.box is not None:
        cells = [cell(i) for i in cols.box]
        if any(cells):
            box = parse_box(manifest, row_no, cells)
    return [ManifestItem(path, label, box, row_no, split)]


def read_manifest(manifest: str | os.PathLike, split: str | Sequence[str] | None = None, *,
                  labelled: bool = False, known: Collection[str] | None = None) -> list[ManifestItem]:
    """Every face of ``manifest`` (see the module docstring), in row order; with ``split``
    (a name or several, ``"all"``: every row) only the rows of that split by the one split rule.

    ``labelled``: the manifest must have labels (the detection-only layout is an error).
    ``known``: the label names accepted, normalised (default :data:`KNOWN_LABELS`).
    """
    manifest = data_path(manifest)
    if not manifest.exists():
        raise DataError(manifest, f"manifest {not_found_hint(manifest)}")
    manifest = require_file(manifest, "a manifest CSV")
    known = KNOWN_LABELS if known is None else frozenset(known)
    items: list[ManifestItem] = []
    n_rows = 0
    with csv_rows(manifest) as (header, rows):
        cols = _columns(manifest, header, labelled)
        for row_no, row in rows:
            n_rows += 1
            items += _row_items(manifest, cols, row_no, row, known)
    if not n_rows:
        raise DataError(manifest, "no data rows after the header")
    if not items:
        raise DataError(manifest, f"no faces: no row has boxes in {GROUP_BOXES}")
    keep = split_rows(np.array([it.usage for it in items]), split, manifest)
    return items if keep is None else [it for it, k in zip(items, keep) if k]


__all__ = ["ManifestItem", "read_manifest", "row_usage", "parse_box", "box_outside", "KNOWN_LABELS",
           "PATH_COLUMNS", "LABEL_COLUMNS", "BOX_COLUMNS", "GROUP_BOXES"]
