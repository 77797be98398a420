"""``Recognizer``: any photo in, every face out with its expression.

>>> from wildfer.wild import Recognizer
>>> rec = Recognizer(detector="yunet")                              # doctest: +SKIP  (model "wild_ensemble")
>>> res = rec.predict("party.jpg")                                  # doctest: +SKIP
>>> [(f.label, round(f.probs[f.label], 2)) for f in res.faces]      # doctest: +SKIP
[('happy', 0.93), ('neutral', 0.71)]

The pipeline is detect -> align -> classify: the detector finds faces and 5 landmarks on a
downscaled copy of the photo, each face is rotated upright and cropped with FER2013's
framing to 48 x 48 grayscale (:mod:`wildfer.wild.align`), and the classifier labels all the
crops of one or many photos in one batch.

Modes:

* ``"detect"`` (default): the pipeline above.
* ``"search"``: as ``detect``, and when the detector finds nothing, the search fallback
  (:mod:`wildfer.wild.search`) looks again with padded, upscaled, rotated windows; faces it
  finds carry the flag ``"search"``.
* ``"whole"``: the study's path, for comparison: the whole photo squeezed to grayscale
  48 x 48 and classified as one "face" covering the photo (flag ``"whole"``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ModelError, WildferError
from .align import (AlignConfig, align_face, align_for, crop_scale, face_pixels, face_transform, whole_crop,
                    whole_transform)
from .detectors import Detection, Detector, clip_detection, create_detector

MODES = ("detect", "search", "whole")


# ----------------------------------------------------------------------------- results


def top_labels(probabilities: dict[str, float], k: int = 2) -> list[tuple[str, float]]:
    """The ``k`` likeliest ``(label, probability)`` pairs, most likely first; equal
    probabilities keep the classes' order, so the first is the predicted label."""
    return sorted(probabilities.items(), key=lambda kv: -kv[1])[:k]


@dataclass
class FaceResult:
    """One face: where it is, how sure the detector is, and its expression.

    ``box`` is (left, top, right, bottom) and ``landmarks`` 5 x 2 ``[x, y]`` (right eye, left
    eye, nose, right and left mouth corner) in pixels of the original photo (after EXIF
    orientation). ``flags`` lists caveats: ``"small"`` (face narrower than the alignment's
    ``min_face``), ``"low_score"`` (detection score below the recognizer's ``low_score``),
    ``"search"`` (found by the search fallback), ``"whole"`` (whole-photo mode), ``"unsure"``
    (its top probability is below the recognizer's ``unsure_below``: a face to leave unanswered
    when only sure answers are wanted).
    ``crop`` is the face the classifier saw (48 x 48 grey for FER2013's nets, 3 x side x side
    for a classifier of colour faces) and ``transform`` the photo -> crop matrix.
    """

    box: tuple[float, float, float, float]
    landmarks: list[list[float]] | None
    score: float
    probs: dict[str, float]
    label: str
    flags: list[str] = field(default_factory=list)
    crop: np.ndarray | None = field(default=None, repr=False)
    transform: np.ndarray | None = field(default=None, repr=False)
    saliency: np.ndarray | None = field(default=None, repr=False)
    track: int | None = None

    @property
    def confidence(self) -> float:
        """Probability of the predicted label."""
        return float(self.probs.get(self.label, 0.0))

    def to_dict(self) -> dict[str, Any]:
        """The face as JSON; ``top2`` lists the two likeliest labels with their probabilities."""
        d: dict[str, Any] = {
            "box": [round(float(v), 1) for v in self.box],
            "landmarks": None if self.landmarks is None else [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "score": round(float(self.score), 4),
            "label": self.label,
            "probabilities": {k: round(float(v), 5) for k, v in self.probs.items()},
            "top2": [{"label": k, "probability": round(float(v), 5)} for k, v in top_labels(self.probs, 2)],
            "flags": list(self.flags),
        }
        if self.track is not None:
            d["track"] = self.track
        return d


@dataclass
class ImageResult:
    """Every face of one photo. ``width``/``height`` are the photo's (after EXIF orientation).

    ``truncated``: the file ended early and decoded with filler where its data stops (a JPEG
    cut short shows flat grey there), so faces there cannot be found; see
    :mod:`wildfer.data.images`.
    """

    width: int
    height: int
    mode: str
    faces: list[FaceResult]
    timings: dict[str, float] = field(default_factory=dict)
    path: str | None = None
    truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.path is not None:
            d["path"] = self.path
        d.update({
            "width": int(self.width),
            "height": int(self.height),
            "mode": self.mode,
            "faces": [f.to_dict() for f in self.faces],
            "truncated": bool(self.truncated),
            "timings_ms": {k: round(float(v), 2) for k, v in self.timings.items()},
        })
        return d


@dataclass
class VideoResult:
    """A video's results (:meth:`Recognizer.predict_video`): ``record`` is the JSON-able dict of
    :func:`~wildfer.wild.video.process_video`; with a timeline, the folder and its summary."""

    record: dict[str, Any]
    timeline_dir: Path | None = None
    timeline_summary: dict[str, Any] | None = None

    @property
    def tracks(self) -> list[dict[str, Any]]:
        """Every track: id, processed frames, most common smoothed label."""
        return self.record["tracks"]

    def timeline(self) -> list[dict[str, Any]]:
        """One row per face per processed frame: ``time_s, frame, track, box, label,
        probabilities`` (smoothed along the track)."""
        from .timeline import iter_timeline_rows

        return list(iter_timeline_rows(self.record))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.record)


