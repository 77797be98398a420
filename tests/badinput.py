"""The bad-input corpus: functions that write one awkward or broken input into a folder.

Each writer takes a folder and returns the path it wrote. Images are small (tens of pixels)
except where size is the point (the bombs, the 8000 x 8000 photo). Every image case says what
a correct reader makes of it: the upright size it must report, or the fragment the refusal
names and the HTTP status the service answers with. Data, config and checkpoint writers
follow for ``wildfer data info`` / ``evaluate`` / ``train`` / ``--model``.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# ----------------------------------------------------------------------------- pixels


def pattern(width: int = 64, height: int = 48) -> np.ndarray:
    """An RGB test pattern: red rises to the right, green downwards, blue constant."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return np.stack([x, y, np.full_like(x, 96.0)], axis=2).round().astype(np.uint8)


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def _jpeg_bytes(width: int = 64, height: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pattern(width, height)).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


# ----------------------------------------------------------------------------- images


def good_jpeg(folder: Path, name: str = "good.jpg") -> Path:
    p = Path(folder) / name
    p.write_bytes(_jpeg_bytes())
    return p


def truncated_jpeg(folder: Path) -> Path:
    """The first half of a JPEG: the scan stops mid-way and no end marker follows."""
    p = Path(folder) / "truncated.jpg"
    data = _jpeg_bytes(96, 96)
    p.write_bytes(data[: len(data) // 2])
    return p


def truncated_jpeg_with_eoi(folder: Path) -> Path:
    """The first half of a JPEG with an end-of-image marker appended: decoders fill the rest
    with grey and report nothing unless asked."""
    p = Path(folder) / "truncated_eoi.jpg"
    data = _jpeg_bytes(96, 96)
    p.write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    return p


def zero_byte(folder: Path) -> Path:
    p = Path(folder) / "empty.jpg"
    p.write_bytes(b"")
    return p


def text_as_jpeg(folder: Path) -> Path:
    p = Path(folder) / "notes.jpg"
    p.write_text("this is a shopping list, not a photo\neggs\nmilk\n")
    return p


def png16_gray(folder: Path) -> Path:
    """16-bit grayscale, a ramp from 0 to 65535 left to right."""
    p = Path(folder) / "gray16.png"
    ramp = np.linspace(0, 65535, 64).round().astype(np.uint16)[None, :].repeat(48, 0)
    return _save(Image.fromarray(ramp), p)


def png16_rgb(folder: Path) -> Path:
    """16-bit per channel RGB (48-bit PNG): the pattern times 257."""
    import cv2

    p = Path(folder) / "rgb16.png"
    rgb16 = pattern().astype(np.uint16) * 257
    cv2.imwrite(str(p), rgb16[:, :, ::-1].copy())
    return p


def cmyk_jpeg(folder: Path) -> Path:
    """A CMYK JPEG of pure red (C=0, M=Y=100%, K=0)."""
    return _save(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), Path(folder) / "cmyk.jpg", quality=95)


def palette_png(folder: Path) -> Path:
    img = Image.fromarray(pattern()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return _save(img, Path(folder) / "palette.png")


def palette_transparent_png(folder: Path) -> Path:
    """A palette PNG whose index 0 is transparent; the left half uses index 0."""
    img = Image.new("P", (64, 48), 1)
    img.putpalette([0, 0, 0] + [200, 30, 30] + [0, 0, 0] * 254)
    img.paste(0, (0, 0, 32, 48))
    return _save(img, Path(folder) / "palette_alpha.png", transparency=0)


def rgba_png(folder: Path) -> Path:
    """Blue, with the left half fully transparent (it must come out white, not black or blue)."""
    a = np.zeros((48, 64, 4), np.uint8)
    a[..., 2] = 255
    a[:, 32:, 3] = 255
    return _save(Image.fromarray(a), Path(folder) / "rgba.png")


def la_png(folder: Path) -> Path:
    """Gray 40 with alpha; the left half fully transparent."""
    a = np.zeros((48, 64, 2), np.uint8)
    a[..., 0] = 40
    a[:, 32:, 1] = 255
    return _save(Image.frombytes("LA", (64, 48), a.tobytes()), Path(folder) / "la.png")


def gif(folder: Path) -> Path:
    return _save(Image.fromarray(pattern()).convert("P", palette=Image.Palette.ADAPTIVE), Path(folder) / "still.gif")


def animated_gif(folder: Path) -> Path:
    """Three frames: red, green, blue. A reader takes the first (red)."""
    frames = [Image.new("RGB", (64, 48), c).convert("P", palette=Image.Palette.ADAPTIVE)
              for c in ((220, 20, 20), (20, 220, 20), (20, 20, 220))]
    p = Path(folder) / "animated.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return p


def webp(folder: Path) -> Path:
    return _save(Image.fromarray(pattern()), Path(folder) / "pattern.webp", quality=90)


def exif_rotated_jpeg(folder: Path, rgb: np.ndarray | None = None, name: str = "exif_rotated.jpg") -> Path:
    """``rgb`` (default: the 64 x 48 pattern) stored lying on its side, with EXIF orientation 6
    ("rotate 90 degrees clockwise to view"): a reader that honours EXIF gets ``rgb`` back."""
    upright = Image.fromarray(pattern() if rgb is None else rgb)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise; orientation 6 undoes it
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(stored, Path(folder) / name, quality=95, exif=exif.tobytes())


def bomb_png(folder: Path, side: int = 20000) -> Path:
    """A 1-bit PNG of ``side`` x ``side`` zero pixels: a few kB on disk, ``side**2`` pixels decoded."""
    raw_row = b"\x00" * (1 + (side + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(raw_row) for _ in range(side)) + z.flush()
    data = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))
    p = Path(folder) / f"bomb_{side}.png"
    p.write_bytes(data)
    return p


def huge_solid(folder: Path, side: int = 8000) -> Path:
    """A ``side`` x ``side`` photo of one colour (8000: 64 MP, under the library's limit and over
    the service's 40 MP)."""
    return _save(Image.new("RGB", (side, side), (90, 140, 200)), Path(folder) / f"solid_{side}.jpg", quality=80)


def tiny(folder: Path, side: int = 1) -> Path:
    return _save(Image.new("RGB", (side, side), (120, 80, 40)), Path(folder) / f"tiny_{side}x{side}.png")


def corrupt_idat_png(folder: Path) -> Path:
    """A PNG whose image data chunk has bytes overwritten in the middle (CRC no longer matches)."""
    buf = io.BytesIO()
    Image.fromarray(pattern()).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    i = data.find(b"IDAT")
    n = struct.unpack(">I", data[i - 4:i])[0]
    mid = i + 4 + n // 2
    data[mid:mid + 16] = b"\xde\xad\xbe\xef" * 4
    p = Path(folder) / "corrupt_idat.png"
    p.write_bytes(bytes(data))
    return p


def corrupt_ihdr_png(folder: Path) -> Path:
    """A PNG whose header chunk's checksum is wrong."""
    buf = io.BytesIO()
    Image.fromarray(pattern()).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[29:33] = b"\x00\x00\x00\x00"  # IHDR's CRC (8 signature + 4 length + 4 type + 13 data)
    p = Path(folder) / "corrupt_ihdr.png"
    p.write_bytes(bytes(data))
    return p


def text_bomb_png(folder: Path) -> Path:
    """A small PNG carrying a compressed text chunk that inflates to 8 MB: a decompression bomb
    outside the pixels, which Pillow refuses (text chunks are capped at 1 MB)."""
    buf = io.BytesIO()
    Image.fromarray(pattern()).save(buf, format="PNG")
    png = buf.getvalue()
    text = zlib.compress(b"A" * 8_000_000, 9)
    p = Path(folder) / "text_bomb.png"
    p.write_bytes(png[:33] + _png_chunk(b"zTXt", b"Comment\x00\x00" + text) + png[33:])  # after IHDR
    return p


def float_tiff_nan(folder: Path) -> Path:
    """A 32-bit float TIFF holding NaN and infinity: no pixel value a reader could show."""
    a = np.linspace(0, 1, 64 * 48, dtype=np.float32).reshape(48, 64)
    a[5, 5], a[6, 6] = np.nan, np.inf
    return _save(Image.fromarray(a, "F"), Path(folder) / "float_nan.tif")


# ----------------------------------------------------------------------------- files that are no files


def fifo(folder: Path, name: str = "pipe.jpg") -> Path:
    """A named pipe: reading it whole would block until a writer comes, for ever."""
    p = Path(folder) / name
    os.mkfifo(p)
    return p


def sparse_file(folder: Path, name: str = "huge.jpg", size: int = 2 * 2**30) -> Path:
    """A file of ``size`` bytes that takes no disk (all zeros): reading it whole would take
    ``size`` of memory."""
    p = Path(folder) / name
    with open(p, "wb") as fh:
        fh.truncate(size)
    return p


def long_name(folder: Path, suffix: str = ".json") -> Path:
    """A path whose last component is longer than file systems allow (255 bytes)."""
    return Path(folder) / ("n" * 300 + suffix)


def huge_field_manifest(folder: Path) -> Path:
    """A manifest whose path field is longer than Python's CSV field limit (128 KiB)."""
    p = Path(folder) / "huge_field.csv"
    p.write_text("path,label\n" + "a" * 200_000 + ".jpg,happy\n")
    return p


def damaged_zip(folder: Path, name: str) -> Path:
    """A zip archive's first bytes and nothing after (as a model: .pt, .npz, .zip)."""
    p = Path(folder) / name
    p.write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    return p


def text_as_video(folder: Path) -> Path:
    p = Path(folder) / "clip.mp4"
    p.write_text("not a video")
    return p


def zero_byte_video(folder: Path) -> Path:
    p = Path(folder) / "empty.avi"
    p.write_bytes(b"")
    return p


@dataclass(frozen=True)
class ImageCase:
    """One image input. ``size``: the upright ``(width, height)`` a reader must report, or
    None when it must be refused; ``problem``: a fragment of the refusal's message;
    ``http``: the status ``/v1/predict`` answers with (the service decodes at most 40 MP)."""

    name: str
    write: Callable[[Path], Path]
    size: tuple[int, int] | None
    problem: str = ""
    http: int = 200


IMAGE_CASES = [
    ImageCase("truncated_jpeg", truncated_jpeg, None, "truncated", 422),
    ImageCase("zero_byte", zero_byte, None, "empty", 422),
    ImageCase("text_as_jpeg", text_as_jpeg, None, "not an image", 422),
    ImageCase("png16_gray", png16_gray, (64, 48)),
    ImageCase("png16_rgb", png16_rgb, (64, 48)),
    ImageCase("cmyk_jpeg", cmyk_jpeg, (64, 48)),
    ImageCase("palette_png", palette_png, (64, 48)),
    ImageCase("palette_transparent_png", palette_transparent_png, (64, 48)),
    ImageCase("rgba_png", rgba_png, (64, 48)),
    ImageCase("la_png", la_png, (64, 48)),
    ImageCase("gif", gif, (64, 48)),
    ImageCase("animated_gif", animated_gif, (64, 48)),
    ImageCase("webp", webp, (64, 48)),
    ImageCase("exif_rotated_jpeg", exif_rotated_jpeg, (64, 48)),  # stored 48 x 64
    ImageCase("bomb_png_20000", bomb_png, None, "too large", 413),
    ImageCase("bomb_png_12000", lambda f: bomb_png(f, 12000), None, "too large", 413),
    ImageCase("huge_solid_8000", huge_solid, (8000, 8000), "", 413),
    ImageCase("large_solid_4000", lambda f: huge_solid(f, 4000), (4000, 4000)),  # 16 MP: the service shrinks it
    ImageCase("tiny_1x1", lambda f: tiny(f, 1), (1, 1)),
    ImageCase("tiny_2x2", lambda f: tiny(f, 2), (2, 2)),
    ImageCase("corrupt_idat_png", corrupt_idat_png, None, "decode", 422),
    ImageCase("corrupt_ihdr_png", corrupt_ihdr_png, None, "", 422),
    ImageCase("text_bomb_png", text_bomb_png, None, "too large", 422),
    ImageCase("float_tiff_nan", float_tiff_nan, None, "NaN or infinite", 422),
]


# ----------------------------------------------------------------------------- FER2013 CSVs

HEADER = "emotion,pixels,Usage"


def fer_row(label: int, usage: str = "PublicTest", seed: int = 0, n_pixels: int = 48 * 48) -> str:
    px = np.random.default_rng(seed).integers(0, 256, n_pixels)
    return f"{label},{' '.join(map(str, px))},{usage}"


def good_rows(n: int = 14) -> list[str]:
    """``n`` rows, labels cycling through the 7 classes, half Training, half PublicTest."""
    return [fer_row(i % 7, "Training" if i % 2 else "PublicTest", seed=i) for i in range(n)]


def fer_csv(folder: Path, name: str = "fer.csv", rows: list[str] | None = None, header: str = HEADER) -> Path:
    p = Path(folder) / name
    p.write_text("\n".join([header, *(good_rows() if rows is None else rows)]) + "\n")
    return p


def _with_row(rows_before: int, bad: str) -> list[str]:
    rows = good_rows()
    rows.insert(rows_before, bad)
    return rows


def fer_short_row(folder: Path) -> Path:
    """Row 3 has 2303 pixels."""
    return fer_csv(folder, "short_row.csv", _with_row(2, fer_row(3, seed=99, n_pixels=2303)))


def fer_non_numeric(folder: Path) -> Path:
    """Row 5's pixel 10 is 'x7'."""
    tokens = fer_row(3, seed=98).split(",")
    px = tokens[1].split()
    px[9] = "x7"
    return fer_csv(folder, "non_numeric.csv", _with_row(4, f"{tokens[0]},{' '.join(px)},{tokens[2]}"))


def fer_unknown_label(folder: Path) -> Path:
    """Row 2's emotion is 7 (FER2013 has 0-6)."""
    return fer_csv(folder, "unknown_label.csv", _with_row(1, fer_row(7, seed=97)))


def fer_word_label(folder: Path) -> Path:
    """Row 2's emotion is 'happy', not a number."""
    return fer_csv(folder, "word_label.csv", _with_row(1, "happy," + fer_row(3, seed=96).split(",", 1)[1]))


def fer_missing_column(folder: Path) -> Path:
    """No pixels column at all."""
    return fer_csv(folder, "no_pixels.csv", [f"{i % 7},PublicTest" for i in range(5)], header="emotion,Usage")


def fer_row_missing_column(folder: Path) -> Path:
    """Row 4 lacks its Usage field."""
    return fer_csv(folder, "row_missing_column.csv", _with_row(3, fer_row(2, seed=95).rsplit(",", 1)[0]))


def fer_empty(folder: Path) -> Path:
    p = Path(folder) / "empty.csv"
    p.write_bytes(b"")
    return p


def fer_header_only(folder: Path) -> Path:
    return fer_csv(folder, "header_only.csv", [])


def fer_gz_not_gzip(folder: Path) -> Path:
    """Named .csv.gz, holding bytes that are neither gzip nor text."""
    p = Path(folder) / "fake.csv.gz"
    p.write_bytes(bytes(range(256)) * 8)
    return p


def fer_gz_plain_text(folder: Path) -> Path:
    """Named .csv.gz, holding a plain (uncompressed) FER2013 CSV: it must load as one."""
    return fer_csv(folder, "plain.csv.gz")


def fer_gz_truncated(folder: Path) -> Path:
    """A real gzip of a FER2013 CSV, cut off in the middle."""
    data = gzip.compress(("\n".join([HEADER, *good_rows()]) + "\n").encode())
    p = Path(folder) / "truncated.csv.gz"
    p.write_bytes(data[: len(data) // 2])
    return p


def fer_tar_gz(folder: Path) -> Path:
    """Kaggle's download, ``fer2013.tar.gz`` (``fer2013/fer2013.csv`` inside), given as the CSV."""
    import tarfile

    csv_path = fer_csv(folder, "inner.csv")
    p = Path(folder) / "fer2013.tar.gz"
    with tarfile.open(p, "w:gz") as tar:
        tar.add(csv_path, arcname="fer2013/fer2013.csv")
    return p


def fer_zip(folder: Path) -> Path:
    import zipfile

    p = Path(folder) / "fer2013.zip"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("fer2013.csv", "\n".join([HEADER, *good_rows()]) + "\n")
    return p


def fer_xz(folder: Path) -> Path:
    import lzma

    p = Path(folder) / "fer2013.csv.xz"
    p.write_bytes(lzma.compress(("\n".join([HEADER, *good_rows()]) + "\n").encode()))
    return p


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _pack_arrays(n: int = 2, **override) -> dict:
    arrays = {"images": np.zeros((n, 48, 48), np.uint8), "labels": np.arange(n) % 7,
              "usage": np.array(["Training"] * n), "rows": np.arange(1, n + 1)}
    return {**arrays, **override}


def pack_float_labels(folder: Path) -> Path:
    return _npz(Path(folder) / "float_labels.npz", **_pack_arrays(labels=np.array([0.5, 1.7])))


def pack_int_usage(folder: Path) -> Path:
    return _npz(Path(folder) / "int_usage.npz", **_pack_arrays(usage=np.array([1, 2])))


def pack_small_faces(folder: Path) -> Path:
    return _npz(Path(folder) / "small_faces.npz", **_pack_arrays(images=np.zeros((2, 10, 10), np.uint8)))


def pack_label_out_of_range(folder: Path) -> Path:
    return _npz(Path(folder) / "label_9.npz", **_pack_arrays(labels=np.array([0, 9])))


def pack_text(folder: Path) -> Path:
    p = Path(folder) / "notes.npz"
    p.write_text("not a pack")
    return p


def pack_truncated_xz(folder: Path) -> Path:
    import lzma

    buf = io.BytesIO()
    np.savez(buf, **_pack_arrays(50))
    data = lzma.compress(buf.getvalue())
    p = Path(folder) / "cut.npz.xz"
    p.write_bytes(data[: len(data) // 2])
    return p


@dataclass(frozen=True)
class DataCase:
    """One data file that ``wildfer data info`` / ``evaluate`` must refuse: ``problem`` is a
    fragment of the one-line error, ``row`` the data row it must name (None: no row)."""

    name: str
    write: Callable[[Path], Path]
    problem: str
    row: int | None = None


FER_CASES = [
    DataCase("short_pixel_row", fer_short_row, "2303 pixels", 3),
    DataCase("non_numeric_pixels", fer_non_numeric, "'x7'", 5),
    DataCase("unknown_emotion", fer_unknown_label, "emotion 7", 2),
    DataCase("word_emotion", fer_word_label, "'happy'", 2),
    DataCase("missing_column", fer_missing_column, "header", None),
    DataCase("row_missing_column", fer_row_missing_column, "columns", 4),
    DataCase("empty_file", fer_empty, "empty", None),
    DataCase("header_only", fer_header_only, "no data rows", None),
    DataCase("gz_not_gzip", fer_gz_not_gzip, "text CSV", 0),
    DataCase("gz_truncated", fer_gz_truncated, "truncated", None),
    DataCase("tar_gz_archive", fer_tar_gz, "is a gzipped tar archive, not a CSV file", None),
    DataCase("zip_archive", fer_zip, "is a zip archive, not a CSV file", None),
    DataCase("xz_compressed", fer_xz, "is an xz-compressed file, not a CSV file", None),
    DataCase("pack_float_labels", pack_float_labels, "labels float64", None),
    DataCase("pack_int_usage", pack_int_usage, "usage int64", None),
    DataCase("pack_small_faces", pack_small_faces, "(2, 10, 10)", None),
    DataCase("pack_label_9", pack_label_out_of_range, "labels outside 0..6", None),
    DataCase("pack_text", pack_text, "not an .npz archive", None),
    DataCase("pack_truncated_xz", pack_truncated_xz, "corrupt or truncated", None),
]


# ----------------------------------------------------------------------------- FER+ vote files

FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def ferplus_rows() -> list[str]:
    """Vote rows matching :func:`good_rows` usage for usage (8 neutral and 2 happy votes each)."""
    return [f"{'Training' if i % 2 else 'PublicTest'},fer{i:07d}.png,8,2,0,0,0,0,0,0,0,0" for i in range(14)]


def ferplus_pair(folder: Path, rows: list[str], header: str = FERPLUS_HEADER) -> Path:
    """``fer2013new.csv`` holding ``rows``, with a good ``fer2013.csv`` beside it."""
    folder = Path(folder)
    fer_csv(folder, "fer2013.csv")
    p = folder / "fer2013new.csv"
    p.write_text("\n".join([header, *rows]) + "\n")
    return p


def _cut_row(i: int) -> list[str]:
    """Vote rows with row ``i`` missing its last three columns."""
    rows = ferplus_rows()
    rows[i] = rows[i].rsplit(",", 3)[0]
    return rows


def _vote_row(i: int, old: str, new: str) -> list[str]:
    rows = ferplus_rows()
    rows[i] = rows[i].replace(old, new, 1)
    return rows


FERPLUS_CASES = [
    DataCase("vote_word", lambda f: ferplus_pair(f, _vote_row(2, ",8,2,", ",eight,2,")), "'eight'", 3),
    DataCase("vote_negative", lambda f: ferplus_pair(f, _vote_row(2, ",8,2,", ",-3,2,")), "negative vote", 3),
    DataCase("short_vote_row", lambda f: ferplus_pair(f, _cut_row(2)), "columns", 3),
    DataCase("missing_vote_column", lambda f: ferplus_pair(f, [r.rsplit(",", 1)[0] for r in ferplus_rows()],
                                                           FERPLUS_HEADER.rsplit(",", 1)[0]), "'nf'", 0),
    DataCase("fewer_vote_rows", lambda f: ferplus_pair(f, ferplus_rows()[:-1]), "does not line up"),
    DataCase("empty_vote_usage", lambda f: ferplus_pair(f, _vote_row(0, "PublicTest,", ",")), "empty Usage", 1),
]


# ----------------------------------------------------------------------------- folders and manifests


def face_png(path: Path, seed: int = 0, size: tuple[int, int] = (60, 60)) -> Path:
    """A small noisy gray image (a stand-in face for loaders that need no detector)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    px = np.random.default_rng(seed).integers(0, 256, (size[1], size[0]), dtype=np.uint8)
    return _save(Image.fromarray(px), path)


#: manifest rows: (path, label, box, problem fragment or None for a good row); each bad one is
#: skipped and listed, the good ones load
MANIFEST_ROWS = [
    ("img/a.png", "happy", "", None),
    ("img/missing.png", "happy", "", "not found"),
    ("img/b.png", "sad", "10,10,50,50", None),
    ("img/b.png", "sad", "500,500,600,600", "outside"),    # beyond the 60 x 60 image
    ("img/b.png", "sad", "10,10,10.4,30", "less than one pixel"),  # inside, but rounds to 0 wide
    ("img/c.png", "surprised", "", None),                  # normalised to surprise
    ("img/notes.png", "angry", "", "not an image"),
    ("img/empty.png", "angry", "", "empty"),
]

#: malformed manifest rows (path, label, box, the problem every manifest loader states): any one
#: of them stops a load with one line naming its row
MANIFEST_BAD_ROWS = [
    ("img/b.png", "sad", "50,10,10,50", "bad box '50,10,10,50': empty (right <= left or bottom <= top)"),
    ("img/b.png", "sad", "ten,10,50,50", "bad box 'ten,10,50,50': needs 4 numbers, left,top,right,bottom"),
    ("img/b.png", "sad", "10,,50,50", "bad box '10,,50,50': needs 4 numbers, left,top,right,bottom"),
    ("img/b.png", "sad", "nan,10,50,50", "bad box 'nan,10,50,50': not all finite numbers"),
    ("img/b.png", "sad", "-inf,10,50,50", "bad box '-inf,10,50,50': not all finite numbers"),
    ("img/c.png", "bored", "", "unknown label 'bored' (known: angry, contempt, disgust, fear, happy, neutral, sad, "
                               "surprise)"),
    ("img/c.png", "", "", "empty label"),
    ("", "angry", "", "empty path"),
]


def manifest(folder: Path, bad_row: tuple[str, str, str, str] | None = None) -> Path:
    """A manifest with good rows beside missing, broken and non-image files and boxes off their
    image (:data:`MANIFEST_ROWS`; 3 good rows), and ``bad_row`` (one of
    :data:`MANIFEST_BAD_ROWS`) after them."""
    folder = Path(folder)
    for i, name in enumerate(("a", "b", "c")):
        face_png(folder / "img" / f"{name}.png", seed=i)
    (folder / "img" / "notes.png").write_text("not a png")
    (folder / "img" / "empty.png").write_bytes(b"")
    lines = ["path,label,left,top,right,bottom"]
    for path, label, box, _ in MANIFEST_ROWS + ([bad_row] if bad_row else []):
        lines.append(f"{path},{label},{box if box else ',,,'}")
    p = folder / "manifest.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def image_folder(folder: Path) -> tuple[Path, int, list[str]]:
    """``root/<class>/`` with good images beside broken ones; returns (root, good count, bad names)."""
    root = Path(folder) / "faces"
    face_png(root / "happy" / "h1.png", 1)
    face_png(root / "happy" / "h2.png", 2)
    face_png(root / "sad" / "s1.png", 3)
    zero_byte(root / "sad")
    text_as_jpeg(root / "sad")
    truncated_jpeg(root / "happy")
    bomb_png(root / "sad", 12000)
    (root / "happy" / "readme.txt").write_text("labels by hand")
    return root, 3, ["empty.jpg", "notes.jpg", "truncated.jpg", "bomb_12000.png", "readme.txt"]


# ----------------------------------------------------------------------------- training configs


def config(folder: Path, text: str | bytes, name: str = "config.yaml") -> Path:
    p = Path(folder) / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


#: (name, config text, fragment of the one-line error). ``{data}`` / ``{out}`` are filled in.
CONFIG_CASES = [
    ("not_yaml", "epochs: [1, 2\nlr: : :\n", "cannot parse"),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x01", "config"),
    ("yaml_list", "- epochs: 1\n- lr: 0.1\n", "mapping"),
    ("unknown_key", "data: {data}\nout: {out}\nepochs: 1\nepochz: 2\n", "epochz"),
    ("wrong_type", "data: {data}\nout: {out}\nepochs: three\n", "epochs"),
    ("wrong_type_list", "data: {data}\nout: {out}\nlr: [0.1]\n", "lr"),
    ("latin1_text", b"epochs: 1\n# caf\xe9\n", "config"),
    ("yaml_alias_bomb", "data: {data}\nout: {out}\n" + "".join(
        f"{k}: &{k} [" + ",".join([f"*{p}"] * 9 if p else ['"lol"'] * 9) + "]\n"
        for p, k in zip([None, *"abcdefgh"], "abcdefghi")) + "epochs: *i\n", "aliases are expanded"),
    ("yaml_nested_deep", "epochs: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    ("huge_value", "data: {data}\nout: {out}\nepochs: '" + "x" * 500_000 + "'\n", "epochs"),
]
#: out-of-range values (D3) and unknown keys inside model_kwargs / aug (D4)
CONFIG_RANGE_CASES = [
    ("batch_size_0", "batch_size: 0", "batch_size"),
    ("lr_negative", "lr: -0.1", "lr"),
    ("epochs_0", "epochs: 0", "epochs"),
    ("subset_negative", "subset: -5", "subset"),
    ("model_kwargs_unknown", "model_kwargs: {bogus_width: 3}", "bogus_width"),
    ("aug_unknown", "aug: {bogus_rotate: 3}", "bogus_rotate"),
]


# ----------------------------------------------------------------------------- hostile checkpoints


class _RunsCode:
    """Unpickling this calls ``os.system(command)``."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def hostile_checkpoint(path: Path, marker: Path, *, zip_format: bool = True) -> Path:
    """A ``.pt`` that looks like a checkpoint but whose pickle would create ``marker`` when
    loaded: written by ``torch.save`` (zip format) or as a bare pickle."""
    payload = {"format": "wildfer-checkpoint", "arch": "shallow", "classes": ["a", "b"],
               "state_dict": {}, "config": _RunsCode(f"touch {marker}")}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if zip_format:
        import torch

        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    return path


def not_a_checkpoint(path: Path) -> Path:
    """A ``.pt`` that torch loads safely but that is no checkpoint (a list of numbers)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save([1, 2, 3], path)
    return path


def ensemble_cycle(folder: Path) -> tuple[Path, Path]:
    """Two ensemble specs that list each other, and one that lists itself by file name."""
    import json

    folder = Path(folder)
    a, b, selfish = folder / "a.json", folder / "b.json", folder / "self.json"
    a.write_text(json.dumps({"arch": "ensemble", "members": ["b.json", "fast"]}))
    b.write_text(json.dumps({"arch": "ensemble", "members": ["a.json", "fast"]}))
    selfish.write_text(json.dumps({"arch": "ensemble", "members": ["self.json", "fast"]}))
    return a, selfish
