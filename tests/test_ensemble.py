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
