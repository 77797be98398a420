"""The search fallback: when the detector finds nothing, look again, harder.

The study's "dynamic search" idea: slide windows over the photo at several scales and keep
the windows where a face scores well. Here each window is padded, upscaled and handed to the
face detector at a lower threshold, which recovers the faces plain detection misses most
often: faces that fill the whole frame (tight crops; the detector needs context around a
face), small faces (upscaled windows), and tilted heads (the whole frame is also tried
rotated by +-30 degrees). What it finds carries the flag ``"search"``.
"""

from __future__ import annotations

import math

import numpy as np

from .detectors import Detection, Detector, nms

DEFAULT_SCALES = (1.0, 0.5)


def _windows(w: int, h: int, side: float, overlap: float):
    step = max(side * (1 - overlap), 1.0)
    nx = max(1, math.ceil((w - side) / step) + 1) if w > side else 1
    ny = max(1, math.ceil((h - side) / step) + 1) if h > side else 1
    xs = np.linspace(0, max(w - side, 0), nx)
    ys = np.linspace(0, max(h - side, 0), ny)
    for y in ys:
        for x in xs:
            yield float(x), float(y)


def search_faces(rgb: np.ndarray, detector: Detector, *, scales=DEFAULT_SCALES, overlap: float = 0.5,
                 pad: float = 0.3, window_px: int = 128, score_threshold: float = 0.5,
                 angles=(-30.0, 30.0), max_windows: int = 24) -> list[Detection]:
    """Faces found by running ``detector`` on padded, upscaled windows of the photo.

    Windows are squares of ``scale x min(width, height)`` for each scale, sliding with
    ``overlap``; each is padded by ``pad`` of its side on every side (replicating the border)
    and resized so the window is ``window_px`` pixels. At scale 1 the window is also tried
    rotated by each of ``angles``. Detections from all windows are mapped back to the photo,
    merged by non-maximum suppression and flagged ``"search"``.
    """
    import cv2

    h, w = rgb.shape[:2]
    if min(h, w) < 4:
        return []
    found: list[Detection] = []
    n = 0
    for scale in scales:
        side = scale * min(w, h)
        if side < 12:
            continue
        tries = [(x, y, 0.0) for x, y in _windows(w, h, side, overlap)]
        if scale == max(scales):
            tries += [(x, y, a) for x, y in _windows(w, h, side, 0.0) for a in angles]
        for x, y, ang in tries:
            if n >= max_windows:
                break
            n += 1
            k = window_px / side
            out_side = int(round(window_px * (1 + 2 * pad)))
            cx, cy = x + side / 2, y + side / 2
            # photo -> window: rotate about the window centre, scale by k, centre in the output
            m = cv2.getRotationMatrix2D((cx, cy), ang, k)
            m[:, 2] += np.array([out_side / 2 - cx, out_side / 2 - cy])
            win = cv2.warpAffine(rgb, m, (out_side, out_side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            inv = cv2.invertAffineTransform(m)
            for d in detector._detect(np.ascontiguousarray(win)):  # noqa: SLF001 - working resolution is ours
                if d.score < score_threshold:
                    continue
                found.append(_map_back(d, inv, w, h))
    dets = [d for d in nms(found, 0.3) if d.width >= 2 and d.height >= 2]
    for d in dets:
        d.flags.append("search")
    return dets


def _map_back(d: Detection, inv: np.ndarray, w: int, h: int) -> Detection:
    """A window detection in photo coordinates (box: the axis-aligned hull of the mapped box)."""
    l, t, r, b = d.box
    corners = np.array([[l, t], [r, t], [r, b], [l, b]], dtype=np.float64) @ inv[:, :2].T + inv[:, 2]
    x0, y0 = corners.min(0)
    x1, y1 = corners.max(0)
    # a rotated window makes the hull larger than the face: shrink back to the box's own area
    bw, bh = (r - l) * math.sqrt(abs(np.linalg.det(inv[:, :2]))), (b - t) * math.sqrt(abs(np.linalg.det(inv[:, :2])))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    box = (max(cx - bw / 2, 0.0), max(cy - bh / 2, 0.0), min(cx + bw / 2, float(w)), min(cy + bh / 2, float(h)))
    lm = None
    if d.landmarks is not None:
        lm = np.asarray(d.landmarks, dtype=np.float64) @ inv[:, :2].T + inv[:, 2]
    return Detection(box, d.score, lm, [])
