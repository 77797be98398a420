"""Photos/s of the wild pipeline on Ray Data (``wildfer.batch``) on a local Ray with 2 CPUs.

Writes ``benchmarks/results/predict_ray.json``. The photos are the synthetic 1280 x 720
one-face JPEGs of ``benchmarks/predict_workers.py``. Two pools: one actor on one CPU, and two
actors on 0.75 CPU each (a quarter CPU stays with the read tasks). Each pool runs the dataset
twice; Ray Data starts a fresh actor pool per run, so every time includes starting the actors
and loading their models, and ``photos_per_s`` is the faster run's rate. ``ray_init_s`` is
starting Ray itself.

Usage: ``python benchmarks/predict_ray.py [--quick]`` (``--quick``: 12 photos, the fast model).
Needs the ``ray`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from common import describe_machine
from predict_workers import build_photos

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "predict_ray.json"


def run(folder: Path, model: str, concurrency: int, num_cpus: float, out: Path) -> float:
    from wildfer import batch

    t0 = time.perf_counter()
    ds = batch.predict_dataset(batch.read_images(folder), model=model, concurrency=concurrency, num_cpus=num_cpus)
    n = batch.write_jsonl(ds, out)
    assert n == len(list(folder.glob("*.jpg")))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 12 if args.quick else 60
    models = ["fast"] if args.quick else ["fast", "wild"]
    import ray

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_init_s = time.perf_counter() - t0
    results = []
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "photos"
        build_photos(folder, n)
        for model in models:
            for concurrency, cpus in ((1, 1.0), (2, 0.75)):
                times = [run(folder, model, concurrency, cpus, Path(d) / "out.jsonl") for _ in range(2)]
                results.append({"model": model, "actors": concurrency, "cpus_per_actor": cpus,
                                "seconds": [round(t, 2) for t in times],
                                "photos_per_s": round(n / min(times), 2)})
                print(json.dumps(results[-1]), flush=True)
    ray.shutdown()
    report = {"benchmark": "predict_ray", "photos": n, "photo_size": [1280, 720], "ray_cpus": 2,
              "ray_version": ray.__version__, "ray_init_s": round(ray_init_s, 2), "results": results,
              "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
              "quick": args.quick, "machine": describe_machine()}
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
