"""Videos: per-frame results, faces linked into tracks, labels smoothed along each track.

Every ``stride``-th frame goes through the :class:`~wildfer.wild.Recognizer`. A simple IoU
tracker links each face to the track whose last box overlaps it most (IoU >= 0.3, one face
per track, greedy, best overlaps first); a track not seen for ``max_age`` processed frames
ends. Along a track the probabilities are averaged over the last ``window`` processed
frames, which removes the frame-to-frame flicker of a per-frame classifier.

Three stages overlap on their own threads: one thread decodes the frames ahead
(:func:`read_frames`), another detects and aligns the faces of the frames to process
(:func:`detect_ahead`), and the caller's thread classifies them, tracks and writes, in frame order.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..errors import ImageError
from .detectors import box_iou

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


def is_video_file(p) -> bool:
    return Path(p).suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class _Track:
    id: int
    box: tuple[float, float, float, float]
    last_seen: int
    probs: deque = field(default_factory=deque)
    first: int = 0
    n: int = 0
    labels: Counter = field(default_factory=Counter)  # smoothed label -> processed frames


class IoUTracker:
    """Link faces across frames by box overlap and smooth their probabilities.

    Parameters
    ----------
    iou_threshold:
        Least IoU between a face and a track's last box to continue the track.
    max_age:
        Processed frames a track may go unseen before it ends.
    window:
        Processed frames whose probabilities are averaged for the smoothed label.
    """

    def __init__(self, labels, *, iou_threshold: float = 0.3, max_age: int = 5, window: int = 5):
        self.labels = tuple(labels)
        self.iou_threshold = float(iou_threshold)
        self.max_age = int(max_age)
        self.window = max(1, int(window))
        self.tracks: dict[int, _Track] = {}
        self.finished: list[_Track] = []
        self._next = 0
        self._step = 0

    def update(self, faces) -> list[dict[str, float]]:
        """Assign ``face.track`` for each face of the next processed frame; returns each face's
        smoothed probabilities (same order as ``faces``)."""
        self._step += 1
        pairs = []
        for i, f in enumerate(faces):
            for tid, tr in self.tracks.items():
                v = box_iou(f.box, tr.box)
                if v >= self.iou_threshold:
                    pairs.append((v, i, tid))
        assigned: dict[int, int] = {}
        taken: set[int] = set()
        for v, i, tid in sorted(pairs, reverse=True):
            if i not in assigned and tid not in taken:
                assigned[i] = tid
                taken.add(tid)
        smoothed = []
        for i, f in enumerate(faces):
            tid = assigned.get(i)
            if tid is None:
                tid = self._next
                self._next += 1
                self.tracks[tid] = _Track(tid, f.box, self._step, deque(maxlen=self.window), first=self._step)
            tr = self.tracks[tid]
            tr.box, tr.last_seen = f.box, self._step
            tr.probs.append(np.array([f.probs[c] for c in self.labels], dtype=np.float64))
            tr.n += 1
            f.track = tid
            p = np.mean(tr.probs, axis=0)
            sp = {c: float(v) for c, v in zip(self.labels, p)}
            tr.labels[self.labels[int(np.argmax(p))]] += 1
            smoothed.append(sp)
        for tid in [t for t, tr in self.tracks.items() if self._step - tr.last_seen > self.max_age]:
            self.finished.append(self.tracks.pop(tid))
        return smoothed

    def summary(self) -> list[dict[str, Any]]:
        """Every track: its id, how many processed frames it spans and its most common smoothed label."""
        out = []
        for tr in sorted(self.finished + list(self.tracks.values()), key=lambda t: t.id):
            top = max(tr.labels.values(), default=0)  # the most common; a tie goes to the first name in order
            out.append({"track": tr.id, "n_frames": tr.n,
                        "label": min(k for k, v in tr.labels.items() if v == top) if top else None})
        return out


def run_ahead(source: Iterable, *, ahead: int = 4, name: str = "wildfer-ahead") -> Iterator:
    """The items of ``source``, in order, produced by a thread at most ``ahead`` items in front
    of the caller, so that making the next items overlaps the work on this one (OpenCV and
    onnxruntime release the GIL). An error raised by ``source`` reaches the caller. Closing the
    generator stops the thread, and the thread closes ``source`` before it ends. Nothing starts
    before the first item is asked for, so a generator dropped unstarted leaves no thread."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in source:
                q.put(item)
                if stop.is_set():
                    break
        except BaseException as e:  # noqa: BLE001 - handed to the reading side
            q.put(e)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
            q.put(end)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # let a producer blocked on a full queue finish
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()


