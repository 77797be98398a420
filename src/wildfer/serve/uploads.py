"""Read an uploaded photo safely: bounded size, checked type, decoded in memory only.

Nothing from the client touches the disk: the body is read into memory with a hard cap
(checked on ``Content-Length`` *and* while streaming, since the header can lie or be absent),
multipart forms are parsed in memory with ``python-multipart``'s streaming parser (FastAPI's
``UploadFile`` would spool parts over 1 MB to a temporary file), and the client's file name
is never used. Failures are :class:`UploadError` with the HTTP status and a clear message:

* 400: a malformed multipart form, or one with more than :data:`MAX_PARTS` parts (the parser
  stops at the first part over the cap, so a body of many tiny parts costs no more than one)
* 413: body over the upload limit, or image over the pixel limit (decompression bomb guard)
* 415: not an image content type (e.g. ``text/plain``, ``application/json``)
* 422: no image in the request, or bytes that do not decode as an image (truncated, corrupt)

Error messages stay short whatever the client sent: names taken from the request are cut to
a few characters and only the first few are listed.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from ..errors import ImageError

#: Content types accepted for a raw body or a multipart part (besides ``image/*``).
GENERIC_TYPES = {"application/octet-stream", ""}
#: Extra room for the multipart envelope (boundaries, part headers) over the image limit.
MULTIPART_SLACK = 16 * 1024
#: Most parts read from a multipart form: the photo plus a few fields a form may carry.
MAX_PARTS = 16
#: Field names quoted in the "no field 'file'" message, and characters quoted of each.
QUOTED_NAMES, QUOTED_CHARS = 5, 40


class UploadError(Exception):
    """A bad upload: ``status`` is the HTTP status, ``code`` a short machine-readable name,
    ``headers`` extra response headers (``Retry-After`` on a 503)."""

    def __init__(self, status: int, message: str, code: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


def too_large(limit: int) -> UploadError:
    return UploadError(413, f"upload too large: the limit is {_mb(limit)}", "too_large")


def check_content_length(headers, limit: int) -> None:
    """Refuse early when ``Content-Length`` already says the body is over ``limit``."""
    cl = headers.get("content-length")
    if cl is None:
        return
    try:
        n = int(cl)
    except ValueError:
        raise UploadError(400, f"bad Content-Length header {cl[:40]!r}", "bad_request") from None
    if n > limit:
        raise too_large(limit)


async def read_body(request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (413 beyond, even without Content-Length)."""
    check_content_length(request.headers, limit)
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise too_large(limit)
    return bytes(buf)


def media_type(value: str | None) -> tuple[str, dict[str, str]]:
    """``'multipart/form-data; boundary=x'`` -> ``('multipart/form-data', {'boundary': 'x'})``."""
    from python_multipart.multipart import parse_options_header

    if not value:
        return "", {}
    mt, params = parse_options_header(value)
    return mt.decode("latin-1").lower().strip(), {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in params.items()}


def is_image_type(mt: str) -> bool:
    return mt.startswith("image/") or mt in GENERIC_TYPES


def not_an_image_type(mt: str) -> UploadError:
    return UploadError(
        415,
        f"unsupported content type {mt!r}: send a photo (JPEG, PNG, WebP, BMP, GIF, TIFF) as the multipart "
        f"field 'file' (curl -F file=@photo.jpg) or as the raw body with an image/* content type "
        f"(curl -H 'Content-Type: image/jpeg' --data-binary @photo.jpg)",
        "unsupported_media_type",
    )


class TooManyParts(Exception):
    """Raised inside the multipart parser's callback to stop it at the part cap."""


