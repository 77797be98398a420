"""The int8 backend: static QDQ quantisation on onnxruntime, the shipped int8 graphs, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wildfer.errors import ModelError
from wildfer.models import create_model
from wildfer.models.classifier import Classifier
from wildfer.models.loader import load_model
from wildfer.models.quantize import SUFFIX, WEIGHTS, attach_int8, calibration_faces, int8_graph, quantize_int8

pytest.importorskip("onnxruntime.quantization")


def faces(n: int, seed: int = 0) -> np.ndarray:
    """Smooth random faces (blurred noise), closer to photos than white noise."""
    import cv2

    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (n, 12, 12), dtype=np.uint8)
    return np.stack([cv2.resize(f, (48, 48), interpolation=cv2.INTER_CUBIC) for f in raw])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    clf = Classifier(create_model("shallow", num_filters=8, hidden=32), name="tiny", arch="shallow")
    path = tmp_path_factory.mktemp("int8") / f"tiny{SUFFIX}"
    path.write_bytes(quantize_int8(clf, faces(64)))
    return clf, path


def test_int8_graph_computes_what_the_float_network_does(tiny):
    clf, path = tiny
    q = attach_int8(clf, graph=path, threads=1)
    assert q.backend == "int8" and q.device == "cpu" and clf.backend == "torch" and q.net is clf.net
    x = faces(200, seed=1)
    p, pq = clf.predict_proba(x), q.predict_proba(x)
    assert pq.shape == p.shape and np.allclose(pq.sum(1), 1, atol=1e-5)
    assert (pq.argmax(1) == p.argmax(1)).mean() >= 0.9
    assert np.abs(pq - p).max() < 0.1
    assert not np.array_equal(pq, p)  # it really is another computation
    back = q.with_backend("torch")
    assert back.backend == "torch" and np.array_equal(back.predict_proba(x), p)


def test_a_weights_file_finds_its_graph_beside_it(tiny, tmp_path):
    clf, path = tiny
    weights = tmp_path / "tiny.safetensors"
    weights.write_bytes(b"")
    (tmp_path / f"tiny{SUFFIX}").write_bytes(path.read_bytes())
    assert int8_graph(clf, weights) == tmp_path / f"tiny{SUFFIX}"
    nameless = Classifier(clf.net, name="", arch="shallow")
    with pytest.raises(ModelError, match="no int8 graph.*wildfer export MODEL --int8"):
        int8_graph(nameless, tmp_path / "elsewhere.safetensors")


def test_int8_is_cpu_only_and_unknown_backends_are_named():
    with pytest.raises(ModelError, match="int8 backend runs on the CPU only"):
        load_model("fast", backend="int8", device="cuda")
    with pytest.raises(ModelError, match="torch \\| onnx \\| int8"):
        load_model("fast", backend="tensorrt")
    q = load_model("fast", backend="int8", device="auto")
    assert q.backend == "int8" and q.device == "cpu"
    with pytest.raises(ModelError, match="CPU only"):
        q.to("cuda")


def test_calibration_faces_are_a_seeded_draw():
    x = np.arange(2000 * 4, dtype=np.uint8).reshape(2000, 2, 2)
    a, b = calibration_faces(x, 100), calibration_faces(x, 100)
    assert len(a) == 100 and np.array_equal(a, b) and not np.array_equal(a, x[:100])
    assert calibration_faces(x[:50], 100) is not None and len(calibration_faces(x[:50], 100)) == 50


def test_depthwise_convolutions_stay_float(tmp_path):
    """MobileFaceNet's depthwise convolutions keep float weights in its int8 graph (nine weights
    an output: int8 rounding there cost wild_ensemble 0.8 point of ExpW val); every other
    convolution reads int8 weights."""
    import onnx

    from wildfer.models.onnx import onnx_bytes
    from wildfer.models.quantize import depthwise_convs

    torch.manual_seed(0)
    net = create_model("mobilefacenet", num_classes=7).eval()
    clf = Classifier(net, preprocess={"size": 112, "mean": 0.5, "std": 0.5, "grayscale": False},
                     name="mfn", arch="mobilefacenet")
    dw = sum(isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels for m in net.modules())
    assert dw > 0 and len(depthwise_convs(onnx.load_from_string(onnx_bytes(clf)).graph)) == dw
    graph = onnx.load_from_string(quantize_int8(clf, faces(16))).graph
    made_by = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    quantised = [n for n in convs if n.input[1] in made_by and made_by[n.input[1]].op_type == "DequantizeLinear"]
    assert len(convs) - len(quantised) == dw and len(quantised) > 0
    assert all(next((a.i for a in n.attribute if a.name == "group"), 1) == 1 for n in quantised)
    # PReLUs stay float too, each written as a maximum after quantisation
    ops = [n.op_type for n in graph.node]
    assert "PRelu" not in ops and ops.count("Max") == sum(isinstance(m, torch.nn.PReLU) for m in net.modules())


@pytest.mark.parametrize("name", ["wild", "default", "fast", "wild_mfn"])
def test_shipped_int8_graphs_keep_publictest_within_half_a_point(name, fer2013):
    assert (WEIGHTS / f"{name}{SUFFIX}").is_file()
    test = fer2013.split("PublicTest")
    clf, q = load_model(name), load_model(name, backend="int8")
    acc = float((clf.predict_proba(test.images).argmax(1) == test.labels).mean())
    acc8 = float((q.predict_proba(test.images).argmax(1) == test.labels).mean())
    assert acc - acc8 < 0.005, (acc, acc8)


def test_recognizer_reads_faces_with_the_int8_graph(wild_dir):
    from wildfer.wild import Recognizer

    photo = wild_dir / "kdef_frontal" / "AF01HAS.JPG"
    fp32, int8 = Recognizer(model="wild"), Recognizer(model="wild", backend="int8")
    assert int8.classifier.backend == "int8" and fp32.classifier.backend == "onnx"
    a, b = fp32.predict(photo).faces, int8.predict(photo).faces
    assert len(a) == len(b) == 1 and a[0].label == b[0].label
    assert abs(a[0].confidence - b[0].confidence) < 0.05 and a[0].probs != b[0].probs and a[0].box == b[0].box
    given = Recognizer(model=load_model("fast"), backend="int8")
    assert given.classifier.backend == "int8"


def test_export_int8_command(cli, tmp_path):
    rows = ["emotion,pixels,Usage"]
    for i, f in enumerate(faces(40)):
        rows.append(f"{i % 7},{' '.join(map(str, f.ravel()))},{'Training' if i < 30 else 'PublicTest'}")
    csv = tmp_path / "faces.csv"
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / f"fast{SUFFIX}"
    code, text = cli(["export", "fast", "--onnx", str(out), "--int8", "--calibrate", str(csv)])
    assert code == 0 and "wrote" in text and out.stat().st_size > 50_000
    q = attach_int8(load_model("fast"), graph=out)
    assert q.predict_proba(faces(4)).shape == (4, 7)
    code, text = cli(["export", "fast", "--onnx", str(tmp_path / "x.onnx"), "--int8"])
    assert code != 0 and "--int8 needs --calibrate" in text


def test_predict_evaluate_and_evaluate_wild_take_backend_int8(cli, tmp_path, wild_dir):
    import json

    out = tmp_path / "p.json"
    code, text = cli(["predict", str(wild_dir / "kdef_frontal" / "AF01HAS.JPG"), "--backend", "int8", "--json", str(out)])
    assert code == 0, text
    (image,) = json.loads(out.read_text())["images"]
    assert len(image["faces"]) == 1 and image["faces"][0]["label"]

    rows = ["emotion,pixels,Usage"] + [f"{i % 7},{' '.join(map(str, f.ravel()))},PublicTest" for i, f in enumerate(faces(20))]
    csv = tmp_path / "faces.csv"
    csv.write_text("\n".join(rows) + "\n")
    report = tmp_path / "r.json"
    code, text = cli(["evaluate", str(csv), "--model", "fast", "--backend", "int8", "--json", str(report)])
    assert code == 0, text
    assert json.loads(report.read_text())["backend"] == ["int8"]
    code, text = cli(["evaluate", str(csv), "--model", "fast", "--backend", "tensorrt"])
    assert code != 0 and "unknown backend 'tensorrt' (torch | onnx | int8)" in text

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{wild_dir / 'kdef_frontal' / 'AF01HAS.JPG'},happy\n")
    code, text = cli(["evaluate-wild", str(manifest), "--model", "fast", "--backend", "int8", "--json", str(report)])
    assert code == 0, text
    assert json.loads(report.read_text())["n_found"] == 1


def test_evaluate_finds_a_checkpoints_int8_graph_beside_it(tiny, tmp_path):
    """evaluate(..., backend="int8") on a weights path uses the graph next to the file, as
    load_model and the Recognizer do."""
    from wildfer.data.fer2013 import FaceArrays
    from wildfer.evaluate.core import evaluate
    from wildfer.models.loader import export_weights

    import dataclasses

    clf, graph = tiny
    clf = dataclasses.replace(clf, model_kwargs={"num_filters": 8, "hidden": 32})
    weights = export_weights(clf, tmp_path / "tiny", half=False)
    (tmp_path / f"tiny{SUFFIX}").write_bytes(graph.read_bytes())
    x = faces(30, seed=2)
    data = FaceArrays(x, np.arange(30) % 7, np.array(["PublicTest"] * 30))
    report = evaluate(str(weights), data, backend="int8")
    assert report["backend"] == ["int8"] and report["n"] == 30


def test_exact_int8_products_where_the_cpu_has_no_vnni(monkeypatch):
    """Without VNNI onnxruntime's fast uint8 x int8 kernels saturate 16-bit pair sums; the
    session then asks for exact products (without them, on an AVX2-only CPU, the shipped graphs
    lost 1.3 to 14 points of PublicTest in the test above)."""
    from wildfer import machine
    from wildfer.models.onnx import session_options

    key = "session.x64quantprecision"
    monkeypatch.setattr(machine, "has_vnni", lambda: False)
    assert session_options().get_session_config_entry(key) == "1"
    monkeypatch.setattr(machine, "has_vnni", lambda: True)
    so = session_options(threads=2, spin=False)
    assert so.intra_op_num_threads == 2 and so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(Exception):  # not set: onnxruntime's default, fast kernels
        so.get_session_config_entry(key)


@pytest.mark.parametrize("backend", ["onnx", "int8"])
def test_graph_sessions_sleep_between_calls(backend):
    """Every classifier graph's pool threads sleep between calls: threads left spinning after
    one member of an ensemble took the cores from the next (a one-face photo through
    wild_ensemble's float graphs: 52.2 ms instead of 37.7 ms on a 2-core CPU)."""
    from wildfer.models.loader import builtin_models

    if "wild_ensemble" not in builtin_models():
        pytest.skip("built-in wild_ensemble not installed")
    clf = load_model("wild_ensemble", backend=backend)
    members = clf.runner.members
    assert len(members) == 2 and {m.backend for m in members} == {backend}
    for m in members:
        opts = m.runner.session.get_session_options()
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0", m.name
    single = load_model("fast", backend=backend).runner.session.get_session_options()
    assert single.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_mixed_ensemble_int8_keeps_publictest_within_half_a_point(fer2013):
    """wild_ensemble in int8 (each member on its own graph: one graph cannot take both crops) and
    as it runs by default (wild int8, wild_mfn float), against its float graphs."""
    test = fer2013.split("PublicTest")
    clf, q = load_model("wild_ensemble", backend="onnx"), load_model("wild_ensemble", backend="int8")
    mixed = load_model("wild_ensemble")
    assert q.backend == "int8" and q.preprocess.get("temperature") == clf.preprocess.get("temperature")
    assert mixed.backend == "mixed"
    acc = float((clf.predict_proba(test.images).argmax(1) == test.labels).mean())
    for other in (q, mixed):
        acc8 = float((other.predict_proba(test.images).argmax(1) == test.labels).mean())
        assert abs(acc - acc8) < 0.005, (other.backend, acc, acc8)
