"""Face detectors side by side: median milliseconds for a 1280 x 720 photo at 640 px long side,
and detection recall through the wild pipeline on every boxed set under $WILDFER_DATA/wild.

Writes ``benchmarks/results/detectors.json``. Goal: at most 10 ms median with recall within
0.5 point of libfacedetection's YuNet (``yuface``) on expw val, LFW, KDEF frontal and the
boxed group photos.

Candidates: every detector of wildfer's registry that is installed here, and, given
``--blazeface DIR`` (a folder with ``face_detection_full_range_sparse.tflite`` and
``face_detection_short_range.tflite``, from ``mediapipe/modules/face_detection/`` of a
mediapipe 0.10 wheel) with ``ai-edge-litert`` importable, MediaPipe's BlazeFace models, which
wildfer does not ship (decoded here as MediaPipe's graph configuration describes).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/detectors.py [--quick] [--timing-only] [--blazeface DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from common import DATA, ROOT, WILD_SETS, describe_machine

OUT = ROOT / "benchmarks" / "results" / "detectors.json"
WILD = DATA / "wild"
SETS = {**WILD_SETS, "groups_boxed": ("groups.csv", None)}
GOAL_MS, REFERENCE = 10.0, "yuface"


def photo_720p() -> np.ndarray:
    """The one-face 1280 x 720 photo of ``wild_latency.py`` (a KDEF portrait on a textured background)."""
    import io

    from PIL import Image

    from wild_latency import build_photos

    return np.asarray(Image.open(io.BytesIO(build_photos()["one_face_720p"])).convert("RGB"))


def median_ms(det, rgb: np.ndarray, runs: int) -> dict:
    for _ in range(3):
        det.detect(rgb)
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        det.detect(rgb)
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return {"median_ms": round(float(np.median(wall)), 2), "p95_ms": round(float(np.percentile(wall, 95)), 2),
            "cpu_median_ms": round(float(np.median(cpu)), 2), "faces": len(det.detect(rgb))}


def recall(det, limit: int | None) -> dict:
    """Detection recall through ``evaluate_wild`` (the cheap ``fast`` classifier reads the faces)."""
    from wildfer.wild import Recognizer
    from wildfer.wild.evaluate import evaluate_wild

    rec = Recognizer(model="fast", detector=det)
    out = {}
    for name, (manifest, split) in SETS.items():
        if not (WILD / manifest).exists():
            continue
        r = evaluate_wild(WILD / manifest, rec, split=split, limit=limit)
        out[name] = {"faces": r["n"], "found": r["n_found"], "recall": round(100 * r["detection_recall"], 2),
                     "recall_iou": round(100 * r["detection_recall_iou"], 2) if r.get("detection_recall_iou") is not None else None}
    return out


def blazeface_detectors(folder: Path) -> dict:
    """MediaPipe's BlazeFace short- and full-range models on LiteRT, as wildfer detectors."""
    from blazeface import BlazeFace

    return {f"blazeface_{kind}": BlazeFace(folder, kind) for kind in ("short", "full")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs, 100 faces per set")
    ap.add_argument("--blazeface", type=Path, default=None, help="folder with MediaPipe's BlazeFace .tflite files")
    ap.add_argument("--timing-only", action="store_true",
                    help="measure the milliseconds again, keep the recall of the existing JSON (it does not change)")
    args = ap.parse_args()
    known = json.loads(OUT.read_text())["detectors"] if args.timing_only and OUT.exists() else {}

    from wildfer.wild.detectors import available_detectors, create_detector

    dets = {n: create_detector(n, max_side=640) for n in available_detectors()}
    if args.blazeface:
        dets.update(blazeface_detectors(args.blazeface))
    rgb = photo_720p()
    result = {"goal_ms": GOAL_MS, "reference": REFERENCE, "photo": "1280x720, one face", "max_side": 640,
              "threads": "1 (two_threads: 2)", "machine": describe_machine(load_avg_before=[round(x, 2) for x in os.getloadavg()]),
              "detectors": {}}
    runs = 10 if args.quick else 50
    for name, det in dets.items():
        r = median_ms(det, rgb, runs)
        if name in available_detectors():  # the same detector with two threads (where it takes threads)
            r["two_threads"] = median_ms(create_detector(name, max_side=640, threads=2), rgb, runs)
        r["recall"] = known[name]["recall"] if name in known else recall(det, 100 if args.quick else None)
        result["detectors"][name] = r
        print(name, r, flush=True)
    ref = result["detectors"].get(REFERENCE, {}).get("recall", {})
    for r in result["detectors"].values():
        gaps = [ref[k]["recall"] - v["recall"] for k, v in r["recall"].items() if k in ref]
        r["worst_recall_gap_points"] = round(max(gaps), 2) if gaps else None
        r["meets_goal"] = bool(gaps) and max(gaps) <= 0.5 and r["median_ms"] <= GOAL_MS
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
