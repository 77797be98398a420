"""YuNet on onnxruntime: libfacedetection's weights as a standard graph, shipped with wildfer.

``yunet.onnx`` (next to this module, 230 kB) is libfacedetection's YuNet re-expressed layer
for layer by :mod:`wildfer.wild.detectors.yunet_graph`, with the weights of the library in
the ``yuface`` wheel (BSD-3, see ``yunet.LICENSE``). It finds the same faces as the library,
with the same scores to a hundredth and boxes to the library's integer rounding, on
onnxruntime's vectorised kernels instead of the library's scalar loops (timings and recall of
both in ``benchmarks/results/detectors.json``), and needs nothing beyond onnxruntime, so it
works on every Python wildfer supports.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from . import Detection, Detector, DetectorUnavailable, nms_indices, register_detector
from .yunet_graph import STRIDES

MODEL_FILE = Path(__file__).with_name("yunet.onnx")
#: libfacedetection's own post-processing: candidates from this score, NMS at this IoU, the best
#: TOP_K candidates, at most KEEP_K faces
MIN_SCORE, NMS_IOU, TOP_K, KEEP_K = 0.2, 0.45, 1000, 512

_SESSIONS: dict[int, object] = {}
_LOCK = threading.Lock()


def session(threads: int = 1):
    """The onnxruntime session of the shipped graph, one per thread count (runs are thread-safe)."""
    with _LOCK:
        if threads not in _SESSIONS:
            import onnxruntime as ort

            if not MODEL_FILE.exists():
                raise DetectorUnavailable(f"face detector 'yunet': {MODEL_FILE} is missing from the installed wildfer")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            _SESSIONS[threads] = ort.InferenceSession(str(MODEL_FILE), opts, providers=["CPUExecutionProvider"])
        return _SESSIONS[threads]


def decode(maps, min_score: float = MIN_SCORE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores (N), boxes (N x 4: left, top, right, bottom) and landmarks (N x 5 x 2) of every
    anchor scoring at least ``min_score``, from the graph's three output maps."""
    scores, boxes, marks = [], [], []
    for m, s in zip(maps, STRIDES):
        m = m[0]
        logits = np.clip(m[:2], -88.0, 88.0)
        score = np.sqrt(1.0 / (1.0 + np.exp(-logits[0])) / (1.0 + np.exp(-logits[1])))
        ys, xs = np.nonzero(score >= min_score)
        if not len(ys):
            continue
        v = m[2:, ys, xs].astype(np.float64)  # 14 x n
        gx, gy = xs * float(s), ys * float(s)
        cx, cy = v[0] * s + gx, v[1] * s + gy
        w, h = np.exp(v[2]) * s, np.exp(v[3]) * s
        scores.append(score[ys, xs].astype(np.float64))
        boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1))
        marks.append(np.stack([v[4::2] * s + gx, v[5::2] * s + gy], -1).transpose(1, 0, 2))
    if not scores:
        return np.zeros(0), np.zeros((0, 4)), np.zeros((0, 5, 2))
    return np.concatenate(scores), np.concatenate(boxes), np.concatenate(marks)


@register_detector("yunet")
class YuNetOnnxDetector(Detector):
    """YuNet (libfacedetection's weights) on onnxruntime: boxes, scores in [0, 1] and 5
    landmarks (right eye, left eye, nose, right and left mouth corner).

    ``threads`` is onnxruntime's thread count for one detection (1 by default: on a small CPU,
    photos in parallel give more throughput than threads inside one). Safe to call from
    several threads at once.
    """

    has_landmarks = True
    thread_safe = True

    def __init__(self, *, max_side: int | None = 640, score_threshold: float = 0.5, min_side: int = 0,
                 threads: int = 1):
        super().__init__(max_side=max_side, score_threshold=score_threshold, min_side=min_side)
        self.threads = max(1, int(threads))
        self._sess = session(self.threads)

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        if min(h, w) < 8:
            return []
        padded = np.zeros((1, -(-h // 32) * 32, -(-w // 32) * 32, 3), dtype=np.uint8)
        padded[0, :h, :w] = rgb
        maps = self._sess.run(None, {"rgb": padded})
        scores, boxes, marks = decode(maps, max(MIN_SCORE, min(self.score_threshold, 1.0)))
        return [Detection(tuple(float(v) for v in boxes[i]), float(scores[i]), marks[i])
                for i in nms_indices(scores, boxes, NMS_IOU, top_k=TOP_K, keep_k=KEEP_K)]
