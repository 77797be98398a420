"""Saliency maps on whole photos: the wild pipeline finds, aligns and classifies every face
(:class:`~wildfer.wild.Recognizer`), a saliency method of :mod:`wildfer.explain` explains each
face's predicted label on its aligned crop, and the maps are painted back on the photo.

>>> import wildfer
>>> rec = wildfer.Recognizer()                                        # doctest: +SKIP
>>> ex = wildfer.explain_photo(rec, "group.jpg")                      # doctest: +SKIP
>>> ex.overlay().save("group_saliency.jpg")                           # doctest: +SKIP

The composition of two stages (wild below explain), so it lives above both: neither imports
the other. It serves ``/v1/explain``, ``wildfer predict --saliency`` and
``wildfer explain maps --detect`` (:func:`maps_on_photos`). Torch is imported only when a map
is made; without it that ends in :class:`~wildfer.errors.MissingTorch`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ModelError, import_torch
from .explain.plot import normalize_map
from .wild.align import unwarp
from .wild.recognizer import FaceResult

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class ExplainResult:
    """Saliency maps for every face of a photo, placed back on the photo.

    ``heatmap`` is ``height x width`` float32 in [0, 1] (the per-face maps, each scaled to a
    maximum of 1, warped back through the inverse of the face's alignment; where faces
    overlap the larger value wins). Each face's own 48 x 48 map is ``faces[i].saliency``.
    """

    width: int
    height: int
    mode: str
    method: str
    faces: list[FaceResult]
    heatmap: np.ndarray
    image: np.ndarray = field(repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    truncated: bool = False  # as ImageResult's: the file ended early and decoded with filler

    def overlay(self, alpha: float = 0.55, cmap: str = "jet", boxes: bool = True) -> "Image.Image":
        """The photo with the heat map blended in (weight ``alpha x heat``), as an RGB PIL image."""
        from matplotlib import colormaps
        from PIL import Image, ImageDraw

        h = np.clip(self.heatmap, 0, 1)
        colour = colormaps[cmap](h)[..., :3] * 255.0
        w = (alpha * h)[..., None]
        out = (self.image.astype(np.float32) * (1 - w) + colour * w).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(out)
        if boxes and self.faces:
            draw = ImageDraw.Draw(img)
            lw = max(1, round(max(self.width, self.height) / 400))
            for f in self.faces:
                draw.rectangle([round(v) for v in f.box], outline=(255, 255, 255), width=lw)
        return img

    def to_dict(self) -> dict[str, Any]:
        faces = []
        for f in self.faces:
            d = f.to_dict()
            d["saliency"] = None if f.saliency is None else np.round(f.saliency, 3).tolist()
            faces.append(d)
        return {
            "width": int(self.width), "height": int(self.height), "mode": self.mode, "method": self.method,
            "faces": faces, "truncated": bool(self.truncated),
            "timings_ms": {k: round(float(v), 2) for k, v in self.timings.items()},
        }


def saliency_method(name: str):
    """The saliency method class called ``name`` (``wildfer.explain``: ``gradcam``,
    ``vanilla``, ``smoothgrad``, ``ig`` ...); a one-line error for an unknown name, and a
    :class:`~wildfer.errors.MissingTorch` without torch."""
    import_torch("saliency maps")
    from .explain import get_method

    return get_method(name)


def check_saliency_method(name: str, classifier=None, **params) -> None:
    """Raise a one-line error unless ``name`` is a saliency method :func:`explain_photo`
    knows (a command checks it before loading a model) and, given the ``classifier``, one
    that can explain it with ``params`` (before any photo is read)."""
    from .explain.methods import canonical_name

    saliency_method(name)
    if classifier is None:
        return
    why = _cannot_explain(canonical_name(name), classifier, params)
    if why:
        raise ModelError(f"saliency method {name!r}: {why}")


def saliency_methods_for(classifier, methods=None) -> list[str]:
    """Those of ``methods`` (default: :data:`wildfer.explain.SALIENCY_METHODS`) that can
    explain the faces of a photo read by ``classifier``: Grad-CAM needs one network seen
    once per face, and a classifier that reads each face in several crops (an ensemble whose
    members align faces their own ways) is explained by the methods that treat each pixel on
    its own (:data:`~wildfer.explain.base.PACKED_METHODS`)."""
    from .explain import SALIENCY_METHODS

    return [m for m in (SALIENCY_METHODS if methods is None else methods) if not _cannot_explain(m, classifier, {})]


def _cannot_explain(method: str, classifier, params: dict) -> str | None:
    """Why ``method`` (a canonical name) cannot explain ``classifier``'s faces, or None."""
    if method.startswith("gradcam"):
        reason = getattr(getattr(classifier, "module", None), "cam_unsupported", None)
        if reason or getattr(classifier, "arch", "") == "ensemble":
            return reason or "Grad-CAM needs one network seen once per face, and an ensemble runs several"
    views = len(getattr(classifier, "face_views", None) or [None])
    if views > 1:
        from .explain.base import PACKED_BASELINES, PACKED_METHODS

        if method not in PACKED_METHODS:
            return (f"{getattr(classifier, 'name', '') or 'this model'} reads each face in {views} crops, one per "
                    f"member; use {', '.join(PACKED_METHODS)}, which explain every crop at once")
        baseline = params.get("baseline", "zeros")
        if method == "ig" and isinstance(baseline, str) and baseline.lower() not in PACKED_BASELINES:
            return (f"baseline {baseline!r} compares neighbouring pixels, and this model reads each face in "
                    f"{views} crops: use zeros, black or a number")
    return None


