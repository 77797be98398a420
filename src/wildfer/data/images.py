"""Read any image a user may hand us into an RGB uint8 array, safely.

Handles EXIF orientation, grayscale / RGBA / LA / palette / CMYK / 16-bit images, and guards
against decompression bombs (``max_pixels``). Every failure is an :class:`ImageError` that
names the file and the problem.

A JPEG whose data stops early but ends with an end-of-image marker (a cut-off download, or a
file patched to look complete) decodes without any error, the missing blocks filled with flat
grey. Such an image is not refused, it is marked: :func:`read_image` returns it as a
:class:`TruncatedImage` (``is_truncated(a)``), and :func:`open_image` sets
``info["truncated"]``.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError

#: Largest image accepted (pixels). 8K x 8K = 67 MP; larger files are refused, not decoded.
MAX_PIXELS = 80_000_000
#: Largest image file read (bytes); a larger one is refused before any of it is read. Files over
#: :data:`_SNIFF_BYTES` must also begin with an image format's signature before they are read.
MAX_IMAGE_BYTES = 512 * 2**20
_SNIFF_BYTES = 32 * 2**20
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"}

#: File signatures of the formats above: a file that starts with one but does not open is a
#: damaged file of that format, not an unsupported one.
SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
              (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))

#: Bytes put before a JPEG's end marker to see whether its last scan wanted more data (any
#: pattern that decodes to non-zero coefficients; 0xFF is left out, it would start a marker).
_SCAN_FILLER = bytes((k * 97 + 13) % 254 for k in range(64))


class TruncatedImage(np.ndarray):
    """An RGB array decoded from a file whose data ended early: part of it is filler (for a
    JPEG, the blocks after the cut are flat grey). Otherwise an ordinary array."""


def is_truncated(image) -> bool:
    """Whether ``image`` (an array from :func:`read_image` or a PIL image from
    :func:`open_image`) was decoded from a file that ended early."""
    if isinstance(image, Image.Image):
        return bool(image.info.get("truncated"))
    return isinstance(image, TruncatedImage)


def _format_of(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((fmt for sig, fmt in SIGNATURES if head.startswith(sig)), None)


def _flat_last_block(img: Image.Image) -> bool:
    """Whether the JPEG's last block (bottom right, in decoding order) is the flat grey a
    decoder fills missing blocks with; the cheap test before :func:`_scan_runs_out`."""
    if getattr(img, "layer", None) is None or img.mode not in ("L", "RGB", "CMYK"):
        return False
    s = decode_scale(img)  # a block is 8 / s pixels of a JPEG decoded at 1/s of its size
    mw = max(1, 8 * max(h for _, h, _, _ in img.layer) // s)
    mh = max(1, 8 * max(v for _, _, v, _ in img.layer) // s)
    w, h = img.size
    # the far half of the block: chroma upsampling blends its near rows and columns with the
    # decoded blocks before it
    left, top = min(((w - 1) // mw) * mw + mw // 2, w - 1), min(((h - 1) // mh) * mh + mh // 2, h - 1)
    block = np.asarray(img.crop((left, top, w, h))).reshape(-1, len(img.getbands()))
    if not (block == block[0]).all():
        return False
    return img.mode == "CMYK" or bool((block == 128).all())


def _scan_runs_out(img: Image.Image, data: bytes) -> bool:
    """Whether the JPEG ``data`` (decoded as ``img``) ends before its last scan is complete.

    A complete scan ignores bytes put between its end and the end marker; a scan cut short
    decodes them as its missing blocks, so the pixels change.
    """
    sos = data.rfind(b"\xff\xda")
    eoi = data.find(b"\xff\xd9", sos) if sos >= 0 else -1
    if eoi < 0:
        return False
    try:
        with Image.open(io.BytesIO(data[:eoi] + _SCAN_FILLER + data[eoi:])) as probe:
            if decode_scale(img) > 1:  # decoded the same way, at the same scale
                probe.draft(probe.mode, _draft_size(probe.size, decode_scale(img)))
            probe.load()
            return not np.array_equal(np.asarray(probe), np.asarray(img))
    except Exception:  # noqa: BLE001 - the filler broke the decoder: the scan did read it
        return True


#: The reductions a JPEG can be decoded at (libjpeg's scaled inverse DCT: 1/2, 1/4 and 1/8 of
#: its size for a fraction of the work of decoding it whole).
DECODE_SCALES = (8, 4, 2)


def decode_scale(img: Image.Image) -> int:
    """The reduction ``img`` was decoded at: 1, or 2, 4 or 8 for a JPEG decoded at that
    fraction of its size (:func:`open_image`'s ``min_side``); its pixel ``(x, y)`` covers the
    file's ``(x * scale, y * scale)``."""
    config = getattr(img, "decoderconfig", None) if img.format == "JPEG" else None
    return int(config[0]) if config and int(config[0]) > 1 else 1


def _draft_size(size: tuple[int, int], scale: int) -> tuple[int, int]:
    """The size to ask :meth:`PIL.Image.Image.draft` for so that it decodes at 1/``scale``."""
    return max(1, size[0] // scale), max(1, size[1] // scale)


def _jpeg_truncated(img: Image.Image, data: bytes | None) -> bool:
    if data is None or img.format != "JPEG":
        return False
    progressive = bool(img.info.get("progressive") or img.info.get("progression"))
    # a progressive JPEG cut short is blurred, not grey, so it always gets the full test
    return (progressive or _flat_last_block(img)) and _scan_runs_out(img, data)


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = a.max() if a.size else 1.0
        scale = 255.0 / (65535.0 if hi > 255 else max(hi, 1.0) if mode == "F" else 255.0)
        a = np.clip(a * scale, 0, 255).astype(np.uint8)
        img = Image.fromarray(a, "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return img.convert("RGB")


def jpeg_cut_short(data: bytes, rgb: np.ndarray) -> bool:
    """Whether JPEG ``data``, decoded elsewhere (OpenCV) as ``rgb``, ended early: the test
    :func:`read_image` makes, for callers with their own decoder. Cheap unless a corner of
    ``rgb`` (where the last block lands after any EXIF rotation) is filler grey or the file
    is progressive."""
    a = np.asarray(rgb)
    corners = (a[-4:, -4:], a[:4, :4], a[:4, -4:], a[-4:, :4])
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "JPEG":
                return False
            progressive = bool(img.info.get("progressive") or img.info.get("progression"))
            if not progressive and not any(c.size and (c == 128).all() for c in corners):
                return False
            img.load()
            return _scan_runs_out(img, data)
    except Exception:  # noqa: BLE001 - undecodable here: not the case this test is for
        return False


def _read_image_file(p: Path, label: str) -> bytes:
    """The bytes of an image file, after checks that need none of them read: it is a regular
    file (a FIFO would block), not empty, at most :data:`MAX_IMAGE_BYTES`, and (when large)
    begins like an image."""
    import stat

    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageError(label, "file not found") from None
    except OSError as e:
        raise ImageError(label, f"cannot read the file ({e.strerror or type(e).__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(label, "is a folder, not an image")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(label, "is not a regular file (a FIFO, device or socket is not read)")
    if st.st_size == 0:
        raise ImageError(label, "file is empty")
    if st.st_size > MAX_IMAGE_BYTES:
        raise ImageError(label, f"file is {st.st_size / 2**20:,.0f} MiB; images over {MAX_IMAGE_BYTES / 2**20:,.0f} MiB "
                                "are not read")
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
            if st.st_size > _SNIFF_BYTES and _format_of(head) is None and head[:2] not in _NETPBM:
                raise ImageError(label, f"not an image ({st.st_size / 2**20:,.0f} MiB that begin like no image "
                                        "format)")
            return head + fh.read()
    except OSError as e:
        raise ImageError(label, f"cannot read the file ({e.strerror or type(e).__name__})") from None


_NETPBM = {f"P{k}".encode() for k in range(1, 8)}


def open_image(src, *, name: str | None = None, max_pixels: int = MAX_PIXELS, min_side: int = 0,
               scale: int | None = None) -> Image.Image:
    """Open ``src`` (path, bytes, file object or PIL image) as an RGB PIL image.

    A JPEG that ended early (see the module docstring) has ``info["truncated"] = True``.

    ``min_side``: a JPEG file (RGB or grey) is decoded at the smallest of 1/2, 1/4 and 1/8 of
    its size whose longer side is still at least ``min_side`` pixels, for a fraction of the
    work (0: whole); ``scale`` asks for one reduction instead (1, 2, 4 or 8). The image's
    ``info["decode_scale"]`` says which (its pixels cover that many of the file's, along
    each side) and ``info["full_size"]`` the photo's size decoded whole, after EXIF rotation.
    Other formats, and images given as PIL images, decode whole.
    """
    if scale is not None and scale not in (1, *DECODE_SCALES):
        raise ValueError(f"scale must be 1, 2, 4 or 8, not {scale!r}")
    label = name or (str(src) if isinstance(src, (str, os.PathLike)) else "<image>")
    truncated = False
    if isinstance(src, Image.Image):
        img = src
        truncated = bool(src.info.get("truncated"))
    else:
        if isinstance(src, (str, os.PathLike)):
            data = _read_image_file(Path(src), label)
        elif isinstance(src, (bytes, bytearray, memoryview)):
            if len(src) == 0:
                raise ImageError(label, "no image data (0 bytes)")
            data = bytes(src)
        elif callable(getattr(src, "read", None)):
            data = src.read()
            if not isinstance(data, (bytes, bytearray)):
                raise ImageError(label, f"file object gave {type(data).__name__}, not bytes (open it in binary mode)")
        else:
            raise ImageError(label, f"a {type(src).__name__} is not an image: give a path, bytes, a file object, "
                             "a PIL image or a numpy array")
        fobj = io.BytesIO(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(fobj)
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageError(label, f"image too large ({w}x{h} = {w * h / 1e6:.0f} MP > {max_pixels / 1e6:.0f} MP limit)")
                full_size = img.size
                reduce_by = _reduction(img, min_side, scale)
                if reduce_by > 1:
                    img.draft(img.mode, _draft_size(img.size, reduce_by))
                img.load()
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(label, f"image too large (decompression bomb guard: {e})") from None
        except UnidentifiedImageError:
            fmt = _format_of(data[:16])
            if fmt is not None:
                raise ImageError(label, f"corrupt or truncated {fmt} file (its header does not decode)") from None
            raise ImageError(label, "not an image or unsupported format") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(label, f"cannot decode image ({str(e)[:100] or type(e).__name__}; truncated or corrupt?)") from None
        truncated = _jpeg_truncated(img, data)
    if img.mode == "F" and not np.isfinite(np.asarray(img)).all():
        raise ImageError(label, "holds NaN or infinite pixel values (a float image must be finite)")
    if img.size[0] * img.size[1] > max_pixels:
        raise ImageError(label, f"image too large ({img.size[0]}x{img.size[1]})")
    if img.size[0] == 0 or img.size[1] == 0:
        raise ImageError(label, "image has zero size")
    if isinstance(src, Image.Image):  # the caller's image, as it is
        reduced, full_size = 1, img.size
    else:
        reduced = decode_scale(img)
    stored = img.size
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the picture
        pass
    if img.size != stored and img.size == stored[::-1]:  # turned a quarter: so is the whole photo
        full_size = full_size[::-1]
    rgb = _to_rgb(img)
    if truncated:
        rgb.info["truncated"] = True
    rgb.info["decode_scale"] = reduced
    rgb.info["full_size"] = tuple(full_size)
    return rgb


def _reduction(img: Image.Image, min_side: int, scale: int | None) -> int:
    """What :func:`open_image` decodes ``img`` (opened, not loaded) at: 1 (whole), or the JPEG
    reduction asked for (``scale``) or the largest that keeps the longer side >= ``min_side``."""
    if img.format != "JPEG" or img.mode not in ("RGB", "L") or len(getattr(img, "tile", ())) != 1:
        return 1
    if scale is not None:
        return scale
    if min_side <= 0:
        return 1
    return next((s for s in DECODE_SCALES if max(img.size) // s >= min_side), 1)


def read_image(src, *, bgr: bool = False, name: str | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any image -> ``H x W x 3`` uint8 RGB array.

    ``src`` may be a path, bytes, a file object, a PIL image, or a numpy array (``H x W``
    grayscale, ``H x W x 3`` RGB, or BGR when ``bgr=True``, ``H x W x 4`` RGBA; uint8, uint16,
    float in [0, 1] or bool).

    A file that ended early comes back as a :class:`TruncatedImage` (an array all the same;
    :func:`is_truncated` tells), and so does such an array given back in.
    """
    if isinstance(src, np.ndarray):
        rgb = array_to_rgb(src, bgr=bgr, name=name or "<array>")
        return rgb.view(TruncatedImage) if is_truncated(src) else np.asarray(rgb)
    img = open_image(src, name=name, max_pixels=max_pixels)
    rgb = np.asarray(img)
    return rgb.view(TruncatedImage) if is_truncated(img) else rgb


def read_image_scaled(src, *, min_side: int = 0, scale: int | None = None, bgr: bool = False,
                      name: str | None = None, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, int, tuple[int, int]]:
    """:func:`read_image` that may decode a large JPEG at a fraction of its size
    (:func:`open_image`'s ``min_side`` and ``scale``): ``(rgb, scale, (width, height))``, with
    ``scale`` the reduction it was decoded at (1: whole; pixel ``(x, y)`` covers the photo's
    ``(x * scale, y * scale)``) and the photo's full size. Arrays and PIL images come whole."""
    if isinstance(src, np.ndarray):
        rgb = read_image(src, bgr=bgr, name=name)
        return rgb, 1, (rgb.shape[1], rgb.shape[0])
    img = open_image(src, name=name, max_pixels=max_pixels, min_side=min_side, scale=scale)
    rgb = np.asarray(img)
    return (rgb.view(TruncatedImage) if is_truncated(img) else rgb), img.info["decode_scale"], img.info["full_size"]


def array_to_rgb(a: np.ndarray, *, bgr: bool = False, name: str = "<array>") -> np.ndarray:
    if a.size == 0:
        raise ImageError(name, "empty array")
    if a.dtype.kind not in "buif":
        raise ImageError(name, f"array of dtype {a.dtype} is not an image (uint8, uint16, float or bool pixels)")
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = (a / 257.0).round().astype(np.uint8)
    elif a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ImageError(name, "array holds NaN or infinite pixel values")
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        if a.shape[2] == 3 and not bgr:
            return np.ascontiguousarray(a)
        import cv2  # one pass, many times faster than numpy copying a reversed view

        code = {(3, True): cv2.COLOR_BGR2RGB, (4, True): cv2.COLOR_BGRA2RGB, (4, False): cv2.COLOR_RGBA2RGB}
        return cv2.cvtColor(np.ascontiguousarray(a), code[a.shape[2], bgr])
    raise ImageError(name, f"array of shape {a.shape} is not an image (H x W, H x W x 3 or H x W x 4)")


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 -> grayscale uint8 (ITU-R 601 luma, as PIL's 'L')."""
    if rgb.ndim == 2:
        return rgb
    g = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.clip(g + 0.5, 0, 255).astype(np.uint8)


def is_image_file(p: str | os.PathLike) -> bool:
    return Path(p).suffix.lower() in IMAGE_EXTENSIONS
