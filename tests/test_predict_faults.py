"""Hostile and unlucky inputs to ``wildfer predict`` and its parts: output paths, interrupted
runs and resuming them, truncated and corrupt images, degenerate data-set images, and the
files onnxruntime would write on its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"), **extra)
    return env


# ----------------------------------------------------------------------------- onnxruntime


def test_onnxruntime_session_writes_no_telemetry_store(tmp_path):
    """onnxruntime's official builds write a device id and an event database under
    ~/.cache/Microsoft/DeveloperTools/.onnxruntime when the library loads; through wildfer
    nothing may appear in the user's home or cache."""
    pytest.importorskip("onnxruntime")
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    cache.mkdir()
    script = textwrap.dedent("""
        import numpy as np
        from onnx import TensorProto, helper

        from wildfer.models.onnx import OnnxRunner

        node = helper.make_node("Relu", ["x"], ["y"])
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        y = OnnxRunner(model.SerializeToString(), threads=1)(np.array([[-1.0, 0.0, 2.0]], np.float32))
        print(y.tolist())
    """)
    r = subprocess.run([sys.executable, "-c", script], env=_clean_env(HOME=str(home), XDG_CACHE_HOME=str(cache)),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "[[0.0, 0.0, 2.0]]" in r.stdout
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [], written
