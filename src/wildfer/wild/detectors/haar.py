"""OpenCV's Viola-Jones frontal-face cascade: no landmarks, needs nothing beyond OpenCV."""

from __future__ import annotations

import os

import numpy as np

from ...errors import ModelError
from . import Detection, Detector, register_detector

CASCADE = "haarcascade_frontalface_default.xml"


@register_detector("haar")
class HaarDetector(Detector):
    """``cv2.CascadeClassifier`` with OpenCV's bundled ``haarcascade_frontalface_default.xml``.

    The cascade has no probability; ``score`` maps its last-stage weight ``w`` (about 1 for
    borderline windows, 5-12 for clear faces) to ``w / (w + 2)``. ``score_threshold`` defaults
    to 0.3 accordingly; ``min_neighbors`` is the cascade's own false-positive control.
    """

    has_landmarks = False

    def __init__(self, *, max_side: int | None = 640, score_threshold: float = 0.3, min_side: int = 0,
                 scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 20):
        super().__init__(max_side=max_side, score_threshold=score_threshold, min_side=min_side)
        import cv2

        path = os.path.join(cv2.data.haarcascades, CASCADE)
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise ModelError(f"face detector 'haar': OpenCV's cascade {path} is missing or unreadable")
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = int(min_size)

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        import cv2

        if min(rgb.shape[:2]) < self.min_size:
            return []
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        boxes, _, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size), outputRejectLevels=True)
        out = []
        for (x, y, w, h), wt in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            wt = max(float(wt), 0.0)
            out.append(Detection((float(x), float(y), float(x + w), float(y + h)), wt / (wt + 2.0), None))
        return out
