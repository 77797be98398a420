"""YuNet (libfacedetection) through the ``yuface`` package: fast CPU CNN detector with 5 landmarks."""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

from ...errors import ModelError
from . import Detection, Detector, register_detector

_DETECT = None
_OMP_SET = None


def _load(threads: int):
    """Import yuface's C extension once. Its bundled OpenMP runtime reads OMP_NUM_THREADS when
    it loads, so the variable is set to ``threads`` for the import only (torch has its own)."""
    global _DETECT, _OMP_SET
    if _DETECT is not None:
        return _DETECT
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        from yuface.yuface import detect  # the C function; yuface.detect only wraps it
    except ImportError as e:
        raise ModelError(
            f"face detector 'yunet' needs the 'yuface' package ({e}); install it with 'pip install yuface' "
            "or use --detector haar"
        ) from None
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old
    _DETECT = detect
    try:  # the bundled libgomp, to change the thread count later (same handle as the loaded one)
        import yuface

        libs = glob.glob(os.path.join(os.path.dirname(os.path.dirname(yuface.__file__)), "yuface.libs", "libgomp*"))
        if libs:
            _OMP_SET = ctypes.CDLL(libs[0]).omp_set_num_threads
    except OSError:  # pragma: no cover - a build without a bundled OpenMP
        _OMP_SET = None
    return _DETECT


@register_detector("yunet")
class YuNetDetector(Detector):
    """libfacedetection's YuNet (``yuface``), scores in [0, 1] and 5 landmarks per face.

    ``threads`` is the OpenMP thread count of the detector (1 by default: on a small CPU,
    photos in parallel processes give more throughput than threads inside one detection).
    """

    has_landmarks = True

    def __init__(self, *, max_side: int | None = 640, score_threshold: float = 0.5, min_side: int = 0,
                 threads: int = 1):
        super().__init__(max_side=max_side, score_threshold=score_threshold, min_side=min_side)
        self.threads = max(1, int(threads))
        self._detect_fn = _load(self.threads)

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        if min(rgb.shape[:2]) < 8:
            return []
        if _OMP_SET is not None:
            _OMP_SET(self.threads)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        raw = self._detect_fn(bgr)
        out = []
        for row in np.asarray(raw, dtype=np.float64):
            score = row[0] / 100.0
            x, y, w, h = row[1:5]
            lm = row[5:15].reshape(5, 2).copy()
            out.append(Detection((x, y, x + w, y + h), float(min(max(score, 0.0), 1.0)), lm))
        return out
