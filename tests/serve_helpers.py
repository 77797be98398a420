"""Helpers shared by the service tests (test_serve_api.py, test_serve_browser.py)."""

from __future__ import annotations

import pytest


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
