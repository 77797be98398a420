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


def _prelu_graph(slopes, *, through_constant=False, runtime_slope=False):
    """A one-node graph ``PRelu(x, slopes)`` over ``N x 4 x 5 x 5``: the slopes an initialiser of
    shape ``4 x 1 x 1``, a ``Constant`` of 4 values unsqueezed as the exporter writes it, or a
    second input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    slopes = np.asarray(slopes, np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 5, 5])
    inputs, inits, nodes = [x], [], []
    if runtime_slope:
        inputs.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, [4, 1, 1]))
    elif through_constant:
        nodes.append(helper.make_node("Constant", [], ["s0"], value=numpy_helper.from_array(slopes, "s0")))
        inits.append(numpy_helper.from_array(np.array([1, 2], np.int64), "axes"))
        nodes.append(helper.make_node("Unsqueeze", ["s0", "axes"], ["s"]))
    else:
        inits.append(numpy_helper.from_array(slopes.reshape(4, 1, 1), "s"))
    nodes.append(helper.make_node("PRelu", ["x", "s"], ["y"], name="act"))
    graph = helper.make_graph(nodes, "prelu", inputs, [y], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("slopes, through_constant, op", [
    ([0.25, -0.6, 0.0, 1.0], False, "Max"),  # at most 1, negative ones included
    ([1.0, 1.5, 3.0, 1.0], False, "Min"),  # at least 1
    ([0.1, 0.7, -0.3, 0.9], True, "Max"),  # a Constant through an Unsqueeze, as torch exports it
    ([0.5, 1.5, 0.2, 0.3], False, "PRelu"),  # on both sides of 1: stays
])
def test_a_prelu_becomes_a_maximum_with_the_same_numbers(slopes, through_constant, op):
    import onnxruntime as ort

    from wildfer.models.onnx import prelus_as_max

    original = _prelu_graph(slopes, through_constant=through_constant)
    model = _prelu_graph(slopes, through_constant=through_constant)
    assert prelus_as_max(model) == (op != "PRelu")
    assert [n.op_type for n in model.graph.node if n.op_type in ("PRelu", "Max", "Min")] == [op]
    x = np.random.default_rng(0).normal(size=(3, 4, 5, 5)).astype(np.float32)
    x[0, :, 0] = 0.0
    outs = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
            for m in (original, model)]
    want = np.where(x >= 0, x, np.asarray(slopes, np.float32).reshape(4, 1, 1) * x)
    assert np.array_equal(outs[0], want) and np.array_equal(outs[1], want)


def test_a_prelu_whose_slopes_come_at_run_time_stays():
    from wildfer.models.onnx import prelus_as_max

    model = _prelu_graph([0.25] * 4, runtime_slope=True)
    assert prelus_as_max(model) == 0 and [n.op_type for n in model.graph.node] == ["PRelu"]


def test_an_exported_mobilefacenet_computes_its_prelus_as_maxima(tmp_path):
    """Every PReLU of a MobileFaceNet's export (and of its weights graph, whose slopes stay
    tensors of the state dict) becomes a maximum, and the graph computes what torch does."""
    import onnx

    from wildfer.models.onnx import graph_state_dict, onnx_bytes, weights_graph_bytes

    torch.manual_seed(0)
    net = create_model("mobilefacenet", num_classes=7).eval()
    with torch.no_grad():  # slopes of both signs, as trained ones have
        for m in net.modules():
            if isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(-0.6, 0.8)
    clf = Classifier(net, preprocess={"size": 112, "mean": 0.5, "std": 0.5, "grayscale": False},
                     name="mfn", arch="mobilefacenet")
    prelus = sum(isinstance(m, torch.nn.PReLU) for m in net.modules())
    faces = np.random.default_rng(2).integers(0, 256, size=(6, 3, 112, 112), dtype=np.uint8)
    want = clf.predict_proba(faces)
    for blob in (onnx_bytes(clf), weights_graph_bytes(clf, half=False)):
        ops = [n.op_type for n in onnx.load_from_string(blob).graph.node]
        assert "PRelu" not in ops and ops.count("Max") == prelus
        runner = OnnxRunner(blob)
        got = torch.softmax(torch.from_numpy(runner(clf.to_tensor(faces).numpy())), 1).numpy()
        assert np.abs(got - want).max() < 1e-4
    path = tmp_path / "w.onnx"
    path.write_bytes(weights_graph_bytes(clf, half=False))
    state = graph_state_dict(path)
    slopes = {f"{name}.weight": m.weight.detach().numpy() for name, m in net.named_modules()
              if isinstance(m, torch.nn.PReLU)}
    assert len(slopes) == prelus and all(np.array_equal(state[k], v) for k, v in slopes.items())
