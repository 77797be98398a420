"""FER2013 in Kaggle's CSV layout (``emotion,pixels,Usage``), plain or gzipped.

>>> ds = load_fer2013("fer2013.csv.gz")            # doctest: +SKIP
>>> train = ds.split("Training")                   # doctest: +SKIP
>>> train.images.shape, train.labels[:3]           # doctest: +SKIP
((28709, 48, 48), array([0, 0, 2]))

The first load parses the CSV and caches arrays (see :mod:`wildfer.data.cache`); later
loads read the cache (well under 2 s).

A *pack* (``.npz``, or ``.npz.xz`` at about 60% of the gzipped CSV's size) holds the same
arrays for carrying FER2013 to another machine; :func:`save_pack` / ``wildfer data pack`` write
one and :func:`load_fer2013` reads it wherever it reads the CSV. An ``.npz.xz`` pack stores each
pixel as its difference from the median edge detector's prediction (LOCO-I / JPEG-LS) before xz:
lossless, 12% smaller than xz on the raw pixels.
"""

from __future__ import annotations

import csv
import io
import lzma
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..labels import FER2013_CLASSES
from . import cache as _cache
from .paths import data_path, not_found_hint
from .csvfiles import (  # noqa: F401 - check_unreadable, csv_rows and require_file re-exported
    open_bytes,
    READ_ERRORS,
    check_unreadable,
    csv_rows,
    require_file,
)

IMAGE_SIZE = 48
N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
USAGES = ("Training", "PublicTest", "PrivateTest")
#: Split names (lower case, ``_`` and ``-`` left out) -> FER2013 usage names: the one rule by
#: which FER2013 / FER+ usages, manifest ``split`` / ``usage`` values and split folders are named.
SPLIT_NAMES = {
    "train": "Training", "training": "Training",
    "test": "PublicTest", "val": "PublicTest", "valid": "PublicTest", "validation": "PublicTest",
    "publictest": "PublicTest", "private": "PrivateTest", "privatetest": "PrivateTest",
}
_CACHE_VERSION = "fer2013-v1"


def usage_name(split: str) -> str:
    """The usage name ``split`` stands for (:data:`SPLIT_NAMES`, case-insensitive); any other
    name stands for itself."""
    return SPLIT_NAMES.get(split.strip().lower().replace("_", "").replace("-", ""), split.strip())


def usages_present(usage: np.ndarray) -> list[str]:
    """The distinct usage names of ``usage`` (one per row), FER2013's order first (Training,
    PublicTest, PrivateTest), then the others alphabetically."""
    present = [str(u) for u in np.unique(np.asarray(usage).astype(str))]
    order = {u: i for i, u in enumerate(USAGES)}
    return sorted(present, key=lambda u: (order.get(u, len(order)), u))


