"""Helpers shared by the service tests (test_serve_api.py, test_serve_browser.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest


@dataclass
class FakeResult:
    """What a Recognizer stand-in's predict (or its explain stand-in) returns: an ImageResult /
    ExplainResult look-alike whose faces are ``(box)`` holders, each read as happy."""

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

    if not (WEIGHTS_DIR / "default.onnx").exists():
        pytest.skip(f"built-in weights {WEIGHTS_DIR / 'default.onnx'} missing (placed by the lead)")
    return Recognizer(model="default", detector="yunet")

