"""Reading the CSV files every data loader takes (FER2013, FER+ labels, manifests): plain,
gzip or xz text, opened with one set of rules (UTF-8, damaged quoting, oversized fields,
archives given by mistake), and the share of unreadable rows a loader accepts."""

from __future__ import annotations

import csv
import gzip
import io
import os
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import DataError
from .paths import data_path, not_found_hint

_PACKED = ((b"PK\x03\x04", "a zip archive"), (b"\xfd7zXZ\x00", "an xz-compressed file"),
           (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"), (b"\x28\xb5\x2f\xfd", "a zstd-compressed file"))


def _is_tar_header(block: bytes) -> bool:
    """Whether ``block`` starts with a tar header: ``ustar`` at 257 and a checksum that adds up
    (the sum of the header's bytes, its own 8-byte field counted as spaces)."""
    if len(block) < 512 or block[257:262] != b"ustar":
        return False
    try:
        stored = int(block[148:156].strip(b" \x00") or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 8 * 32 + sum(block[156:512])


def _refuse_packed(path: Path) -> None:
    """A :class:`DataError` naming what ``path`` is when it is an archive or a compressed
    file other than gzip (e.g. Kaggle's ``fer2013.tar.gz``), not a CSV."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    gzipped = head[:2] == b"\x1f\x8b"
    if gzipped:
        try:
            with gzip.open(path, "rb") as gz:
                head = gz.read(512)
        except READ_ERRORS:
            return  # a damaged gzip: the reader says where
    kind = next((k for magic, k in _PACKED if head.startswith(magic)), None)
    if kind is None and head[:3] == b"BZh" and head[4:10] == b"1AY&SY":
        kind = "a bzip2-compressed file"
    if kind is None and _is_tar_header(head):
        kind = "a gzipped tar archive" if gzipped else "a tar archive"
    if kind is not None:
        raise DataError(path, f"is {kind}, not a CSV file: extract the CSV from it first")


def open_text(path: Path):
    """Text handle on a plain or gzipped file (sniffed by magic bytes, not by name)."""
    _refuse_packed(path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, "r", encoding="utf-8-sig", newline="")


def open_bytes(path: Path):
    """Binary line iterator on a plain or gzipped file (sniffed by magic bytes)."""
    _refuse_packed(path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


#: Errors a damaged file raises while being read (zlib.error is not an OSError).
READ_ERRORS = (OSError, EOFError, zlib.error, csv.Error)


def require_file(path: str | os.PathLike, kind: str = "a CSV file") -> Path:
    """``path`` as a :class:`Path`, after the checks every file loader makes first: a missing
    file, a folder (``"is a folder, not <kind>"``) or an empty file is a :class:`DataError`."""
    path = data_path(path)
    if not path.exists():
        raise DataError(path, f"file {not_found_hint(path)}")
    if path.is_dir():
        raise DataError(path, f"is a folder, not {kind}")
    if not path.is_file():
        raise DataError(path, f"is not a regular file (a FIFO, device or socket is not read as {kind})")
    if path.stat().st_size == 0:
        raise DataError(path, "file is empty")
    return path


#: More unreadable rows than this share of a data set (or manifest) of at least
#: :data:`MIN_ROWS_FOR_SHARE` rows is an error, not a skip: the results would describe a few
#: rows, not the data set (paths relative to the wrong folder, a half-copied data set).
MAX_UNREADABLE_SHARE = 0.5
MIN_ROWS_FOR_SHARE = 20


def check_unreadable(source, n_bad: int, n: int, first: str | None = None) -> None:
    """Raise :class:`DataError` when none of ``n`` rows could be used, or more than
    :data:`MAX_UNREADABLE_SHARE` of them in a set of :data:`MIN_ROWS_FOR_SHARE` or more."""
    if n and (n_bad >= n or (n >= MIN_ROWS_FOR_SHARE and n_bad > MAX_UNREADABLE_SHARE * n)):
        what = "no row could be used" if n_bad >= n else f"{n_bad:,} of {n:,} rows could not be used"
        raise DataError(source, f"{what}{f' (first: {first})' if first else ''}; check the paths, or "
                                "fix or remove the bad rows")


class _CsvRows:
    """``(row_no, row)`` for each non-blank data row (header = row 0); remembers the last
    row number read so that a read error can name the row after it."""

    def __init__(self, reader):
        self.reader = reader
        self.row_no = 0

    def __iter__(self):
        for self.row_no, row in enumerate(self.reader, start=1):
            if row and any(c.strip() for c in row):
                yield self.row_no, row


@contextmanager
def csv_rows(path: Path) -> Iterator[tuple[list[str], _CsvRows]]:
    """Open a plain or gzipped text CSV and give ``(header, rows)``; ``rows`` yields
    ``(row_no, row)`` for each non-blank row.

    A file that cannot be opened, has no header, is damaged (truncated gzip, bad CSV quoting)
    or is not UTF-8 raises :class:`DataError`, naming the row being read. Shared by the FER+
    and manifest readers (FER2013's own reader works on bytes, for speed).
    """
    try:
        fh = open_text(path)
    except OSError as e:
        raise DataError(path, f"cannot open: {e}") from None
    with fh:
        rows = _CsvRows(None)
        rows.row_no = -1  # a read error before the header is read names the header, row 0
        try:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                raise DataError(path, "file is empty (no header)") from None
            rows.reader, rows.row_no = reader, 0
            yield header, rows
        except READ_ERRORS as e:
            raise DataError(path, f"file is corrupt or truncated ({str(e) or type(e).__name__})", row=rows.row_no + 1) from None
        except UnicodeDecodeError:
            raise DataError(path, "not a UTF-8 text CSV file", row=rows.row_no + 1) from None