def read_frames(cap, *, keep: Callable[[int], bool], max_frames: int | None = None, ahead: int = 4) -> Iterator:
    """``(index, frame)`` for each frame of an open ``cv2.VideoCapture``, in order, read by a
    thread at most ``ahead`` frames in front of the caller (:func:`run_ahead`). A frame that
    ``keep(index)`` says is not needed is grabbed, not converted to BGR pixels, and comes as
    ``None``. Closing the generator stops the thread; the caller releases the capture after that."""

    def frames() -> Iterator:
        i = 0
        while max_frames is None or i < max_frames:
            if keep(i):
                ok, frame = cap.read()
            else:
                ok, frame = cap.grab(), None
            if not ok:
                return
            yield i, frame
            i += 1

    return run_ahead(frames(), ahead=ahead, name="wildfer-video-reader")


def detect_ahead(rec, frames: Iterator, *, work: Callable[[int], bool], ahead: int = 2) -> Iterator:
    """``(index, frame, prepared)`` for each ``(index, frame)`` of ``frames``: the frames for
    which ``work(index)`` holds are detected and aligned (``rec.prepare``) by a thread ahead of
    the caller, which classifies them (``rec.classify_prepared``), so detection of the next
    frame overlaps classification of this one; other frames come with ``None``. Closing the
    generator stops the thread and closes ``frames``."""

    def prepared() -> Iterator:
        try:
            for idx, frame in frames:
                yield idx, frame, rec.prepare(frame, bgr=True) if work(idx) else None
        finally:
            frames.close()

    return run_ahead(prepared(), ahead=ahead, name="wildfer-video-detector")


