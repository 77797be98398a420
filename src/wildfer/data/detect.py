"""Recognise what a data path is (FER2013 CSV, FER+ CSV, manifest, image folder) and load it.

Used by ``wildfer data info`` / ``data show`` so one command takes any data set a user has.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

from ..errors import DataError
from .fer2013 import _READ_ERRORS, FaceArrays, _open_text
from .paths import data_path, not_found_hint

FORMATS = ("fer2013", "ferplus", "manifest", "folder")


def _header(path: Path) -> list[str]:
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty")
    try:
        with _open_text(path) as fh:
            line = fh.readline()
    except UnicodeDecodeError:
        raise DataError(path, "not a text CSV file (is it an image or an archive?)", row=0) from None
    except _READ_ERRORS as e:
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
    if any(c in cols for c in ("path", "file", "filename", "image", "image_path")) and any(
        c in cols for c in ("label", "emotion", "expression", "class")
    ):
        return "manifest"
    raise DataError(
        path,
        f"unrecognised data file (header {','.join(cols)[:80]!r}); expected FER2013 'emotion,pixels,Usage', "
        "FER+ 'Usage,Image name,neutral,...', or a manifest 'path,label[,left,top,right,bottom]'",
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


def load_dataset(
    path: str | os.PathLike,
    *,
    fer2013: str | os.PathLike | None = None,
    classes: str | Sequence[str] | None = None,
    use_cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> FaceArrays:
    """Load any supported data set; ``meta["format"]`` says which it was.

    ``fer2013``: the FER2013 CSV for a FER+ file (default: found beside it). ``classes``:
    for FER+ ``"ferplus"`` (default) or ``"fer2013"``; for folders / manifests see
    :func:`wildfer.data.folders.resolve_classes`.
    """
    path = data_path(path)
    fmt = detect_format(path)
    if fmt == "fer2013":
        from .fer2013 import load_fer2013

        data = load_fer2013(path, use_cache=use_cache, cache_dir=cache_dir)
        data.meta["format"] = "fer2013"
        return data
    if fmt == "ferplus":
        from .ferplus import load_ferplus

        base = Path(fer2013) if fer2013 else find_fer2013_beside(path)
        return load_ferplus(
            base, path, classes=str(classes or "ferplus"), use_cache=use_cache, cache_dir=cache_dir
        )
    from .folders import load_image_folder, load_manifest

    if fmt == "manifest":
        return load_manifest(path, classes=classes)
    return load_image_folder(path, classes=classes)
