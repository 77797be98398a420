"""MobileFaceNet from the OpenCV model zoo's int8 graph: the conversion reproduces the graph on
real web faces, each model cuts faces its own way, and ensembles mix 48-pixel grey members with
112-pixel colour ones."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from conftest import SHARED, WILD

ZOO = SHARED / "pretrained" / "opencv_zoo_fer" / "facial_expression_recognition_mobilefacenet_2022july_int8.onnx"


@pytest.fixture(scope="module")
def zoo_path():
    if not ZOO.exists():
        pytest.skip(f"shared data not found: {ZOO} (see ../shared/data/README.md)")
    return ZOO


@pytest.fixture(scope="module")
def web_faces(zoo_path):
    """The first 150 ExpW val faces YuNet finds, cut on the zoo model's template (3 x 112 x 112)."""
    from wildfer.data.images import read_image
    from wildfer.models.convert import ZOO_PREPROCESS
    from wildfer.wild.align import align_face, align_for
    from wildfer.wild.detectors import create_detector

    manifest = WILD / "expw.csv"
    if not manifest.exists():
        pytest.skip(f"shared data not found: {manifest}")
    with open(manifest, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "val"]
    det, cfg = create_detector("yunet"), align_for(ZOO_PREPROCESS)
    faces, landmarks = [], []
    for r in rows:
        rgb = read_image(manifest.parent / r["path"])
        found = [d for d in det.detect(rgb) if d.landmarks is not None]
        if found:
            d = max(found, key=lambda d: d.width)
            crop, m = align_face(rgb, d, cfg, det.name)
            faces.append(crop)
            landmarks.append(np.asarray(d.landmarks, dtype=np.float64).reshape(5, 2) @ m[:, :2].T + m[:, 2])
        if len(faces) == 150:
            break
    return np.stack(faces), np.stack(landmarks)


def _graph_logits(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"data": x[i : i + 1]})[0] for i in range(len(x))])


def test_converted_net_reproduces_the_int8_graph(zoo_path, web_faces):
    from wildfer.models.convert import mobilefacenet_from_onnx, round_like_graph

    faces, _ = web_faces
    x = (faces.astype(np.float32) / 255 - 0.5) / 0.5
    graph = _graph_logits(zoo_path, x)
    net, classes = mobilefacenet_from_onnx(zoo_path)
    assert classes == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    with torch.no_grad():
        plain = net(torch.from_numpy(x)).numpy()
    # the float net differs from the graph by the graph's 8-bit activations only ...
    assert (plain.argmax(1) == graph.argmax(1)).mean() >= 0.9
    assert np.abs(plain - graph).mean() < 0.35
    # ... so rounding its activations where the graph does, with onnxruntime's integer convolutions
    # and its x86 residual adds, gives the graph's outputs (on x86, to the last step)
    handles = round_like_graph(net, zoo_path)
    with torch.no_grad():
        rounded = net(torch.from_numpy(x)).numpy()
    for h in handles:
        h.remove()
    assert (rounded.argmax(1) == graph.argmax(1)).mean() >= 0.99
    assert np.abs(rounded - graph).mean() < 0.02
    # the first layer, one rounding deep, matches to one step of its output grid
    from wildfer.models.convert import activation_grids

    step = float(activation_grids(zoo_path)["convs"][0][0])
    handles = round_like_graph(net, zoo_path)
    with torch.no_grad():
        first = net.conv1[0](torch.from_numpy(x[:4]))
    for h in handles:
        h.remove()
    with torch.no_grad():
        exact = net.conv1[0](torch.from_numpy(x[:4]))
    assert float((first - exact).abs().max()) <= step


