"""The shipped int8 graphs against their float models: FER2013 PublicTest accuracy, the wild
pipeline's accuracy on expw val / LFW / KDEF frontal, and milliseconds for one face.

Writes ``benchmarks/results/int8.json``. A graph ships only where PublicTest drops by less
than half a point. ``--make`` writes the graphs again first (``weights/<name>.int8.onnx``,
calibrated on 512 seeded FER2013 Training faces, as ``wildfer export NAME --int8`` does).

Usage: ``python benchmarks/int8.py [--quick] [--make] [--models wild default fast]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from common import DATA, ROOT, WILD_SETS, describe_machine

OUT = ROOT / "benchmarks" / "results" / "int8.json"
FER = DATA / "fer2013" / "fer2013.csv.gz"


def one_face_ms(clf, face: np.ndarray, runs: int) -> float:
    for _ in range(5):
        clf.predict_proba(face)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        clf.predict_proba(face)
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1e3, 2)


def wild_accuracy(clf, limit: int | None) -> dict:
    from wildfer.wild import Recognizer
    from wildfer.wild.evaluate import evaluate_wild

    rec = Recognizer(model=clf)
    out = {}
    for name, (manifest, split) in WILD_SETS.items():
        r = evaluate_wild(DATA / "wild" / manifest, rec, split=split, limit=limit)
        out[name] = {"accuracy": round(100 * r["accuracy"], 2), "macro_f1": round(100 * r["macro_f1"], 2)}
    return out


def compare(name: str, test, quick: bool) -> dict:
    from wildfer.models.loader import load_model

    out = {}
    for backend in ("torch", "int8"):
        clf = load_model(name, backend=backend)
        acc = float((clf.predict_proba(test.images).argmax(1) == test.labels).mean())
        out[backend] = {"publictest": round(100 * acc, 2), "one_face_ms": one_face_ms(clf, test.images[:1], 20 if quick else 100),
                        "wild": wild_accuracy(clf, 100 if quick else None)}
        print(name, backend, out[backend], flush=True)
    out["publictest_drop_points"] = round(out["torch"]["publictest"] - out["int8"]["publictest"], 2)
    out["ships"] = out["publictest_drop_points"] < 0.5
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer timing runs, 100 faces per wild set")
    ap.add_argument("--make", action="store_true", help="write the int8 graphs again first")
    ap.add_argument("--models", nargs="+", default=["wild", "default", "fast"])
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from wildfer.data import load_dataset
    from wildfer.models.loader import load_model
    from wildfer.models.quantize import SUFFIX, WEIGHTS, export_int8

    if args.make:
        train = load_dataset(FER, split="Training").images
        for name in args.models:
            export_int8(load_model(name), WEIGHTS / f"{name}{SUFFIX}", train)
    test = load_dataset(FER, split="PublicTest")
    result = {"torch_threads": 1, "int8_threads": "onnxruntime's default (one per core)",
              "machine": describe_machine(load_avg_before=[round(x, 2) for x in os.getloadavg()]),
              "models": {name: compare(name, test, args.quick) for name in args.models}}
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
