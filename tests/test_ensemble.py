"""Ensembles with TTA as one model (wildfer.models.ensemble): the same probabilities as
``wildfer evaluate --model A --model B --tta ...``, spec files, class folding, ONNX export,
saliency, and the built-in ``accurate``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wildfer.errors import ModelError
from wildfer.labels import FER2013_CLASSES, FERPLUS_CLASSES


def _shallow(seed, classes=FER2013_CLASSES, mean=0.5, std=0.25):
    from wildfer.models import create_model
    from wildfer.models.loader import Classifier

    torch.manual_seed(seed)
    net = create_model("shallow", num_filters=4, hidden=32, num_classes=len(classes))
    pre = {"size": 48, "mean": mean, "std": std, "grayscale": True}
    return Classifier(net.eval(), tuple(classes), pre, name=f"s{seed}", arch="shallow",
                      model_kwargs={"num_filters": 4, "hidden": 32})


@pytest.fixture(scope="module")
def faces():
    rng = np.random.default_rng(3)
    f = rng.integers(0, 256, (9, 48, 48)).astype(np.uint8)
    f[:, :, :20] //= 3  # asymmetric faces, so mirror views differ
    return f


@pytest.mark.parametrize("tta", [None, "flip", "tencrop"])
def test_ensemble_net_equals_evaluate_tta_ensemble(faces, tta):
    from wildfer.evaluate.predict import predict_proba
    from wildfer.models.ensemble import ensemble_classifier

    # the second member has its own normalisation: the ensemble must feed each member its own
    a, b = _shallow(0), _shallow(1, mean=0.4, std=0.3)
    ens = ensemble_classifier([a, b], weights=[3, 1], tta=tta)
    got = ens.predict_proba(faces)
    want = predict_proba([a, b], faces, tta=tta, weights=[3, 1])
    assert got.shape == (9, 7)
    assert np.abs(got - want).max() < 1e-5
    assert np.allclose(got.sum(1), 1, atol=1e-5)
    assert ens.arch == "ensemble" and ens.model_kwargs["weights"] == [0.75, 0.25] and ens.model_kwargs["tta"] == tta
    if tta:  # TTA changes the answer (the views are really used)
        assert np.abs(got - ensemble_classifier([a, b], weights=[3, 1]).predict_proba(faces)).max() > 1e-4


def test_ferplus_member_is_folded_onto_the_ensembles_classes(faces):
    from wildfer.evaluate.predict import predict_proba
    from wildfer.models.ensemble import ensemble_classifier

    a, plus = _shallow(0), _shallow(2, classes=FERPLUS_CLASSES)
    ens = ensemble_classifier([a, plus], tta="flip")
    assert ens.classes == FER2013_CLASSES
    got = ens.predict_proba(faces)
    want = predict_proba([a, plus], faces, FER2013_CLASSES, tta="flip")
    assert np.abs(got - want).max() < 1e-5


def test_spec_file_with_relative_paths_and_user_mistakes(tmp_path, faces):
    from wildfer.models.loader import load_model, save_checkpoint

    for seed in (0, 1):
        c = _shallow(seed)
        save_checkpoint(tmp_path / f"m{seed}.pt", c.net, arch="shallow", model_kwargs=c.model_kwargs,
                        classes=c.classes)
    spec = tmp_path / "both.json"
    spec.write_text(json.dumps({"arch": "ensemble", "members": ["m0.pt", "m1.pt"], "weights": [1, 1],
                                "tta": "flip"}))
    ens = load_model(spec)
    from wildfer.evaluate.predict import predict_proba

    want = predict_proba([str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt")], faces, tta="flip")
    assert np.abs(ens.predict_proba(faces) - want).max() < 1e-5
    for body, message in (({"arch": "ensemble", "members": ["m0.pt", "gone.pt"]}, "gone.pt"),
                          ({"arch": "ensemble", "members": []}, "non-empty list"),
                          ({"arch": "ensemble", "members": ["m0.pt"], "tta": "rotate"}, "tta must be"),
                          ({"arch": "ensemble", "members": ["m0.pt", "m1.pt"], "weights": [1]}, "weights must be 2")):
        spec.write_text(json.dumps(body))
        with pytest.raises(ModelError, match=message) as e:
            load_model(spec)
        assert "both.json" in str(e.value)


def test_ensemble_exports_to_onnx_with_the_same_probabilities(tmp_path, faces):
    from wildfer.models.ensemble import ensemble_classifier
    from wildfer.models.onnx import attach_onnx

    ens = ensemble_classifier([_shallow(0), _shallow(1, mean=0.4, std=0.3)], weights=[1, 2], tta="tencrop")
    want = ens.predict_proba(faces)
    ens = attach_onnx(ens)
    assert ens.backend == "onnx"
    assert np.abs(ens.predict_proba(faces, batch_size=4) - want).max() < 1e-4


def test_gradient_saliency_works_and_gradcam_refuses_with_a_reason(faces):
    from wildfer.explain import get_method
    from wildfer.explain.methods import MethodError
    from wildfer.models.ensemble import ensemble_classifier

    ens = ensemble_classifier([_shallow(0), _shallow(1)], tta="flip")
    x = ens.to_tensor(faces[:2])
    maps = get_method("vanilla")(ens.net).attribute(x, target=3)
    assert maps.shape[-2:] == (48, 48) and float(maps.abs().sum()) > 0
    with pytest.raises(MethodError, match="ensemble"):
        get_method("gradcam")(ens.net)


def test_builtin_accurate_is_default_plus_resnet_with_tencrop():
    from wildfer.evaluate.predict import predict_proba
    from wildfer.models.loader import builtin_models, load_model

    if not {"default", "default_resnet"} <= set(builtin_models()):
        pytest.skip("built-in default / default_resnet weights not installed")
    assert "accurate" in builtin_models()
    clf = load_model("accurate")
    assert clf.name == "accurate" and clf.classes == FER2013_CLASSES
    assert clf.model_kwargs["members"] == ["default", "default_resnet"] and clf.model_kwargs["tta"] == "tencrop"
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48)).astype(np.uint8)
    want = predict_proba(["default", "default_resnet"], faces, tta="tencrop")
    assert np.abs(clf.predict_proba(faces) - want).max() < 1e-5


def test_ensemble_buffers_follow_members_already_on_another_device():
    import torch
    from torch import nn

    from wildfer.models.ensemble import EnsembleNet

    members = [nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7)).to("meta") for _ in range(2)]
    net = EnsembleNet(members, tta="flip")
    assert {b.device.type for b in net.buffers()} == {"meta"}
    assert net.flip_index.device == torch.device("meta")


def test_spec_backends_put_float_and_int8_graphs_side_by_side(tmp_path, faces):
    """A spec's ``"backends"`` says what ``backend="auto"`` runs each member on: an int8 member
    beside a float one computes with numpy on both graphs (backend ``mixed``); a backend asked
    for by name puts every member on it; a bad list is one line naming the file."""
    from wildfer.models.classifier import backend_label
    from wildfer.models.loader import builtin_models, load_model

    if not {"default", "fast"} <= set(builtin_models()):
        pytest.skip("built-in default / fast weights not installed")
    spec = tmp_path / "pair.json"
    spec.write_text(json.dumps({"arch": "ensemble", "members": ["default", "fast"], "weights": [2, 1],
                                "backends": ["int8", "onnx"]}))
    ens = load_model(spec)
    assert ens.backend == "mixed" and not ens.has_net
    assert [m.backend for m in ens.runner.members] == ["int8", "onnx"]
    assert ens.meta["member_backends"] == ["int8", "onnx"] and "backends" not in ens.meta
    assert ens.backend_label == "mixed (default int8, fast onnx)"
    assert backend_label("onnx", {"a": "int8"}) == "onnx"
    want = (2 * load_model("default", backend="int8").predict_proba(faces)
            + load_model("fast", backend="onnx").predict_proba(faces)) / 3
    assert np.abs(ens.predict_proba(faces) - want).max() < 1e-5
    assert ens.to("cpu") is ens
    with pytest.raises(ModelError, match="CPU only"):
        ens.to("cuda")
    for backend in ("onnx", "int8"):
        every = load_model(spec, backend=backend)
        assert every.backend == backend and {m.backend for m in every.runner.members} == {backend}
    for bad in (["int8"], ["int8", "fp4"], "int8"):
        spec.write_text(json.dumps({"arch": "ensemble", "members": ["default", "fast"], "backends": bad}))
        with pytest.raises(ModelError, match=r'pair\.json: "backends" must list one of torch, onnx, int8'):
            load_model(spec)


def test_spec_calibration_divides_by_the_temperature_and_adds_the_class_bias(tmp_path, faces):
    """A spec's ``"temperature"`` and ``"class_bias"`` calibrate the averaged log-probabilities,
    the same on torch and on the graphs, whatever backend the members are loaded on again;
    a bad bias is one line naming the file."""
    from wildfer.models.loader import builtin_models, load_model

    if not {"default", "fast"} <= set(builtin_models()):
        pytest.skip("built-in default / fast weights not installed")
    bias = [0.3, -0.2, 0.0, 0.1, -0.4, 0.25, -0.05]
    spec = tmp_path / "pair.json"
    spec.write_text(json.dumps({"arch": "ensemble", "members": ["default", "fast"], "temperature": 0.8,
                                "class_bias": bias}))
    raw = (load_model("default", backend="onnx").predict_proba(faces)
           + load_model("fast", backend="onnx").predict_proba(faces)) / 2
    z = np.log(raw) / 0.8 + np.array(bias)
    want = np.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    for backend in ("onnx", "torch"):
        ens = load_model(spec, backend=backend)
        assert ens.preprocess["class_bias"] == bias and "class_bias" not in ens.meta
        assert np.abs(ens.predict_proba(faces) - want).max() < 1e-4, backend
    assert (want.argmax(1) != raw.argmax(1)).any() or np.abs(want - raw).max() > 0.01  # the bias did something
    for bad in ([0.1] * 6, [0.1] * 6 + [float("nan")], [0.0] * 6 + [9.0], "0.1", [True] * 7):
        spec.write_text(json.dumps({"arch": "ensemble", "members": ["default", "fast"], "class_bias": bad}))
        with pytest.raises(ModelError, match=r"pair\.json: .*class_bias must be 7 numbers"):
            load_model(spec)


def test_a_checkpoints_own_calibration_is_applied_and_checked(tmp_path, faces):
    """A single model's preprocessing record may carry a temperature and a class bias
    (calibration): ``predict_proba`` applies them, and a bad one is one line naming the file
    when the model is loaded, not a wrong probability or a traceback later."""
    from wildfer.models.loader import load_model, save_checkpoint

    c = _shallow(0)
    raw = c.predict_proba(faces)
    bias = [0.5, -0.5, 0.0, 0.2, -0.1, 0.3, -0.2]
    path = tmp_path / "calibrated.pt"
    save_checkpoint(path, c.net, arch="shallow", model_kwargs=c.model_kwargs, classes=c.classes,
                    preprocess={**c.preprocess, "temperature": 2.0, "class_bias": bias})
    z = np.log(raw) / 2.0 + np.array(bias)
    want = np.exp(z - z.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    assert np.abs(load_model(path).predict_proba(faces) - want).max() < 1e-5
    for key, bad, says in (("temperature", 0.0, r"temperature must be a number in \[0.05, 20\], not 0.0"),
                           ("temperature", "2", r"temperature must be a number in \[0.05, 20\], not '2'"),
                           ("class_bias", bias[:6], r"class_bias must be 7 numbers \(one per class\)"),
                           ("class_bias", [float("inf")] * 7, r"class_bias must be 7 numbers")):
        save_checkpoint(path, c.net, arch="shallow", model_kwargs=c.model_kwargs, classes=c.classes,
                        preprocess={**c.preprocess, key: bad})
        with pytest.raises(ModelError, match=r"calibrated\.pt: " + says):
            load_model(path)


def test_builtin_pipeline_model_runs_wild_on_int8_and_wild_mfn_on_float():
    """``wild_ensemble``'s spec puts ``wild`` on its int8 graph (within half a point of float on
    every dev set, and a third of the float graph's memory) and ``wild_mfn`` on its float one."""
    from wildfer.models.loader import builtin_info, builtin_models, default_backend, load_model, member_backends

    if "wild_ensemble" not in builtin_models():
        pytest.skip("built-in wild_ensemble not installed")
    assert default_backend("wild_ensemble") == "mixed"
    assert member_backends("wild_ensemble") == {"wild": "int8", "wild_mfn": "onnx"}
    assert builtin_info("wild_ensemble")["member_backends"] == {"wild": "int8", "wild_mfn": "onnx"}
    assert member_backends("wild") is None and member_backends("accurate") is None
    clf = load_model("wild_ensemble")
    assert clf.backend == "mixed" and [m.backend for m in clf.runner.members] == ["int8", "onnx"]
    assert clf.preprocess["temperature"] == load_model("wild_ensemble", backend="onnx").preprocess["temperature"]
    # calibrated on ExpW val: a temperature and a bias per class (benchmarks/calibration.py --class-bias)
    assert len(clf.preprocess["class_bias"]) == 7 and abs(sum(clf.preprocess["class_bias"])) < 1e-3
    assert clf.preprocess["class_bias"] == load_model("wild_ensemble", backend="torch").preprocess["class_bias"]