def process_video(rec, path, *, stride: int = 1, max_frames: int | None = None, annotate_to: str | Path | None = None,
                  window: int = 5, progress: Callable[[int, int], None] | None = None,
                  on_frame: Callable[[dict[str, Any], np.ndarray], None] | None = None,
                  keep_frames: bool = True) -> dict[str, Any]:
    """Run ``rec`` over every ``stride``-th frame of a video file.

    Returns a JSON-able dict: ``path``, ``type`` ("video"), ``fps``, ``width``, ``height``,
    ``frames_total``, ``frames_processed``, ``faces_total`` (face detections in them), ``stride``, ``frames`` (per processed frame:
    ``frame``, ``time_s``, ``faces`` with ``track``, ``smoothed_label`` and
    ``smoothed_probabilities``) and ``tracks``. With ``annotate_to`` an annotated copy of the
    video (mp4) is written there, every frame showing the latest smoothed labels.
    ``on_frame(frame_record, frame_bgr)`` is called for each processed frame (a timeline
    streams them to disk: :class:`wildfer.wild.timeline.TimelineWriter`); with
    ``keep_frames=False`` the record's ``frames`` stays empty, so memory stays flat however long
    the video.
    """
    import cv2

    from .annotate import annotate

    stride = max(1, int(stride))
    if not Path(path).is_file():  # a FIFO or device would block the decoder for ever
        raise ImageError(path, "not found" if not Path(path).exists() else "not a regular file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ImageError(path, "cannot open video (unsupported codec or not a video)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    tracker = IoUTracker(rec.labels, window=window)
    frames: list[dict[str, Any]] = []
    writer = None
    shown = None
    n_frames = n_processed = n_faces = 0
    width = height = 0
    every = annotate_to is not None  # an annotated copy shows every frame
    decoded = read_frames(cap, keep=lambda i: every or i % stride == 0, max_frames=max_frames)
    prepared = detect_ahead(rec, decoded, work=lambda i: i % stride == 0)
    try:
        for idx, frame, work in prepared:
            if frame is not None:
                height, width = frame.shape[:2]
            if work is not None:
                res = rec.classify_prepared([work])[0]
                smoothed = tracker.update(res.faces)
                faces = []
                for f, sp in zip(res.faces, smoothed):
                    d = f.to_dict()
                    d["smoothed_label"] = max(sp, key=sp.get)
                    d["smoothed_probabilities"] = {k: round(v, 5) for k, v in sp.items()}
                    faces.append(d)
                fr = {"frame": idx, "time_s": round(idx / fps, 3), "faces": faces}
                if keep_frames:
                    frames.append(fr)
                n_processed += 1
                n_faces += len(faces)
                if on_frame is not None:
                    on_frame(fr, frame)
                shown = replace(res, faces=[replace(f, probs=sp, label=max(sp, key=sp.get)) for f, sp in zip(res.faces, smoothed)])
            if annotate_to is not None:
                if writer is None:
                    Path(annotate_to).parent.mkdir(parents=True, exist_ok=True)
                    writer = cv2.VideoWriter(str(annotate_to), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                if shown is not None and shown.faces:
                    drawn = np.asarray(annotate(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), shown))
                    writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
                else:
                    writer.write(frame)
            n_frames = idx + 1
            if progress:
                progress(n_frames, total)
    finally:
        prepared.close()  # its thread and the reader's end before the capture is released
        cap.release()
        if writer is not None:
            writer.release()
    if n_frames == 0:
        raise ImageError(path, "video has no readable frames")
    return {
        "path": str(path), "type": "video", "fps": fps, "width": width, "height": height,
        "frames_total": n_frames, "frames_processed": n_processed, "faces_total": n_faces, "stride": stride,
        "frames": frames, "tracks": tracker.summary(),
    }


def slideshow(images, out: str | Path, *, fps: float = 10.0, seconds: float = 2.0, size: tuple[int, int] = (640, 480),
              zoom: float = 0.06) -> Path:
    """Write a clip that shows each of ``images`` (paths or RGB arrays) for ``seconds``,
    letterboxed into ``size`` (width, height) with a slow zoom of ``zoom`` (so faces move as
    in a real video): a test clip made from real photos. ``out`` ending in ``.y4m`` is
    uncompressed YUV4MPEG2 (what Chromium's fake camera plays), anything else mp4. Written
    whole; returns ``out``."""
    import cv2

    from ..data.images import read_image
    from ..paths import written_whole

    w, h = int(size[0]), int(size[1])
    n = max(1, int(round(seconds * fps)))
    y4m = str(out).lower().endswith(".y4m")
    if y4m and (w % 2 or h % 2):
        raise ImageError(out, f"a y4m clip needs an even width and height, not {w}x{h}")
    with written_whole(out) as tmp:
        if y4m:
            fh = open(tmp, "wb")
            fh.write(f"YUV4MPEG2 W{w} H{h} F{int(round(fps))}:1 Ip A1:1 C420jpeg\n".encode())
            write = lambda bgr: fh.write(b"FRAME\n" + cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())  # noqa: E731
        else:
            fh = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
            write = fh.write
        try:
            for im in images:
                bgr = cv2.cvtColor(read_image(im), cv2.COLOR_RGB2BGR)
                base = min(w / bgr.shape[1], h / bgr.shape[0])
                for k in range(n):
                    s = base * (1.0 + zoom * k / max(1, n - 1))
                    m = np.array([[s, 0, (w - s * bgr.shape[1]) / 2], [0, s, (h - s * bgr.shape[0]) / 2]], np.float32)
                    write(cv2.warpAffine(bgr, m, (w, h), flags=cv2.INTER_LINEAR))
        finally:
            fh.close() if y4m else fh.release()
    return Path(out)
