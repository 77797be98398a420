"""Weights graphs: one file per built-in that onnxruntime runs and torch reads back
(wildfer.models.onnx.weights_graph_bytes, wildfer.models.loader.classifier_from_graph)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from wildfer.models import create_model  # noqa: E402
from wildfer.models.classifier import Classifier  # noqa: E402
from wildfer.models.loader import builtin_models, classifier_from_graph, export_graph_weights, load_model  # noqa: E402

GRAPHS = ["default", "fast", "ferplus", "default_resnet", "wild", "wild_mfn"]


def _tiny(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    net = create_model("resnet18_half", num_classes=7, in_chans=1).eval()
    with torch.no_grad():  # batch norms with statistics of their own, so folding them would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return Classifier(net, name="tiny", arch="resnet18_half")


@pytest.mark.parametrize("half", [False, True])
def test_a_weights_graph_carries_the_state_dict_and_computes_what_torch_does(tmp_path, half):
    clf = _tiny()
    path = export_graph_weights(clf, tmp_path / "tiny", half=half)
    assert path.name == "tiny.onnx" and (tmp_path / "tiny.json").is_file()
    back = classifier_from_graph(path)
    assert not back.has_net and back.graph == str(path)
    want = {k: v for k, v in clf.net.state_dict().items() if not k.endswith("num_batches_tracked")}
    got = back.net.state_dict()
    for k, v in want.items():
        expect = v.half().float() if half and v.is_floating_point() and "running_" not in k else v
        assert torch.equal(got[k], expect), k
    faces = np.random.default_rng(0).integers(0, 256, (16, 48, 48)).astype(np.uint8)
    p_torch = back.predict_proba(faces)
    p_onnx = back.with_backend("onnx").predict_proba(faces)
    assert np.abs(p_torch - p_onnx).max() < 1e-5
    if not half:
        assert np.abs(clf.predict_proba(faces) - p_onnx).max() < 1e-5


def test_a_graph_without_the_weights_format_is_refused_for_torch(tmp_path):
    from wildfer.errors import ModelError
    from wildfer.models.onnx import export_onnx, graph_state_dict

    path = export_onnx(_tiny(), tmp_path / "plain.onnx")
    with pytest.raises(ModelError, match="not a wildfer weights graph"):
        graph_state_dict(path)


def _real_faces(name, fer2013, wild_dir) -> list:
    """FER2013 PublicTest faces and this model's own crops of KDEF photos (colour 112-pixel
    faces for wild_mfn): one array per kind."""
    from wildfer.wild import Recognizer

    test = fer2013.split("PublicTest")
    rec = Recognizer(model=name)
    photos = sorted((wild_dir / "kdef_frontal").glob("*.JPG"))[:24]
    crops = [f.crop for p in photos for f in rec.predict(p).faces]
    return [test.images[:400], np.stack(crops)]


@pytest.mark.slow
@pytest.mark.parametrize("name", GRAPHS)
def test_builtin_graph_and_torch_agree_on_real_faces(name, fer2013, wild_dir):
    if name not in builtin_models():
        pytest.skip(f"built-in {name} not installed")
    graph = load_model(name)
    assert graph.backend == "onnx" and not graph.has_net
    net = load_model(name, backend="torch")
    assert net.backend == "torch"
    for faces in _real_faces(name, fer2013, wild_dir):
        a, b = graph.predict_proba(faces), net.predict_proba(faces)
        assert np.abs(a - b).max() < 1e-4
        assert (a.argmax(1) == b.argmax(1)).mean() == 1.0


def test_ensemble_of_graphs_equals_its_torch_network(fer2013):
    faces = fer2013.split("PublicTest").images[:64]
    for name in ("accurate", "wild_ensemble"):
        if name not in builtin_models():
            continue
        graphs = load_model(name, backend="onnx")
        nets = load_model(name, backend="torch")
        assert graphs.runner is not None and nets.runner is None
        views = graphs.face_views
        x = [faces if v["size"] == 48 else np.repeat(np.stack([np.kron(f, np.ones((2, 2), np.uint8))[:112, :112]
                                                               for f in faces])[:, None], 3, axis=1)
             for v in views]
        x = x if len(x) > 1 else x[0]
        assert np.abs(graphs.predict_proba(x) - nets.predict_proba(x)).max() < 1e-4
