"""Video frames are decoded by a thread ahead of the pipeline (wildfer.wild.video.read_frames) and
their faces detected by another (detect_ahead):
the same frames in the same order as a plain read loop, frames not needed only grabbed, and
process_video's results unchanged."""

from __future__ import annotations

import threading

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from wildfer.wild.video import detect_ahead, process_video, read_frames, slideshow  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(2)]
    return slideshow(photos, tmp_path_factory.mktemp("clip") / "c.mp4", fps=10, seconds=1.5, size=(160, 120))


def _plain(path):
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    return out


def _readers() -> int:
    return sum(t.name == "wildfer-video-reader" for t in threading.enumerate())


def test_frames_come_in_order_as_a_plain_loop_reads_them(clip):
    want = _plain(clip)
    assert len(want) == 30
    cap = cv2.VideoCapture(str(clip))
    got = list(read_frames(cap, keep=lambda i: i % 3 == 0))
    cap.release()
    assert [i for i, _ in got] == list(range(len(want)))
    for i, frame in got:
        if i % 3 == 0:
            assert np.array_equal(frame, want[i])
        else:
            assert frame is None
    assert _readers() == 0


def test_max_frames_and_stopping_early_end_the_reader(clip):
    cap = cv2.VideoCapture(str(clip))
    assert [i for i, _ in read_frames(cap, keep=lambda i: True, max_frames=7)] == list(range(7))
    cap.release()
    cap = cv2.VideoCapture(str(clip))
    frames = read_frames(cap, keep=lambda i: True, ahead=2)
    assert next(frames)[0] == 0
    frames.close()  # the reader may be blocked on a full queue: it still ends
    cap.release()
    assert _readers() == 0


def test_a_decoder_error_reaches_the_caller():
    class Broken:
        def read(self):
            raise RuntimeError("decoder failed")

    with pytest.raises(RuntimeError, match="decoder failed"):
        list(read_frames(Broken(), keep=lambda i: True))
    assert _readers() == 0


def test_process_video_reads_what_a_plain_loop_would(wild_dir, tmp_path):
    from wildfer.wild import Recognizer

    photo = wild_dir / "groups" / "deepface_couple.jpg"
    path = slideshow([photo], tmp_path / "two.mp4", fps=10, seconds=1.2, size=(640, 360))
    rec = Recognizer(model="fast")
    res = process_video(rec, path, stride=2)
    frames = _plain(path)
    assert res["frames_total"] == len(frames) and res["frames_processed"] == (len(frames) + 1) // 2
    for fr in res["frames"]:
        want = rec.predict(frames[fr["frame"]], bgr=True)
        assert [f["label"] for f in fr["faces"]] == [f.label for f in want.faces]
        assert np.allclose([f["box"] for f in fr["faces"]], [f.box for f in want.faces], atol=0.051)  # boxes are written to 0.1 px
    assert res["faces_total"] >= 2 * res["frames_processed"] - 2


def _pipeline_threads() -> int:
    return sum(t.name in ("wildfer-video-reader", "wildfer-video-detector") for t in threading.enumerate())


def test_faces_are_detected_ahead_of_the_classifier_in_frame_order(clip):
    seen = []

    class Rec:  # records which thread prepares which frame
        def prepare(self, frame, bgr=False):
            seen.append(threading.current_thread().name)
            return float(frame.mean())

    cap = cv2.VideoCapture(str(clip))
    got = list(detect_ahead(Rec(), read_frames(cap, keep=lambda i: i % 2 == 0), work=lambda i: i % 2 == 0))
    cap.release()
    want = _plain(clip)
    assert [i for i, _, _ in got] == list(range(len(want)))
    for i, frame, work in got:
        assert (work == float(want[i].mean())) if i % 2 == 0 else (frame is None and work is None)
    assert set(seen) == {"wildfer-video-detector"} and len(seen) == (len(want) + 1) // 2
    assert _pipeline_threads() == 0


def test_a_detector_error_and_stopping_early_end_both_threads(clip):
    class Failing:
        def prepare(self, frame, bgr=False):
            raise RuntimeError("detector failed")

    cap = cv2.VideoCapture(str(clip))
    with pytest.raises(RuntimeError, match="detector failed"):
        list(detect_ahead(Failing(), read_frames(cap, keep=lambda i: True), work=lambda i: True))
    cap.release()
    assert _pipeline_threads() == 0

    class Shapes:
        def prepare(self, frame, bgr=False):
            return frame.shape

    cap = cv2.VideoCapture(str(clip))
    items = detect_ahead(Shapes(), read_frames(cap, keep=lambda i: True, ahead=1), work=lambda i: True, ahead=1)
    assert next(items)[0] == 0
    items.close()  # both threads may be blocked on full queues: they still end
    cap.release()
    assert _pipeline_threads() == 0


def test_a_pipeline_dropped_before_its_first_frame_starts_no_thread(clip):
    class Rec:
        def prepare(self, frame, bgr=False):
            raise AssertionError("no frame was asked for")

    cap = cv2.VideoCapture(str(clip))
    items = detect_ahead(Rec(), read_frames(cap, keep=lambda i: True), work=lambda i: True)
    assert _pipeline_threads() == 0
    items.close()
    cap.release()  # safe: no reader thread holds the capture
    assert _pipeline_threads() == 0


def test_a_failing_frame_callback_stops_the_pipeline(wild_dir, tmp_path):
    from wildfer.wild import Recognizer

    photo = wild_dir / "groups" / "deepface_couple.jpg"
    path = slideshow([photo], tmp_path / "two.mp4", fps=10, seconds=1.0, size=(320, 180))

    def on_frame(record, frame):
        if record["frame"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        process_video(Recognizer(model="fast"), path, on_frame=on_frame)
    assert _pipeline_threads() == 0
