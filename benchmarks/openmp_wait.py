"""Why ``import wildfer`` sets ``OMP_WAIT_POLICY=PASSIVE``: seconds of ``wildfer predict`` on 10
one-face photos, and the ``default`` classifier's inference and training rates, with OpenMP
threads that spin between parallel regions (ACTIVE) and that sleep (PASSIVE).

Writes ``benchmarks/results/openmp_wait.json``. Each setting runs in a fresh process (the
OpenMP runtimes read the variable when they load). Usage:
``python benchmarks/openmp_wait.py [--quick]`` (``--quick``: 3 photos, one repeat).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import describe_machine

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "openmp_wait.json"

RATES = """
import json, time, numpy as np, torch
from wildfer.models.loader import load_model
net = load_model("default").net.eval()
t = torch.randn(64, 1, 48, 48)
with torch.inference_mode():
    net(t)
    t0 = time.perf_counter()
    for _ in range(10):
        net(t)
    infer = 640 / (time.perf_counter() - t0)
net.train()
opt = torch.optim.SGD(net.parameters(), lr=0.01)
y = torch.zeros(64, dtype=torch.long)
t0 = time.perf_counter()
for _ in range(5):
    opt.zero_grad(); torch.nn.functional.cross_entropy(net(t), y).backward(); opt.step()
print(json.dumps({"infer_faces_per_s": round(infer, 1), "train_faces_per_s": round(320 / (time.perf_counter() - t0), 1)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    from matplotlib import cbook

    n, repeats = (3, 1) if args.quick else (10, 2)
    load_before = os.getloadavg()[0]
    results = {}
    with tempfile.TemporaryDirectory() as d:
        photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        photos = [shutil.copy(photo, Path(d) / f"p{i}.jpg") for i in range(n)]
        for policy in ("ACTIVE", "PASSIVE"):
            env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
            env["OMP_WAIT_POLICY"] = policy
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "wildfer.cli", "predict", *map(str, photos), "--model", "fast",
                                "--mode", "search", "--json", str(Path(d) / "r.json")], env=env, check=True,
                               capture_output=True)
                times.append(round(time.perf_counter() - t0, 2))
            rates = json.loads(subprocess.run([sys.executable, "-c", RATES], env=env, check=True, capture_output=True,
                                              text=True).stdout)
            results[policy] = {"predict_seconds": times, **rates}
            print(policy, json.dumps(results[policy]), flush=True)
    report = {"benchmark": "openmp_wait", "photos": n, "command": "wildfer predict PHOTOS --model fast --mode search",
              "results": results, "load_average_before": round(load_before, 2),
              "load_average_after": round(os.getloadavg()[0], 2), "quick": args.quick, "machine": describe_machine()}
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