def default_saliency_method(classifier) -> str:
    """Grad-CAM where ``classifier`` is one network, else the first of the other methods that
    can explain it (the gradient, for an ensemble)."""
    from .explain import SALIENCY_METHODS

    return saliency_methods_for(classifier, ("gradcam", *(m for m in SALIENCY_METHODS if m != "gradcam")))[0]


def explain_photo(recognizer, image, method: str | None = None, bgr: bool = False, **params) -> ExplainResult:
    """Predict the faces of one photo with ``recognizer`` (a path, bytes, PIL image or numpy
    array, RGB or BGR with ``bgr=True``), then explain each face's predicted label with a
    saliency ``method`` (``params``: its keywords; default :func:`default_saliency_method`),
    the maps warped back onto the photo."""
    import_torch("saliency maps")
    work = recognizer.prepare(image, bgr=bgr, keep_rgb=True)  # the photo is painted on
    return explain_prepared(recognizer, work, recognizer.classify_prepared([work])[0], method, **params)


def explain_prepared(recognizer, work, res, method: str | None = None, **params) -> ExplainResult:
    """:func:`explain_photo` for a photo ``recognizer`` has already prepared (``work``, from
    :meth:`~wildfer.wild.Recognizer.prepare` with ``keep_rgb=True``) and classified (``res``):
    each face's predicted label explained, the maps set on ``res``'s faces and painted on the
    photo, without decoding or detecting it again."""
    import_torch("saliency maps")
    method = default_saliency_method(recognizer.classifier) if method is None else method
    t0 = time.perf_counter()
    heat = np.zeros((res.height, res.width), dtype=np.float32)
    if res.faces:
        import torch

        clf = recognizer.classifier
        cls = saliency_method(method)
        if work.views is None:
            net, x = clf.net, clf.to_tensor(np.stack([f.crop for f in res.faces]))
        else:  # every crop the classifier reads of each face, explained at once
            check_saliency_method(method, clf, **params)
            from .explain.base import PackedInputs

            xs = [clf.to_tensor(np.stack([v[j] for v in work.views]), view=fv) for j, fv in enumerate(clf.face_views)]
            net = PackedInputs(clf.net, [tuple(t.shape[1:]) for t in xs], preprocess=clf.preprocess)
            x = net.pack(xs)
        targets = []
        with torch.inference_mode():
            raw = net(x).argmax(1).tolist()
        for f, r in zip(res.faces, raw):
            targets.append(clf.classes.index(f.label) if f.label in clf.classes else int(r))
        try:
            attributer = cls(net, **params)
        except TypeError as e:
            raise ModelError(f"saliency method {method!r}: {e}") from None
        maps = attributer.attribute(x, target=targets).detach().float()
        if work.views is None:  # each face's map, in its crop's pixels
            size = recognizer.align.size
            face_maps = [_flat_map(mp.reshape(-1, *mp.shape[-2:])) for mp in maps.cpu().numpy()]
            if face_maps and face_maps[0].shape != (size, size):
                import cv2

                face_maps = [cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) for m in face_maps]
        else:
            views = [v.cpu().numpy() for v in net.unpack(maps)]
            face_maps = [in_first_view([_flat_map(v[i]) for v in views], mats) for i, mats in enumerate(work.view_mats)]
        for f, m in zip(res.faces, face_maps):
            m = normalize_map(m, percentile=100.0).astype(np.float32)
            f.saliency = m
            heat = np.maximum(heat, unwarp(m, f.transform, res.width, res.height))
    timings = dict(res.timings)
    timings["explain"] = (time.perf_counter() - t0) * 1e3
    timings["total"] = timings.get("total", 0.0) + timings["explain"]
    return ExplainResult(res.width, res.height, res.mode, str(method), res.faces, np.clip(heat, 0, 1),
                         work.rgb, timings, res.truncated)


def _flat_map(mp: np.ndarray) -> np.ndarray:
    """One face's ``C x H x W`` attribution as an ``H x W`` float32 map: the channel itself for
    one channel of evidence, else the absolute values' per-pixel maximum (as the gradient
    methods take over colour channels) or, where signs mix, their sum."""
    if mp.shape[0] == 1 and not (mp < 0).any():
        return mp[0].astype(np.float32)
    a = np.abs(mp)
    return (a.sum(0) if (mp < 0).any() else a.max(0)).astype(np.float32)