@dataclass
class FaceArrays:
    """Images (N x H x W uint8, grey; N x 3 x H x W for colour faces), integer labels (N,),
    per-row usage names and class names.

    ``soft`` optionally holds per-row label distributions (N x C float32), e.g. FER+ votes.
    ``rows`` holds each sample's 1-based data row in the source file (header is row 0).
    ``paths`` holds each sample's image file for folder and manifest data sets.
    ``meta`` holds what the loader wants to report, e.g. ``meta["skipped"]``: a list of
    ``(path, problem)`` for every item a folder / manifest loader could not use.
    """

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    classes: tuple[str, ...] = FER2013_CLASSES
    soft: np.ndarray | None = None
    rows: np.ndarray | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)
    paths: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def split(self, *usages: str) -> "FaceArrays":
        """Rows whose usage is one of ``usages``, matched case-insensitively against FER2013's
        three usage names (one this data lacks gives no rows) and the usages present.

        Any other name is a :class:`DataError` (a ``ValueError``) listing the available ones;
        split names such as ``train`` or ``val`` are for
        :func:`~wildfer.data.formats.select_split`, which maps them by :func:`usage_name`.
        """
        available = list(dict.fromkeys([*USAGES, *self.usages()]))
        known = {u.lower() for u in available}
        bad = [u for u in usages if u.lower() not in known]
        if bad:
            hints = [f"{b!r} stands for {usage_name(b)!r}" for b in bad if usage_name(b).lower() in known]
            raise DataError(self.source or "data", f"unknown split {sorted(bad)}; available: {', '.join(available)}"
                                                   + (f" ({'; '.join(hints)})" if hints else ""))
        mask = np.isin(np.char.lower(self.usage.astype(str)), [u.lower() for u in usages])
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
            paths=None if self.paths is None else self.paths[index],
        )

    def resized(self, side: int) -> "FaceArrays":
        """The same faces at ``side`` x ``side`` pixels (bilinear, as a classifier resizes its
        input), or ``self`` when they are that size already."""
        import cv2

        if self.images.shape[-2:] == (side, side):
            return self
        out = np.empty((*self.images.shape[:-2], side, side), dtype=np.uint8)
        for i, img in enumerate(self.images):
            if img.ndim == 3:  # channels first; OpenCV resizes channels last
                out[i] = cv2.resize(img.transpose(1, 2, 0), (side, side), interpolation=cv2.INTER_LINEAR).reshape(
                    side, side, -1).transpose(2, 0, 1)
            else:
                out[i] = cv2.resize(img, (side, side), interpolation=cv2.INTER_LINEAR)
        return replace(self, images=out, meta=dict(self.meta))

    def in_colour(self) -> "FaceArrays":
        """The same faces as colour images (``N x 3 x H x W``, grey faces repeated to R = G = B),
        or ``self`` when they are colour already."""
        if self.images.ndim == 4:
            return self
        return replace(self, images=np.repeat(self.images[:, None], 3, axis=1), meta=dict(self.meta))

    @classmethod
    def concat(cls, *parts: "FaceArrays") -> "FaceArrays":
        """The faces of ``parts`` end to end (same classes and image size). Where some parts
        have soft labels, the others get their one-hot labels."""
        first = parts[0]
        for p in parts[1:]:
            if tuple(p.classes) != tuple(first.classes):
                raise DataError(p.source or "data", f"classes {list(p.classes)} differ from {list(first.classes)}")
            if p.images.shape[1:] != first.images.shape[1:]:
                raise DataError(p.source or "data", f"faces are {p.images.shape[1:]}, not {first.images.shape[1:]}")
        soft = None
        if any(p.soft is not None for p in parts):
            eye = np.eye(len(first.classes), dtype=np.float32)
            soft = np.concatenate([p.soft if p.soft is not None else eye[p.labels] for p in parts])

        def cat(name):
            vals = [getattr(p, name) for p in parts]
            return None if any(v is None for v in vals) else np.concatenate(vals)

        return cls(
            images=np.concatenate([p.images for p in parts]), labels=np.concatenate([p.labels for p in parts]),
            usage=np.concatenate([p.usage.astype(str) for p in parts]), classes=first.classes, soft=soft,
            rows=cat("rows"), source=" + ".join(p.source for p in parts), paths=cat("paths"),
            meta={"parts": [len(p) for p in parts]},
        )

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def usage_counts(self) -> dict[str, int]:
        names, counts = np.unique(self.usage.astype(str), return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts)}

    def usages(self) -> list[str]:
        """Usage names present, FER2013's order first (Training, PublicTest, PrivateTest)."""
        return usages_present(self.usage)

    def counts_by_usage(self) -> dict[str, dict[str, int]]:
        """``{usage: {class: count}}`` for every usage present (every class listed)."""
        return {u: self.split(u).class_counts() for u in self.usages()}


