"""Align and crop a detected face the way FER2013 frames its faces: grayscale, 48 x 48.

FER2013's faces are loosely centred crops (from the face detector its authors used), so a
network trained on them expects that framing. The framing below was measured, not guessed
(``benchmarks/wild_align.py``, results in ``benchmarks/results/wild_align.json``):

* YuNet run on 1,500 upscaled FER2013 training faces puts the midpoint between the eye centre
  and the mouth centre at x = 0.49, y = 0.56 of the crop, and the crop side at 1.9-2.0 x
  ``hypot(eye distance, eye-to-mouth distance)`` (medians; FER2013 faces are not rotated:
  eye-line angles spread +-9 degrees around 0);
* the mean aligned crop of KDEF and LFW faces correlates best with FER2013's mean face at
  margin 1.9 and centre 0.57 (r = 0.89 and 0.92; margins 1.6 or 2.4 give 0.36-0.80);
* the classifier's accuracy on KDEF and LFW over the same grid (``sweep`` in the JSON).

With landmarks the crop is rotated so that the eye line is horizontal (a similarity warp);
with a box only (Haar, the search fallback) the crop is a square around the box, scaled by a
per-detector factor measured the same way.

A model trained on faces cut another way declares it in its preprocessing record
(:func:`align_for`): ``"align": "template"`` with five template points is the face-recognition
framing (ArcFace, MobileFaceNet, the OpenCV model zoo): the similarity transform that puts the
five landmarks (eyes, nose tip, mouth corners) nearest, in least squares, to the template's
points (Umeyama's estimate, as insightface's ``norm_crop``).

Every crop comes with the 2 x 3 affine matrix photo -> crop, so saliency maps computed on the
crop can be put back on the photo (:func:`unwarp`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .detectors import Detection

#: Box framing without landmarks, per detector: (crop side / box width, crop centre shift
#: below the box centre as a fraction of the box height). Measured on FER2013 like the margin.
BOX_FRAMING = {
    "yunet": (1.30, 0.02),
    "centerface": (1.27, -0.01),
    "haar": (1.04, 0.0),
}


@dataclass(frozen=True)
class AlignConfig:
    """How a face is cut out of a photo.

    Parameters
    ----------
    size:
        Output side in pixels (the classifier's input size, 48 for FER2013 models).
    margin:
        Crop side divided by ``hypot(eye distance, eye-to-mouth distance)`` (landmark path).
    center_y:
        Where the midpoint of eye centre and mouth centre lands, as a fraction of the crop
        height from the top (landmark path; horizontally it is centred).
    rotate:
        Rotate the crop so the eye line is horizontal (landmark path).
    box_scale, box_shift:
        Box path (no landmarks): crop side = ``box_scale`` x box width, centred on the box
        centre moved down by ``box_shift`` x box height. ``None``: the detector's measured
        values from :data:`BOX_FRAMING`.
    min_face:
        Faces narrower than this many photo pixels are flagged ``"small"``: they are
        upscaled to the crop size, so their expression is a guess.
    """

    size: int = 48
    margin: float = 1.90
    center_y: float = 0.57
    rotate: bool = True
    box_scale: float | None = None
    box_shift: float | None = None
    min_face: float = 24.0
    #: five (x, y) points in a ``template_size`` face where the landmarks go (eyes, nose tip,
    #: mouth corners, as the detector orders them); ``None``: FER2013's framing above
    template: tuple[tuple[float, float], ...] | None = None
    template_size: float = 112.0

    def with_(self, **kw) -> "AlignConfig":
        return replace(self, **kw)


#: Box framing without landmarks for the five-point template (crop side / box width, centre
#: shift below the box centre / box height): the medians of the template crops of YuNet's
#: 3,511 faces in the wild dev sets relative to their boxes (``benchmarks/template_framing.py``;
#: p10-p90 1.30-1.51 and -0.13 to -0.05)
TEMPLATE_BOX_FRAMING = (1.39, -0.09)


def align_for(preprocess: dict | None, base: AlignConfig | None = None) -> AlignConfig:
    """How to cut faces for a classifier whose preprocessing record is ``preprocess``: its size,
    and for ``"align": "template"`` its five template points (given in a face of its size).
    Other fields come from ``base`` (default :class:`AlignConfig`'s)."""
    pre = preprocess or {}
    base = base or AlignConfig()
    size = int(pre.get("size", base.size))
    if pre.get("align", "fer2013") != "template":
        return base.with_(size=size, template=None)
    points = np.asarray(pre.get("template"), dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ValueError(f"a template alignment needs five (x, y) points, not {pre.get('template')!r}")
    scale, shift = TEMPLATE_BOX_FRAMING
    return base.with_(size=size, template=tuple(map(tuple, points.tolist())), template_size=float(size),
                      box_scale=scale if base.box_scale is None else base.box_scale,
                      box_shift=shift if base.box_shift is None else base.box_shift)


def face_transform(det: Detection, cfg: AlignConfig = AlignConfig(), detector: str = "yunet") -> np.ndarray:
    """2 x 3 affine matrix mapping photo pixel coordinates to crop coordinates (crop side ``cfg.size``)."""
    size = float(cfg.size)
    lm = det.landmarks
    if lm is not None:
        lm = np.asarray(lm, dtype=np.float64).reshape(5, 2)
        eye_c = (lm[0] + lm[1]) / 2
        mouth_c = (lm[3] + lm[4]) / 2
        ed = float(np.linalg.norm(lm[1] - lm[0]))
        em = float(np.linalg.norm(mouth_c - eye_c))
        scale_ref = math.hypot(ed, em)
        if np.isfinite(lm).all() and scale_ref >= 2.0 and cfg.template is not None:
            dst = np.asarray(cfg.template, dtype=np.float64) * (size / cfg.template_size)
            return similarity_fit(lm, dst)
        if np.isfinite(lm).all() and scale_ref >= 2.0:
            side = cfg.margin * scale_ref
            angle = math.atan2(lm[1, 1] - lm[0, 1], lm[1, 0] - lm[0, 0]) if cfg.rotate else 0.0
            center = (eye_c + mouth_c) / 2
            return _similarity(center, side, angle, size, 0.5, cfg.center_y)
    bs, bsh = BOX_FRAMING.get(detector, BOX_FRAMING["yunet"])
    bs = cfg.box_scale if cfg.box_scale is not None else bs
    bsh = cfg.box_shift if cfg.box_shift is not None else bsh
    l, t, r, b = det.box
    w, h = max(r - l, 1.0), max(b - t, 1.0)
    center = np.array([(l + r) / 2, (t + b) / 2 + bsh * h])
    return _similarity(center, bs * w, 0.0, size, 0.5, 0.5)


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity (rotation, uniform scale, shift; no reflection) taking points ``src``
    nearest to ``dst`` in least squares (Umeyama 1991)."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sv, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, 1.0 if np.linalg.det(u) * np.linalg.det(vt) >= 0 else -1.0])
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(sv) @ sign) / max((s0 ** 2).sum() / len(src), 1e-12))
    a = scale * rot
    return np.hstack([a, (mu_d - a @ mu_s)[:, None]])


def _similarity(center, side: float, angle: float, size: float, cx: float, cy: float) -> np.ndarray:
    """photo -> crop: rotate by -angle about ``center``, scale side -> size, put center at (cx, cy)*size."""
    s = size / max(side, 1e-6)
    c, si = math.cos(angle), math.sin(angle)
    # crop = s * R(-angle) @ (p - center) + (cx*size, cy*size)
    a = np.array([[c * s, si * s], [-si * s, c * s]])
    t = np.array([cx * size, cy * size]) - a @ np.asarray(center, dtype=np.float64)
    return np.hstack([a, t[:, None]])


def crop_scale(m: np.ndarray) -> float:
    """Photo pixels per crop pixel of an affine crop matrix (its inverse linear scale)."""
    return 1.0 / math.sqrt(abs(np.linalg.det(m[:, :2])))


def warp_crop(gray: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Apply a photo -> crop matrix. When the face is much larger than the crop, warp to an
    intermediate size first and area-downsample, so the crop is not aliased (FER2013's faces
    were downsampled smoothly)."""
    import cv2

    k = int(min(max(crop_scale(m) // 1.5, 1), 4))
    if k > 1:
        mk = m * k
        big = cv2.warpAffine(gray, mk, (size * k, size * k), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def align_face(gray: np.ndarray, det: Detection, cfg: AlignConfig = AlignConfig(),
               detector: str = "yunet") -> tuple[np.ndarray, np.ndarray]:
    """``(crop, matrix)``: the ``size x size`` uint8 face and its photo -> crop matrix. A colour
    photo (``H x W x 3``) gives a colour face, channels first (``3 x size x size``), as a
    classifier of colour faces takes it (:func:`face_pixels` picks which one a classifier reads)."""
    m = face_transform(det, cfg, detector)
    return channels_first(warp_crop(gray, m, cfg.size)), m


def face_pixels(rgb: np.ndarray, colour: bool) -> np.ndarray:
    """What faces are cut from: the RGB photo for a classifier of colour faces, else its grey image."""
    return rgb if colour and rgb.ndim == 3 else to_gray(rgb)


def channels_first(img: np.ndarray) -> np.ndarray:
    """An ``H x W x C`` image as ``C x H x W`` (contiguous); a grey ``H x W`` one as it is."""
    return np.ascontiguousarray(img.transpose(2, 0, 1)) if img.ndim == 3 else img


def whole_transform(width: int, height: int, size: int = 48) -> np.ndarray:
    """The study's path: the whole photo squeezed to ``size x size`` (no face finding)."""
    return np.array([[size / width, 0.0, 0.0], [0.0, size / height, 0.0]])


def whole_crop(gray: np.ndarray, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """The whole photo as one ``size x size`` face (channels first for a colour photo) and its matrix."""
    import cv2

    h, w = gray.shape[:2]
    return channels_first(cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)), whole_transform(w, h, size)


def unwarp(face_map: np.ndarray, m: np.ndarray, width: int, height: int) -> np.ndarray:
    """Put a crop-space map (``size x size``) back on the photo (``height x width``; 0 outside)."""
    import cv2

    return cv2.warpAffine(np.asarray(face_map, dtype=np.float32), m, (int(width), int(height)),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 -> grayscale uint8 (ITU-R 601 luma, FER2013's conversion)."""
    import cv2

    if rgb.ndim == 2:
        return rgb
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
