"""Saliency maps on whole photos: the wild pipeline finds, aligns and classifies every face
(:class:`~wildfer.wild.Recognizer`), a saliency method of :mod:`wildfer.explain` explains each
face's predicted label on its aligned crop, and the maps are painted back on the photo.

>>> import wildfer
>>> rec = wildfer.Recognizer()                                        # doctest: +SKIP
>>> ex = wildfer.explain_photo(rec, "group.jpg", method="gradcam")    # doctest: +SKIP
>>> ex.overlay().save("group_gradcam.jpg")                            # doctest: +SKIP

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


def check_saliency_method(name: str) -> None:
    """Raise a one-line error unless ``name`` is a saliency method :func:`explain_photo`
    knows (a command checks it before loading a model)."""
    saliency_method(name)


def explain_photo(recognizer, image, method: str = "gradcam", bgr: bool = False, **params) -> ExplainResult:
    """Predict the faces of one photo with ``recognizer`` (a path, bytes, PIL image or numpy
    array, RGB or BGR with ``bgr=True``), then explain each face's predicted label with a
    saliency ``method`` (``params``: its keywords), the maps warped back onto the photo."""
    import_torch("saliency maps")
    work = recognizer.prepare(image, bgr=bgr, keep_rgb=True)  # the photo is painted on
    return explain_prepared(recognizer, work, recognizer.classify_prepared([work])[0], method, **params)


def explain_prepared(recognizer, work, res, method: str = "gradcam", **params) -> ExplainResult:
    """:func:`explain_photo` for a photo ``recognizer`` has already prepared (``work``, from
    :meth:`~wildfer.wild.Recognizer.prepare` with ``keep_rgb=True``) and classified (``res``):
    each face's predicted label explained, the maps set on ``res``'s faces and painted on the
    photo, without decoding or detecting it again."""
    import_torch("saliency maps")
    t0 = time.perf_counter()
    heat = np.zeros((res.height, res.width), dtype=np.float32)
    if res.faces:
        import torch

        clf = recognizer.classifier
        x = clf.to_tensor(np.stack([f.crop for f in res.faces]))
        targets = []
        with torch.inference_mode():
            raw = clf.net(x).argmax(1).tolist()
        for f, r in zip(res.faces, raw):
            targets.append(clf.classes.index(f.label) if f.label in clf.classes else int(r))
        cls = saliency_method(method)
        try:
            attributer = cls(clf.net, **params)
        except TypeError as e:
            raise ModelError(f"saliency method {method!r}: {e}") from None
        maps = attributer.attribute(x, target=targets).detach().float().cpu().numpy()
        maps = maps.reshape(maps.shape[0], -1, maps.shape[-2], maps.shape[-1])
        size = recognizer.align.size
        for f, mp in zip(res.faces, maps):
            m = np.abs(mp).sum(0) if (mp < 0).any() or mp.shape[0] > 1 else mp[0]
            m = m.astype(np.float32)
            if m.shape != (size, size):
                import cv2

                m = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR)
            m = normalize_map(m, percentile=100.0).astype(np.float32)
            f.saliency = m
            heat = np.maximum(heat, unwarp(m, f.transform, res.width, res.height))
    timings = dict(res.timings)
    timings["explain"] = (time.perf_counter() - t0) * 1e3
    timings["total"] = timings.get("total", 0.0) + timings["explain"]
    return ExplainResult(res.width, res.height, res.mode, str(method), res.faces, np.clip(heat, 0, 1),
                         work.rgb, timings, res.truncated)


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
    size = rec.classifier.size
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
           "face_region_shares", "maps_on_photos"]
