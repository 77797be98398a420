"""Devices: ``device="auto" | "cpu" | "cuda" | "cuda:N"`` on load_model, Classifier.to, Recognizer,
evaluate, the service and the commands. Runs on the CPU: CUDA's presence is stood in for by
patching ``torch.cuda.is_available`` (and onnxruntime's provider list), and nothing is moved to
a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from wildfer.errors import ModelError
from wildfer.models import classifier, loader
from wildfer.models.loader import load_model, resolve_device

FACES = np.random.default_rng(0).integers(0, 256, size=(6, 48, 48), dtype=np.uint8)


@pytest.fixture(scope="module")
def clf():
    return load_model("default", backend="torch")


@pytest.fixture
def no_cuda(monkeypatch):
    """Neither torch nor onnxruntime can use a GPU."""
    from wildfer.models.onnx import import_onnxruntime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(import_onnxruntime(), "get_available_providers", lambda: ["CPUExecutionProvider"])


@pytest.fixture
def two_gpus(monkeypatch):
    """torch reports two CUDA devices (onnxruntime none); moving a classifier there is recorded, not done."""
    from wildfer.models.onnx import import_onnxruntime

    monkeypatch.setattr(import_onnxruntime(), "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    moves = []

    def placed(c, device):
        moves.append(device)
        return c

    monkeypatch.setattr(loader, "_placed", placed)
    return moves


def _one_line_error(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text and text
    return text


def test_cpu_and_auto_give_the_default_probabilities(clf, no_cuda):
    reference = clf.predict_proba(FACES)
    for device in ("cpu", "auto", "CPU", " auto "):
        c = load_model("default", device=device, backend="torch")
        assert c.device == "cpu"
        np.testing.assert_array_equal(c.predict_proba(FACES), reference)
        g = load_model("default", device=device)  # backend auto: the weights graph on onnxruntime
        assert g.device == "cpu" and g.backend == "onnx"
        np.testing.assert_allclose(g.predict_proba(FACES), reference, atol=1e-6)
    assert clf.device == "cpu" and clf.to("cpu") is clf and clf.to("auto") is clf


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu", "", "cuda:-1"])
def test_an_unknown_device_is_one_line(device):
    with pytest.raises(ModelError) as e:
        load_model("default", device=device)
    assert "unknown device" in _one_line_error(e) and "auto, cpu, cuda or cuda:N" in str(e.value)


def test_explicit_cuda_without_cuda_names_what_is_missing(clf, no_cuda):
    for device in ("cuda", "cuda:0", "cuda:1"):
        with pytest.raises(ModelError) as e:
            load_model("default", device=device)
        assert "CUDA" in _one_line_error(e) and device in str(e.value)
    with pytest.raises(ModelError, match="CUDA"):
        clf.to("cuda")
    assert clf.device == "cpu"


def test_the_device_is_checked_before_the_model_is_read(no_cuda, tmp_path):
    with pytest.raises(ModelError, match="CUDA"):
        load_model(tmp_path / "missing.pt", device="cuda")


def test_auto_picks_the_first_gpu_when_torch_has_one(two_gpus):
    assert resolve_device("auto") == "cuda:0"
    assert resolve_device("cuda") == "cuda:0"
    assert resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ModelError) as e:
        resolve_device("cuda:2")
    assert "2 CUDA device(s)" in _one_line_error(e)
    c = load_model("default", device="auto", backend="torch")
    assert two_gpus == ["cuda:0"] and c.device == "cpu"  # placing was recorded, not done
    # backend auto runs the built-in's graph: onnxruntime has no GPU here, so the CPU
    assert load_model("default", device="auto").device == "cpu" and two_gpus == ["cuda:0"]


def test_to_another_device_gives_a_new_classifier_and_leaves_this_one(clf, monkeypatch):
    monkeypatch.setattr(classifier, "resolve_device", lambda device, backend="torch": "meta")
    moved = clf.to("anywhere")
    assert moved is not clf and moved.device == "meta"
    assert next(moved.net.parameters()).device.type == "meta"
    assert next(clf.net.parameters()).device.type == "cpu" and clf.device == "cpu"
    assert moved.input_device.type == "meta" and moved.classes == clf.classes and moved.name == clf.name
    assert clf.predict_proba(FACES).shape == (6, len(clf.classes))


def test_faces_go_to_the_model_device_and_come_back_as_numpy(clf):
    x = clf.to_tensor(FACES)
    assert x.device == clf.input_device and x.dtype == torch.float32 and x.shape == (6, 1, 48, 48)
    assert clf.to_tensor(FACES, device="cpu").device.type == "cpu"
    assert clf.logits(FACES).device.type == "cpu"
    p = clf.predict_proba(FACES, tta=True)
    assert isinstance(p, np.ndarray) and np.allclose(p.sum(1), 1, atol=1e-5)


def test_onnx_auto_follows_onnxruntime_cuda_provider(monkeypatch):
    from wildfer.models.onnx import import_onnxruntime, onnx_providers

    ort = import_onnxruntime()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert resolve_device("auto", backend="onnx") == "cpu"
    with pytest.raises(ModelError) as e:
        resolve_device("cuda", backend="onnx")
    assert "CUDAExecutionProvider" in _one_line_error(e) and "onnxruntime-gpu" in str(e.value)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert resolve_device("auto", backend="onnx") == "cuda:0"
    assert resolve_device("cuda:1", backend="onnx") == "cuda:1"
    assert onnx_providers("cuda:1") == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


def test_onnx_backend_on_the_cpu_and_explicit_cuda(clf):
    from wildfer.models.onnx import import_onnxruntime

    o = load_model("default", backend="onnx", device="auto")
    if o.device == "cpu":
        np.testing.assert_allclose(o.predict_proba(FACES), clf.predict_proba(FACES), atol=1e-5)
    assert o.backend == "onnx" and o.input_device.type == "cpu"  # the torch net stays for gradients
    if "CUDAExecutionProvider" in import_onnxruntime().get_available_providers():
        pytest.skip("onnxruntime has a CUDA provider here")
    with pytest.raises(ModelError) as e:
        load_model("default", backend="onnx", device="cuda")
    assert "CUDAExecutionProvider" in _one_line_error(e)


def test_recognizer_device(clf, no_cuda):
    from wildfer.wild import Recognizer

    photo = np.random.default_rng(1).integers(0, 256, size=(64, 80, 3), dtype=np.uint8)
    ref = Recognizer(model=clf, detector="haar", mode="whole").predict(photo).faces[0].probs
    rec = Recognizer(model=clf, detector="haar", mode="whole", device="auto")
    assert rec.classifier is clf and rec.predict(photo).faces[0].probs == ref
    assert Recognizer(model="default", detector="haar", mode="whole", device="cpu").classifier.device == "cpu"
    with pytest.raises(ModelError, match="CUDA"):
        Recognizer(model=clf, detector="haar", device="cuda")
    with pytest.raises(ModelError, match="unknown device"):
        Recognizer(model="default", detector="haar", device="gpu")


def test_evaluate_device(clf, no_cuda):
    from wildfer.data.fer2013 import FaceArrays
    from wildfer.evaluate import evaluate

    arrays = FaceArrays(FACES, np.arange(6) % 7, np.array(["PublicTest"] * 6))
    ref = evaluate(clf, arrays, return_probs=True)["probs"]
    for device in ("cpu", "auto"):
        np.testing.assert_array_equal(evaluate(clf, arrays, return_probs=True, device=device)["probs"], ref)
        np.testing.assert_array_equal(evaluate("default", arrays, return_probs=True, device=device,
                                               backend="torch")["probs"], ref)
        np.testing.assert_allclose(evaluate("default", arrays, return_probs=True, device=device)["probs"], ref,
                                   atol=1e-6)
    with pytest.raises(ModelError, match="CUDA"):
        evaluate("default", arrays, device="cuda")


def test_service_picks_torch_on_a_gpu_onnxruntime_cannot_use(two_gpus):
    from wildfer.serve.app import load_recognizer

    rec = load_recognizer("default", detector="haar", backend="auto", device="auto")
    assert rec.classifier.backend == "torch" and two_gpus == ["cuda:0"]


def test_service_device_on_the_cpu(no_cuda):
    from wildfer.serve.app import load_recognizer

    rec = load_recognizer("default", detector="haar", backend="auto", device="auto")
    assert rec.classifier.backend == "onnx" and rec.classifier.device == "cpu"
    assert load_recognizer("default", detector="haar", backend="torch", device="cpu").classifier.device == "cpu"
    for backend in ("auto", "torch"):
        with pytest.raises(ModelError, match="CUDA"):
            load_recognizer("default", detector="haar", backend=backend, device="cuda")
    with pytest.raises(ModelError, match="unknown device"):
        load_recognizer("default", detector="haar", device="gpu")


def _photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("command", [
    ["predict", "{photo}", "--json", "{tmp}/out.json"],
    ["evaluate-wild", "{tmp}/manifest.csv"],
    ["evaluate", "{tmp}/missing.csv"],
    ["serve", "--port", "0"],
])
def test_commands_refuse_cuda_on_one_line(cli, no_cuda, tmp_path, command):
    photo = _photo(tmp_path)
    (tmp_path / "manifest.csv").write_text(f"path,label\n{photo.name},happy\n")
    args = [a.format(photo=photo, tmp=tmp_path) for a in command]
    code, out = cli(args + ["--device", "cuda"])
    assert code == 2 and "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "CUDA" in lines[0], out
    assert not (tmp_path / "out.json").exists()


def test_predict_unknown_device_and_cpu(cli, tmp_path):
    photo = _photo(tmp_path)
    code, out = cli(["predict", photo, "--device", "gpu", "--model", "default", "--detector", "haar"])
    assert code == 2 and "unknown device 'gpu'" in out and "Traceback" not in out
    code, out = cli(["predict", photo, "--device", "cpu", "--model", "default", "--detector", "haar", "--mode", "whole",
                     "--json", tmp_path / "out.json"])
    assert code == 0 and (tmp_path / "out.json").exists(), out


def test_info_names_the_auto_device(cli):
    from wildfer.info import environment

    env = environment()["device"]
    assert env["auto"] == resolve_device("auto") and env["auto onnx"] == resolve_device("auto", backend="onnx")
    code, out = cli(["info"])
    assert code == 0 and "device:" in out
