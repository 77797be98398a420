"""Where does a FER2013 model lose wild faces? Framing, preprocessing, class prior, the faces.

Each photo of the dev sets (ExpW ``val``, LFW, KDEF frontal) is decoded and searched by the
detector once; every variant below re-cuts or re-processes the same faces and classifies
them with ``--model``. Accuracy counts a face the detector missed as wrong, as
``wildfer evaluate-wild`` does (the ``box`` variants use the labelled box, so nothing is missed).

* ``framing``: the labelled box cut tight (the yardstick), the labelled box framed like the
  pipeline's box path, and detector + alignment over a margin / vertical-centre / rotation grid;
* ``preprocess``: grey conversion (ITU-R 601 luma, channel mean, green), the down-scaling filter
  (area, bilinear, nearest), histogram equalisation and CLAHE, per-face contrast standardisation;
* ``prior``: logit adjustment ``log p(y|x) - tau log prior(y)`` with FER2013's training prior,
  tau in 0 .. 1 (0 = off, the shipped behaviour).

Usage: ``python benchmarks/wild_diagnosis.py --model default [--model wild] [--quick]``
-> ``benchmarks/results/wild_diagnosis_<model>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from common import DATA, describe_machine

ROOT = Path(__file__).resolve().parent.parent
SETS = {"expw_val": ("wild/expw.csv", "val"), "lfw": ("wild/lfw.csv", None), "kdef": ("wild/kdef_frontal.csv", None)}
#: FER2013 Training class counts (angry, disgust, fear, happy, sad, surprise, neutral)
FER_PRIOR = np.array([3995, 436, 4097, 7215, 4830, 3171, 4965], dtype=np.float64)


def detect_set(manifest: Path, split: str | None, limit: int | None, detector: str = "yunet"):
    """``[(label, rgb, labelled box or None, matched detection or None)]`` for one dev set."""
    from wildfer.data.images import read_image
    from wildfer.wild.detectors import create_detector
    from wildfer.wild.evaluate import match_faces, read_manifest

    items = read_manifest(manifest, split=split)[:limit]
    det = create_detector(detector, max_side=640)
    out, by_photo = [], {}
    for it in items:
        by_photo.setdefault(it.path, []).append(it)
    for path, its in by_photo.items():
        rgb = read_image(path)
        dets = det.detect(rgb)
        for it, j in zip(its, match_faces(its, dets)):
            out.append((it.label, rgb, it.box, None if j is None else dets[j]))
    return out


def gray_of(rgb: np.ndarray, how: str) -> np.ndarray:
    from wildfer.wild.align import to_gray

    if how == "luma":
        return to_gray(rgb)
    if how == "mean":
        return rgb.mean(2).round().astype(np.uint8)
    return rgb[:, :, 1].copy()  # green


def cut(face, gray, variant: dict) -> np.ndarray | None:
    """One face cut and processed as ``variant`` says; None when the variant misses it."""
    import cv2

    from wildfer.wild.align import AlignConfig, align_face, face_transform
    from wildfer.wild.detectors import Detection

    label, rgb, box, det = face
    frame = variant.get("frame", "align")
    if frame == "tight":
        l, t, r, b = (int(round(v)) for v in box)
        crop = cv2.resize(gray[max(t, 0):b, max(l, 0):r], (48, 48), interpolation=cv2.INTER_AREA)
    else:
        if frame == "box":
            det = Detection(box, 1.0, None)
        if det is None:
            return None
        cfg = AlignConfig(margin=variant.get("margin", 1.9), center_y=variant.get("center_y", 0.57),
                          rotate=variant.get("rotate", True))
        if variant.get("resize") in ("linear", "nearest"):
            m = face_transform(det, cfg, "yunet")
            flag = cv2.INTER_LINEAR if variant["resize"] == "linear" else cv2.INTER_NEAREST
            crop = cv2.warpAffine(gray, m, (48, 48), flags=flag, borderMode=cv2.BORDER_REPLICATE)
        else:
            crop, _ = align_face(gray, det, cfg, "yunet")
    norm = variant.get("norm")
    if norm == "equalize":
        crop = cv2.equalizeHist(crop)
    elif norm == "clahe":
        crop = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(crop)
    elif norm == "standardize":  # each face to FER2013's mean pixel statistics (mean 0.5, std 0.25 of 255)
        f = crop.astype(np.float32)
        crop = ((f - f.mean()) / max(f.std(), 1.0) * 64.0 + 128.0).clip(0, 255).astype(np.uint8)
    return crop


def score(clf, faces, variant: dict, grays: dict, tau: float = 0.0) -> dict:
    from sklearn.metrics import f1_score

    labels = list(clf.labels)
    crops, idx = [], []
    for k, face in enumerate(faces):
        g = grays.setdefault((id(face[1]), variant.get("gray", "luma")), gray_of(face[1], variant.get("gray", "luma")))
        c = cut(face, g, variant)
        if c is not None:
            crops.append(c)
            idx.append(k)
    pred = np.full(len(faces), -1)
    if crops:
        p = clf.predict_proba(np.stack(crops))
        logit = np.log(np.clip(p, 1e-12, None)) - tau * np.log(FER_PRIOR / FER_PRIOR.sum())
        pred[idx] = logit.argmax(1)
    y = np.array([labels.index(f[0]) for f in faces])
    return {"accuracy": round(float((pred == y).mean()), 4),
            "macro_f1": round(float(f1_score(y, pred, labels=list(range(len(labels))), average="macro",
                                             zero_division=0)), 4),
            "found": round(len(idx) / len(faces), 4)}


def variants() -> dict[str, dict[str, dict]]:
    grid = {f"align margin={m} center_y={c}": {"margin": m, "center_y": c}
            for m in (1.6, 1.75, 1.9, 2.1, 2.4) for c in (0.5, 0.57, 0.64)}
    return {
        "framing": {"box tight": {"frame": "tight"}, "box framed": {"frame": "box"},
                    "align (shipped)": {}, "align no rotation": {"rotate": False}, **grid},
        "preprocess": {"gray mean": {"gray": "mean"}, "gray green": {"gray": "green"},
                       "resize bilinear": {"resize": "linear"}, "resize nearest": {"resize": "nearest"},
                       "equalize": {"norm": "equalize"}, "clahe": {"norm": "clahe"},
                       "standardize": {"norm": "standardize"}},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=None, help="built-in name or checkpoint (repeatable)")
    ap.add_argument("--data", type=Path, default=DATA, help="folder holding wild/ (the dev sets)")
    ap.add_argument("--quick", action="store_true", help="60 faces per set")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--detector", default="yunet", help="face detector (yunet, or yuface: the C build of the same network)")
    args = ap.parse_args()
    from wildfer.models.loader import load_model

    if not (args.data / "wild").exists():
        raise SystemExit(f"{args.data / 'wild'}: no dev sets there (pass --data)")
    t0 = time.time()
    faces = {name: detect_set(args.data / rel, split, 60 if args.quick else None, args.detector)
             for name, (rel, split) in SETS.items()}
    for name in args.model or ["default"]:
        clf = load_model(name)
        if len(clf.labels) != len(FER_PRIOR):  # FER+'s 8 classes folded to the manifests' 7
            clf = load_model(name, classes="fer2013")
        grays: dict = {}
        res: dict = {}
        for group, vs in variants().items():
            res[group] = {v: {s: score(clf, fs, cfg, grays) for s, fs in faces.items()
                              if s == "expw_val" or group == "preprocess" or v == "align (shipped)"}
                          for v, cfg in vs.items()}
        res["prior"] = {f"tau={tau}": {s: score(clf, fs, {}, grays, tau) for s, fs in faces.items()}
                        for tau in (0.0, 0.25, 0.5, 0.75, 1.0)}
        out = {"model": name, "sets": {s: len(f) for s, f in faces.items()}, "detector": args.detector, "max_side": 640,
               **res, "seconds": round(time.time() - t0, 1),
               "machine": describe_machine()}
        stem = Path(str(name)).stem if os.sep in str(name) or str(name).endswith((".pt", ".safetensors")) else name
        path = args.out / f"wild_diagnosis_{stem}{'_quick' if args.quick else ''}.json"
        path.write_text(json.dumps(out, indent=1))
        print(f"{path}: framing shipped {res['framing']['align (shipped)']} | box tight {res['framing']['box tight']}")


if __name__ == "__main__":
    main()
