"""Measure FER2013's face framing, to choose how wild faces are cropped (``wildfer.wild.align``).

Three measurements, written to ``benchmarks/results/wild_align.json``:

1. ``fer2013_framing``: each detector run on FER2013 training faces (upscaled 4x and padded, so
   the detectors see them as ordinary photos): where the landmarks and the boxes fall inside
   FER2013's 48 x 48 crop (medians and 10th/90th percentiles). This gives the landmark
   margin and vertical position, and the box scale per detector.
2. ``mean_face``: the mean aligned crop of the wild sets (KDEF, LFW) for several margins /
   vertical positions against FER2013's mean face (Pearson correlation, higher = framed
   more alike). Needs no trained model.
3. ``sweep`` (with ``--model``): evaluate-wild accuracy on LFW and KDEF for the same grid.

Usage: ``python benchmarks/wild_align.py [--quick] [--model runs/default/best.pt]``
(run with ``nice -n 19`` and ``OMP_NUM_THREADS=1`` beside a training run).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import DATA, describe_machine

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "wild_align.json"


def stats(v) -> dict:
    v = np.asarray(v, dtype=np.float64)
    return {"median": round(float(np.median(v)), 4), "p10": round(float(np.percentile(v, 10)), 4),
            "p90": round(float(np.percentile(v, 90)), 4)}


def fer_framing(images: np.ndarray, detectors=("yunet", "haar", "centerface"), up: int = 4, others: int = 300) -> dict:
    """``others``: how many of the faces the slower detectors (haar, centerface) see."""
    import cv2

    from wildfer.wild.detectors import create_detector

    pad = 48 * up // 2
    out = {}
    for name in detectors:
        try:
            det = create_detector(name, max_side=None, score_threshold=0.5)
        except Exception as e:  # noqa: BLE001 - an optional detector not installed
            out[name] = {"error": str(e)}
            continue
        rows = []
        for g in (images if name == "yunet" else images[:others]):
            big = cv2.resize(g, (48 * up, 48 * up), interpolation=cv2.INTER_CUBIC)
            big = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            dets = det.detect(np.repeat(big[:, :, None], 3, axis=2))
            if not dets:
                continue
            d = max(dets, key=lambda d: d.score)
            l, t, r, b = [(v - pad) / (48 * up) for v in d.box]
            row = {"box_w": r - l, "box_h": b - t, "box_cx": (l + r) / 2, "box_cy": (t + b) / 2}
            if d.landmarks is not None:
                lm = (np.asarray(d.landmarks) - pad) / (48 * up)
                eye, mouth = (lm[0] + lm[1]) / 2, (lm[3] + lm[4]) / 2
                ed, em = np.linalg.norm(lm[1] - lm[0]), np.linalg.norm(mouth - eye)
                row.update({"center_x": (eye[0] + mouth[0]) / 2, "center_y": (eye[1] + mouth[1]) / 2,
                            "face_scale": float(np.hypot(ed, em)), "eye_y": eye[1], "mouth_y": mouth[1],
                            "eye_dist": ed, "angle_deg": float(np.degrees(np.arctan2(lm[1, 1] - lm[0, 1], lm[1, 0] - lm[0, 0])))})
            rows.append(row)
        res = {"n": len(images) if name == "yunet" else len(images[:others]), "found": len(rows)}
        for k in rows[0] if rows else []:
            res[k] = stats([r[k] for r in rows if k in r])
        if rows and "face_scale" in rows[0]:
            res["margin"] = stats([1.0 / r["face_scale"] for r in rows])
        if rows:
            # crop side / box width, and the crop centre's shift below the box centre (box heights)
            res["box_scale"] = stats([1.0 / r["box_w"] for r in rows])
            res["box_shift"] = stats([(0.5 - r["box_cy"]) / r["box_h"] for r in rows])
        out[name] = res
    return out


def wild_paths(limit: int) -> dict[str, list[Path]]:
    import csv

    sets = {}
    for name in ("kdef_frontal", "lfw"):
        with open(DATA / "wild" / f"{name}.csv") as fh:
            rows = list(csv.DictReader(fh))
        step = max(1, len(rows) // limit)
        sets[name] = [DATA / "wild" / r["path"] for r in rows[::step][:limit]]
    return sets


def mean_face_grid(fer_mean: np.ndarray, grid, limit: int) -> list[dict]:
    from wildfer.data.images import read_image
    from wildfer.wild.align import AlignConfig, align_face, to_gray
    from wildfer.wild.detectors import create_detector

    det = create_detector("yunet")
    cache = {}
    for name, paths in wild_paths(limit).items():
        cache[name] = []
        for p in paths:
            rgb = read_image(p)
            d = det.detect(rgb)
            if d:
                cache[name].append((to_gray(rgb), max(d, key=lambda x: x.area)))
    out = []
    for margin, cy in grid:
        cfg = AlignConfig(margin=margin, center_y=cy)
        row = {"margin": margin, "center_y": cy}
        for name, items in cache.items():
            m = np.mean([align_face(g, d, cfg)[0].astype(np.float64) for g, d in items], axis=0)
            row[f"corr_{name}"] = round(float(np.corrcoef(m.ravel(), fer_mean.ravel())[0, 1]), 4)
        out.append(row)
    return out


def sweep(model: str, grid, limit: int | None) -> list[dict]:
    """Accuracy / macro-F1 of ``model`` on KDEF and LFW for each (margin, center_y); the
    detector runs once per photo (the largest face is the labelled one)."""
    from sklearn.metrics import f1_score

    from wildfer.data.images import read_image
    from wildfer.models.loader import load_model
    from wildfer.wild.align import AlignConfig, align_face, to_gray
    from wildfer.wild.detectors import create_detector
    from wildfer.wild.evaluate import read_manifest

    clf = load_model(model)
    det = create_detector("yunet")
    sets = {}
    for name in ("kdef_frontal", "lfw"):
        items = read_manifest(DATA / "wild" / f"{name}.csv")[:limit]
        found = []
        for it in items:
            rgb = read_image(it.path)
            d = det.detect(rgb)
            if d:
                found.append((to_gray(rgb), max(d, key=lambda x: x.area), it.label))
        sets[name] = (len(items), found)
        print(name, len(items), "faces,", len(found), "found", flush=True)
    out = []
    for margin, cy in grid:
        cfg = AlignConfig(margin=margin, center_y=cy)
        row = {"margin": margin, "center_y": cy}
        for name, (n, found) in sets.items():
            crops = np.stack([align_face(g, d, cfg)[0] for g, d, _ in found])
            pred = [clf.labels[i] for i in clf.predict_proba(crops).argmax(1)]
            true = [lab for _, _, lab in found]
            row[f"acc_{name}"] = round(float(np.mean([p == t for p, t in zip(pred, true)])), 4)
            row[f"f1_{name}"] = round(float(f1_score(true, pred, average="macro")), 4)
        out.append(row)
        print(row, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer faces (a short run)")
    ap.add_argument("--model", default=None, help="model for the accuracy sweep (skipped without)")
    ap.add_argument("--skip-framing", action="store_true",
                    help="reuse fer2013_framing and mean_face from the existing JSON (only run the sweep)")
    args = ap.parse_args()

    from wildfer.data.fer2013 import load_fer2013

    t0 = time.time()
    result = json.loads(OUT.read_text()) if OUT.exists() else {}
    fer = load_fer2013(DATA / "fer2013" / "fer2013.csv.gz").split("Training")  # model-independent parts
    rng = np.random.default_rng(0)
    idx = rng.choice(len(fer.images), 200 if args.quick else 1500, replace=False)
    if not args.skip_framing or "fer2013_framing" not in result:  # noqa: SIM102
        result["fer2013_framing"] = fer_framing(fer.images[idx])
        print(json.dumps(result["fer2013_framing"], indent=1), flush=True)
    fer_mean = fer.images.astype(np.float64).mean(0)
    grid = [(m, c) for m in (1.6, 1.75, 1.9, 2.05, 2.2, 2.4) for c in (0.53, 0.57, 0.61)]
    if args.quick:
        grid = [(m, 0.57) for m in (1.6, 1.9, 2.2)]
    if not args.skip_framing or "mean_face" not in result:
        result["mean_face"] = mean_face_grid(fer_mean, grid, 60 if args.quick else 300)
    if args.model:
        limit = 100 if args.quick else None
        result["sweep"] = {"model": args.model, "limit": limit, "rows": sweep(args.model, grid, limit)}
    result["seconds"] = round(time.time() - t0, 1)
    result["machine"] = describe_machine()
    result["note"] = ("framing medians measured by running each detector on upscaled FER2013 faces; mean_face: "
                      "correlation of the mean aligned wild crop with FER2013's mean face; sweep: accuracy and macro-F1 "
                      "of the model on the faces the detector finds in KDEF and LFW (largest face per photo)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
