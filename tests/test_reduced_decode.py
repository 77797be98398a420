"""Large JPEGs decoded at a fraction of their size (libjpeg's scaled decoding): which reduction
``read_image_scaled`` picks, the photo's full size through EXIF rotation, truncation found at
any scale, and the pipeline giving the same faces as with the whole decode, in the photo's
own pixels, decoding again less reduced where a face is small."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from wildfer.data.images import is_truncated, read_image_scaled
from wildfer.errors import ImageError


def _jpeg(rgb: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def _texture(w: int, h: int, seed: int = 0) -> np.ndarray:
    small = np.random.default_rng(seed).integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def test_read_image_scaled_picks_the_smallest_reduction_that_keeps_min_side():
    data = _jpeg(_texture(2000, 1000))
    for min_side, scale, shape in ((0, 1, (1000, 2000)), (640, 2, (500, 1000)), (300, 4, (250, 500)),
                                   (200, 8, (125, 250)), (2000, 1, (1000, 2000))):
        rgb, got, full = read_image_scaled(data, min_side=min_side)
        assert (got, rgb.shape[:2], full) == (scale, shape, (2000, 1000)), min_side
    rgb, got, _ = read_image_scaled(data, scale=4)
    assert got == 4 and rgb.shape[:2] == (250, 500)
    whole = read_image_scaled(data)[0].astype(float)
    # the reduction is an average of the photo's pixels, not a sample of them
    assert np.abs(rgb.astype(float) - whole.reshape(250, 4, 500, 4, 3).mean((1, 3))).mean() < 3
    with pytest.raises(ValueError, match="scale must be 1, 2, 4 or 8"):
        read_image_scaled(data, scale=3)


def test_read_image_scaled_decodes_other_images_whole():
    png = io.BytesIO()
    Image.fromarray(_texture(2000, 1000)).save(png, format="PNG")
    rgb, scale, full = read_image_scaled(png.getvalue(), min_side=200)
    assert (scale, rgb.shape[:2], full) == (1, (1000, 2000), (2000, 1000))
    arr = _texture(900, 600)
    rgb, scale, full = read_image_scaled(arr, min_side=100)
    assert scale == 1 and full == (900, 600) and np.array_equal(rgb, arr)
    rgb, scale, full = read_image_scaled(Image.fromarray(arr), min_side=100)
    assert scale == 1 and full == (900, 600)


def test_read_image_scaled_turns_the_full_size_with_the_exif_rotation():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    data = _jpeg(_texture(2000, 1000), exif=exif.tobytes())
    rgb, scale, full = read_image_scaled(data, min_side=400)
    assert scale == 4 and rgb.shape[:2] == (500, 250) and full == (1000, 2000)


def test_a_truncated_jpeg_is_found_at_any_reduction():
    """A JPEG cut short but ending in an end marker decodes with grey blocks, marked truncated
    however reduced; one with no end marker is refused."""
    data = _jpeg(_texture(2048, 1536, seed=3))
    cut = data[: len(data) * 2 // 3]
    for scale in (1, 2, 4, 8):
        assert not is_truncated(read_image_scaled(data, scale=scale)[0]), scale
        rgb, got, _ = read_image_scaled(cut + b"\xff\xd9", scale=scale)
        assert got == scale and is_truncated(rgb), scale
        with pytest.raises(ImageError, match="truncated"):
            read_image_scaled(cut, scale=scale)


# ----------------------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def portrait(wild_dir) -> np.ndarray:
    return np.asarray(Image.open(wild_dir / "kdef_frontal" / "AF01HAS.JPG").convert("RGB"))


@pytest.fixture(scope="module")
def pair():
    """The pipeline's model, one recognizer decoding whole and one reduced where it can."""
    from wildfer.wild import Recognizer

    whole = Recognizer(full_decode=True)
    return whole, Recognizer(model=whole.classifier)


def _photo(portrait: np.ndarray, size: tuple[int, int], zoom: float, at: tuple[int, int]) -> bytes:
    face = np.asarray(Image.fromarray(portrait).resize((round(portrait.shape[1] * zoom), round(portrait.shape[0] * zoom)),
                                                       Image.BICUBIC))
    rgb = _texture(*size).copy()
    rgb[at[1]:at[1] + face.shape[0], at[0]:at[0] + face.shape[1]] = face
    return _jpeg(rgb)


def _scales(monkeypatch) -> list[int]:
    """The reductions the recognizer decodes at, in order, from now on."""
    import wildfer.data.images as images

    seen, real = [], images.read_image_scaled

    def spy(*a, **kw):
        out = real(*a, **kw)
        seen.append(out[1])
        return out

    monkeypatch.setattr(images, "read_image_scaled", spy)
    return seen


def _same_faces(a, b, photo: bytes):
    """``b`` (reduced decode) reads the faces of ``a`` (whole decode): boxes, landmarks, label,
    probabilities; both in the photo's full-size pixels, with crop matrices of that photo."""
    from wildfer.wild.align import warp_crop
    from wildfer.wild.detectors import box_iou

    assert (b.width, b.height) == (a.width, a.height) and len(a.faces) == len(b.faces) == 1
    fa, fb = a.faces[0], b.faces[0]
    assert box_iou(fa.box, fb.box) > 0.95
    width = fa.box[2] - fa.box[0]
    assert np.abs(np.array(fa.landmarks) - np.array(fb.landmarks)).max() < 0.02 * width
    assert fa.label == fb.label
    assert max(abs(fa.probs[k] - fb.probs[k]) for k in fa.probs) < 0.05
    rgb = np.asarray(Image.open(io.BytesIO(photo)).convert("L"))
    again = warp_crop(rgb, fb.transform, fb.crop.shape[-1])
    assert np.abs(again.astype(float) - fb.crop.astype(float)).mean() < 4  # the matrix maps the whole photo


@pytest.mark.parametrize("size, zoom, at, scales", [
    # an 840-pixel face in a photo 1500 pixels across at 1/2, twice what the detector reads (640)
    ((3000, 2250), 3.0, (1000, 500), [2]),
    # a 225-pixel face: found at 1/2, too small there for the 112-pixel crop, cut from the whole decode
    ((4000, 3000), 0.8, (1800, 1200), [2, 1]),
], ids=["large_face", "small_face"])
def test_a_large_photo_is_decoded_reduced_with_the_same_faces(pair, portrait, monkeypatch, size, zoom, at, scales):
    whole, reduced = pair
    photo = _photo(portrait, size, zoom, at)
    a = whole.predict(photo)
    seen = _scales(monkeypatch)
    b = reduced.predict(photo)
    assert seen == scales
    _same_faces(a, b, photo)


def test_whole_decodes_where_asked_painting_and_small_photos(pair, portrait, monkeypatch):
    whole, reduced = pair
    photo = _photo(portrait, (3000, 2250), 3.0, (1000, 500))
    scales = _scales(monkeypatch)
    whole.predict(photo)
    work = reduced.prepare(photo, keep_rgb=True)  # the annotated photo is painted on the whole decode
    assert work.rgb.shape[:2] == (2250, 3000)
    reduced.predict(_photo(portrait, (1200, 900), 1.0, (400, 200)))  # under twice the detector's side
    assert scales == [1, 1, 1]
