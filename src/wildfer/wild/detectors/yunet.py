"""YuNet through libfacedetection's own C build in the ``yuface`` package: detector ``yuface``.

The default ``yunet`` detector (:mod:`wildfer.wild.detectors.yunet_onnx`) runs the same
network and weights on onnxruntime, several times faster; this one is the reference it is
checked against, and an option (``pip install yuface``, Python 3.11).

The package's Python wrapper (``yuface.detect`` and the C extension behind it) leaks about
14-36 KB per call (it allocates a result buffer it never frees), which a server answering
thousands of photos cannot afford. So the detector calls libfacedetection's own C++ entry
point ``facedetect_cnn`` (from the ``libfacedetection`` library the package ships) through
:mod:`ctypes`, with a result buffer allocated once per thread and reused. Its output is the
same, row for row, as the extension's (checked in ``tests/test_wild_yunet.py``). When the
library or the symbol cannot be found (another build of ``yuface``), the extension is used.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading

import numpy as np

from . import Detection, Detector, DetectorUnavailable, register_detector

#: ``int* facedetect_cnn(unsigned char* result_buffer, unsigned char* bgr_image, int width,
#: int height, int step)``, C++-mangled (libfacedetection does not export it ``extern "C"``).
FACEDETECT_SYMBOL = "_Z14facedetect_cnnPhS_iii"
#: Size of the result buffer libfacedetection requires (its header: "must be 0x20000 bytes").
RESULT_BUFFER_BYTES = 0x20000
#: libfacedetection's result layout: an int32 face count, then one row of 16 int16 per face:
#: score (0-100), x, y, w, h, 5 landmarks as x, y pairs, one unused value.
ROW_SHORTS = 16

_DETECT = None  # the yuface extension's detect(bgr) -> N x 16 int16 (the fallback)
_CNN = None  # facedetect_cnn through ctypes, or None
_OMP_SET = None
_LOCK = threading.Lock()
_TLS = threading.local()


def _load(threads: int):
    """Import yuface's C extension once and find ``facedetect_cnn`` in the library it loaded.

    The bundled OpenMP runtime reads OMP_NUM_THREADS when it loads, so the variable is set
    to ``threads`` for the import only (torch has its own)."""
    global _DETECT, _CNN, _OMP_SET
    with _LOCK:
        if _DETECT is not None:
            return _DETECT
        old = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(threads)
        try:
            from yuface.yuface import detect  # the C function; yuface.detect only wraps it
        except ImportError as e:
            raise DetectorUnavailable(
                f"face detector 'yuface' needs the 'yuface' package ({e}); install it with 'pip install yuface' "
                "or use --detector yunet"
            ) from None
        finally:
            if old is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = old
        import yuface

        pkg = os.path.dirname(yuface.__file__)
        _CNN = _find_facedetect_cnn(pkg)
        try:  # the bundled libgomp, to change the thread count later (same handle as the loaded one)
            libs = glob.glob(os.path.join(os.path.dirname(pkg), "yuface.libs", "libgomp*"))
            if libs:
                _OMP_SET = ctypes.CDLL(libs[0]).omp_set_num_threads
        except OSError:  # pragma: no cover - a build without a bundled OpenMP
            _OMP_SET = None
        _DETECT = detect
        # libfacedetection sets its weights up on its first call (unguarded static state): make
        # that call here, under the lock, before any thread can race through it
        blank = np.zeros((32, 32, 3), dtype=np.uint8)
        if _CNN is not None:
            _CNN(_result_buffer().ctypes.data, blank.ctypes.data, 32, 32, 96)
        else:
            detect(blank)
        return _DETECT


def _find_facedetect_cnn(pkg_dir: str):
    """``facedetect_cnn`` from the libfacedetection the extension already loaded, or None.

    The library is opened by its soname first (the copy the extension loaded, so one copy of
    its weights is in memory), then by the files shipped in the package."""
    candidates = ["libfacedetection.so.v0.0.3"]
    candidates += sorted(glob.glob(os.path.join(pkg_dir, "libfacedetection.so*")), key=len, reverse=True)
    for name in candidates:
        try:
            fn = getattr(ctypes.CDLL(name), FACEDETECT_SYMBOL)
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_void_p
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        return fn
    return None


def _result_buffer() -> np.ndarray:
    """This thread's reusable result buffer (facedetect_cnn writes its answer into it)."""
    buf = getattr(_TLS, "buf", None)
    if buf is None:
        buf = _TLS.buf = np.zeros(RESULT_BUFFER_BYTES, dtype=np.uint8)
    return buf


def facedetect_rows(bgr: np.ndarray) -> np.ndarray:
    """Raw libfacedetection output for a BGR uint8 photo: ``N x 15`` int16 rows of score
    (0-100), x, y, w, h and 5 landmark (x, y) pairs, through ``facedetect_cnn`` (no leak) or
    the yuface extension when the library was not found."""
    if _DETECT is None:
        _load(1)
    bgr = np.ascontiguousarray(bgr, dtype=np.uint8)
    if bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 BGR image, got shape {bgr.shape}")
    if _CNN is None:
        return np.asarray(_DETECT(bgr), dtype=np.int16).reshape(-1, ROW_SHORTS)[:, :15]
    h, w = bgr.shape[:2]
    buf = _result_buffer()
    _CNN(buf.ctypes.data, bgr.ctypes.data, int(w), int(h), int(bgr.strides[0]))
    n = int(buf[:4].view(np.int32)[0])
    n = max(0, min(n, (RESULT_BUFFER_BYTES - 4) // (2 * ROW_SHORTS)))
    return buf[4:4 + n * 2 * ROW_SHORTS].view(np.int16).reshape(n, ROW_SHORTS)[:, :15].copy()


def uses_ctypes() -> bool:
    """Whether detection goes through ``facedetect_cnn`` directly (False: the leaky fallback)."""
    if _DETECT is None:
        _load(1)
    return _CNN is not None


@register_detector("yuface")
class YuNetDetector(Detector):
    """libfacedetection's YuNet (``yuface``), scores in [0, 1] and 5 landmarks per face.

    ``threads`` is the OpenMP thread count of the detector (1 by default: on a small CPU,
    photos in parallel processes give more throughput than threads inside one detection).
    Safe to call from several threads at once (each thread has its own result buffer).
    """

    has_landmarks = True
    thread_safe = True  # the serve worker may detect in several threads

    def __init__(self, *, max_side: int | None = 640, score_threshold: float = 0.5, min_side: int = 0,
                 threads: int = 1):
        super().__init__(max_side=max_side, score_threshold=score_threshold, min_side=min_side)
        self.threads = max(1, int(threads))
        _load(self.threads)

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        if min(rgb.shape[:2]) < 8:
            return []
        if _OMP_SET is not None:  # per calling thread: OpenMP's thread count is a per-thread setting
            _OMP_SET(self.threads)
        import cv2

        rows = facedetect_rows(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)).astype(np.float64)
        out = []
        for row in rows:
            score = row[0] / 100.0
            x, y, w, h = row[1:5]
            lm = row[5:15].reshape(5, 2).copy()
            out.append(Detection((x, y, x + w, y + h), float(min(max(score, 0.0), 1.0)), lm))
        return out
