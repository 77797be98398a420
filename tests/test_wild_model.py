"""The wild pipeline with the built-in default model: the study's failure (the whole photo as
the face) and its fix (detect, align, crop), measured on KDEF and LFW subsets."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def default_clf():
    from wildfer.models.loader import builtin_models, load_model

    if "default" not in builtin_models():
        pytest.skip("built-in default model not installed (src/wildfer/weights/default.onnx missing)")
    return load_model("default")


@pytest.mark.parametrize("manifest,limit,min_gain", [("kdef_frontal.csv", 70, 0.1), ("lfw.csv", 60, 0.25)])
def test_detect_beats_whole(default_clf, wild_dir, manifest, limit, min_gain):
    """Margins measured with the default recipe after 4 of 9 epochs (PublicTest 0.49): KDEF's
    first 70 faces 0.44 detect vs 0.30 whole, LFW's first 60 0.62 vs 0.13."""
    from wildfer.wild import Recognizer
    from wildfer.wild.evaluate import evaluate_wild

    detect = evaluate_wild(wild_dir / manifest, Recognizer(model=default_clf), limit=limit)
    whole = evaluate_wild(wild_dir / manifest, Recognizer(model=default_clf, mode="whole"), limit=limit)
    assert detect["n"] == whole["n"] == limit
    assert detect["detection_recall"] >= 0.98
    assert detect["accuracy"] >= whole["accuracy"] + min_gain, (detect["accuracy"], whole["accuracy"])
    assert detect["macro_f1"] > whole["macro_f1"]


def test_happy_kdef_faces_are_happy(default_clf, wild_dir):
    """KDEF's posed smiles are the easiest expression: nearly all must come out happy."""
    import csv

    from wildfer.wild import Recognizer

    with open(wild_dir / "kdef_frontal.csv") as fh:
        happy = [wild_dir / r["path"] for r in csv.DictReader(fh) if r["label"] == "happy"][:12]
    res = Recognizer(model=default_clf).predict_batch(happy)
    labels = [r.faces[0].label for r in res if r.faces]
    assert len(labels) == 12
    assert labels.count("happy") >= 10, labels


@pytest.fixture(scope="module")
def wild_clf():
    from wildfer.models.loader import builtin_models, load_model

    if "wild" not in builtin_models():
        pytest.skip("built-in wild model not installed (src/wildfer/weights/wild.onnx missing)")
    return load_model("wild")


def test_pipeline_uses_the_wild_ensemble(wild_clf):
    """The pipeline's model averages `wild` (48-pixel grey, FER2013's framing) and `wild_mfn`
    (112-pixel colour on the five-point template): each face is cut both ways."""
    from wildfer.models.loader import PIPELINE_MODEL, builtin_models
    from wildfer.wild import Recognizer

    if "wild_ensemble" not in builtin_models():
        pytest.skip("built-in wild_ensemble not installed (src/wildfer/weights/wild_mfn.onnx missing)")
    assert PIPELINE_MODEL == "wild_ensemble"
    rec = Recognizer()
    assert rec.classifier.name == "wild_ensemble"
    assert [(v["size"], v["grayscale"], v.get("align", "fer2013")) for v in rec.classifier.face_views] == [
        (48, True, "fer2013"), (112, False, "template")]
    assert tuple(rec.labels) == tuple(wild_clf.labels) == (
        "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_wild_model_reads_web_faces_better_than_default(wild_clf, default_clf, wild_dir):
    """ExpW val, first 240 faces: measured 0.35 for default, 0.47 for wild (the full val split:
    docs/wild.md). A 6-point margin is well beyond the noise of 240 faces of the same photos."""
    from wildfer.wild import Recognizer
    from wildfer.wild.evaluate import evaluate_wild

    man = wild_dir / "expw.csv"
    w = evaluate_wild(man, Recognizer(model=wild_clf), split="val", limit=240)
    d = evaluate_wild(man, Recognizer(model=default_clf), split="val", limit=240)
    assert w["n"] == d["n"] == 240 and w["detection_recall"] >= 0.98
    assert w["accuracy"] >= d["accuracy"] + 0.06, (w["accuracy"], d["accuracy"])
    assert w["macro_f1"] > d["macro_f1"]
    # how far its probabilities can be trusted: the surer half of the faces is read better than
    # all of them, and answering every face found is accuracy_found
    cal = w["calibration"]
    assert cal["n"] == w["n_found"]
    half, most, every = cal["risk_coverage"]
    assert (half["coverage"], most["coverage"], every["coverage"]) == (0.5, 0.8, 1.0)
    assert half["accuracy"] > most["accuracy"] > every["accuracy"] and half["threshold"] > most["threshold"]
    assert every["accuracy"] == pytest.approx(w["accuracy_found"], abs=1e-4) and 0 < cal["ece"] < 0.25


def test_cli_predict_groups_with_the_wild_model(cli, wild_dir, tmp_path):
    from wildfer.models.loader import builtin_models

    if "wild" not in builtin_models():
        pytest.skip("built-in wild model not installed")
    photos = sorted((wild_dir / "groups").glob("dlib_*.jpg"))[:3]
    code, text = cli(["predict", *photos, "--json", tmp_path / "r.json"])
    assert code == 0, text
    import json

    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["model"] == "wild_ensemble" and rep["summary"]["faces"] >= 3
    face = next(f for im in rep["images"] for f in im["faces"])
    assert [t["label"] for t in face["top2"]][0] == face["label"]
    assert face["top2"][0]["probability"] >= face["top2"][1]["probability"]
