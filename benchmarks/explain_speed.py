"""Saliency maps per second for each method on this CPU, batched.

For each architecture (``vggfer_small``, the default model's; ``shallow``, the study's) and
each method at its default settings, times ``Method(net).attribute(x)`` on a batch of
48x48 faces (real FER2013 PublicTest faces when the shared data is present, else noise of
the same shape; speed does not depend on the pixel values) after one warm-up call, and
writes ``benchmarks/results/explain_speed.json``.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/explain_speed.py           # batch 32, best of 2
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/explain_speed.py --quick   # batch 16, 1 repeat

Weights are random (speed does not depend on training). ``maps_per_second`` is wall-clock
and depends on whatever else the machine does at the time (the JSON records the load
average); ``maps_per_cpu_second`` divides by the process's own CPU time, which with one
thread (``OMP_NUM_THREADS=1``) is what one idle core of this CPU gives.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import DATA, describe_machine, write_result

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "explain_speed.json"

METHODS = ("vanilla", "smoothgrad", "ig", "gradcam", "gradcam++", "occlusion")


def faces(n: int) -> tuple[np.ndarray, str]:
    csv = DATA / "fer2013" / "fer2013.csv.gz"
    if csv.exists():
        from wildfer.data.fer2013 import load_fer2013

        d = load_fer2013(csv).split("PublicTest")
        return d.images[:n], "fer2013 PublicTest"
    return np.random.default_rng(0).integers(0, 256, size=(n, 48, 48), dtype=np.uint8), "random noise"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 16, one timed repeat (default: batch 32, best of 2)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--models", default="vggfer_small,shallow")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    batch = args.batch or (16 if args.quick else 32)
    repeats = args.repeats or (1 if args.quick else 2)

    from wildfer.explain.methods import create_method, get_method
    from wildfer.models import create_model
    from wildfer.models.loader import Classifier

    imgs, source = faces(batch)
    results = []
    for arch in args.models.split(","):
        torch.manual_seed(0)
        clf = Classifier(create_model(arch), name=arch, arch=arch)
        x = clf.to_tensor(imgs)
        for name in args.methods.split(","):
            m = create_method(name, clf)
            m.attribute(x[: min(4, batch)])  # warm-up
            times, cpu = [], []
            for _ in range(repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                out = m.attribute(x)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            best = min(times)
            best_cpu = min(cpu)
            params = {k: v for k, v in vars(m).items() if k in ("n_samples", "noise", "steps", "method", "window",
                                                                  "stride", "baseline", "layer_name")}
            results.append({
                "model": arch,
                "method": get_method(name).name,
                "params": {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in params.items()},
                "batch": batch,
                "seconds_best": round(best, 4),
                "seconds_all": [round(t, 4) for t in times],
                "maps_per_second": round(batch / best, 2),
                "cpu_seconds_best": round(best_cpu, 4),
                "maps_per_cpu_second": round(batch / best_cpu, 2),
                "output_shape": list(out.shape),
            })
            print(f"{arch:14s} {name:11s} {batch / best:9.1f} maps/s wall  {batch / best_cpu:9.1f} maps/s of CPU time"
                  f"  ({best:.3f} s wall, {best_cpu:.3f} s CPU for {batch})", flush=True)
    report = {
        "benchmark": "explain_speed",
        "what": "saliency maps per second (wall clock, and per second of this process's CPU time), batched, 48x48 grayscale faces, CPU",
        "quick": bool(args.quick),
        "batch": batch,
        "repeats": repeats,
        "inputs": source,
        "machine": describe_machine(threads=torch.get_num_threads(), load_average_1m=round(os.getloadavg()[0], 2)),
        "results": results,
    }
    write_result(args.out, report, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
