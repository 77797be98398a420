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


# ----------------------------------------------------------------------------- damaged images


def _photo(h: int = 240, w: int = 320, seed: int = 0):
    """A smooth colour gradient with noise: every JPEG block differs from flat grey."""
    import numpy as np

    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([(x * 0.6) % 256, (y * 0.8) % 256, ((x + y) * 0.3) % 256], -1)
    a = a + np.random.default_rng(seed).normal(0, 8, a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


def _jpeg(a, **kw) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def _cut_with_end_marker(data: bytes, keep: float = 0.4) -> bytes:
    return data[: int(len(data) * keep)] + b"\xff\xd9"


@pytest.fixture(scope="module")
def tiny_rec():
    import torch

    from wildfer.models import create_model
    from wildfer.models.loader import Classifier
    from wildfer.wild import Recognizer

    torch.manual_seed(0)
    clf = Classifier(create_model("shallow", num_filters=8, hidden=32), name="tiny-random", arch="shallow")
    return Recognizer(model=clf, detector="yunet")


@pytest.mark.parametrize("kw", [{}, {"subsampling": 2}, {"progressive": True}], ids=["444", "420", "progressive"])
def test_jpeg_cut_short_with_an_end_marker_is_flagged_truncated(kw):
    """Decoders accept such a file without a word and fill the rest with grey (60% here)."""
    import numpy as np

    from wildfer.data.images import is_truncated, open_image, read_image

    full = _jpeg(_photo(), **kw)
    cut = _cut_with_end_marker(full)
    a = read_image(cut)
    assert a.shape == (240, 320, 3) and a.dtype == np.uint8
    assert is_truncated(a) and is_truncated(open_image(cut))
    assert not is_truncated(read_image(full)) and not is_truncated(open_image(full))
    # so is one that lacks only its last blocks
    assert is_truncated(read_image(_cut_with_end_marker(full, 0.99)))


def test_flat_grey_photos_are_not_called_truncated():
    import numpy as np

    from wildfer.data.images import is_truncated, read_image

    grey = np.full((64, 80, 3), 128, np.uint8)
    assert not is_truncated(read_image(_jpeg(grey)))
    assert not is_truncated(read_image(_jpeg(grey[:, :, 0])))
    half = _photo(64, 80)
    half[32:] = 128  # a real photo whose lower half is exactly the decoder's filler grey
    assert not is_truncated(read_image(_jpeg(half)))


def test_recognizer_result_says_truncated(tiny_rec, tmp_path):
    import json

    from wildfer.data.images import read_image

    cut = _cut_with_end_marker(_jpeg(_photo()))
    p = tmp_path / "cut.jpg"
    p.write_bytes(cut)
    for src in (p, cut, read_image(cut)):  # a path, bytes, or the array the service decodes
        res = tiny_rec.predict(src)
        assert res.truncated is True
        assert json.loads(json.dumps(res.to_dict()))["truncated"] is True
    whole = tiny_rec.predict(_jpeg(_photo()))
    assert whole.truncated is False and whole.to_dict()["truncated"] is False


def _png(a) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("damage", ["bad_crc", "cut_in_data", "signature_only"])
def test_corrupt_png_is_called_corrupt_not_unsupported(damage):
    from wildfer.data.images import read_image
    from wildfer.errors import ImageError

    d = _png(_photo(20, 20))
    bad = {"bad_crc": d[:29] + b"\0\0\0\0" + d[33:], "cut_in_data": d[: len(d) // 2], "signature_only": d[:8]}[damage]
    with pytest.raises(ImageError) as e:
        read_image(bad, name="photo.png")
    msg = str(e.value)
    assert msg.startswith("photo.png: ") and ("corrupt" in msg or "truncated" in msg), msg
    assert "unsupported" not in msg
