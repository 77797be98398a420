"""Classifier throughput on this CPU: faces/s at batch 1 and 64, torch vs onnxruntime, and
peak RSS; writes benchmarks/results/inference.json.

    python benchmarks/inference.py [--models default,fast] [--quick] [--threads 2] [--batch-sizes 1,64,256] [--out F]

Models are built-in names or checkpoint paths; a missing built-in is recorded, not fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

from common import describe_machine


def bench(fn, n_items: int, min_time: float, max_reps: int = 10_000) -> float:
    fn()  # warm-up
    reps, t0 = 0, time.perf_counter()
    while True:
        fn()
        reps += 1
        dt = time.perf_counter() - t0
        if dt >= min_time or reps >= max_reps:
            return reps * n_items / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="default,fast,ferplus")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", default="1,64,256", help="e.g. 1,16 for a slow model such as accurate")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "inference.json"))
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from wildfer.errors import WildferError
    from wildfer.models.loader import load_model
    from wildfer.models.onnx import attach_onnx

    min_time = 1.0 if args.quick else 4.0
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    rng = np.random.default_rng(0)
    results = {}
    for name in [m for m in args.models.split(",") if m]:
        try:
            clf = load_model(name)
        except WildferError as e:
            results[name] = {"error": str(e)}
            continue
        row = {"arch": clf.arch, "params": clf.num_params()}
        for backend in ("torch", "onnx"):
            c = load_model(name)
            if backend == "onnx":
                attach_onnx(c, threads=args.threads)
            for bs in batch_sizes:
                faces = rng.integers(0, 256, size=(bs, 48, 48), dtype=np.uint8)
                row[f"{backend}_b{bs}_faces_per_s"] = round(bench(lambda: c.predict_proba(faces, batch_size=bs), bs, min_time), 1)
        big = 64 if 64 in batch_sizes else max(batch_sizes)
        row[f"faster_backend_b{big}"] = "onnx" if row[f"onnx_b{big}_faces_per_s"] > row[f"torch_b{big}_faces_per_s"] else "torch"
        results[name] = row
    out = {
        "benchmark": "classifier inference (preprocessing + forward + softmax), fp32",
        "machine": describe_machine(threads=args.threads),
        "quick": args.quick,
        "load_average_at_end": os.getloadavg(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "models": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
