"""Training and inference throughput of every 48x48 model on this CPU.

For each registered model with a 48x48 input (or those given with ``--models``):

* training images/s (forward + backward + SGD-momentum step, batch 64, random data) in fp32
  and under bf16 autocast, each with NCHW and channels-last memory layout;
* inference faces/s (eval mode, ``torch.inference_mode``, batch 256, fp32), NCHW and
  channels-last.

Every number is given two ways: per wall-clock second (what you get on this machine as it
is) and per CPU second of this process (``time.process_time``; what the model costs, which
stays meaningful when other jobs share the CPU: with N threads and an otherwise idle machine,
wall throughput is about N x the per-CPU-second one for single-threaded runs, a bit less with
threads; run with ``OMP_WAIT_POLICY=PASSIVE`` on a busy machine so that OpenMP threads
waiting for a descheduled sibling sleep instead of spinning on CPU time). The machine's load
average is recorded before and after.

bf16 autocast is only a win on CPUs with bf16 units (AVX512-BF16 / AMX); where the fp32
training step of a model already takes more than ``--bf16-max-step`` CPU seconds its bf16 run
is skipped (and recorded as skipped) because it would take ~10x longer still on such a CPU.

    OMP_NUM_THREADS=2 nice -n 19 python benchmarks/train_throughput.py [--quick] [--models a,b]

writes ``benchmarks/results/train_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import describe_machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from wildfer.models import create_model, list_models, model_info  # noqa: E402
from wildfer.models.complexity import count_macs, count_params  # noqa: E402


def _timed(step, budget: float, min_steps: int) -> tuple[int, float, float]:
    """Run ``step()`` until ``budget`` seconds (at least ``min_steps``); (steps, wall, cpu)."""
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while n < min_steps or time.perf_counter() - t0 < budget:
        step()
        n += 1
    return n, time.perf_counter() - t0, time.process_time() - c0


def _fresh_model(name: str, channels_last: bool, train: bool) -> tuple[torch.nn.Module, torch.memory_format]:
    """The model ``name`` with seed-0 weights, in training or eval mode, in the memory layout
    under test (a model with its own ``channels_last`` switch, like fastfer, follows it).
    Returns the model and the memory format its inputs should use."""
    torch.manual_seed(0)
    model = create_model(name)
    if hasattr(model, "channels_last"):
        model.channels_last = channels_last
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(memory_format=fmt).train(train), fmt


def bench_train(name: str, channels_last: bool, bf16: bool, batch: int, budget: float, warmup: int) -> dict:
    model, fmt = _fresh_model(name, channels_last, train=True)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, 1, 48, 48).contiguous(memory_format=fmt)
    y = torch.randint(0, 7, (batch,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        t0 = time.perf_counter()
        step()
        if time.perf_counter() - t0 > budget:  # a slow model: one warm-up step is enough
            break
    n, wall, cpu = _timed(step, budget, 1)
    return {"img_per_s": round(n * batch / wall, 1), "img_per_cpu_s": round(n * batch / max(cpu, 1e-9), 1),
            "step_s": round(wall / n, 3), "step_cpu_s": round(cpu / n, 3), "steps": n, "batch": batch}


@torch.inference_mode()
def bench_infer(name: str, channels_last: bool, batch: int, budget: float) -> dict:
    model, fmt = _fresh_model(name, channels_last, train=False)
    x = torch.randn(batch, 1, 48, 48).contiguous(memory_format=fmt)
    model(x)
    n, wall, cpu = _timed(lambda: model(x), budget, 2)
    return {"faces_per_s": round(n * batch / wall, 1), "faces_per_cpu_s": round(n * batch / max(cpu, 1e-9), 1),
            "batch_s": round(wall / n, 4), "batches": n, "batch": batch}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short timings on four small models (a smoke run)")
    ap.add_argument("--models", default="", help="comma-separated names (default: every 48x48 model)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the JSON keeps one run per count)")
    ap.add_argument("--batch", type=int, default=64, help="training batch size")
    ap.add_argument("--infer-batch", type=int, default=256)
    ap.add_argument("--big-macs", type=float, default=500e6,
                    help="models above this many MACs per face are timed at batch 16 (recorded per entry)")
    ap.add_argument("--budget", type=float, default=None, help="seconds timed per configuration")
    ap.add_argument("--bf16-max-step", type=float, default=None,
                    help="skip bf16 for models whose fp32 training step takes more CPU seconds than this")
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. what else was running)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_throughput.json"))
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    budget = args.budget if args.budget is not None else (2.0 if args.quick else 6.0)
    bf16_max = args.bf16_max_step if args.bf16_max_step is not None else (0.5 if args.quick else 2.0)
    warmup = 1 if args.quick else 2
    names = [n for n in args.models.split(",") if n] or [n for n in list_models() if model_info(n).input_size == 48]
    if args.quick and not args.models:
        names = [n for n in names if n in ("shallow", "fastfer", "mini_xception", "vggfer_small")]

    load0 = os.getloadavg()
    t_start = time.time()
    results: dict[str, dict] = {}
    for name in names:
        info = model_info(name)
        with torch.device("meta"):
            meta = create_model(name)
        rec: dict = {"family": info.family, "params": count_params(meta),
                     "macs": count_macs(meta, (1, info.input_size, info.input_size), device="meta"),
                     "train": {}, "inference": {}}
        big = rec["macs"] > args.big_macs
        tb, ib = (16, 16) if big else (args.batch, args.infer_batch)
        print(f"{name}: {rec['params'] / 1e6:.2f} M params, {rec['macs'] / 1e6:.1f} M MACs", flush=True)
        for cl in (False, True):
            key = f"fp32_{'channels_last' if cl else 'nchw'}"
            rec["train"][key] = r = bench_train(name, cl, False, tb, budget, warmup)
            print(f"  train {key:22s} {r['img_per_s']:8.1f} img/s  {r['img_per_cpu_s']:8.1f} img/cpu-s", flush=True)
        fp32_step = min(v["step_cpu_s"] for v in rec["train"].values())
        for cl in (False, True):
            key = f"bf16_{'channels_last' if cl else 'nchw'}"
            if fp32_step > bf16_max:
                rec["train"][key] = {"skipped": f"fp32 step {fp32_step:.2f} CPU s > {bf16_max}s; bf16 autocast is ~10x slower "
                                                f"than fp32 on a CPU without bf16 units"}
                continue
            rec["train"][key] = r = bench_train(name, cl, True, tb, budget, 1)
            print(f"  train {key:22s} {r['img_per_s']:8.1f} img/s  {r['img_per_cpu_s']:8.1f} img/cpu-s", flush=True)
        for cl in (False, True):
            key = "channels_last" if cl else "nchw"
            rec["inference"][key] = r = bench_infer(name, cl, ib, budget)
            print(f"  infer {key:22s} {r['faces_per_s']:8.1f} faces/s {r['faces_per_cpu_s']:8.1f} faces/cpu-s", flush=True)
        timed = {k: v for k, v in rec["train"].items() if "img_per_cpu_s" in v}
        rec["best_train"] = max(timed, key=lambda k: timed[k]["img_per_cpu_s"])
        rec["best_inference"] = max(rec["inference"], key=lambda k: rec["inference"][k]["faces_per_cpu_s"])
        results[name] = rec

    load1 = os.getloadavg()
    run = {
        "quick": args.quick,
        "threads": args.threads,
        "train_batch": args.batch,
        "inference_batch": args.infer_batch,
        "big_model_batch": 16,
        "seconds_per_config": budget,
        "loadavg_start": [round(v, 2) for v in load0],
        "loadavg_end": [round(v, 2) for v in load1],
        "machine_busy": max(load0[0], load1[0]) > 0.5,
        "total_seconds": round(time.time() - t_start, 1),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "note": args.note,
        "models": results,
    }
    out_path = Path(args.out)
    doc: dict = {}
    if out_path.exists():
        try:
            doc = json.loads(out_path.read_text())
        except ValueError:
            doc = {}
    if doc.get("benchmark") != "train_throughput":
        doc = {}
    doc.update({
        "benchmark": "train_throughput",
        "machine": describe_machine(),
        "how_to_read": "img_per_s / faces_per_s are wall-clock; *_per_cpu_s divide by this process's CPU time, "
                       "which stays meaningful while other jobs share the CPU (with 1 thread on an idle machine the "
                       "two agree; with 2 threads on a busy machine the per-CPU numbers also count spin-waiting).",
    })
    doc.setdefault("runs", {})[f"threads={args.threads}" + ("_quick" if args.quick else "")] = run
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(doc, indent=2))
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
