"""Read any image a user may hand us into an RGB uint8 array, safely.

Handles EXIF orientation, grayscale / RGBA / LA / palette / CMYK / 16-bit images, and guards
against decompression bombs (``max_pixels``). Every failure is an :class:`ImageError` that
names the file and the problem.
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
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"}


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


def open_image(src, *, name: str | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open ``src`` (path, bytes, file object or PIL image) as an RGB PIL image."""
    label = name or (str(src) if isinstance(src, (str, os.PathLike)) else "<image>")
    if isinstance(src, Image.Image):
        img = src
    else:
        if isinstance(src, (str, os.PathLike)):
            p = Path(src)
            if not p.exists():
                raise ImageError(label, "file not found")
            if p.is_dir():
                raise ImageError(label, "is a folder, not an image")
            if p.stat().st_size == 0:
                raise ImageError(label, "file is empty")
            fobj = open(p, "rb")
        elif isinstance(src, (bytes, bytearray, memoryview)):
            if len(src) == 0:
                raise ImageError(label, "no image data (0 bytes)")
            fobj = io.BytesIO(bytes(src))
        else:
            fobj = src
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(fobj)
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageError(label, f"image too large ({w}x{h} = {w * h / 1e6:.0f} MP > {max_pixels / 1e6:.0f} MP limit)")
                img.load()
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(label, f"image too large (decompression bomb guard: {e})") from None
        except UnidentifiedImageError:
            raise ImageError(label, "not an image or unsupported format") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(label, f"cannot decode image ({str(e)[:100] or type(e).__name__}; truncated or corrupt?)") from None
        finally:
            if isinstance(src, (str, os.PathLike)):
                fobj.close()
    if img.size[0] * img.size[1] > max_pixels:
        raise ImageError(label, f"image too large ({img.size[0]}x{img.size[1]})")
    if img.size[0] == 0 or img.size[1] == 0:
        raise ImageError(label, "image has zero size")
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the picture
        pass
    return _to_rgb(img)


def read_image(src, *, bgr: bool = False, name: str | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any image -> ``H x W x 3`` uint8 RGB array.

    ``src`` may be a path, bytes, a file object, a PIL image, or a numpy array (``H x W``
    grayscale, ``H x W x 3`` RGB, or BGR when ``bgr=True``, ``H x W x 4`` RGBA; uint8, uint16
    or float in [0, 1]).
    """
    if isinstance(src, np.ndarray):
        return array_to_rgb(src, bgr=bgr, name=name or "<array>")
    return np.asarray(open_image(src, name=name, max_pixels=max_pixels))


def array_to_rgb(a: np.ndarray, *, bgr: bool = False, name: str = "<array>") -> np.ndarray:
    if a.size == 0:
        raise ImageError(name, "empty array")
    if a.dtype == np.uint16:
        a = (a / 257.0).round().astype(np.uint8)
    elif a.dtype.kind == "f":
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        rgb = a[:, :, :3]
        if bgr:
            rgb = rgb[:, :, ::-1]
        return np.ascontiguousarray(rgb)
    raise ImageError(name, f"array of shape {a.shape} is not an image (H x W, H x W x 3 or H x W x 4)")


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 -> grayscale uint8 (ITU-R 601 luma, as PIL's 'L')."""
    if rgb.ndim == 2:
        return rgb
    g = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.clip(g + 0.5, 0, 255).astype(np.uint8)


def is_image_file(p: str | os.PathLike) -> bool:
    return Path(p).suffix.lower() in IMAGE_EXTENSIONS