def in_first_view(maps, mats) -> np.ndarray:
    """One face's maps in each of the crops its classifier read (``maps[k]``, the square crop
    cut from the photo by ``mats[k]``) as one map in the first crop's pixels.

    Each map is carried there through ``mats[0] @ inverse(mats[k])`` and divided by the
    area one of its pixels covers there, so a view adds what it attributes to each part of
    the face however finely it was cut (a 112-pixel crop's map, summed over the 48-pixel
    crop's pixels); the views' maps are then summed. A finer map is first area-averaged to
    about the first crop's scale, so its detail is pooled, not sampled.
    """
    import cv2

    first = np.asarray(maps[0], np.float32)
    size = first.shape[0]
    to_first = _affine3(mats[0])
    out = first.copy()
    for m, mat in zip(maps[1:], mats[1:]):
        m = np.asarray(m, np.float32)
        a = to_first @ np.linalg.inv(_affine3(mat))  # view k pixels -> first view pixels
        area = abs(float(np.linalg.det(a[:2, :2])))  # first-view pixels one view-k pixel covers
        scale = area ** 0.5
        if scale < 1.0:  # pool the finer map first (means of r x r pixels), then carry the pooled grid
            n = max(1, round(m.shape[1] * scale))
            r = m.shape[1] / n
            m = cv2.resize(m, (n, n), interpolation=cv2.INTER_AREA)
            a = a @ np.array([[r, 0.0, 0.5 * r - 0.5], [0.0, r, 0.5 * r - 0.5], [0.0, 0.0, 1.0]])
        out += cv2.warpAffine(m, a[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0.0) / max(area, 1e-12)
    return out


def _affine3(m) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return m if m.shape == (3, 3) else np.vstack([m[:2], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------- explain maps --detect


def face_region_shares(face, size: int) -> dict[str, float] | None:
    """Region shares of a detected face's saliency, with masks from its own 5 landmarks
    (moved into the aligned crop by the face's photo -> crop transform); ``None`` when the
    face has no landmarks or no map."""
    from .explain.regions import landmark_regions, region_shares

    if face.landmarks is None or face.saliency is None or face.transform is None:
        return None
    lm = np.asarray(face.landmarks, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(face.transform, dtype=np.float64)[:2]
    lm_crop = lm @ m[:, :2].T + m[:, 2]
    regions = landmark_regions(lm_crop, (size, size))
    shares = region_shares(face.saliency, regions)
    if any(v != v for v in shares.values()):  # an all-zero map (e.g. Grad-CAM below ReLU): no shares
        return None
    return {k: round(v, 4) for k, v in shares.items()}


def maps_on_photos(input: Path, model: str, methods: list[str], out: Path, console) -> None:  # noqa: A002
    """``wildfer explain maps --detect``: whole photos (a file, or a folder's image files)
    through the Recognizer, each method's maps painted back on each photo (``NAME_METHOD.png``
    under ``out``); ``detect.json`` lists every face with its label and, per method, the share
    of saliency per face region measured with the face's own landmarks."""
    from .data.images import is_image_file
    from .errors import DataError, WildferError
    from .explain.commands import usable_methods
    from .jsonio import write_json
    from .paths import written_whole
    from .wild import Recognizer

    if input.is_dir():
        files = sorted(p for p in input.rglob("*") if p.is_file() and is_image_file(p))
    elif input.exists():
        files = [input]
    else:
        raise DataError(input, "not found")
    if not files:
        raise DataError(input, "no image files")
    rec = Recognizer(model=model)
    size = rec.align.size
    methods = usable_methods(methods, lambda m: _cannot_explain(m, rec.classifier, {}), model, console)
    out.mkdir(parents=True, exist_ok=True)
    done, report = 0, []
    for f in files:
        entry = {"path": str(f), "faces": []}
        try:  # each photo decoded, detected and classified once, then explained by every method
            work = rec.prepare(str(f), keep_rgb=True)
            found = rec.classify_prepared([work])[0]
        except WildferError as e:
            _skipped(console, f, entry, e)
            report.append(entry)
            continue
        for m in methods:
            try:
                res = explain_prepared(rec, work, found, method=m)
            except WildferError as e:
                _skipped(console, f, entry, e)
                break
            with written_whole(out / f"{f.stem}_{m.replace('+', 'p')}.png") as tmp:
                res.overlay().save(tmp)
            for i, face in enumerate(res.faces):
                if len(entry["faces"]) <= i:
                    entry["faces"].append({"box": [round(float(v), 1) for v in face.box], "label": face.label,
                                           "region_shares": {}})
                entry["faces"][i]["region_shares"][m] = face_region_shares(face, size)
        else:
            done += 1
        report.append(entry)
    write_json(out / "detect.json", report)
    console.print(f"{done}/{len(files)} photos x {len(methods)} methods -> {out}", highlight=False)


def _skipped(console, path, entry: dict, error) -> None:
    """A photo of ``explain maps --detect`` that could not be read or explained: said, and its
    one-line reason kept in its ``detect.json`` entry."""
    console.print(f"[yellow]skipped[/] {path}: {error}", highlight=False)
    entry["error"] = str(error)


__all__ = ["ExplainResult", "explain_photo", "explain_prepared", "check_saliency_method", "saliency_method",
           "saliency_methods_for", "default_saliency_method", "in_first_view", "face_region_shares", "maps_on_photos"]
