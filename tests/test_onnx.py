"""ONNX export: torch and onnxruntime give the same probabilities; the CLI writes a file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wildfer.models import create_model
from wildfer.models.loader import Classifier, save_checkpoint
from wildfer.models.onnx import OnnxRunner, attach_onnx, export_onnx


def _classifier(arch="vggfer_small", seed=0):
    torch.manual_seed(seed)
    net = create_model(arch)
    # non-trivial BN statistics so the exported graph's folded BN is exercised
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return Classifier(net.eval(), arch=arch)


@pytest.mark.parametrize("arch", ["vggfer_small", "shallow", "resnet18_half"])
def test_onnx_matches_torch(tmp_path, arch):
    clf = _classifier(arch)
    faces = np.random.default_rng(1).integers(0, 256, size=(37, 48, 48), dtype=np.uint8)
    p_torch = clf.predict_proba(faces)
    path = export_onnx(clf, tmp_path / "m.onnx")
    runner = OnnxRunner(path)
    assert runner.classes == clf.classes
    logits = runner(clf.to_tensor(faces).numpy())
    p_onnx = torch.softmax(torch.from_numpy(logits), 1).numpy()
    assert p_onnx.shape == (37, 7)
    assert np.abs(p_torch - p_onnx).max() < 1e-4
    # the same through the classifier's onnx backend, at another batch size
    clf2 = attach_onnx(_classifier(arch))
    assert clf2.backend == "onnx"
    assert np.abs(clf2.predict_proba(faces, batch_size=5) - p_torch).max() < 1e-4
    assert clf2.predict(faces[:3]) == clf.predict(faces[:3])


def test_with_backend_gives_new_classifiers_and_leaves_this_one():
    from wildfer.errors import ModelError

    clf = _classifier("shallow")
    faces = np.random.default_rng(2).integers(0, 256, size=(9, 48, 48), dtype=np.uint8)
    on_onnx = clf.with_backend("onnx", threads=1)
    assert on_onnx is not clf and on_onnx.backend == "onnx" and on_onnx.runner.threads == 1
    assert clf.backend == "torch" and clf.runner is None
    back = on_onnx.with_backend("torch")
    assert back.backend == "torch" and back.runner is None and back.device == "cpu"
    assert on_onnx.backend == "onnx"
    for c in (on_onnx, back):
        assert np.abs(c.predict_proba(faces) - clf.predict_proba(faces)).max() < 1e-4
    assert clf.with_backend("torch") is clf
    with pytest.raises(ModelError, match="unknown backend"):
        clf.with_backend("tensorrt")

def test_export_cli(tmp_path, cli):
    clf = _classifier("shallow")
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, clf.net, arch="shallow", model_kwargs={}, classes=clf.classes)
    code, out = cli(["export", ckpt, "--onnx", tmp_path / "out.onnx"])
    assert code == 0, out
    assert (tmp_path / "out.onnx").stat().st_size > 1000
    assert "max |p_torch - p_onnx|" in out


def test_export_cli_missing_checkpoint(tmp_path, cli):
    code, out = cli(["export", tmp_path / "nope.pt", "--onnx", tmp_path / "x.onnx"])
    assert code == 2
    assert "nope.pt" in out and "Traceback" not in out
