"""Helpers shared by the service tests (test_serve_api.py, test_serve_browser.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest


@dataclass
class FakeResult:
    """What a Recognizer stand-in's predict / explain returns: an ImageResult / ExplainResult
    look-alike whose faces are ``(box)`` holders, each read as happy."""

    width: int
    height: int
    faces: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    method: str = "gradcam"

    def to_dict(self):
        return {"width": self.width, "height": self.height, "mode": "detect",
                "faces": [{"box": list(f.box), "label": "happy"} for f in self.faces],
                "timings_ms": {"detect": 1.5} if self.faces else {}}

    def overlay(self):
        from PIL import Image

        return Image.new("RGB", (self.width, self.height))


def real_recognizer():
    """The built-in default model with YuNet, as ``wildfer serve`` runs it by default (on
    torch, so the server's answers can be compared with the library's); skips when the
    pipeline or the built-in weights are missing."""
    try:
        from wildfer.wild import Recognizer
    except ImportError as e:
        pytest.skip(f"wildfer.wild.Recognizer is not available ({e})")
    from wildfer.models.loader import WEIGHTS_DIR

    if not (WEIGHTS_DIR / "default.safetensors").exists():
        pytest.skip(f"built-in weights {WEIGHTS_DIR / 'default.safetensors'} missing (placed by the lead)")
    return Recognizer(model="default", detector="yunet")


def write_y4m(path, image, *, size=(640, 480), frames: int = 30, fps: int = 15, zoom: float = 0.05):
    """A YUV4MPEG2 clip (what Chromium's fake camera plays, in a loop) of ``image`` (a path)
    letterboxed into ``size`` with a slow zoom, so the face moves a little as in a real camera."""
    import cv2
    import numpy as np

    from wildfer.data.images import read_image

    w, h = size
    rgb = read_image(image)
    base = min(w / rgb.shape[1], h / rgb.shape[0])
    with open(path, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for k in range(frames):
            s = base * (1.0 + zoom * k / max(1, frames - 1))
            m = np.array([[s, 0, (w - s * rgb.shape[1]) / 2], [0, s, (h - s * rgb.shape[0]) / 2]], np.float32)
            bgr = cv2.warpAffine(np.ascontiguousarray(rgb[:, :, ::-1]), m, (w, h), flags=cv2.INTER_LINEAR)
            fh.write(b"FRAME\n" + cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path
