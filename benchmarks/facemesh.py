"""MediaPipe's face mesh (468 landmarks) on LiteRT, for ``wild_geometry.py --mesh`` only.

wildfer does not ship it: it needs ``ai-edge-litert`` and ``face_landmark.tflite`` from a
mediapipe 0.10 wheel (``mediapipe/modules/face_landmark/``, Apache-2.0). The model reads a
192 x 192 RGB face in [0, 1] (MediaPipe feeds it the detection box grown 1.5 times, rolled
upright) and returns 468 points (x, y in input pixels, z in the same scale) and a face score.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: the mesh's input side
SIDE = 192


class FaceMesh:
    """``FaceMesh(path)(faces)``: N x 468 x 3 landmarks and N face scores (0-1) for N grey or
    RGB uint8 faces of :data:`SIDE` pixels."""

    def __init__(self, path: str | Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_path=str(path), num_threads=threads)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]
        outs = {tuple(o["shape"])[-1]: o["index"] for o in self.it.get_output_details()}
        self.points, self.score = outs[1404], outs[1]

    def __call__(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pts = np.zeros((len(faces), 468, 3), dtype=np.float32)
        score = np.zeros(len(faces), dtype=np.float32)
        for i, f in enumerate(faces):
            if f.shape[:2] != (SIDE, SIDE):
                raise ValueError(f"face {i} is {f.shape[:2]}, not {SIDE} x {SIDE}")
            rgb = np.repeat(f[..., None], 3, axis=2) if f.ndim == 2 else f
            self.it.set_tensor(self.inp, (rgb.astype(np.float32) / 255.0)[None])
            self.it.invoke()
            pts[i] = self.it.get_tensor(self.points).reshape(468, 3)
            score[i] = 1.0 / (1.0 + np.exp(-float(self.it.get_tensor(self.score).ravel()[0])))
        return pts, score


def mesh_features(pts: np.ndarray) -> np.ndarray:
    """N x 468 x 3 -> N x 1404: centred on the mesh's mean and divided by its spread in x, y,
    so that the features say shape (brows, eyelids, lips), not where or how large the face is."""
    c = pts - pts.mean(1, keepdims=True)
    scale = np.sqrt((c[..., :2] ** 2).sum(-1).mean(1)).clip(1e-6, None)
    return (c / scale[:, None, None]).reshape(len(pts), -1)
