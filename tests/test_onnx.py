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


def test_an_ensemble_of_graph_members_exports_its_networks_not_a_constant(tmp_path):
    """Members computing on onnxruntime inside an ensemble are traced through their torch
    networks: the graph reads its input and gives the ensemble's probabilities."""
    from wildfer.models.ensemble import ensemble_classifier

    members = [attach_onnx(_classifier("shallow", seed=s)) for s in (0, 1)]
    ens = ensemble_classifier(members, name="pair")
    faces = np.random.default_rng(3).integers(0, 256, size=(11, 48, 48), dtype=np.uint8)
    runner = OnnxRunner(export_onnx(ens, tmp_path / "pair.onnx"))
    p_onnx = torch.softmax(torch.from_numpy(runner(ens.to_tensor(faces).numpy())), 1).numpy()
    assert np.abs(p_onnx - ens.predict_proba(faces)).max() < 1e-4
    assert np.abs(p_onnx[0] - p_onnx[1]).max() > 1e-3  # not one answer for every face


def test_an_ensemble_of_several_crops_is_refused_in_one_line(tmp_path, cli):
    code, out = cli(["export", "wild_ensemble", "--onnx", tmp_path / "w.onnx"])
    assert code == 2 and "Traceback" not in out
    assert "reads each face in 2 crops (48 px grey and 112 px colour)" in " ".join(out.split())
    assert not (tmp_path / "w.onnx").exists()


def test_an_exported_graph_given_as_a_model_says_what_it_is(tmp_path):
    from wildfer.errors import ModelError
    from wildfer.models import load_model

    path = export_onnx(_classifier("shallow"), tmp_path / "m.onnx")
    pytest.importorskip("onnx")
    with pytest.raises(ModelError, match="written by 'wildfer export'"):
        load_model(str(path), backend="torch")
