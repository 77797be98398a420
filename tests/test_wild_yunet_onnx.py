"""The default ``yunet`` detector: libfacedetection's YuNet as the ONNX graph that ships with
wildfer, on onnxruntime. It must find what the library finds, from the library's own weights."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from wildfer.wild.detectors import create_detector
from wildfer.wild.detectors import yunet_onnx

cv2 = pytest.importorskip("cv2")

PHOTOS = ["kdef_frontal/AF01HAS.JPG", "kdef_frontal/AM05HAS.JPG", "groups/deepface_couple.jpg",
          "groups/dlib_2008_002079.jpg", "groups/ultraface_1.jpg", "groups/ultraface_20.jpg",
          "groups/deepface_selfie-many-people.jpg"]


def rgb_photo(path, max_side: int = 640) -> np.ndarray:
    im = cv2.imread(str(path))
    assert im is not None, path
    s = max_side / max(im.shape[:2])
    im = cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else im
    return np.ascontiguousarray(im[:, :, ::-1])


def test_default_detector_is_the_shipped_graph():
    det = create_detector("yunet")
    assert isinstance(det, yunet_onnx.YuNetOnnxDetector) and det.name == "yunet" and det.has_landmarks
    assert yunet_onnx.MODEL_FILE.stat().st_size > 100_000
    assert yunet_onnx.MODEL_FILE.with_suffix(".LICENSE").read_text().count("BSD") >= 1


def test_shipped_graph_is_the_librarys_network():
    """A fresh export from the installed libfacedetection computes what the shipped file does."""
    pytest.importorskip("yuface", reason="exporting reads the weights from the 'yuface' package")
    torch = pytest.importorskip("torch")
    from wildfer.wild.detectors import yunet_graph

    module = yunet_graph.build_module(yunet_graph.library_layers())
    x = np.random.default_rng(0).integers(0, 256, (1, 96, 160, 3), dtype=np.uint8)
    with torch.no_grad():
        fresh = [t.numpy() for t in module(torch.from_numpy(x))]
    shipped = yunet_onnx.session(1).run(None, {"rgb": x})
    assert [a.shape for a in fresh] == [(1, 16, 12, 20), (1, 16, 6, 10), (1, 16, 3, 5)]
    for a, b in zip(fresh, shipped):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_same_faces_as_the_library_on_real_photos(wild_dir):
    """Every face the C build finds, at the same place and with the same score. The library
    truncates x, y, w and h to integers (so right = x + w is off by less than 2 px) and the
    score to hundredths."""
    pytest.importorskip("yuface", reason="the reference is the 'yuface' package")
    lib, ort = create_detector("yuface", max_side=640), create_detector("yunet", max_side=640)
    total = 0
    for rel in PHOTOS:
        rgb = rgb_photo(wild_dir / rel)
        a, b = lib.detect(rgb), ort.detect(rgb)
        assert len(a) == len(b), rel
        for d in a:
            e = min(b, key=lambda e: np.abs(np.subtract(e.box, d.box)).sum())
            assert np.abs(np.subtract(e.box, d.box)).max() < 2.0, (rel, d.box, e.box)
            assert np.abs(e.landmarks - d.landmarks).max() < 1.0, rel
            assert abs(e.score - d.score) <= 0.011, rel
        total += len(a)
    assert total >= 30


def test_faces_in_odd_sizes_grey_and_tiny_photos(wild_dir):
    det = create_detector("yunet", max_side=640)
    rgb = rgb_photo(wild_dir / "kdef_frontal/AF01HAS.JPG")[:377, :281]  # not multiples of 32
    (face,) = det.detect(rgb)
    l, t, r, b = face.box
    assert 40 < l < r < 240 and 80 < t < b < 330 and face.score > 0.9 and face.landmarks.shape == (5, 2)
    right_eye, left_eye = face.landmarks[0], face.landmarks[1]
    assert right_eye[0] < left_eye[0]  # the subject's right eye is on the left of the photo
    (grey,) = det.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    assert np.abs(np.subtract(grey.box, face.box)).max() < 15
    assert det.detect(np.zeros((6, 6, 3), np.uint8)) == []
    assert det.detect(np.full((64, 64, 3), 128, np.uint8)) == []


def test_threads_detect_at_once(wild_dir):
    det = create_detector("yunet", max_side=640)
    rgb = rgb_photo(wild_dir / "groups/ultraface_20.jpg")
    want = [d.box for d in det.detect(rgb)]
    got, errors = [], []

    def work():
        try:
            for _ in range(5):
                got.append([d.box for d in det.detect(rgb)])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 15 and all(g == want for g in got) and len(want) >= 10


def test_nms_keeps_the_best_of_overlapping_boxes():
    from wildfer.wild.detectors import nms_indices

    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=float)
    scores = np.array([0.6, 0.9, 0.7, 0.5])
    assert nms_indices(scores, boxes, yunet_onnx.NMS_IOU) == [1, 2]
    assert nms_indices(scores, boxes, 0.99) == [1, 2, 0, 3]
    assert nms_indices(scores, boxes, yunet_onnx.NMS_IOU, keep_k=1) == [1]
    assert nms_indices(scores, boxes, 0.99, top_k=2) == [1, 2]


def test_decode_places_an_anchor_in_photo_pixels():
    maps = [np.full((1, 16, h, w), -20.0, np.float32) for h, w in ((4, 4), (2, 2), (1, 1))]
    m = maps[0][0]
    m[0:2, 2, 1] = 20.0  # class and objectness at row 2, column 1 of stride 8
    m[2:4, 2, 1] = 0.5  # centre half a stride right and down of the cell's corner
    m[4:6, 2, 1] = np.log(2.0)  # 16 x 16 px
    m[6:16, 2, 1] = 0.0
    scores, boxes, marks = yunet_onnx.decode(maps, 0.5)
    assert len(scores) == 1 and scores[0] > 0.99
    np.testing.assert_allclose(boxes[0], [12 - 8, 20 - 8, 12 + 8, 20 + 8])
    np.testing.assert_allclose(marks[0], np.tile([8.0, 16.0], (5, 1)))