def test_residual_add_is_emulated_as_onnxruntime_computes_it(zoo_path):
    """Every pair of 8-bit inputs of the graph's first residual add, through a one-node graph
    on onnxruntime: the emulation gives its output integers exactly; adding the dequantised
    values, as the float net does, falls a step off on some of them."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from wildfer.models.convert import _qlinear_add, activation_grids

    grid = activation_grids(zoo_path)["adds"][0]
    c_scale, c_zp, a_scale, a_zp, b_scale, b_zp = grid
    names = ("c_scale", "c_zp", "a_scale", "a_zp", "b_scale", "b_zp")
    node = helper.make_node("QLinearAdd", ["a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "c_scale", "c_zp"],
                            ["c"], domain="com.microsoft")
    graph = helper.make_graph(
        [node], "add", [helper.make_tensor_value_info(n, TensorProto.UINT8, [256 * 256]) for n in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.UINT8, [256 * 256])],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in zip(names, grid)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
    qa = np.repeat(np.arange(256, dtype=np.uint8), 256)
    qb = np.tile(np.arange(256, dtype=np.uint8), 256)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = sess.run(None, {"a": qa, "b": qb})[0].astype(np.float32)
    a = (torch.from_numpy(qa.astype(np.float32)) - float(a_zp)) * float(a_scale)
    b = (torch.from_numpy(qb.astype(np.float32)) - float(b_zp)) * float(b_scale)
    emulated = (_qlinear_add(a, b, grid) / float(c_scale) + float(c_zp)).round().numpy()
    by_sum = torch.clamp(torch.round((a + b) / float(c_scale)) + float(c_zp), 0, 255).numpy()
    assert np.array_equal(emulated, expected)
    assert not np.array_equal(by_sum, expected) and np.abs(by_sum - expected).max() <= 1


def test_template_alignment_puts_landmarks_on_the_template(web_faces):
    from wildfer.models.mobilefacenet import TEMPLATE_112

    _, landmarks = web_faces
    err = np.linalg.norm(landmarks - np.asarray(TEMPLATE_112)[None], axis=2)
    assert np.median(err) < 4.0  # pixels of the 112-pixel face


def test_convert_command_writes_weights_every_loader_reads(zoo_path, cli, tmp_path, web_faces):
    from wildfer.models.loader import load_model

    code, out = cli(["models", "convert", zoo_path, "--out", tmp_path / "zoo.safetensors"])
    assert code == 0, out
    assert (tmp_path / "zoo.safetensors").exists() and (tmp_path / "zoo.json").exists()
    faces, _ = web_faces
    from_file = load_model(str(tmp_path / "zoo.safetensors"))
    from_graph = load_model(str(zoo_path))
    assert from_file.arch == "mobilefacenet" and from_file.size == 112 and from_file.channels == 3
    np.testing.assert_allclose(from_file.predict_proba(faces[:32]), from_graph.predict_proba(faces[:32]), atol=1e-6)


def test_convert_refuses_a_file_that_is_not_the_zoo_graph(cli, tmp_path):
    bad = tmp_path / "photo.onnx"
    bad.write_bytes(b"not a graph")
    code, out = cli(["models", "convert", bad, "--out", tmp_path / "w.safetensors"])
    assert code != 0 and "not an ONNX graph" in out and "Traceback" not in out
    assert not (tmp_path / "w.safetensors").exists()


def test_recognizer_cuts_each_model_its_own_way(zoo_path, wild_dir):
    from wildfer.models.loader import load_model
    from wildfer.wild import Recognizer

    photo = wild_dir / "kdef_frontal" / sorted(p.name for p in (wild_dir / "kdef_frontal").iterdir())[0]
    zoo = Recognizer(load_model(str(zoo_path))).predict(photo)
    assert zoo.faces and zoo.faces[0].crop.shape == (3, 112, 112)
    fer = Recognizer("default").predict(photo)
    assert fer.faces[0].crop.shape == (48, 48)


def test_mixed_ensemble_averages_members_on_their_own_crops(zoo_path, wild_dir):
    """A 48-pixel grey member and a 112-pixel colour one: each face is cut twice, and the
    ensemble's probabilities are the mean of what each member says alone."""
    from wildfer.models.loader import ensemble_classifier
    from wildfer.models.loader import load_model
    from wildfer.wild import Recognizer

    zoo = load_model(str(zoo_path))
    ens = ensemble_classifier(["default", zoo])
    assert [v["size"] for v in ens.face_views] == [48, 112]
    photo = next(p for p in sorted((wild_dir / "groups").iterdir()) if p.suffix.lower() in (".jpg", ".png"))
    both, alone_a, alone_b = (Recognizer(m).predict(photo) for m in (ens, "default", zoo))
    assert len(both.faces) == len(alone_a.faces) == len(alone_b.faces) >= 1
    for f, a, b in zip(both.faces, alone_a.faces, alone_b.faces):
        mean = [(a.probs[c] + b.probs[c]) / 2 for c in f.probs]
        np.testing.assert_allclose(list(f.probs.values()), mean, atol=1e-5)
        assert f.crop.shape == (48, 48)  # the first member's view is the one shown


def test_init_from_the_zoo_maps_output_rows_by_class_name(zoo_path):
    from wildfer.labels import FER2013_CLASSES
    from wildfer.models.convert import mobilefacenet_from_onnx
    from wildfer.models.registry import create_model
    from wildfer.train.engine import init_from

    net = create_model("mobilefacenet", num_classes=7)
    report = init_from(net, str(zoo_path), FER2013_CLASSES)
    assert report["mapped"] == ["fc.weight", "fc.bias"] and not report["skipped"]
    zoo, zoo_classes = mobilefacenet_from_onnx(zoo_path)
    x = torch.randn(3, 3, 112, 112)
    with torch.no_grad():
        ours, theirs = net.eval()(x), zoo(x)
    order = [zoo_classes.index(c) for c in FER2013_CLASSES]
    torch.testing.assert_close(ours, theirs[:, order])


