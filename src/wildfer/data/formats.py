"""Recognise what a data path is (FER2013 CSV, FER+ CSV, manifest, image folder) and load it.

:func:`load_dataset` is the one entry point for every format: ``wildfer data``, ``evaluate`` and
``explain`` read their data through it, and :func:`~wildfer.data.splits.select_split` picks rows by the one split
rule (:func:`~wildfer.data.splits.split_rows`, both importable from here too).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from .csvfiles import READ_ERRORS, open_text
from .fer2013 import FaceArrays
from .manifest import LABEL_COLUMNS, LAYOUT, PATH_COLUMNS
from .paths import data_path, not_found_hint
from .splits import select_split, split_rows

FORMATS = ("fer2013", "ferplus", "manifest", "folder")

__all__ = ["FORMATS", "detect_format", "find_fer2013_beside", "load_dataset", "select_split", "split_rows"]


def _header(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(path, "is not a regular file (a FIFO, device or socket is not read as data)")
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty")
    try:
        with open_text(path) as fh:
            line = fh.readline()
    except UnicodeDecodeError:
        raise DataError(path, "not a text CSV file (is it an image or an archive?)", row=0) from None
    except READ_ERRORS as e:
        raise DataError(path, f"file is corrupt or truncated ({str(e) or type(e).__name__})", row=0) from None
    if not line.strip():
        raise DataError(path, "file is empty (no header)")
    return [c.strip().lower() for c in next(csv.reader([line]))]


def detect_format(path: str | os.PathLike) -> str:
    """One of :data:`FORMATS`, from the path (folder, FER2013 pack) or the CSV header."""
    from .fer2013 import is_pack

    path = data_path(path)
    if not path.exists():
        raise DataError(path, not_found_hint(path))
    if path.is_dir():
        return "folder"
    if is_pack(path):
        return "fer2013"
    cols = _header(path)
    if "emotion" in cols and "pixels" in cols:
        return "fer2013"
    if "usage" in cols and "image name" in cols and "neutral" in cols:
        return "ferplus"
    if any(c in cols for c in PATH_COLUMNS) and any(c in cols for c in LABEL_COLUMNS):
        return "manifest"
    raise DataError(
        path,
        f"unrecognised data file (header {','.join(cols)[:80]!r}); expected FER2013 'emotion,pixels,Usage', "
        f"FER+ 'Usage,Image name,neutral,...', or a manifest '{LAYOUT}'",
        row=0,
    )


def find_fer2013_beside(ferplus_csv: str | os.PathLike) -> Path:
    """``fer2013.csv(.gz)`` (or a pack ``fer2013.npz(.xz)``) in the folder of ``ferplus_csv``
    (FER+ has labels, not images)."""
    folder = Path(ferplus_csv).resolve().parent
    for name in ("fer2013.csv", "fer2013.csv.gz", "fer2013.npz", "fer2013.npz.xz"):
        if (folder / name).exists():
            return folder / name
    raise DataError(
        ferplus_csv,
        f"FER+ holds labels only; its images come from FER2013, and no fer2013.csv or fer2013.csv.gz "
        f"is in {folder}: pass --fer2013 PATH",
    )


def _ferplus_files(path: Path, labels: str | os.PathLike | None,
                   fer2013: str | os.PathLike | None) -> tuple[Path, Path]:
    """``(FER2013 images, FER+ votes)`` for a FER+ load of ``path``: ``path`` is the FER2013
    file when ``labels`` names the votes, else ``path`` is the votes file (images from
    ``fer2013`` or beside it) or a FER2013 file with ``fer2013new.csv`` beside it."""
    if labels is not None:
        return path, data_path(labels)
    if detect_format(path) == "ferplus":
        return (data_path(fer2013) if fer2013 else find_fer2013_beside(path)), path
    votes = path.parent / "fer2013new.csv"
    if not votes.exists():
        raise DataError(path, "FER+ needs its votes file, and no fer2013new.csv is beside it: "
                              "pass it as labels (--ferplus-labels)")
    return path, votes


def load_dataset(
    path: str | os.PathLike,
    split: str | Sequence[str] | None = None,
    *,
    dataset: str | None = None,
    labels: str | os.PathLike | None = None,
    fer2013: str | os.PathLike | None = None,
    classes: str | Sequence[str] | None = None,
    use_cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> FaceArrays:
    """Load any supported data set, restricted to ``split`` (see :func:`select_split`);
    ``meta["format"]`` says which format it was.

    ``dataset``: one of :data:`FORMATS` to force the format (``None``: :func:`detect_format`).
    ``labels``: the FER+ votes (``fer2013new.csv``) for the FER2013 file ``path``; it makes
    the load a FER+ one. A FER+ ``path`` takes its images from ``fer2013`` (default: the FER2013
    file beside it). ``classes``: for FER+ ``"ferplus"`` (default) or ``"fer2013"``; for
    folders / manifests see :func:`wildfer.data.folders.resolve_classes`.
    """
    path = data_path(path)
    if dataset is not None and dataset not in FORMATS:
        raise DataError(path, f"unknown dataset {dataset!r} ({' | '.join(FORMATS)})")
    fmt = dataset or detect_format(path)
    if labels is not None and fmt not in ("fer2013", "ferplus"):
        raise DataError(labels, f"FER+ labels go with FER2013 images, and {path.name} is a {fmt}")
    data = _load_format(path, fmt, labels=labels, fer2013=fer2013, classes=classes, use_cache=use_cache,
                        cache_dir=cache_dir)
    return select_split(data, split)


def _load_format(path: Path, fmt: str, *, labels, fer2013, classes, use_cache, cache_dir) -> FaceArrays:
    """``path`` read as ``fmt`` (FER+ where ``labels`` names the votes); see :func:`load_dataset`."""
    if fmt == "fer2013" and labels is None:
        from .fer2013 import load_fer2013

        data = load_fer2013(path, use_cache=use_cache, cache_dir=cache_dir)
        data.meta["format"] = "fer2013"
        return data
    if fmt in ("fer2013", "ferplus"):
        from .ferplus import load_ferplus

        images, votes = _ferplus_files(path, labels, fer2013)
        return load_ferplus(images, votes, classes=str(classes or "ferplus"), use_cache=use_cache,
                            cache_dir=cache_dir)
    from .folders import load_image_folder, load_manifest

    if fmt == "manifest":
        return load_manifest(path, classes=classes)
    return load_image_folder(path, classes=classes)