def multipart_file(body: bytes, boundary: str, field: str = "file") -> tuple[bytes, str]:
    """The bytes and content type of form field ``field``, parsed in memory.

    Raises 422 when the form has no such field, 400 when the form is malformed or has more
    than :data:`MAX_PARTS` parts (checked as each part begins, so parsing stops there).
    """
    from python_multipart.multipart import MultipartParser

    parts: list[dict] = []
    cur: dict = {}
    hname = bytearray()
    hval = bytearray()

    def on_part_begin():
        if len(parts) >= MAX_PARTS:
            raise TooManyParts()
        cur.clear()
        cur.update(headers={}, data=bytearray())

    def on_header_field(data, start, end):
        hname.extend(data[start:end])

    def on_header_value(data, start, end):
        hval.extend(data[start:end])

    def on_header_end():
        cur["headers"][bytes(hname).decode("latin-1").lower()] = bytes(hval).decode("latin-1")
        hname.clear()
        hval.clear()

    def on_part_data(data, start, end):
        cur["data"].extend(data[start:end])

    def on_part_end():
        parts.append(dict(cur))

    callbacks = dict(on_part_begin=on_part_begin, on_header_field=on_header_field, on_header_value=on_header_value,
                     on_header_end=on_header_end, on_part_data=on_part_data, on_part_end=on_part_end)
    try:
        parser = MultipartParser(boundary, callbacks)  # its defaults cap each part's headers (8, 4 KB)
        parser.write(body)
        parser.finalize()
    except TooManyParts:
        raise UploadError(400, f"too many parts in the multipart form: the limit is {MAX_PARTS}; send the photo "
                          f"as the field 'file'", "too_many_parts") from None
    except Exception as e:  # noqa: BLE001 - any parser complaint is a malformed form
        raise UploadError(400, f"malformed multipart form ({str(e)[:100] or type(e).__name__})", "bad_request") from None
    names = []
    for p in parts:
        _, params = media_type(p["headers"].get("content-disposition", ""))
        name = params.get("name", "")
        names.append(name)
        if name == field:
            mt, _ = media_type(p["headers"].get("content-type"))
            return bytes(p["data"]), mt
    sent = [n for n in names if n]
    have = ", ".join(repr(n[:QUOTED_CHARS]) for n in sent[:QUOTED_NAMES]) or "none"
    if len(sent) > QUOTED_NAMES:
        have += f" and {len(sent) - QUOTED_NAMES} more"
    raise UploadError(422, f"the form has no field {field!r} (fields sent: {have}); send the photo as 'file'", "no_file")


def extract_image_bytes(body: bytes, content_type: str | None, limit: int) -> bytes:
    """The image bytes of a request: a multipart field ``file`` or the raw body."""
    mt, params = media_type(content_type)
    if mt == "multipart/form-data":
        boundary = params.get("boundary")
        if not boundary:
            raise UploadError(400, "multipart/form-data without a boundary", "bad_request")
        data, part_type = multipart_file(body, boundary)
        if not is_image_type(part_type):
            raise not_an_image_type(part_type)
    elif is_image_type(mt):
        data = body
    else:
        raise not_an_image_type(mt)
    if len(data) > limit:
        raise too_large(limit)
    if not data:
        raise UploadError(422, "no image data: the upload is empty", "empty")
    return data