def test_freeze_stops_named_parameters_and_refuses_unknown_names():
    from wildfer.errors import WildferError
    from wildfer.models.registry import create_model
    from wildfer.train.engine import freeze_parameters

    net = create_model("mobilefacenet", num_classes=7)
    frozen = freeze_parameters(net, ["conv1", "blocks.0."])
    assert frozen and all(n.startswith(("conv1", "blocks.0.")) for n in frozen)
    assert all(not p.requires_grad for n, p in net.named_parameters() if n in frozen)
    assert net.fc.weight.requires_grad and net.blocks[1].conv[0][0].weight.requires_grad
    everything = freeze_parameters(create_model("mobilefacenet", num_classes=7), ["*"])
    assert "fc.weight" not in everything and "conv2.0.weight" in everything
    with pytest.raises(WildferError, match="names no parameter"):
        freeze_parameters(net, ["conv9"])


def test_temperature_changes_confidence_not_predictions():
    from wildfer.models.classifier import Classifier
    from wildfer.models.registry import create_model

    net = create_model("fastfer", num_classes=7)
    faces = np.random.default_rng(0).integers(0, 256, size=(16, 48, 48), dtype=np.uint8)
    plain = Classifier(net).predict_proba(faces)
    hot = Classifier(net, preprocess={"size": 48, "mean": 0.5, "std": 0.25, "grayscale": True,
                                      "temperature": 2.0}).predict_proba(faces)
    assert (plain.argmax(1) == hot.argmax(1)).all()
    assert hot.max(1).mean() < plain.max(1).mean()
    np.testing.assert_allclose(hot.sum(1), 1.0, atol=1e-6)


def test_mixed_ensemble_runs_each_member_on_its_own_int8_graph(zoo_path, web_faces, cli, tmp_path, fer2013_csv):
    """One graph cannot take two crops of a face, so backend int8 runs each member's own graph."""
    import json

    from wildfer.models.loader import load_model
    from wildfer.models.quantize import quantize_int8

    code, out = cli(["models", "convert", zoo_path, "--out", tmp_path / "zoo.safetensors"])
    assert code == 0, out
    zoo = load_model(str(tmp_path / "zoo.safetensors"))
    faces, _ = web_faces
    (tmp_path / "zoo.safetensors.int8.onnx").write_bytes(quantize_int8(zoo, faces[:64]))
    spec = tmp_path / "mixed.json"
    spec.write_text(json.dumps({"arch": "ensemble", "members": ["default", "zoo.safetensors"]}))
    float_ens, int8_ens = load_model(str(spec)), load_model(str(spec), backend="int8")
    assert int8_ens.backend == "int8" and len(int8_ens.face_views) == 2
    grey = np.stack([np.asarray(f.transpose(1, 2, 0) @ [0.299, 0.587, 0.114], dtype=np.uint8)[::2, ::2][4:52, 4:52]
                     for f in faces[64:96]])  # any 48-pixel grey faces for the first view
    views = [grey, faces[64:96]]
    p_float, p_int8 = float_ens.predict_proba(views), int8_ens.predict_proba(views)
    assert (p_float.argmax(1) == p_int8.argmax(1)).mean() >= 0.8
    assert np.abs(p_float - p_int8).mean() < 0.05


def test_a_teacher_that_cuts_faces_otherwise_is_read_from_its_own_crops(zoo_path):
    from wildfer.models.loader import ensemble_classifier
    from wildfer.models.loader import load_model
    from wildfer.train.config import TrainConfig
    from wildfer.train.engine import teacher_reads_its_own_faces

    student = TrainConfig(model="mobilefacenet", colour=True)
    grey = TrainConfig(model="vggfer")
    zoo = load_model(str(zoo_path))
    assert not teacher_reads_its_own_faces(zoo, student)  # same crops: the student's batch serves
    assert teacher_reads_its_own_faces(zoo, grey)
    assert teacher_reads_its_own_faces(ensemble_classifier(["default", zoo]), student)
    assert student.face_side() == 112 and student.preprocess()["align"] == "template"
    assert grey.face_side() == 48 and "align" not in grey.preprocess()


def test_a_smaller_input_keeps_the_template_framing():
    """A MobileFaceNet trained at 96 px cuts its faces as the 112-px template does, scaled: a face
    whose landmarks sit on the 112 template maps onto the 96 crop by a plain 96/112 scaling."""
    from wildfer.models.mobilefacenet import TEMPLATE_112
    from wildfer.train.config import TrainConfig
    from wildfer.wild.align import align_for, face_transform
    from wildfer.wild.detectors import Detection

    pts = np.asarray(TEMPLATE_112, dtype=np.float64)
    face = Detection(box=(20.0, 20.0, 92.0, 100.0), score=1.0, landmarks=pts)
    for side in (112, 96, 64):
        pre = TrainConfig(model="mobilefacenet", colour=True, model_kwargs={"input_size": side}).preprocess()
        assert pre["size"] == side
        m = face_transform(face, align_for(pre))
        np.testing.assert_allclose(m, [[side / 112, 0, 0], [0, side / 112, 0]], atol=1e-3)
