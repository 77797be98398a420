"""wildfer.evaluate: metrics against hand-computed numbers, TTA and ensembles with models of
known weights, class alignment (FER+ <-> FER2013), and ``wildfer evaluate`` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from wildfer.data.fer2013 import FaceArrays
from wildfer.labels import FER2013_CLASSES, FERPLUS_CLASSES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- helpers


class HalfBrightness(nn.Module):
    """Known weights: logit 0 = 4 x (mean of the left half - mean of the right half), logit 1 =
    the negative, the other classes -10. A face brighter on the left is class 0, on the right class 1."""

    def __init__(self, num_classes: int = 7):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x):
        w = x.shape[-1] // 2
        d = x[..., :w].mean((1, 2, 3)) - x[..., w:].mean((1, 2, 3))
        out = torch.full((x.shape[0], self.num_classes), -10.0)
        out[:, 0], out[:, 1] = 4 * d, -4 * d
        return out


class Constant(nn.Module):
    """Known weights: the same logits for every face."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1).clone()


def classifier(net, classes=FER2013_CLASSES, name="m"):
    from wildfer.models.loader import Classifier

    return Classifier(net, tuple(classes), name=name)


def arrays(images, labels, classes=FER2013_CLASSES, usage="PublicTest"):
    images = np.asarray(images, dtype=np.uint8)
    return FaceArrays(images=images, labels=np.asarray(labels, dtype=np.int64),
                      usage=np.array([usage] * len(labels)), classes=tuple(classes), source="test")


def write_csv(path: Path, rows) -> Path:
    """rows: (label, 48x48 uint8 image, usage)."""
    with open(path, "w") as f:
        f.write("emotion,pixels,Usage\n")
        for label, img, usage in rows:
            f.write(f"{int(label)},{' '.join(map(str, np.asarray(img).ravel()))},{usage}\n")
    return path