#: A JPEG upload is decoded at 1/2, 1/4 or 1/8 of its size when that copy keeps at least this
#: share of the pixels the server works on (``work_pixels``): a 12-megapixel phone photo becomes
#: a 3-megapixel copy, decoded reduced, instead of a 4-megapixel one decoded whole and shrunk.
MIN_WORK_SHARE = 0.5


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Bytes -> ``H x W x 3`` uint8 RGB (EXIF-rotated), decoded whole (:func:`decode_photo`)."""
    return decode_photo(data, max_pixels)[0]


def decode_photo(data: bytes, max_pixels: int, min_pixels: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """Bytes -> ``(H x W x 3 uint8 RGB, (width, height))``, EXIF-rotated; 413 over
    ``max_pixels``, 422 if undecodable. ``(width, height)`` is the photo's size; the array is
    the photo itself, or, for a JPEG with at least ``min_pixels`` pixels left at 1/2, 1/4 or
    1/8 of its size, the most reduced of those copies that keeps them (0: always whole).

    The size is read from the header first, so a decompression bomb is refused before any
    pixel is decoded. Complete RGB / grayscale JPEGs (the usual upload) are decoded by OpenCV,
    which is about 40% cheaper than Pillow here and gives the same pixels (libjpeg-turbo in
    both, EXIF orientation applied by both; see ``tests/test_serve_api.py``); every other file
    goes through :func:`wildfer.data.images.read_image` (modes, 16-bit, palettes, CMYK, and
    the clear messages for truncated or corrupt files).
    """
    from PIL import Image, UnidentifiedImageError

    from ..data.images import DECODE_SCALES, TruncatedImage, jpeg_cut_short, read_image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as probe:
                w, h = probe.size
                fmt, mode = probe.format, probe.mode
    except UnidentifiedImageError:  # read_image below says what is wrong (a corrupt PNG, not an image ...)
        w = h = 0
        fmt = mode = None
    except Image.DecompressionBombError:
        raise UploadError(413, "image too large (decompression bomb guard)", "too_many_pixels") from None
    except Exception as e:  # noqa: BLE001 - broken header
        raise UploadError(422, f"cannot decode the upload ({str(e)[:100] or type(e).__name__})", "not_an_image") from None
    if w * h > max_pixels:
        raise UploadError(413, f"image too large: {w}x{h} = {w * h / 1e6:.1f} MP, the limit is {max_pixels / 1e6:.0f} MP",
                          "too_many_pixels")
    if fmt == "JPEG" and mode in ("RGB", "L") and data.endswith(b"\xff\xd9"):
        # libjpeg's copy at 1/k is ceil(w / k) x ceil(h / k)
        reduce = next((k for k in DECODE_SCALES if 0 < min_pixels <= -(-w // k) * -(-h // k)), 1)
        rgb = _cv2_jpeg(data, reduce)
        if rgb is not None:  # a JPEG cut short but ending in an end marker decodes here too
            turned = (rgb.shape[1] > rgb.shape[0]) != (w > h) and rgb.shape[0] != rgb.shape[1]  # EXIF turned it
            size = (rgb.shape[1], rgb.shape[0]) if reduce == 1 else (h, w) if turned else (w, h)
            return (rgb.view(TruncatedImage) if jpeg_cut_short(data, rgb) else rgb), size
    try:
        rgb = read_image(data, name="upload", max_pixels=max_pixels)
    except ImageError as e:
        status = 413 if "too large" in e.problem else 422
        raise UploadError(status, f"cannot decode the upload: {e.problem}", "not_an_image") from None
    return rgb, (rgb.shape[1], rgb.shape[0])


def _cv2_jpeg(data: bytes, reduce: int = 1) -> np.ndarray | None:
    """A complete JPEG decoded by OpenCV as RGB (EXIF orientation applied), at 1/``reduce`` of
    its size (1, or one of :data:`~wildfer.data.images.DECODE_SCALES`), or None."""
    import cv2

    flag = cv2.IMREAD_COLOR if reduce == 1 else getattr(cv2, f"IMREAD_REDUCED_COLOR_{reduce}")
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def shrink_to(image: np.ndarray, max_pixels: int) -> np.ndarray:
    """``image`` downscaled (area averaging, aspect kept) to at most ``max_pixels`` pixels;
    ``image`` itself when it already fits. The copy keeps ``image``'s array type (a
    :class:`~wildfer.data.images.TruncatedImage` stays one).

    The server detects, explains and draws on this copy, so the cost of a request is bounded
    by ``max_pixels`` whatever the photo's size (a blank 40 MP PNG is a 50 KB upload).
    """
    h, w = image.shape[:2]
    if h * w <= max_pixels:
        return image
    import cv2

    scale = (max_pixels / float(h * w)) ** 0.5
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    small = cv2.resize(np.asarray(image), size, interpolation=cv2.INTER_AREA)
    return small if type(image) is np.ndarray else small.view(type(image))
