"""FER2013 in Kaggle's CSV layout (``emotion,pixels,Usage``), plain or gzipped.

>>> ds = load_fer2013("fer2013.csv.gz")            # doctest: +SKIP
>>> train = ds.split("Training")                   # doctest: +SKIP
>>> train.images.shape, train.labels[:3]           # doctest: +SKIP
((28709, 48, 48), array([0, 0, 2]))

The first load parses the CSV and caches arrays (see :mod:`wildfer.data.cache`); later
loads read the cache (well under 2 s).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..labels import FER2013_CLASSES
from . import cache as _cache

IMAGE_SIZE = 48
N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
USAGES = ("Training", "PublicTest", "PrivateTest")
_CACHE_VERSION = "fer2013-v1"


@dataclass
class FaceArrays:
    """Images (N x H x W uint8), integer labels (N,), per-row usage names and class names.

    ``soft`` optionally holds per-row label distributions (N x C float32), e.g. FER+ votes.
    ``rows`` holds each sample's 1-based data row in the source file (header is row 0).
    """

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    classes: tuple[str, ...] = FER2013_CLASSES
    soft: np.ndarray | None = None
    rows: np.ndarray | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def split(self, *usages: str) -> "FaceArrays":
        """Rows whose usage is one of ``usages`` (case-insensitive). Unknown usage -> error."""
        wanted = {u.lower() for u in usages}
        known = {u.lower() for u in USAGES} | {str(u).lower() for u in np.unique(self.usage)}
        bad = wanted - known
        if bad:
            raise DataError(self.source or "data", f"unknown split {sorted(bad)}; known: {list(USAGES)}")
        mask = np.isin(np.char.lower(self.usage.astype(str)), list(wanted))
        return self.subset(mask)

    def subset(self, index) -> "FaceArrays":
        return FaceArrays(
            images=self.images[index],
            labels=self.labels[index],
            usage=self.usage[index],
            classes=self.classes,
            soft=None if self.soft is None else self.soft[index],
            rows=None if self.rows is None else self.rows[index],
            source=self.source,
            meta=dict(self.meta),
        )

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def usage_counts(self) -> dict[str, int]:
        names, counts = np.unique(self.usage.astype(str), return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts)}


def _open_text(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


def parse_fer2013_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Parse and validate the CSV. Every malformed row raises :class:`DataError` naming it."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty")
    images: list[np.ndarray] = []
    labels: list[int] = []
    usage: list[str] = []
    try:
        fh = _open_text(path)
    except OSError as e:
        raise DataError(path, f"cannot open: {e}") from None
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(path, "file is empty") from None
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise DataError(path, f"cannot read: {e}") from None
        cols = [h.strip().lower() for h in header]
        if "emotion" not in cols or "pixels" not in cols:
            raise DataError(path, f"wrong header {header!r}; expected 'emotion,pixels,Usage'", row=0)
        ie, ip = cols.index("emotion"), cols.index("pixels")
        iu = cols.index("usage") if "usage" in cols else None
        row_no = 0
        try:
            for row_no, row in enumerate(reader, start=1):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) < len(cols):
                    raise DataError(path, f"expected {len(cols)} columns, got {len(row)}", row=row_no)
                try:
                    label = int(row[ie])
                except ValueError:
                    raise DataError(path, f"emotion {row[ie]!r} is not an integer", row=row_no) from None
                if not 0 <= label < len(FER2013_CLASSES):
                    raise DataError(path, f"emotion {label} out of range 0-6", row=row_no)
                try:
                    px = np.array(row[ip].split(), dtype=np.int32)
                except ValueError:
                    raise DataError(path, "pixels contain a non-numeric value", row=row_no) from None
                if px.size != N_PIXELS:
                    raise DataError(path, f"{px.size} pixels, expected {N_PIXELS} (48x48)", row=row_no)
                if px.min() < 0 or px.max() > 255:
                    raise DataError(path, "pixel value outside 0-255", row=row_no)
                images.append(px.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))
                labels.append(label)
                usage.append(row[iu].strip() if iu is not None else "Training")
        except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
            raise DataError(path, f"file is corrupt or truncated ({e})", row=row_no + 1) from None
    if not labels:
        raise DataError(path, "no data rows")
    return {
        "images": np.stack(images),
        "labels": np.asarray(labels, dtype=np.int64),
        "usage": np.asarray(usage, dtype="U16"),
        "rows": np.arange(1, len(labels) + 1, dtype=np.int64),
    }


def load_fer2013(
    path: str | os.PathLike,
    usages: str | list[str] | tuple[str, ...] | None = None,
    *,
    use_cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> FaceArrays:
    """Load FER2013 (optionally only some usages). Caches the parsed arrays on first load."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    arrays = None
    cdir = _cache.cache_dir(cache_dir)
    key = None
    if use_cache:
        key = _cache.file_key(path, _CACHE_VERSION)
        arrays = _cache.load(key, cdir)
    if arrays is None:
        arrays = parse_fer2013_csv(path)
        if use_cache and key is not None:
            _cache.save(key, cdir, arrays)
    data = FaceArrays(
        images=arrays["images"],
        labels=arrays["labels"],
        usage=arrays["usage"],
        rows=arrays.get("rows"),
        source=str(path),
    )
    if usages:
        if isinstance(usages, str):
            usages = [usages]
        data = data.split(*usages)
    return data
