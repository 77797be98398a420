"""The wild pipeline end to end on real photos (../shared/data/wild) with a small untrained
classifier: detection, alignment, result format, image formats, robustness, CLI, evaluation,
video. Accuracy with the trained default model is in test_wild_model.py."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from wildfer.errors import ImageError
from wildfer.wild.detectors import box_iou

KDEF_FACE = "kdef_frontal/AF01HAS.JPG"
CROWD = "groups/ultraface_1.jpg"  # 53 faces, most of them small


@pytest.fixture(scope="session")
def clf():
    import torch

    from wildfer.models import create_model
    from wildfer.models.loader import Classifier

    torch.manual_seed(0)
    return Classifier(create_model("shallow", num_filters=8, hidden=32), name="tiny-random", arch="shallow")


@pytest.fixture(scope="session")
def rec(clf):
    from wildfer.wild import Recognizer

    return Recognizer(model=clf, detector="yunet")


@pytest.fixture(scope="session")
def kdef(wild_dir):
    return wild_dir / KDEF_FACE


@pytest.fixture(scope="session")
def kdef_ref(rec, kdef):
    return rec.predict(kdef)


@pytest.fixture(scope="session")
def ckpt(clf, tmp_path_factory):
    from wildfer.models.loader import save_checkpoint

    p = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(p, clf.net, arch="shallow", model_kwargs={"num_filters": 8, "hidden": 32}, classes=clf.classes)
    return p


# ----------------------------------------------------------------------------- one photo


def test_predict_one_face_contract(kdef_ref, clf):
    res = kdef_ref
    assert (res.width, res.height) == (281, 381)
    assert len(res.faces) == 1
    f = res.faces[0]
    l, t, r, b = f.box
    # KDEF portraits: the face is in the upper middle of the frame
    assert 40 < l < r < 240 and 80 < t < b < 340 and r - l > 100
    assert len(f.landmarks) == 5
    (rex, rey), (lex, ley) = f.landmarks[0], f.landmarks[1]
    assert rex < lex and abs(rey - ley) < 15  # subject's right eye on the image's left, level eyes
    assert l < rex < r and t < rey < b
    assert 0.5 <= f.score <= 1.0
    assert set(f.probs) == set(clf.labels) and sum(f.probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert f.label == max(f.probs, key=f.probs.get)
    assert f.flags == []
    assert f.crop.shape == (48, 48) and f.crop.dtype == np.uint8
    d = json.loads(json.dumps(res.to_dict()))
    assert set(d) >= {"width", "height", "mode", "faces", "timings_ms"}
    assert set(d["faces"][0]) == {"box", "landmarks", "score", "label", "probabilities", "top2", "flags"}
    probs = d["faces"][0]["probabilities"]
    first, second = d["faces"][0]["top2"]
    assert first == {"label": f.label, "probability": probs[f.label]}
    runner_up = max((c for c in probs if c != f.label), key=probs.get)
    assert second == {"label": runner_up, "probability": probs[runner_up]}
    assert first["probability"] >= second["probability"] > 0
    assert set(d["timings_ms"]) == {"decode", "detect", "align", "classify", "total"}
    assert d["mode"] == "detect"


def test_top2_in_the_face_dict_and_csv_rows():
    from wildfer.batch.records import CSV_COLUMNS, record_rows
    from wildfer.wild.recognizer import FaceResult

    probs = {"angry": 0.1, "happy": 0.123456789, "sad": 0.7, "fear": 0.123456789, "neutral": 0.0}
    f = FaceResult(box=(1, 2, 3, 4), landmarks=None, score=0.9, probs=probs, label="sad")
    d = f.to_dict()
    # equal probabilities keep the classes' order; rounded as in "probabilities"
    assert d["top2"] == [{"label": "sad", "probability": 0.7}, {"label": "happy", "probability": 0.12346}]
    assert list(d) == ["box", "landmarks", "score", "label", "probabilities", "top2", "flags"]
    labels = list(probs)
    (row,) = record_rows({"path": "p.jpg", "faces": [d]}, labels)
    assert dict(zip(CSV_COLUMNS, row)) == {"path": "p.jpg", "frame": "", "face": 0, "track": "", "left": 1.0, "top": 2.0,
                                           "right": 3.0, "bottom": 4.0, "score": 0.9, "label": "sad", "confidence": 0.7,
                                           "label2": "happy", "probability2": 0.12346}
    assert row[len(CSV_COLUMNS):] == [0.1, 0.12346, 0.7, 0.12346, 0.0, "", 0]
    # a record without top2 (written before it existed) gets the same columns from its probabilities
    old = {k: v for k, v in d.items() if k != "top2"}
    assert record_rows({"path": "p.jpg", "faces": [old]}, labels) == [row]
    one = FaceResult(box=(1, 2, 3, 4), landmarks=None, score=0.9, probs={"happy": 1.0}, label="happy").to_dict()
    assert one["top2"] == [{"label": "happy", "probability": 1.0}]
    assert record_rows({"path": "p.jpg", "faces": [one]}, ["happy"])[0][11:13] == ["", ""]


def test_crop_matches_classifier_input(kdef_ref, clf):
    f = kdef_ref.faces[0]
    assert np.allclose(clf.predict_proba(f.crop[None])[0], [f.probs[c] for c in clf.labels], atol=1e-6)


def test_inputs_path_bytes_pil_array_bgr_agree(rec, kdef, kdef_ref):
    ref = kdef_ref.faces[0]
    rgb = np.asarray(Image.open(kdef).convert("RGB"))
    for src, kw in [(kdef.read_bytes(), {}), (Image.open(kdef), {}), (rgb, {}), (np.ascontiguousarray(rgb[:, :, ::-1]), {"bgr": True})]:
        f = rec.predict(src, **kw).faces[0]
        assert f.box == pytest.approx(ref.box)
        assert f.probs == pytest.approx(ref.probs, abs=1e-5)
    # BGR given as RGB swaps red and blue: the detector still finds the face, the crop differs
    assert len(rec.predict(np.ascontiguousarray(rgb[:, :, ::-1])).faces) == 1


def test_predict_batch_equals_predict(rec, kdef, wild_dir, kdef_ref):
    other = wild_dir / "groups" / "dlib_2008_001009.jpg"
    batch = rec.predict_batch([kdef, other])
    single = rec.predict(other)
    assert len(batch) == 2
    assert [f.box for f in batch[0].faces] == [f.box for f in kdef_ref.faces]
    assert len(batch[1].faces) == len(single.faces) == 2
    for a, b in zip(batch[1].faces, single.faces):
        assert a.probs == pytest.approx(b.probs, abs=1e-5)


def test_whole_mode_is_one_face_covering_the_photo(clf, kdef):
    from wildfer.wild import Recognizer

    res = Recognizer(model=clf, mode="whole").predict(kdef)
    assert len(res.faces) == 1 and res.mode == "whole"
    f = res.faces[0]
    assert f.box == (0.0, 0.0, 281.0, 381.0) and f.flags == ["whole"] and f.landmarks is None
    assert res.timings["detect"] >= 0


def test_explain_puts_maps_back_on_the_face(rec, kdef, kdef_ref):
    pytest.importorskip("wildfer.explain.methods")
    from wildfer import explain_photo

    ex = explain_photo(rec, kdef, method="gradcam")
    assert ex.heatmap.shape == (381, 281) and ex.heatmap.dtype == np.float32
    assert 0.0 <= ex.heatmap.min() and 0.9 < ex.heatmap.max() <= 1.0
    # nothing outside the face's crop square (the crop is about 1.3x the box)
    l, t, r, b = kdef_ref.faces[0].box
    cx, cy, half = (l + r) / 2, (t + b) / 2, (r - l) * 0.9
    mask = np.ones_like(ex.heatmap, bool)
    mask[int(max(cy - half, 0)):int(cy + half), int(max(cx - half, 0)):int(cx + half)] = False
    assert ex.heatmap[mask].max() == 0.0
    assert ex.faces[0].saliency.shape == (48, 48)
    ov = ex.overlay()
    assert ov.size == (281, 381) and ov.mode == "RGB"
    d = json.loads(json.dumps(ex.to_dict()))
    assert d["method"] == "gradcam" and len(d["faces"][0]["saliency"]) == 48


# ----------------------------------------------------------------------------- robustness


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_image_modes_find_the_same_face(rec, kdef, kdef_ref):
    base = Image.open(kdef).convert("RGB")
    ref = kdef_ref.faces[0].box
    gray16 = Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257))
    variants = {
        "L": _save(base.convert("L"), "PNG"),
        "RGBA": _save(base.convert("RGBA"), "PNG"),
        "P": _save(base.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG"),
        "CMYK": _save(base.convert("CMYK"), "JPEG", quality=95),
        "I;16": _save(gray16, "PNG"),
    }
    for mode, data in variants.items():
        res = rec.predict(data)
        assert (res.width, res.height) == (281, 381), mode
        assert len(res.faces) == 1, mode
        assert box_iou(res.faces[0].box, ref) > 0.8, mode


def test_exif_orientation_is_applied(rec, kdef, kdef_ref):
    # store the portrait rotated on its side and tag it "rotate 90 CW to view" (orientation 6)
    base = Image.open(kdef).convert("RGB")
    stored = base.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    res = rec.predict(_save(stored, "JPEG", quality=95, exif=exif))
    assert (res.width, res.height) == (281, 381)
    assert len(res.faces) == 1
    assert box_iou(res.faces[0].box, kdef_ref.faces[0].box) > 0.8


def test_decompression_bomb_is_refused(rec, tmp_path):
    # a valid PNG header announcing 100000 x 100000 pixels (10 GP) and no real data
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")
    p = tmp_path / "bomb.png"
    p.write_bytes(png)
    with pytest.raises(ImageError, match="too large"):
        rec.predict(p)


def test_tiny_blank_and_noise_photos_have_no_faces(rec, clf):
    from wildfer.wild import Recognizer

    assert rec.predict(np.zeros((5, 5, 3), np.uint8)).faces == []
    assert rec.predict(np.full((480, 640), 128, np.uint8)).faces == []
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    search = Recognizer(model=clf, detector=rec.detector, mode="search")
    assert search.predict(noise).faces == []
    assert search.predict(np.zeros((5, 5, 3), np.uint8)).faces == []


def test_search_fallback_finds_tight_low_res_faces(clf, fer2013):
    """Raw 48x48 FER2013 faces fill the whole frame: the detector misses some; the search's
    padded, upscaled windows find them and flag them."""
    from wildfer.wild import Recognizer

    det = Recognizer(model=clf, detector="yunet")
    search = Recognizer(model=clf, detector=det.detector, mode="search")
    faces = fer2013.split("PublicTest").images[:40]
    missed = [g for g in faces if not det.predict(g).faces]
    assert 1 <= len(missed) <= 12  # the detector alone misses a few of these crops
    recovered = [search.predict(g).faces for g in missed]
    assert sum(bool(r) for r in recovered) >= 0.6 * len(missed)
    for r in recovered:
        for f in r:
            assert "search" in f.flags
            l, t, rr, b = f.box
            assert 0 <= l < rr <= 48 and 0 <= t < b <= 48 and (rr - l) > 20  # the face, not a fragment


def test_faces_below_the_unsure_threshold_are_flagged_and_keep_their_label(clf, rec, wild_dir):
    """``unsure_below``: a face whose likeliest label is less probable than it is flagged
    ``"unsure"`` (in its JSON too); nothing else about it changes. Out of [0, 1] is one line."""
    from wildfer.errors import WildferError
    from wildfer.wild import Recognizer

    plain = rec.predict(wild_dir / CROWD)
    tops = sorted(max(f.probs.values()) for f in plain.faces)
    cut = tops[len(tops) // 2]  # about half the faces are less sure than this
    unsure = Recognizer(model=clf, detector=rec.detector, unsure_below=cut).predict(wild_dir / CROWD)
    assert len(unsure.faces) == len(plain.faces)
    for a, b in zip(plain.faces, unsure.faces):
        assert (a.box, a.label, a.probs) == (b.box, b.label, b.probs) and "unsure" not in a.flags
        assert ("unsure" in b.flags) == (max(b.probs.values()) < cut)
        assert b.to_dict()["flags"] == b.flags and [x for x in b.flags if x != "unsure"] == a.flags
    assert 0 < sum("unsure" in f.flags for f in unsure.faces) < len(unsure.faces)
    for bad in (-0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(WildferError, match="unsure_below .*: must be a probability from 0 to 1"):
            Recognizer(model=clf, detector=rec.detector, unsure_below=bad)


def test_crowd_photo_has_30_plus_faces_in_reading_order(rec, wild_dir):
    res = rec.predict(wild_dir / CROWD)
    n = len(res.faces)
    assert n >= 30
    small = [f for f in res.faces if "small" in f.flags]
    assert small and all(f.box[2] - f.box[0] < 24 for f in small)
    assert all(f.box[2] - f.box[0] >= 24 for f in res.faces if "small" not in f.flags)
    assert all("low_score" in f.flags for f in res.faces if f.score < 0.7)
    for f in res.faces:
        l, t, r, b = f.box
        assert 0 <= l < r <= res.width and 0 <= t < b <= res.height
    # reading order: the vertical centre never jumps back up by more than a face height
    cys = [(f.box[1] + f.box[3]) / 2 for f in res.faces]
    hs = [f.box[3] - f.box[1] for f in res.faces]
    assert all(cys[i + 1] >= cys[i] - hs[i] for i in range(n - 1))


def test_dlib_group_boxes_are_found(rec, wild_dir):
    from wildfer.wild.evaluate import evaluate_wild

    r = evaluate_wild(wild_dir / "groups.csv", rec)
    assert r["n"] == 43 and r["accuracy"] is None  # 9 dlib photos, 43 hand-drawn boxes
    assert r["detection_recall"] >= 0.85


# ----------------------------------------------------------------------------- evaluation


def test_evaluate_wild_metrics(rec, clf, wild_dir, tmp_path):
    from wildfer.wild import Recognizer
    from wildfer.wild.evaluate import evaluate_wild

    man = tmp_path / "m.csv"
    with open(wild_dir / "kdef_frontal.csv") as fh:
        rows = list(csv.DictReader(fh))[:7]
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (120, 120, 120)).save(blank)
    with open(man, "w") as fh:
        fh.write("path,label\n")
        for r in rows:
            fh.write(f"{wild_dir / r['path']},{r['label']}\n")
        fh.write("blank.png,happy\nmissing.png,sad\n")
    r = evaluate_wild(man, rec)
    # the missing photo's row is listed and left out, as every data loader does; the blank
    # photo is read, and its face is missed
    assert r["n"] == 8 and r["n_found"] == 7 and r["n_search"] == 0
    assert r["backend"] == rec.classifier.backend_label
    assert r["detection_recall"] == pytest.approx(7 / 8)
    assert [u["path"] for u in r["unreadable"]] == [str(tmp_path / "missing.png")]
    assert 0 <= r["accuracy"] <= r["accuracy_found"] * 7 / 8 + 1e-9
    cm = np.array(r["confusion"])
    assert cm.shape == (len(r["labels"]), len(r["labels"]) + 1) and cm.sum() == 8
    assert r["confusion_columns"][-1] == "missed" and cm[:, -1].sum() == 1
    assert r["accuracy"] == pytest.approx(np.trace(cm[:, :-1]) / 8)
    whole = evaluate_wild(man, Recognizer(model=clf, mode="whole"))
    assert whole["mode"] == "whole" and whole["n_found"] == 8  # every readable photo is its own "face"


# ----------------------------------------------------------------------------- CLI


def test_cli_predict_folder_with_bad_files(cli, ckpt, wild_dir, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "a.jpg").write_bytes((wild_dir / KDEF_FACE).read_bytes())
    (src / "sub" / "b.jpg").write_bytes((wild_dir / "groups" / "dlib_2008_001009.jpg").read_bytes())
    (src / "broken.jpg").write_bytes(b"not an image at all")
    (src / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    code, text = cli(["predict", src, tmp_path / "nope.png", "--model", ckpt, "--out", out, "--annotate",
                      "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv"])
    assert code == 0, text
    assert "2 unreadable" in text and "broken.jpg" in text and "nope.png" in text
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [len(r["faces"]) for r in rep["images"]] == [1, 2]
    assert rep["summary"] == {"images": 2, "videos": 0, "faces": 3, "video_faces": 0, "unreadable": 2, "truncated": 0}
    assert rep["complete"] is True and not (tmp_path / "r.json.jsonl").exists()
    assert (out / "a.annotated.jpg").exists() and (out / "sub" / "b.annotated.jpg").exists()
    ann = Image.open(out / "a.annotated.jpg")
    assert ann.size == (281, 381)
    with open(tmp_path / "r.csv") as fh:
        header = next(csv.reader(fh))
        fh.seek(0)
        rows = list(csv.DictReader(fh))
    assert header == ["path", "frame", "face", "track", "left", "top", "right", "bottom", "score", "label", "confidence",
                      "label2", "probability2", *rep["labels"], "flags", "truncated"]
    assert len(rows) == 3 and float(rows[0]["confidence"]) > 0
    faces = [f for r in rep["images"] for f in r["faces"]]
    for row, f in zip(rows, faces):
        (first, second), probs = f["top2"], f["probabilities"]
        assert (row["label"], float(row["confidence"])) == (first["label"], first["probability"])
        assert (row["label2"], float(row["probability2"])) == (second["label"], second["probability"])
        assert row["label2"] != row["label"] and float(row["probability2"]) == float(row[second["label"]])
        assert second["probability"] == max(v for c, v in probs.items() if c != f["label"])


def test_cli_predict_nothing_processed_exits_nonzero(cli, ckpt, tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8 truncated")
    code, text = cli(["predict", tmp_path / "x.jpg", "--model", ckpt])
    assert code == 1 and "nothing could be processed" in text and "Traceback" not in text
    code, text = cli(["predict", tmp_path / "x.jpg", "--model", tmp_path / "missing.pt"])
    assert code == 2 and "missing.pt" in text and "Traceback" not in text


def test_cli_predict_video_tracks(cli, ckpt, wild_dir, tmp_path):
    import cv2

    face = cv2.imread(str(wild_dir / KDEF_FACE))
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (480, 400))
    for k in range(8):  # the portrait drifts right by 8 px per frame
        frame = np.full((400, 480, 3), 90, np.uint8)
        frame[10:391, 20 + 8 * k:301 + 8 * k] = face
        w.write(frame)
    w.release()
    code, text = cli(["predict", video, "--model", ckpt, "--video-stride", "2", "--json", tmp_path / "v.json",
                      "--out", tmp_path / "o", "--annotate"])
    assert code == 0, text
    v = json.loads((tmp_path / "v.json").read_text())["videos"][0]
    assert v["frames_total"] == 8 and v["frames_processed"] == 4 and v["stride"] == 2
    assert [fr["frame"] for fr in v["frames"]] == [0, 2, 4, 6]
    assert all(len(fr["faces"]) == 1 and fr["faces"][0]["track"] == 0 for fr in v["frames"])
    assert v["tracks"][0]["n_frames"] == 4
    assert set(v["frames"][-1]["faces"][0]["smoothed_probabilities"]) == set(v["frames"][0]["faces"][0]["probabilities"])
    assert all([t["label"] for t in fr["faces"][0]["top2"]][0] == fr["faces"][0]["label"] for fr in v["frames"])
    cap = cv2.VideoCapture(str(tmp_path / "o" / "clip.annotated.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    cap.release()


def test_cli_evaluate_wild_json(cli, ckpt, wild_dir, tmp_path):
    man = tmp_path / "m.csv"
    with open(wild_dir / "lfw.csv") as fh:
        rows = list(csv.DictReader(fh))[:5]
    man.write_text("path,label\n" + "".join(f"{wild_dir / r['path']},{r['label']}\n" for r in rows))
    code, text = cli(["evaluate-wild", man, "--model", ckpt, "--json", tmp_path / "r.json"])
    assert code == 0, text
    r = json.loads((tmp_path / "r.json").read_text())
    for k in ("detection_recall", "accuracy", "accuracy_found", "macro_f1", "n", "n_found", "labels", "confusion", "n_search"):
        assert k in r
    assert r["n"] == 5 and r["detection_recall"] == 1.0 and r["full_decode"] is False
    assert {"date", "cpu", "cores", "python", "torch", "gpu"} <= set(r["machine"]), r["machine"]
    code, text = cli(["evaluate-wild", man, "--model", ckpt, "--json", tmp_path / "w.json", "--full-decode"])
    assert code == 0, text
    whole = json.loads((tmp_path / "w.json").read_text())
    assert whole["full_decode"] is True and whole["accuracy"] == r["accuracy"]  # LFW photos are small: decoded whole
    code, text = cli(["evaluate-wild", tmp_path / "nope.csv", "--model", ckpt])
    assert code == 2 and "manifest not found" in text


def test_cli_evaluate_wild_folds_an_8_class_model(cli, wild_dir, tmp_path):
    """--classes fer2013: a FER+ (8-class) model is scored on 7-class labels with contempt folded away."""
    import torch

    from wildfer.labels import FERPLUS_CLASSES
    from wildfer.models.loader import save_checkpoint
    from wildfer.models.registry import create_model

    torch.manual_seed(0)
    net = create_model("shallow", num_classes=8, num_filters=4, hidden=8)
    with torch.no_grad():  # always "contempt": every face is wrong unless contempt is folded away
        net.fc2.weight.zero_()
        net.fc2.bias.copy_(torch.tensor([0, 0, 0, 0, 0, 0, 0, 9.0]))
        net.fc2.bias[1] = 5.0  # then happy
    ck = tmp_path / "ferplus8.pt"
    save_checkpoint(ck, net, arch="shallow", model_kwargs={"num_filters": 4, "hidden": 8}, classes=FERPLUS_CLASSES)
    man = tmp_path / "m.csv"
    with open(wild_dir / "lfw.csv") as fh:  # two photos, both labelled happy here
        paths = [r["path"] for r in list(csv.DictReader(fh))[:2]]
    man.write_text("path,label\n" + "".join(f"{wild_dir / p},happy\n" for p in paths))
    code, text = cli(["evaluate-wild", man, "--model", ck, "--json", tmp_path / "a.json"])
    assert code == 0, text
    assert json.loads((tmp_path / "a.json").read_text())["accuracy"] == 0.0  # all "contempt"
    code, text = cli(["evaluate-wild", man, "--model", ck, "--classes", "fer2013", "--json", tmp_path / "b.json"])
    assert code == 0, text
    r = json.loads((tmp_path / "b.json").read_text())
    assert r["accuracy"] == 1.0 and "contempt" not in r["labels"]
    code, text = cli(["evaluate-wild", man, "--model", ck, "--classes", "fer+"])
    assert code == 2 and "classes='fer+'" in text and "Traceback" not in text


def test_cli_evaluate_wild_split_and_predictions(cli, ckpt, wild_dir, tmp_path):
    man = tmp_path / "m.csv"
    with open(wild_dir / "kdef_frontal.csv") as fh:
        rows = list(csv.DictReader(fh))[:6]
    man.write_text("path,label,split\n" + "".join(
        f"{wild_dir / r['path']},{r['label']},{'val' if i % 3 == 0 else 'train'}\n" for i, r in enumerate(rows))
        + "blank.png,sad,val\nmissing.png,sad,val\n")
    Image.new("RGB", (200, 200), (120, 120, 120)).save(tmp_path / "blank.png")
    code, text = cli(["evaluate-wild", man, "--model", ckpt, "--split", "val", "--json", tmp_path / "r.json",
                      "--save-predictions", tmp_path / "faces.csv"])
    assert code == 0, text
    r = json.loads((tmp_path / "r.json").read_text())
    # the unreadable photo's row is listed and left out; the blank photo's face is missed
    assert r["split"] == "val" and r["n"] == 3 and r["n_found"] == 2
    assert [u["path"] for u in r["unreadable"]] == [str(tmp_path / "missing.png")]
    with open(tmp_path / "faces.csv") as fh:
        faces = list(csv.DictReader(fh))
    assert [f["label"] for f in faces] == [rows[0]["label"], rows[3]["label"], "sad"]
    assert [f["found"] for f in faces] == ["1", "1", "0"] and faces[2]["prediction"] == "missed"
    probs = [float(faces[0][f"p_{c}"]) for c in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")]
    assert sum(probs) == pytest.approx(1.0, abs=1e-3) and faces[0]["prediction"] != "missed"
    assert faces[2]["p_happy"] == ""
    # read back as arrays (what the benchmarks that combine saved predictions use)
    from wildfer.errors import WildferError
    from wildfer.wild.evaluate import read_predictions

    classes = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    y, found, p = read_predictions(tmp_path / "faces.csv", classes)
    assert list(y) == [classes.index(rows[0]["label"]), classes.index(rows[3]["label"]), classes.index("sad")]
    assert list(found) == [True, True, False] and p.shape == (3, 7)
    assert np.allclose(p[0], probs) and np.allclose(p[2], 1 / 7)
    assert list(read_predictions(tmp_path / "faces.csv", ("happy", "sad"))[0]) == [
        ("happy", "sad").index(f["label"]) if f["label"] in ("happy", "sad") else -1 for f in faces]
    with pytest.raises(WildferError, match="columns missing: p_contempt"):
        read_predictions(tmp_path / "faces.csv", classes + ("contempt",))
    code, text = cli(["evaluate-wild", man, "--model", ckpt, "--split", "private"])
    assert code == 2 and "no 'private' rows" in text and "Traceback" not in text
    code, text = cli(["evaluate-wild", man, "--model", ckpt, "--save-predictions", tmp_path])
    assert code == 2 and "is a folder" in text
