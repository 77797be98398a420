"""The ``yuface`` detector: YuNet through libfacedetection's ``facedetect_cnn`` (ctypes) instead of yuface's leaky
wrapper: the same detections, thread safety, flat memory, the OpenMP thread count."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("yuface", reason="the yuface detector needs the 'yuface' package")
cv2 = pytest.importorskip("cv2")

from wildfer.wild.detectors import create_detector  # noqa: E402
from wildfer.wild.detectors import yunet  # noqa: E402

PHOTOS = ["kdef_frontal/AF01HAS.JPG", "kdef_frontal/AM05HAS.JPG", "kdef_frontal/AF01DIS.JPG",
          "groups/deepface_couple.jpg", "groups/dlib_2008_002079.jpg", "groups/ultraface_1.jpg",
          "groups/deepface_selfie-many-people.jpg"]
ROOT = Path(__file__).resolve().parent.parent


def extension_rows(bgr: np.ndarray) -> np.ndarray:
    """What yuface's own C extension answers (its 16th column is uninitialised memory)."""
    yunet._load(1)
    return np.asarray(yunet._DETECT(np.ascontiguousarray(bgr)), dtype=np.int16).reshape(-1, 16)[:, :15]


def bgr_photo(path: Path, max_side: int = 640) -> np.ndarray:
    im = cv2.imread(str(path))
    assert im is not None, path
    s = max_side / max(im.shape[:2])
    return cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else im


def drawn_faces() -> np.ndarray:
    """A drawn picture: two cartoon faces (skin ovals, dark eyes, mouth) on a textured background."""
    rng = np.random.default_rng(0)
    img = rng.integers(60, 120, (300, 420, 3), dtype=np.uint8)
    for cx, cy, r in ((120, 150, 70), (310, 140, 55)):
        cv2.ellipse(img, (cx, cy), (r, int(r * 1.3)), 0, 0, 360, (150, 180, 220), -1)
        for ex in (-0.4, 0.4):
            cv2.circle(img, (int(cx + ex * r), int(cy - 0.25 * r)), max(3, r // 8), (30, 30, 30), -1)
        cv2.ellipse(img, (cx, int(cy + 0.55 * r)), (int(0.4 * r), int(0.15 * r)), 0, 0, 180, (40, 40, 120), 3)
    return img


def test_ctypes_path_is_used():
    assert yunet.uses_ctypes(), "facedetect_cnn was not found in yuface's libfacedetection"


def test_same_rows_as_yuface_on_real_photos(wild_dir):
    total = 0
    for rel in PHOTOS:
        bgr = bgr_photo(wild_dir / rel)
        ours, theirs = yunet.facedetect_rows(bgr), extension_rows(bgr)
        assert ours.dtype == np.int16 and ours.shape[1] == 15
        np.testing.assert_array_equal(ours, theirs, err_msg=rel)
        total += len(ours)
        # the layout: score in 0-100, a positive box, landmarks inside the (padded) box
        for score, x, y, w, h, *lm in ours.tolist():
            assert 0 <= score <= 100 and w > 0 and h > 0
            lm = np.reshape(lm, (5, 2))
            assert (lm[:, 0] > x - w).all() and (lm[:, 0] < x + 2 * w).all()
            assert (lm[:, 1] > y - h).all() and (lm[:, 1] < y + 2 * h).all()
    assert total >= 40  # the group photos hold dozens of faces: the rows are really compared


def test_same_rows_on_drawn_and_odd_images():
    drawn = drawn_faces()
    odd = [drawn, drawn[:, :-1], drawn[::2, ::2], drawn[13:250, 7:333], np.zeros((40, 41, 3), np.uint8),
           np.full((9, 9, 3), 255, np.uint8), np.ascontiguousarray(drawn[:, :, ::-1])]
    for im in odd:  # odd widths, views with a row step other than 3 x width, tiny and blank images
        np.testing.assert_array_equal(yunet.facedetect_rows(im), extension_rows(im))


def test_detector_boxes_landmarks_scores(wild_dir):
    det = create_detector("yuface", max_side=640)
    rgb = cv2.cvtColor(bgr_photo(wild_dir / PHOTOS[0]), cv2.COLOR_BGR2RGB)
    (face,) = det.detect(rgb)
    score, x, y, w, h, *lm = extension_rows(rgb[:, :, ::-1])[0].tolist()
    assert face.box == (x, y, x + w, y + h)
    assert face.score == pytest.approx(score / 100)
    np.testing.assert_array_equal(face.landmarks, np.reshape(lm, (5, 2)))


def test_threads_detect_at_once(wild_dir):
    det = create_detector("yuface", max_side=640)
    photos = [cv2.cvtColor(bgr_photo(wild_dir / p), cv2.COLOR_BGR2RGB) for p in PHOTOS[:5]]
    serial = [[(d.box, d.score) for d in det.detect(p)] for p in photos]
    out: dict = {}

    def go(t):
        out[t] = [[(d.box, d.score) for d in det.detect(p)] for p in photos[t % 5:] + photos[:t % 5]]

    threads = [threading.Thread(target=go, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert sorted(out) == [0, 1, 2, 3], "a detection thread did not finish"
    for t in range(4):
        assert out[t] == serial[t % 5:] + serial[:t % 5]


def _run(code: str, env: dict | None = None) -> str:
    env = {**os.environ, **(env or {})}
    env.pop("OMP_NUM_THREADS", None)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=240,
                       env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip().splitlines()[-1]


def test_memory_stays_flat_over_many_calls():
    """RSS growth over 200 detections. Measured on a 2-core x86_64 Linux machine: the ctypes path 0.0 MB, yuface's
    own wrapper 7.0 MB on this image (35 KB per call), so the bound separates the two."""
    out = _run("""
        import numpy as np, cv2
        from wildfer.wild.detectors import yunet
        def rss():
            return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
        rng = np.random.default_rng(1)
        img = cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (0, 0), 3)
        for _ in range(30):
            yunet.facedetect_rows(img)
        r0 = rss()
        for _ in range(200):
            yunet.facedetect_rows(img)
        print(yunet.uses_ctypes(), round(rss() - r0, 2))
    """)
    used, growth = out.split()
    assert used == "True"
    assert float(growth) < 1.5, f"RSS grew {growth} MB over 200 detections"


def test_openmp_thread_count():
    """threads=1 runs detection on the calling thread; threads=2 starts one OpenMP helper.
    (OMP_NUM_THREADS unset, OpenCV's own pool off, so only OpenMP can add threads.)"""
    code = """
        import os, sys, threading, numpy as np, cv2
        cv2.setNumThreads(0)
        from wildfer.wild.detectors import create_detector
        det = create_detector("yuface", threads={n})
        img = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
        before = len(os.listdir("/proc/self/task"))
        seen = []
        def go():
            det.detect(img)
            seen.append(len(os.listdir("/proc/self/task")) - 1)  # minus this thread
        t = threading.Thread(target=go); t.start(); t.join()
        print(seen[0] - before)
    """
    assert int(_run(code.replace("{n}", "1"))) == 0
    assert int(_run(code.replace("{n}", "2"))) == 1