@pytest.fixture(scope="module")
def small_csv(fer2013, tmp_path_factory) -> Path:
    """300 real PublicTest faces + 20 Training faces, as a FER2013 CSV."""
    tr, va = fer2013.split("Training"), fer2013.split("PublicTest")
    rows = [(tr.labels[i], tr.images[i], "Training") for i in range(20)]
    rows += [(va.labels[i], va.images[i], "PublicTest") for i in range(300)]
    return write_csv(tmp_path_factory.mktemp("evalcsv") / "small.csv", rows)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two small shallow-net checkpoints with fixed random weights (FER2013's 7 classes)."""
    from wildfer.models import create_model
    from wildfer.models.loader import save_checkpoint

    d = tmp_path_factory.mktemp("ckpt")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = create_model("shallow", num_filters=4, hidden=32)
        p = d / f"m{seed}.pt"
        save_checkpoint(p, net, arch="shallow", model_kwargs={"num_filters": 4, "hidden": 32}, classes=FER2013_CLASSES)
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------- metrics


def test_metrics_match_hand_computation():
    from wildfer.evaluate.metrics import compute_metrics

    labels = ["a", "b", "c"]
    y = np.array([0, 0, 1, 2])
    p = np.array([[0.7, 0.2, 0.1],   # right
                  [0.2, 0.7, 0.1],   # wrong (b), true a second
                  [0.1, 0.6, 0.3],   # right
                  [0.5, 0.1, 0.4]])  # wrong (a), true c second
    r = compute_metrics(y, p, labels)
    assert r["n"] == 4 and r["labels"] == labels
    assert r["accuracy"] == pytest.approx(0.5)
    assert r["top2_accuracy"] == pytest.approx(1.0)
    assert r["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]  # rows = true class
    assert r["confusion_normalized"][0] == [0.5, 0.5, 0.0]
    # precision a = 1/2, b = 1/2, c = 0; recall a = 1/2, b = 1, c = 0
    assert r["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert r["per_class"]["b"]["recall"] == 1.0 and r["per_class"]["b"]["precision"] == 0.5
    assert r["per_class"]["c"]["support"] == 1 and r["per_class"]["c"]["f1"] == 0.0
    assert r["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    # ECE by hand with 15 bins: confidences 0.7, 0.7 share a bin (acc 1/2), 0.6 (acc 1), 0.5 (acc 0)
    ece = 2 / 4 * abs(0.5 - 0.7) + 1 / 4 * abs(1 - 0.6) + 1 / 4 * abs(0 - 0.5)
    assert r["ece"] == pytest.approx(ece)
    assert sum(r["calibration"]["count"]) == 4
    assert r["nll"] == pytest.approx(-np.mean(np.log([0.7, 0.2, 0.6, 0.4])))


def test_ece_of_calibrated_and_overconfident_predictions():
    from wildfer.evaluate.metrics import expected_calibration_error

    rng = np.random.default_rng(0)
    n = 20000
    conf = rng.uniform(0.5, 1.0, n)  # top-1 is class 0 with probability conf ...
    y = np.where(rng.uniform(size=n) < conf, 0, 1)  # ... and right with exactly that probability
    probs = np.stack([conf, 1 - conf, np.zeros(n)], 1)
    assert expected_calibration_error(y, probs) < 0.02
    # always 90% sure, right half of the time: ECE = 0.4
    over = np.tile([0.9, 0.1, 0.0], (1000, 1))
    y2 = np.array([0, 1] * 500)
    assert expected_calibration_error(y2, over) == pytest.approx(0.4)


# ----------------------------------------------------------------------------- TTA, ensembles, alignment


def test_tencrop_views_are_corners_centre_and_mirrors():
    from wildfer.models.classifier import tta_views

    faces = np.arange(2 * 48 * 48, dtype=np.int64).reshape(2, 48, 48) % 251
    views = tta_views(faces.astype(np.uint8), "tencrop", crop=44)
    assert len(views) == 10 and all(v.shape == (2, 44, 44) for v in views)
    f = faces.astype(np.uint8)
    assert np.array_equal(views[0], f[:, :44, :44])      # top-left
    assert np.array_equal(views[3], f[:, 4:, 4:])        # bottom-right
    assert np.array_equal(views[4], f[:, 2:46, 2:46])    # centre
    assert np.array_equal(views[5], views[0][..., ::-1])  # mirrored top-left
    assert len(tta_views(f, "flip")) == 2 and len(tta_views(f, None)) == 1


def test_flip_tta_averages_mirror_images():
    from wildfer.evaluate import evaluate

    img = np.zeros((2, 48, 48), np.uint8)
    img[0, :, :24] = 200  # bright left: class 0
    img[1, :, 24:] = 200  # bright right: class 1
    data = arrays(img, [0, 1])
    clf = classifier(HalfBrightness())
    plain = evaluate(clf, data, return_probs=True)
    assert plain["accuracy"] == 1.0 and plain["tta"] is None
    flip = evaluate(clf, data, tta="flip", return_probs=True)
    # the mirror image votes for the other class with the same strength: averaged, a tie
    assert flip["probs"][0, 0] == pytest.approx(flip["probs"][0, 1], abs=1e-6)
    assert flip["tta"] == "flip"
    # ten-crop of a symmetric face keeps a symmetric answer, and views are resized back to 48
    sym = np.full((1, 48, 48), 90, np.uint8)
    tc = evaluate(clf, arrays(sym, [0]), tta="tencrop", return_probs=True)
    assert tc["probs"][0, 0] == pytest.approx(tc["probs"][0, 1], abs=1e-5)


def test_ensemble_averages_probabilities():
    from wildfer.evaluate import evaluate

    a = classifier(Constant([3.0, 0, 0, 0, 0, 0, 0]), name="a")
    b = classifier(Constant([0, 0, 0, 4.0, 0, 0, 0]), name="b")
    data = arrays(np.zeros((4, 48, 48)), [0, 3, 3, 6])
    r = evaluate([a, b], data, return_probs=True)
    pa = torch.softmax(torch.tensor([3.0, 0, 0, 0, 0, 0, 0]), 0).numpy()
    pb = torch.softmax(torch.tensor([0, 0, 0, 4.0, 0, 0, 0]), 0).numpy()
    assert np.allclose(r["probs"][0], (pa + pb) / 2, atol=1e-6)
    assert r["model"] == "ensemble(a,b)" and r["models"] == ["a", "b"]
    assert r["accuracy"] == 0.5  # predicts happy everywhere


def test_ferplus_model_on_fer2013_labels_and_back():
    from wildfer.evaluate import evaluate

    # an 8-class FER+ model (FER+ order) that is sure of "happy" with a little "contempt"
    logits = [0.0] * 8
    logits[FERPLUS_CLASSES.index("happy")] = 5.0
    logits[FERPLUS_CLASSES.index("contempt")] = 4.0
    plus = classifier(Constant(logits), classes=FERPLUS_CLASSES, name="plus")
    y = [FER2013_CLASSES.index(c) for c in ("happy", "happy", "sad", "angry")]
    r = evaluate(plus, arrays(np.zeros((4, 48, 48)), y), return_probs=True)
    assert r["labels"] == list(FER2013_CLASSES) and len(r["confusion"]) == 7
    assert r["accuracy"] == 0.5
    assert np.allclose(r["probs"].sum(1), 1.0)  # contempt folded away, renormalised
    assert r["probs"][0].argmax() == FER2013_CLASSES.index("happy")
    # a 7-class FER2013 model on 8-class FER+ data: columns follow FER+ order, contempt gets 0
    seven = classifier(Constant([0, 0, 0, 0, 0, 6.0, 0]))  # surprise
    yp = [FERPLUS_CLASSES.index("surprise"), FERPLUS_CLASSES.index("contempt")]
    r2 = evaluate(seven, arrays(np.zeros((2, 48, 48)), yp, classes=FERPLUS_CLASSES), return_probs=True)
    assert r2["labels"] == list(FERPLUS_CLASSES) and len(r2["confusion"]) == 8
    assert r2["accuracy"] == 0.5
    assert np.all(r2["probs"][:, FERPLUS_CLASSES.index("contempt")] == 0)


def test_evaluate_real_faces_matches_independent_count(fer2013, checkpoints):
    from wildfer.evaluate import evaluate
    from wildfer.models.loader import load_model

    test = fer2013.split("PublicTest").subset(np.arange(400))
    r = evaluate(str(checkpoints[0]), test)
    pred = load_model(checkpoints[0]).predict_proba(test.images).argmax(1)
    assert r["n"] == 400 and r["split"] == "PublicTest"
    assert r["accuracy"] == pytest.approx(float(np.mean(pred == test.labels)))
    cm = np.array(r["confusion"])
    assert cm.sum() == 400
    assert cm.sum(1).tolist() == np.bincount(test.labels, minlength=7).tolist()  # rows = true class
    assert cm.sum(0).tolist() == np.bincount(pred, minlength=7).tolist()


# ----------------------------------------------------------------------------- CLI


def test_cli_evaluate_writes_json_and_figures(cli, small_csv, checkpoints, tmp_path):
    out, js = tmp_path / "figs", tmp_path / "r.json"
    code, text = cli(["evaluate", small_csv, "--model", checkpoints[0], "--split", "PublicTest", "--json", js,
                      "--out", out])
    assert code == 0, text
    r = json.loads(js.read_text())
    for key in ("accuracy", "macro_f1", "n", "labels", "confusion", "top2_accuracy", "per_class", "ece", "model",
                "split", "tta"):
        assert key in r, key
    assert r["n"] == 300 and r["split"] == "PublicTest" and r["tta"] is None
    assert r["labels"] == list(FER2013_CLASSES)
    assert sum(map(sum, r["confusion"])) == 300
    assert 0 <= r["ece"] <= 1 and r["top2_accuracy"] >= r["accuracy"]
    for png in ("confusion.png", "reliability.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    assert json.loads((out / "report.json").read_text())["accuracy"] == r["accuracy"]
    assert "macro-F1" in text and "per class" in text and f"{100 * r['accuracy']:.2f}%" in text


def test_cli_evaluate_reads_a_pack_like_the_csv(cli, small_csv, checkpoints, tmp_path):
    """`wildfer data pack` output is evaluated exactly as the CSV it came from."""
    pack = tmp_path / "fer.npz.xz"
    assert cli(["data", "pack", small_csv, pack])[0] == 0
    reports = []
    for src in (small_csv, pack):
        js = tmp_path / f"{src.name}.json"
        code, text = cli(["evaluate", src, "--model", checkpoints[0], "--split", "PublicTest", "--json", js])
        assert code == 0, text
        reports.append(json.loads(js.read_text()))
    a, b = reports
    assert a["n"] == b["n"] == 300 and a["confusion"] == b["confusion"] and a["accuracy"] == b["accuracy"]


def test_cli_ensemble_and_tencrop(cli, small_csv, checkpoints, tmp_path):
    from wildfer.evaluate import evaluate, load_eval_data

    js = tmp_path / "e.json"
    code, text = cli(["evaluate", small_csv, "--ensemble", f"{checkpoints[0]},{checkpoints[1]}", "--tta", "tencrop",
                      "--json", js])
    assert code == 0, text
    r = json.loads(js.read_text())
    assert r["tta"] == "tencrop" and len(r["models"]) == 2 and r["model"].startswith("ensemble(")
    direct = evaluate([str(p) for p in checkpoints], load_eval_data(small_csv), tta="tencrop")
    assert r["accuracy"] == pytest.approx(direct["accuracy"])
    assert r["confusion"] == direct["confusion"]
    # --split all takes the Training rows too
    code, text = cli(["evaluate", small_csv, "--model", checkpoints[0], "--model", checkpoints[1], "--split", "all",
                      "--json", js])
    assert code == 0, text
    assert json.loads(js.read_text())["n"] == 320


@pytest.mark.parametrize("args, message", [
    (["--model", "shallow"], "architecture, not trained weights"),
    (["--model", "no_such.pt"], "no such built-in model"),
    (["--split", "PrivateTest"], "no rows with usage 'PrivateTest'"),
    (["--tta", "rotate"], "--tta must be none, flip or tencrop, not 'rotate'"),
])
def test_cli_user_mistakes_are_one_line(cli, small_csv, checkpoints, args, message):
    full = ["evaluate", small_csv] + (args if "--model" in args else ["--model", checkpoints[0], *args])
    code, text = cli(full)
    assert code == 2
    assert message in text
    assert "Traceback" not in text and len(text.strip().splitlines()) <= 3


def test_cli_missing_and_non_fer_file(cli, tmp_path, checkpoints):
    code, text = cli(["evaluate", tmp_path / "nope.csv", "--model", checkpoints[0]])
    assert code == 2 and "not found" in text and "Traceback" not in text


def test_cli_evaluates_an_image_folder(cli, tmp_path, checkpoints):
    from PIL import Image

    pytest.importorskip("wildfer.data.folders")
    root = tmp_path / "faces"
    rng = np.random.default_rng(0)
    for cls in ("happy", "sad"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (60, 60), dtype=np.uint8)).save(root / cls / f"{i}.png")
    (root / "sad" / "broken.png").write_bytes(b"not an image")
    js = tmp_path / "f.json"
    code, text = cli(["evaluate", root, "--model", checkpoints[0], "--json", js])
    assert code == 0, text
    r = json.loads(js.read_text())
    assert r["n"] == 6  # the broken file is skipped, the six good faces evaluated
    cm = np.array(r["confusion"])
    assert cm[FER2013_CLASSES.index("happy")].sum() == 3 and cm[FER2013_CLASSES.index("sad")].sum() == 3
    assert "skipped 1" in text


def test_cli_ferplus_dataset_keeps_eight_classes(cli, fer2013_csv, ferplus_csv, tmp_path):
    from wildfer.data.ferplus import load_ferplus
    from wildfer.models import create_model
    from wildfer.models.loader import save_checkpoint

    torch.manual_seed(0)
    net = create_model("shallow", num_classes=8, num_filters=2, hidden=16)
    ck = tmp_path / "plus.pt"
    save_checkpoint(ck, net, arch="shallow", model_kwargs={"num_filters": 2, "hidden": 16}, classes=FERPLUS_CLASSES)
    js = tmp_path / "p.json"
    code, text = cli(["evaluate", fer2013_csv, "--model", ck, "--ferplus-labels", ferplus_csv, "--json", js])
    assert code == 0, text
    r = json.loads(js.read_text())
    expected = load_ferplus(fer2013_csv, ferplus_csv).split("PublicTest")
    assert r["labels"] == list(FERPLUS_CLASSES) and len(r["confusion"]) == 8
    assert r["n"] == len(expected)
    assert [sum(row) for row in r["confusion"]] == np.bincount(expected.labels, minlength=8).tolist()
    # the same 8-class model on plain FER2013 labels is folded to 7 classes
    code, text = cli(["evaluate", fer2013_csv, "--model", ck, "--json", js])
    assert code == 0, text
    r7 = json.loads(js.read_text())
    assert r7["labels"] == list(FER2013_CLASSES) and r7["n"] == 3589


def test_cli_default_model_from_any_folder(cli, small_csv, tmp_path, monkeypatch):
    from wildfer.models.loader import builtin_models

    if "default" not in builtin_models():
        pytest.skip("built-in weights src/wildfer/weights/default.onnx not placed yet")
    monkeypatch.chdir(tmp_path)
    js = tmp_path / "d.json"
    code, text = cli(["evaluate", small_csv, "--json", js])  # --model defaults to the built-in "default"
    assert code == 0, text
    r = json.loads(js.read_text())
    assert r["model"] == "default" and r["n"] == 300
    from wildfer.evaluate import load_eval_data
    from wildfer.models.loader import load_model

    faces = load_eval_data(small_csv)
    pred = load_model("default").predict_proba(faces.images).argmax(1)
    assert r["accuracy"] == pytest.approx(float(np.mean(pred == faces.labels)))
    assert r["accuracy"] > 1 / 7  # trained weights (even an early snapshot) beat uniform guessing
    assert math.isfinite(r["ece"])


def test_builtin_ferplus_has_eight_classes_and_folds_to_seven(fer2013):
    from wildfer.labels import FERPLUS_CLASSES
    from wildfer.models.loader import builtin_models, load_model

    if "ferplus" not in builtin_models():
        pytest.skip("built-in weights src/wildfer/weights/ferplus.onnx not in this installation")
    faces = fer2013.split("PublicTest").subset(np.arange(200))
    clf8 = load_model("ferplus")
    assert tuple(clf8.classes) == FERPLUS_CLASSES
    p8 = clf8.predict_proba(faces.images)
    clf7 = load_model("ferplus", classes="fer2013")
    p7 = clf7.predict_proba(faces.images)
    assert p8.shape == (200, 8) and p7.shape == (200, 7)
    np.testing.assert_allclose(p7.sum(1), 1.0, atol=1e-5)
    # folding drops contempt and renormalises: the ratios of the kept classes are unchanged
    keep = [FERPLUS_CLASSES.index(c) for c in FER2013_CLASSES]
    np.testing.assert_allclose(p7, p8[:, keep] / p8[:, keep].sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    # a trained model: on FER2013's own labels it beats guessing by far (88.2% on FER+ labels)
    assert float(np.mean(p7.argmax(1) == faces.labels)) > 0.4


# ----------------------------------------------------------------------------- weights and saved probabilities


def test_weighted_ensemble_is_the_weighted_average():
    from wildfer.evaluate import evaluate
    from wildfer.errors import ModelError

    a = classifier(Constant([3.0, 0, 0, 0, 0, 0, 0]), name="a")
    b = classifier(Constant([0, 0, 0, 4.0, 0, 0, 0]), name="b")
    data = arrays(np.zeros((4, 48, 48)), [0, 3, 3, 6])
    pa = torch.softmax(torch.tensor([3.0, 0, 0, 0, 0, 0, 0]), 0).numpy()
    pb = torch.softmax(torch.tensor([0, 0, 0, 4.0, 0, 0, 0]), 0).numpy()
    r = evaluate([a, b], data, weights=[3, 1], return_probs=True)
    assert np.allclose(r["probs"][0], 0.75 * pa + 0.25 * pb, atol=1e-6)
    assert r["weights"] == [0.75, 0.25]
    assert r["accuracy"] == 0.25  # a's angry wins everywhere now
    assert evaluate([a, b], data, weights=[0, 1])["accuracy"] == 0.5
    for bad in ([1], [1, -1], [0, 0], [1, float("nan")]):
        with pytest.raises(ModelError):
            evaluate([a, b], data, weights=bad)


def test_saved_probabilities_stand_in_for_the_model(tmp_path):
    from wildfer.errors import DataError
    from wildfer.evaluate import evaluate

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (30, 48, 48)).astype(np.uint8)
    data = arrays(faces, rng.integers(0, 2, 30))
    hb = classifier(HalfBrightness(), name="hb")
    const = classifier(Constant([0, 2.0, 0, 0, 0, 0, 0]), name="c")
    ref = evaluate([hb, const], data, weights=[2, 1], return_probs=True)
    p_hb = tmp_path / "hb.npz"
    alone = evaluate(hb, data, save_probs_to=p_hb, return_probs=True)
    assert alone["saved_probs"] == str(p_hb)
    # the file alone reproduces the model's report; mixed with a live model, the weighted ensemble
    again = evaluate(str(p_hb), data, return_probs=True)
    assert np.allclose(again["probs"], alone["probs"], atol=1e-6)
    assert again["accuracy"] == alone["accuracy"] and again["models"] == ["hb"]
    mixed = evaluate([str(p_hb), const], data, weights=[2, 1], return_probs=True)
    assert np.allclose(mixed["probs"], ref["probs"], atol=1e-6)
    assert mixed["confusion"] == ref["confusion"]
    # other faces, or another TTA: refused with the file's name
    other = arrays(faces[::-1].copy(), data.labels)
    with pytest.raises(DataError, match="hb.npz.*other faces"):
        evaluate(str(p_hb), other)
    with pytest.raises(DataError, match="hb.npz.*--tta none.*--tta flip"):
        evaluate(str(p_hb), data, tta="flip")
    bogus = tmp_path / "bogus.npz"
    np.savez(bogus, x=np.zeros(3))
    with pytest.raises(DataError, match="not a saved-probabilities file"):
        evaluate(str(bogus), data)


def test_cli_save_probs_then_weighted_ensemble_of_files(cli, small_csv, checkpoints, tmp_path):
    files = []
    for i, ck in enumerate(checkpoints):
        f = tmp_path / f"m{i}.npz"
        code, text = cli(["evaluate", small_csv, "--model", ck, "--tta", "flip", "--save-probs", f])
        assert code == 0, text
        assert f.exists() and "wrote" in text
        files.append(f)
    js_live, js_files = tmp_path / "live.json", tmp_path / "files.json"
    code, text = cli(["evaluate", small_csv, "--model", checkpoints[0], "--model", checkpoints[1], "--tta", "flip",
                      "--weights", "1,3", "--json", js_live])
    assert code == 0, text
    code, text = cli(["evaluate", small_csv, "--model", files[0], "--model", files[1], "--tta", "flip",
                      "--weights", "1,3", "--json", js_files])
    assert code == 0, text
    live, saved = json.loads(js_live.read_text()), json.loads(js_files.read_text())
    assert live["weights"] == saved["weights"] == [0.25, 0.75]
    assert live["confusion"] == saved["confusion"]
    assert live["accuracy"] == pytest.approx(saved["accuracy"])
    for args, message in ((["--model", files[0]], "--tta flip, but this evaluation uses --tta none"),
                          (["--model", files[0], "--tta", "flip", "--split", "all"], "other faces"),
                          (["--model", files[0], "--model", files[1], "--weights", "1", "--tta", "flip"],
                           "1 ensemble weight(s) for 2 model(s)"),
                          (["--model", files[0], "--weights", "a,b", "--tta", "flip"], "--weights takes numbers"),
                          (["--model", checkpoints[0], "--save-probs", tmp_path / "p.json"], "must end in .npz")):
        code, text = cli(["evaluate", small_csv, *args])
        assert code == 2, (args, text)
        assert message in text and "Traceback" not in text, (args, text)
