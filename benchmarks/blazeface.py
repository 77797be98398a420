"""MediaPipe's BlazeFace detectors on LiteRT, as wildfer detectors, for ``detectors.py`` only.

wildfer does not ship these: they need ``ai-edge-litert`` and the ``.tflite`` files of a
mediapipe 0.10 wheel (``mediapipe/modules/face_detection/``, Apache-2.0). Anchors and decoding
follow MediaPipe's ``face_detection_short_range`` / ``face_detection_full_range`` graphs: the
photo letterboxed to the model's square input in [-1, 1], SSD anchors with fixed size,
sigmoid scores, six keypoints (eyes, nose tip, mouth centre, ears).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wildfer.wild.detectors import Detection, Detector, nms

#: kind -> (file, input size, [(stride, anchors per cell)], min score)
MODELS = {
    "short": ("face_detection_short_range.tflite", 128, [(8, 2), (16, 6)], 0.5),
    "full": ("face_detection_full_range_sparse.tflite", 192, [(4, 1)], 0.6),
}


def anchors(size: int, layout) -> np.ndarray:
    """Anchor centres (N x 2, in [0, 1]) in the models' output order."""
    out = []
    for stride, per_cell in layout:
        n = size // stride
        ys, xs = np.mgrid[0:n, 0:n]
        centres = np.stack([(xs + 0.5) / n, (ys + 0.5) / n], -1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(out)


class BlazeFace(Detector):
    """BlazeFace ``kind`` ("short" or "full" range) from ``folder``; boxes and scores, no
    wildfer-order landmarks (the alignment frames these faces from the box)."""

    def __init__(self, folder: str | Path, kind: str = "full", *, max_side: int | None = 640, threads: int = 1):
        file, self.size, layout, min_score = MODELS[kind]
        super().__init__(max_side=max_side, score_threshold=min_score)
        from ai_edge_litert.interpreter import Interpreter

        self.name = f"blazeface_{kind}"
        self.interp = Interpreter(model_path=str(Path(folder) / file), num_threads=threads)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]["index"]
        outs = sorted(self.interp.get_output_details(), key=lambda d: d["shape"][-1])
        self.scores_idx, self.boxes_idx = outs[0]["index"], outs[1]["index"]
        self.anchors = anchors(self.size, layout)

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        import cv2

        h, w = rgb.shape[:2]
        side = max(h, w)
        square = np.zeros((side, side, 3), dtype=np.uint8)
        oy, ox = (side - h) // 2, (side - w) // 2
        square[oy:oy + h, ox:ox + w] = rgb
        x = cv2.resize(square, (self.size, self.size), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1
        self.interp.set_tensor(self.inp, x[None])
        self.interp.invoke()
        raw = self.interp.get_tensor(self.boxes_idx)[0]
        score = 1 / (1 + np.exp(-np.clip(self.interp.get_tensor(self.scores_idx)[0, :, 0], -80, 80)))
        keep = np.nonzero(score >= self.score_threshold)[0]
        dets = []
        for i in keep:
            cx, cy = raw[i, 0] / self.size + self.anchors[i, 0], raw[i, 1] / self.size + self.anchors[i, 1]
            bw, bh = raw[i, 2] / self.size, raw[i, 3] / self.size
            box = ((cx - bw / 2) * side - ox, (cy - bh / 2) * side - oy, (cx + bw / 2) * side - ox, (cy + bh / 2) * side - oy)
            dets.append(Detection(tuple(float(v) for v in box), float(score[i])))
        return nms(dets, 0.3)