@dataclass
class PreparedPhoto:
    """A photo after detection and alignment, waiting for the classifier."""

    width: int
    height: int
    dets: list[Detection]
    crops: list[np.ndarray]
    mats: list[np.ndarray]
    timings: dict[str, float]
    rgb: np.ndarray | None = None
    path: str | None = None
    truncated: bool = False
    #: per face, its crop in each of the classifier's face views (the first is ``crops``'s);
    #: ``None`` when the classifier reads one view
    views: list[tuple[np.ndarray, ...]] | None = None
    #: per face, the photo -> crop matrix of each view (the first is ``mats``'s); ``None`` with ``views``
    view_mats: list[tuple[np.ndarray, ...]] | None = None

    def face_input(self, k: int):
        """What the classifier reads of face ``k``: its crop, or its crops in every view."""
        return self.crops[k] if self.views is None else self.views[k]


def stack_faces(inputs: list) -> np.ndarray | list[np.ndarray]:
    """Faces from :meth:`PreparedPhoto.face_input` as one batch: an array, or one per view."""
    if inputs and isinstance(inputs[0], tuple):
        return [np.stack([f[v] for f in inputs]) for v in range(len(inputs[0]))]
    return np.stack(inputs)


# ----------------------------------------------------------------------------- recognizer


def checked_unsure_below(value, name: str = "unsure_below") -> float:
    """``value`` as a probability threshold in [0, 1], else a one-line :class:`WildferError`
    naming it ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise WildferError(f"{name} {value!r}: must be a probability from 0 to 1")
    return float(value)


class Recognizer:
    """Detect, align and classify every face of a photo.

    Parameters
    ----------
    model:
        A built-in model name, a checkpoint / weights path, or a loaded
        :class:`~wildfer.models.loader.Classifier`. Loaded once. ``None``: the pipeline's
        built-in, ``"wild_ensemble"`` (:data:`~wildfer.models.PIPELINE_MODEL`: ``wild`` and the
        RAF-DB MobileFaceNet ``wild_mfn``, each on its own crop of the face), trained on web
        faces; ``"default"`` is the FER2013 model.
    detector:
        ``"yunet"`` (default), ``"yuface"``, ``"haar"``, ``"centerface"``, or a
        :class:`~wildfer.wild.detectors.Detector`.
    mode:
        ``"detect"``, ``"search"`` (detect, then the search fallback on photos where nothing
        was found) or ``"whole"`` (the study's whole-photo path); see the module docstring.
    max_side:
        Photos are downscaled to this longer side for detection (boxes are mapped back).
    score_threshold:
        Detector confidence below which detections are dropped (``None``: the detector's default).
    low_score:
        Faces kept with a detection score below this are flagged ``"low_score"``.
    unsure_below:
        Faces whose likeliest label has a probability below this (0 to 1; default 0, none) are
        flagged ``"unsure"``; their label stays the likeliest. ``wild_ensemble`` is calibrated on
        web faces, so its probabilities can be read as such: at 0.47 about half of ExpW's web
        faces are flagged, and 64% of the others are right (docs/wild.md, risk-coverage).
    align:
        The crop framing (:class:`~wildfer.wild.align.AlignConfig`); defaults measured on FER2013.
    max_faces:
        Keep at most this many faces per photo (the highest-scoring); ``None``: all.
    tta:
        Average the classifier over the crop and its mirror image.
    device:
        Where the classifier runs: ``"auto"`` (a CUDA GPU when there is one), ``"cpu"``,
        ``"cuda"`` or ``"cuda:N"`` (:func:`~wildfer.models.loader.resolve_device`). ``None``:
        a given classifier stays where it is, a named model loads on the CPU. Detection and
        alignment run on the CPU.
    backend:
        How the classifier computes (:meth:`~wildfer.models.loader.Classifier.with_backend`):
        ``"torch"``, ``"onnx"`` or ``"int8"``. ``None`` or ``"auto"``: a given classifier keeps
        its own, a named model runs on its default (:func:`~wildfer.models.loader.default_backend`:
        built-ins on their float graphs, or the int8 ones their metadata names; checkpoints on torch).
    threads:
        onnxruntime's intra-op threads for a named model's graphs (``None``: its default).
    full_decode:
        Decode every photo whole. By default a JPEG file at least twice ``max_side`` across is
        decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's scaled decoding: a 12-megapixel photo
        in a fifth of the time), the most reduced that stays twice ``max_side``, then again less
        reduced where a face would get fewer than :data:`MIN_SOURCE_PIXELS` decoded pixels per
        crop pixel; boxes, landmarks and crop matrices are in the photo's full-size pixels
        either way. A photo kept to paint on (``prepare(keep_rgb=True)``) is decoded whole.
    """

    def __init__(self, model: Any = None, detector: str | Detector = "yunet", mode: str = "detect", *,
                 max_side: int | None = 640, score_threshold: float | None = None, low_score: float = 0.7,
                 unsure_below: float = 0.0,
                 align: AlignConfig | None = None, max_faces: int | None = None, tta: bool = False,
                 device: str | None = None, backend: str | None = None, threads: int | None = None,
                 full_decode: bool = False):
        from ..models.loader import PIPELINE_MODEL, Classifier, load_model, switch_backend

        model = PIPELINE_MODEL if model is None else model
        backend = None if backend == "auto" else backend
        if mode not in MODES:
            raise ModelError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        self.mode = mode
        placed = {} if device is None else {"device": device}
        if isinstance(model, Classifier):
            self.classifier: Classifier = model if device is None else model.to(device)
            if backend is not None and backend != model.backend:
                self.classifier = switch_backend(self.classifier, backend, **placed)
        else:
            self.classifier = load_model(model, **placed, **({} if backend is None else {"backend": backend}),
                                         threads=threads)
        if isinstance(detector, Detector):
            self.detector = detector
        else:
            kw: dict[str, Any] = {"max_side": max_side}
            if score_threshold is not None:
                kw["score_threshold"] = score_threshold
            self.detector = create_detector(detector, **kw)
        self.low_score = float(low_score)
        self.unsure_below = checked_unsure_below(unsure_below)
        # one framing per way the classifier cuts faces (an ensemble may mix several); the
        # first is the one shown, explained and reported
        self.aligns = [align_for(v, align) for v in self.classifier.face_views]
        self.colours = [not v.get("grayscale", True) for v in self.classifier.face_views]
        self.align = self.aligns[0]
        self.max_faces = max_faces
        self.tta = bool(tta)
        self.full_decode = bool(full_decode)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.classifier.labels)

    def __repr__(self) -> str:
        return (f"Recognizer(model={self.classifier.name or self.classifier.arch!r}, detector={self.detector.name!r}, "
                f"mode={self.mode!r})")

    # -- public API
    def predict(self, image, bgr: bool = False) -> ImageResult:
        """Faces in one photo: a path, bytes, PIL image or numpy array (RGB, or BGR with ``bgr=True``)."""
        return self.predict_batch([image], bgr=bgr)[0]

    def predict_batch(self, images: Sequence, bgr: bool = False) -> list[ImageResult]:
        """Faces in many photos; the classifier runs once over all their faces."""
        works = [self.prepare(im, bgr=bgr) for im in images]
        return self.classify_prepared(works)

    def predict_video(self, path, *, stride: int = 1, timeline=None, max_frames: int | None = None,
                      min_track_frames: int = 3, min_track_seconds: float = 0.5, keep_frames: bool = True,
                      progress=None) -> VideoResult:
        """Faces in every ``stride``-th frame of a video file, linked into tracks and smoothed
        along them (:func:`wildfer.wild.video.process_video`). With ``timeline`` (a folder), each
        track's CSV and plot, the scene plot and ``summary.html`` are written there as the video
        plays (:mod:`wildfer.wild.timeline`); tracks shorter than ``min_track_frames``
        processed frames or ``min_track_seconds`` are dropped from it. ``keep_frames=False``
        keeps no per-frame results in memory (for long videos, with a timeline)."""
        from .timeline import TimelineWriter
        from .video import process_video

        if timeline is None:
            return VideoResult(process_video(self, path, stride=stride, max_frames=max_frames, progress=progress,
                                             keep_frames=keep_frames))
        with TimelineWriter(timeline, self.labels, video=str(path), min_frames=min_track_frames,
                            min_seconds=min_track_seconds) as tl:
            record = process_video(self, path, stride=stride, max_frames=max_frames, progress=progress,
                                   keep_frames=keep_frames, on_frame=tl.add)
        return VideoResult(record, timeline_dir=Path(timeline), timeline_summary=tl.summary)

    # -- the two steps of predict_batch, for callers that classify many photos' faces at once
    def prepare(self, image, bgr: bool = False, keep_rgb: bool = False, name: str | None = None) -> PreparedPhoto:
        """Decode, detect and align one photo, without classifying it (:meth:`classify_prepared`
        does); ``keep_rgb`` keeps the decoded photo on the result, to paint on (decoded whole)."""
        import os

        from ..data.images import is_truncated, read_image_scaled

        t0 = time.perf_counter()
        path = name or (str(image) if isinstance(image, (str, os.PathLike)) else None)
        whole = self.full_decode or keep_rgb or not self.detector.max_side
        rgb, scale, (w, h) = read_image_scaled(image, bgr=bgr, min_side=0 if whole else 2 * self.detector.max_side)
        truncated = is_truncated(rgb)
        rgb = np.asarray(rgb)
        t1 = time.perf_counter()
        redecode = 0.0  # seconds spent decoding the photo again, less reduced
        if self.mode == "whole":
            dets = [Detection((0.0, 0.0, float(w), float(h)), 1.0, None, ["whole"])]
            t2 = time.perf_counter()
            cut = [[(whole_crop(face_pixels(rgb, colour), a.size)[0], whole_transform(w, h, a.size))
                    for a, colour in zip(self.aligns, self.colours)]]
        else:
            dets = self.detector.detect(rgb)
            if not dets and self.mode == "search":
                from .search import search_faces

                if scale > 1:  # the search looks for faces too small for the detector: in the whole photo
                    t = time.perf_counter()
                    rgb, scale, _ = read_image_scaled(image, bgr=bgr, scale=1)
                    rgb = np.asarray(rgb)
                    redecode += time.perf_counter() - t
                    dets = self.detector.detect(rgb)
                dets = dets or search_faces(rgb, self.detector)
            if self.max_faces is not None:
                dets = sorted(dets, key=lambda d: -d.score)[: self.max_faces]
            dets = reading_order(dets)
            if dets and scale > 1:
                finer = self._scale_for(dets, scale)
                if finer < scale:  # a face too small to cut from this copy: decode it less reduced
                    t = time.perf_counter()
                    rgb, new, _ = read_image_scaled(image, bgr=bgr, scale=finer)
                    rgb = np.asarray(rgb)
                    redecode += time.perf_counter() - t
                    dets = [clip_detection(d.scaled(scale / new), rgb.shape[1], rgb.shape[0]) for d in dets]
                    scale = new
            t2 = time.perf_counter()
            cut = []
            if dets:
                pixels = {c: face_pixels(rgb, c) for c in set(self.colours)}
                for d in dets:
                    faces = [align_face(pixels[c], d, a, self.detector.name) for a, c in zip(self.aligns, self.colours)]
                    cut.append([(crop, _in_photo(m, scale)) for crop, m in faces])
            if scale > 1:  # boxes and landmarks in the photo's own pixels
                dets = [clip_detection(d.scaled(scale), w, h) for d in dets]
            for d in dets:
                if d.width < self.align.min_face and "small" not in d.flags:
                    d.flags.append("small")
                if d.score < self.low_score and "low_score" not in d.flags:
                    d.flags.append("low_score")
        crops, mats = [c[0][0] for c in cut], [c[0][1] for c in cut]
        views = [tuple(v[0] for v in c) for c in cut] if len(self.aligns) > 1 else None
        view_mats = [tuple(v[1] for v in c) for c in cut] if len(self.aligns) > 1 else None
        t3 = time.perf_counter()
        timings = {"decode": (t1 - t0 + redecode) * 1e3, "detect": (t2 - t1 - redecode) * 1e3, "align": (t3 - t2) * 1e3}
        return PreparedPhoto(w, h, dets, crops, mats, timings, rgb if keep_rgb else None, path, truncated, views,
                             view_mats)

    def _scale_for(self, dets: list[Detection], scale: int) -> int:
        """The largest reduction (``scale`` or less, a power of two) at which every face of
        ``dets`` (in the pixels of a copy at 1/``scale``) gets at least :data:`MIN_SOURCE_PIXELS`
        photo pixels per crop pixel in every crop the classifier reads."""
        least = min(crop_scale(face_transform(d, a, self.detector.name)) for d in dets for a in self.aligns) * scale
        while scale > 1 and least / scale < MIN_SOURCE_PIXELS:
            scale //= 2
        return scale

    def classify_prepared(self, works: list[PreparedPhoto]) -> list[ImageResult]:
        """Run the classifier once over the crops of all ``works`` (from :meth:`prepare`) and
        build one result per photo."""
        crops = [wk.face_input(k) for wk in works for k in range(len(wk.crops))]
        t0 = time.perf_counter()
        probs = (self.classifier.predict_proba(stack_faces(crops), tta=self.tta) if crops
                 else np.zeros((0, len(self.labels))))
        per_face_ms = (time.perf_counter() - t0) * 1e3 / max(len(crops), 1)
        labels = self.labels
        out, i = [], 0
        for wk in works:
            faces = []
            for d, crop, m in zip(wk.dets, wk.crops, wk.mats):
                p = probs[i]
                i += 1
                faces.append(FaceResult(
                    box=tuple(float(v) for v in d.box),
                    landmarks=None if d.landmarks is None else [[float(x), float(y)] for x, y in d.landmarks],
                    score=float(d.score),
                    probs={c: float(v) for c, v in zip(labels, p)},
                    label=labels[int(np.argmax(p))],
                    flags=list(d.flags) + (["unsure"] if float(p.max()) < self.unsure_below else []),
                    crop=crop,
                    transform=m,
                ))
            t = dict(wk.timings)
            t["classify"] = per_face_ms * len(wk.crops)
            t["total"] = t["decode"] + t["detect"] + t["align"] + t["classify"]
            out.append(ImageResult(wk.width, wk.height, self.mode, faces, t, wk.path, wk.truncated))
        return out


#: The fewest pixels of a reduced decode per crop pixel a face is cut from (:class:`Recognizer`'s
#: ``full_decode``); a face that would get fewer is cut from a less reduced decode. The decoder's
#: reduction already averages the photo's pixels, so 1.5 loses next to nothing: on KDEF portraits
#: pasted into 12-megapixel photos, 99% of faces or more keep their label and the probabilities
#: move by 0.006 or less (median) against the whole decode (``benchmarks/decode_reduced.py``).
MIN_SOURCE_PIXELS = 1.5


def _in_photo(m: np.ndarray, scale: int) -> np.ndarray:
    """A crop matrix from the pixels of a copy decoded at 1/``scale`` as one from the photo's."""
    if scale == 1:
        return m
    out = np.array(m, dtype=np.float64)
    out[:, :2] /= scale
    return out


def reading_order(dets: list[Detection]) -> list[Detection]:
    """Sort faces as text is read: rows from top to bottom, each row left to right.

    A face joins the current row when its vertical centre lies within half the row's first
    face's height of that face's centre.
    """
    rows: list[list[Detection]] = []
    for d in sorted(dets, key=lambda d: (d.box[1] + d.box[3]) / 2):
        cy = (d.box[1] + d.box[3]) / 2
        if rows:
            ref = rows[-1][0]
            if abs(cy - (ref.box[1] + ref.box[3]) / 2) <= 0.5 * ref.height:
                rows[-1].append(d)
                continue
        rows.append([d])
    return [d for row in rows for d in sorted(row, key=lambda d: d.box[0])]


__all__ = ["Recognizer", "FaceResult", "ImageResult", "MODES", "reading_order"]