#: Leading bytes of archives and compressed files a CSV is often shipped in.
def _parse_pixels(field: str, path: Path, row_no: int) -> np.ndarray:
    """One row's pixel string -> 48 x 48 uint8, or a :class:`DataError` that says what is wrong.

    The fast path is ``np.fromstring`` (C, ~10x faster than ``int()`` per token); when it
    refuses the string, the slow path finds the first bad token to name it.
    """
    if not field.strip():
        raise DataError(path, f"0 pixels, expected {N_PIXELS} (48x48)", row=row_no)
    try:
        px = np.fromstring(field, sep=" ", dtype=np.int32)
    except ValueError:
        tokens = field.split()
        for i, tok in enumerate(tokens):
            try:
                int(tok)
            except ValueError:
                raise DataError(
                    path, f"pixels contain a non-numeric value {tok[:20]!r} (pixel {i + 1})", row=row_no
                ) from None
        px = np.array(tokens, dtype=np.int64)  # pragma: no cover - fromstring refused valid ints
    if px.size != N_PIXELS:
        raise DataError(path, f"{px.size} pixels, expected {N_PIXELS} (48x48)", row=row_no)
    lo, hi = int(px.min()), int(px.max())
    if lo < 0 or hi > 255:
        bad = lo if lo < 0 else hi
        raise DataError(path, f"pixel value {bad} outside 0-255", row=row_no)
    return px.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def parse_fer2013_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Parse and validate the CSV. Every malformed row raises :class:`DataError` naming it.

    Rows are numbered from 1 after the header (the header is row 0). Lines are split on
    commas directly (the pixels field holds none), falling back to :mod:`csv` for quoted
    lines; this and ``np.fromstring`` make a cold parse of FER2013 take seconds, not a minute.
    """
    path = require_file(path)
    images: list[np.ndarray] = []
    labels: list[int] = []
    usage: list[str] = []
    rows: list[int] = []
    n_classes = len(FER2013_CLASSES)
    try:
        fh = open_bytes(path)
    except OSError as e:
        raise DataError(path, f"cannot open: {e}") from None
    row_no = 0
    with fh:
        try:
            first = fh.readline()
        except READ_ERRORS as e:
            raise DataError(path, f"file is corrupt or truncated ({e})", row=0) from None
        if not first.strip():
            raise DataError(path, "file is empty (no header)")
        try:
            header = next(csv.reader([first.decode("utf-8-sig").strip()]))
        except UnicodeDecodeError:
            raise DataError(path, "not a text CSV file (header is not UTF-8)", row=0) from None
        cols = [h.strip().lower() for h in header]
        if "emotion" not in cols or "pixels" not in cols:
            raise DataError(path, f"wrong header {','.join(header)[:80]!r}; expected 'emotion,pixels,Usage'", row=0)
        ie, ip = cols.index("emotion"), cols.index("pixels")
        iu = cols.index("usage") if "usage" in cols else None
        ncol = len(cols)
        try:
            for row_no, raw in enumerate(fh, start=1):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError:
                    raise DataError(path, "row is not valid UTF-8 text", row=row_no) from None
                if not line:
                    continue
                row = line.split(",")
                if len(row) != ncol or '"' in line:
                    row = next(csv.reader([line]))
                if len(row) < ncol:
                    raise DataError(path, f"expected {ncol} columns ({','.join(header)}), got {len(row)}", row=row_no)
                try:
                    label = int(row[ie])
                except ValueError:
                    raise DataError(path, f"emotion {row[ie][:20]!r} is not an integer", row=row_no) from None
                if not 0 <= label < n_classes:
                    raise DataError(path, f"emotion {label} out of range 0-{n_classes - 1}", row=row_no)
                images.append(_parse_pixels(row[ip], path, row_no))
                labels.append(label)
                rows.append(row_no)
                if iu is not None:
                    u = row[iu].strip()
                    if not u:
                        raise DataError(path, "empty Usage", row=row_no)
                    usage.append(u)
                else:
                    usage.append("Training")
        except READ_ERRORS as e:
            raise DataError(path, f"file is corrupt or truncated ({str(e) or type(e).__name__})", row=row_no + 1) from None
    if not labels:
        raise DataError(path, "no data rows after the header")
    return {
        "images": np.stack(images),
        "labels": np.asarray(labels, dtype=np.int64),
        "usage": np.asarray(usage, dtype="U16"),
        "rows": np.asarray(rows, dtype=np.int64),
    }


PACK_SUFFIXES = (".npz", ".npz.xz")
_PACK_KEYS = ("images", "labels", "usage", "rows")
_MED_KEY = "images_med"  # the images as MED prediction residuals (``.npz.xz`` packs)


def _med_predict(w: np.ndarray, n: np.ndarray, nw: np.ndarray) -> np.ndarray:
    """The median edge detector (LOCO-I / JPEG-LS) from the west, north and north-west pixels."""
    hi, lo = np.maximum(w, n), np.minimum(w, n)
    return np.where(nw >= hi, lo, np.where(nw <= lo, hi, w + n - nw))


def med_encode(images: np.ndarray) -> np.ndarray:
    """Each pixel minus its MED prediction from its (already known) neighbours, modulo 256:
    N x H x W uint8 residuals, mostly near 0, which xz compresses ~12% better than the pixels.
    Pixels outside the image count as 0. :func:`med_decode` inverts it exactly."""
    a = np.asarray(images).astype(np.int16)
    w, n, nw = np.zeros_like(a), np.zeros_like(a), np.zeros_like(a)
    w[:, :, 1:], n[:, 1:, :], nw[:, 1:, 1:] = a[:, :, :-1], a[:, :-1, :], a[:, :-1, :-1]
    return ((a - _med_predict(w, n, nw)) & 255).astype(np.uint8)


def med_decode(residuals: np.ndarray) -> np.ndarray:
    """The images of :func:`med_encode`'s residuals. Pixel by pixel in raster order (each
    prediction needs the pixels before it), vectorised over the images: ~3 s for FER2013."""
    N, H, W = residuals.shape
    r = np.ascontiguousarray(residuals.transpose(1, 2, 0)).astype(np.int16)  # H x W x N
    out = np.zeros((H + 1, W + 1, N), np.int16)  # a zero row and column in front
    for y in range(1, H + 1):
        up, row, ry = out[y - 1], out[y], r[y - 1]
        for x in range(1, W + 1):
            p = _med_predict(row[x - 1], up[x], up[x - 1])
            p += ry[x - 1]
            p &= 255
            row[x] = p
    return np.ascontiguousarray(out[1:, 1:].transpose(2, 0, 1)).astype(np.uint8)


def is_pack(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a FER2013 pack (``.npz`` / ``.npz.xz``) rather than a CSV."""
    return str(path).lower().endswith(PACK_SUFFIXES)


