"""Classifier throughput: faces/s at batch 1, 64 and 256, torch vs onnxruntime vs the int8 graph, on every device
this machine offers (the CPU, and the first CUDA GPU where torch or onnxruntime can use one),
and peak RSS; writes benchmarks/results/inference.json.

    python benchmarks/inference.py [--models default,fast] [--quick] [--threads 2] [--batch-sizes 1,64,256]
                                   [--devices auto] [--out F]

Models are built-in names or checkpoint paths; a missing built-in is recorded, not fatal. Each
model's ``devices`` maps a device (``cpu``, ``cuda:0``) to its numbers; a backend that cannot
use a device is recorded with the reason instead.
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


def devices_to_measure(wanted: str) -> list[str]:
    """The devices ``--devices`` names (``cpu``, ``cuda``, ``cuda:N``), as ``cpu`` / ``cuda:N``,
    each one torch or onnxruntime can use; ``auto``: the CPU, and ``cuda:0`` where usable."""
    from wildfer.errors import ModelError
    from wildfer.models.loader import resolve_device

    auto = wanted.strip().lower() == "auto"
    names = ["cpu", "cuda"] if auto else [d for d in wanted.split(",") if d.strip()]
    out: list[str] = []
    for name in names:
        reasons = []
        for backend in ("torch", "onnx"):
            try:
                device = resolve_device(name, backend)
                break
            except ModelError as e:
                reasons.append(str(e))
        else:  # neither backend can use it
            if not auto:
                raise SystemExit(f"error: --devices: {reasons[0]}")
            continue
        if device not in out:
            out.append(device)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="default,fast,ferplus")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", default="1,64,256", help="e.g. 1,16 for a slow model such as accurate")
    ap.add_argument("--devices", default="auto", help="auto (the CPU, and cuda:0 where usable), or e.g. cpu,cuda")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "inference.json"))
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from wildfer.errors import ModelError, WildferError
    from wildfer.models.loader import load_model, resolve_device
    from wildfer.models.onnx import attach_onnx
    from wildfer.models.quantize import attach_int8

    min_time = 1.0 if args.quick else 4.0
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    devices = devices_to_measure(args.devices)
    rng = np.random.default_rng(0)
    def make(name: str, backend: str, device: str):
        if backend == "torch":
            return load_model(name, device=device)
        if backend == "int8":
            return attach_int8(load_model(name), threads=args.threads)
        return attach_onnx(load_model(name), threads=args.threads, device=device)

    results = {}
    for name in [m for m in args.models.split(",") if m]:
        try:
            clf = load_model(name)
        except WildferError as e:
            results[name] = {"error": str(e)}
            continue
        row = {"arch": clf.arch, "params": clf.num_params(), "devices": {}}
        for device in devices:
            numbers = row["devices"][device] = {}
            for backend in ("torch", "onnx", "int8"):
                try:
                    resolve_device(device, backend)
                    c = make(name, backend, device)
                except ModelError as e:  # a GPU the backend cannot use; no int8 graph for this model
                    numbers[f"{backend}_unavailable"] = str(e)
                    continue
                for bs in batch_sizes:
                    faces = rng.integers(0, 256, size=(bs, 48, 48), dtype=np.uint8)
                    # predict_proba returns numpy on the CPU, so each call waits for the GPU
                    numbers[f"{backend}_b{bs}_faces_per_s"] = round(
                        bench(lambda: c.predict_proba(faces, batch_size=bs), bs, min_time), 1)
                del c
            big = 64 if 64 in batch_sizes else max(batch_sizes)
            measured = {b: v for b in ("torch", "onnx", "int8") if (v := numbers.get(f"{b}_b{big}_faces_per_s"))}
            if measured:
                numbers[f"faster_backend_b{big}"] = max(measured, key=measured.get)
        results[name] = row
    out = {
        "benchmark": "classifier inference (preprocessing + forward + softmax): fp32 torch and onnxruntime, int8 graphs",
        "machine": describe_machine(threads=args.threads),
        "quick": args.quick,
        "devices": devices,
        "load_average_at_end": os.getloadavg(),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "models": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
