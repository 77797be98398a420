"""Measure where the five-point template's crop falls relative to the detector's box, so a face
found without landmarks is framed like one found with them (``wildfer.wild.align``'s
``TEMPLATE_BOX_FRAMING``).

For every YuNet face with landmarks in the wild dev sets (ExpW val, LFW, KDEF frontal), the
template crop (:func:`wildfer.wild.align.align_for` of MobileFaceNet's preprocessing) is mapped
back onto the photo: its side over the box width, and its centre's shift below the box centre
over the box height (medians, 10th / 90th percentiles), per set and over all of them.

Usage: ``python benchmarks/template_framing.py [--quick]`` -> ``benchmarks/results/template_framing.json``
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from common import DATA, ROOT, WILD_SETS, describe_machine, write_result

OUT = ROOT / "benchmarks" / "results" / "template_framing.json"


def stats(v) -> dict:
    v = np.asarray(v, dtype=np.float64)
    return {"n": int(v.size), "median": round(float(np.median(v)), 4), "p10": round(float(np.percentile(v, 10)), 4),
            "p90": round(float(np.percentile(v, 90)), 4)}


def photos(manifest: Path, split: str | None, limit: int | None) -> list[Path]:
    with open(manifest, newline="") as f:
        rows = [r for r in csv.DictReader(f) if split is None or r.get("split") == split]
    paths = list(dict.fromkeys(manifest.parent / r["path"] for r in rows))
    return paths[:limit] if limit else paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 photos per set")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    from wildfer.data.images import read_image
    from wildfer.models.mobilefacenet import PREPROCESS
    from wildfer.wild.align import align_for, crop_scale, face_transform
    from wildfer.wild.detectors import create_detector

    det = create_detector("yunet")
    cfg = align_for(PREPROCESS)
    t0 = time.time()
    result: dict = {"machine": describe_machine(), "detector": "yunet", "template_size": cfg.size, "sets": {}}
    every_scale, every_shift = [], []
    for name, (manifest, split) in WILD_SETS.items():
        scales, shifts = [], []
        for path in photos(DATA / "wild" / manifest, split, 100 if args.quick else None):
            for d in det.detect(read_image(path)):
                if d.landmarks is None:
                    continue
                m = face_transform(d, cfg, det.name)
                inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
                cx, cy = inv @ np.array([cfg.size / 2, cfg.size / 2, 1.0])
                l, t, r, b = d.box
                scales.append(cfg.size * crop_scale(m) / max(r - l, 1.0))
                shifts.append((cy - (t + b) / 2) / max(b - t, 1.0))
        result["sets"][name] = {"side_over_box_width": stats(scales), "centre_shift_over_box_height": stats(shifts)}
        every_scale += scales
        every_shift += shifts
    result["all"] = {"side_over_box_width": stats(every_scale), "centre_shift_over_box_height": stats(every_shift)}
    result["seconds"] = round(time.time() - t0, 1)
    write_result(args.out, result, indent=2)
    print(json.dumps(result["all"]))


if __name__ == "__main__":
    main()