def save_pack(data: FaceArrays, path: str | os.PathLike, *, preset: int = 6) -> Path:
    """Write ``data``'s images, labels, usages and source rows as a pack: ``.npz`` (raw) or
    ``.npz.xz`` (MED residuals, xz preset ``preset``). Written to a temporary name, then renamed."""
    path = Path(path)
    if not is_pack(path):
        raise DataError(path, f"a pack's name must end in {' or '.join(PACK_SUFFIXES)}")
    if path.is_dir():
        raise DataError(path, "is a folder; give the pack's file name")
    if (path.exists() or path.is_symlink()) and not path.is_file():
        raise DataError(path, "is not a regular file (a device or FIFO is never replaced); give the pack's file name")
    rows = data.rows if data.rows is not None else np.arange(1, len(data) + 1, dtype=np.int64)
    xz = str(path).lower().endswith(".xz")
    images = np.ascontiguousarray(data.images, dtype=np.uint8)
    pixels = {_MED_KEY: med_encode(images)} if xz else {"images": images}
    buf = io.BytesIO()
    np.savez(buf, **pixels, labels=data.labels.astype(np.int64), usage=data.usage.astype("U16"),
             rows=rows.astype(np.int64))
    raw = buf.getvalue()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(lzma.compress(raw, preset=preset) if xz else raw)
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(path, f"cannot write the pack ({e.strerror or type(e).__name__})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_pack(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a pack written by :func:`save_pack`, checked like a parsed CSV."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if str(path).lower().endswith(".xz"):
            raw = lzma.decompress(raw)
        if not raw.startswith(b"PK\x03\x04"):  # an .npz is a zip archive
            raise DataError(path, "not a FER2013 pack (not an .npz archive; write one with 'wildfer data pack')")
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            med = _MED_KEY in z.files and "images" not in z.files
            missing = [k for k in _PACK_KEYS if k not in z.files and not (k == "images" and med)]
            if missing:
                raise DataError(path, f"not a FER2013 pack: missing {', '.join(missing)}")
            arrays = {k: z[_MED_KEY if k == "images" and med else k] for k in _PACK_KEYS}
    except DataError:
        raise
    except (OSError, EOFError, ValueError, lzma.LZMAError) as e:
        raise DataError(path, f"pack is corrupt or truncated ({str(e) or type(e).__name__})") from None
    images, labels, usage, rows = (arrays[k] for k in _PACK_KEYS)
    n = len(labels)
    if images.dtype != np.uint8 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or len(images) != n \
            or len(usage) != n or len(rows) != n:
        raise DataError(path, f"not a FER2013 pack: images {images.dtype} {images.shape}, {n} labels")
    wrong = [f"{k} {a.dtype} {a.shape}" for k, a, kinds in (("labels", labels, "iu"), ("usage", usage, "U"),
                                                           ("rows", rows, "iu")) if a.ndim != 1 or a.dtype.kind not in kinds]
    if wrong:  # integer labels and rows, usage names: anything else is not a pack save_pack wrote
        raise DataError(path, f"not a FER2013 pack: {', '.join(wrong)}")
    if med:
        arrays["images"] = med_decode(images)
    if n == 0:
        raise DataError(path, "pack holds no faces")
    if labels.min() < 0 or labels.max() >= len(FER2013_CLASSES):
        raise DataError(path, f"labels outside 0..{len(FER2013_CLASSES) - 1}")
    return arrays


def load_fer2013(
    path: str | os.PathLike,
    usages: str | list[str] | tuple[str, ...] | None = None,
    *,
    use_cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> FaceArrays:
    """Load FER2013 (optionally only some usages) from Kaggle's CSV (plain or gzipped) or from a
    pack (:func:`save_pack`). Caches the parsed arrays of a CSV on first load."""
    path = data_path(path)
    if not path.exists():
        raise DataError(path, f"file {not_found_hint(path)}")
    arrays = None
    cdir = _cache.cache_dir(cache_dir)
    key = None
    if is_pack(path):
        arrays = read_pack(path)  # already arrays: nothing to cache
    elif use_cache:
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
