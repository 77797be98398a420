"""Photos/s of ``wildfer predict`` with 1 and 2 worker processes (``--workers``) on 720p one-face photos.

Writes ``benchmarks/results/predict_workers.json``. The photos are synthetic, so nothing
needs downloading: matplotlib's bundled portrait of Grace Hopper at several sizes and
places, every other one mirrored, on a blurred-noise 1280 x 720 background, JPEG-encoded.

Each setting is one ``wildfer predict --json`` command in a new process, as a user times it:
Python's start, the imports, loading the model, starting the workers and writing the report
included.
``one_photo_s`` is the same call on one photo (about the fixed cost), so
``steady_photos_per_s`` = (photos - 1) / (seconds - one_photo_s) is the rate once started,
and ``break_even_photos`` the run length from which 2 workers finish first (their extra
start-up over the time they save per photo).

Usage: ``python benchmarks/predict_workers.py [--quick]`` (``--quick``: 12 photos in batches
of 4, the fast model, one repeat; else 60 photos in predict's default batches of 16). Other jobs on the machine lower every number: the JSON records the load
average before and after, and says so when it was above 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import describe_machine

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "predict_workers.json"


def build_photos(folder: Path, n: int) -> list[Path]:
    """``n`` 1280 x 720 JPEGs with one face each."""
    import cv2
    from matplotlib import cbook
    from PIL import Image

    face = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        bg = cv2.GaussianBlur(cv2.resize(rng.integers(0, 256, (45, 80, 3), dtype=np.uint8), (1280, 720),
                                         interpolation=cv2.INTER_CUBIC), (0, 0), 6)
        scale = 0.45 + 0.5 * rng.random()  # faces about 150 to 300 px wide
        f = cv2.resize(face, (round(face.shape[1] * scale), round(face.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        if i % 2:
            f = f[:, ::-1]
        y = int(rng.integers(0, 720 - f.shape[0] + 1))
        x = int(rng.integers(0, 1280 - f.shape[1] + 1))
        bg[y:y + f.shape[0], x:x + f.shape[1]] = f
        out.append(folder / f"p{i:03d}.jpg")
        Image.fromarray(bg).save(out[-1], quality=90)
    return out


def timed_predict(photos, model: str, workers: int, out: Path, batch: int) -> tuple[float, dict]:
    """Seconds of one ``wildfer predict`` command, and its report's summary."""
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", "import sys; from wildfer.cli import main; sys.exit(main())", "predict",
           *map(str, photos), "--model", model, "--json", str(out), "--workers", str(workers),
           "--batch", str(batch)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"predict exited with {r.returncode}: {r.stderr[-2000:]}")
    return dt, json.loads(out.read_text())["summary"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="12 photos, the fast model, one repeat")
    args = ap.parse_args()

    import torch  # for the machine record (torch's version, the GPU)

    n = 12 if args.quick else 60
    models = ["fast"] if args.quick else ["fast", "wild"]
    repeats = 1 if args.quick else 2
    batch = 4 if args.quick else 16  # the workers share the photos a batch at a time
    load_before = os.getloadavg()
    result: dict = {
        "photos": n, "photo": "1280x720 JPEG, one face", "detector": "yunet", "batch": batch, "repeats": repeats,
        "main_torch_threads": torch.get_num_threads(), "worker_torch_threads": 1,
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "machine": describe_machine(load_avg_before=[round(x, 2) for x in load_before]),
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        photos = build_photos(Path(tmp) / "in", n)
        report = Path(tmp) / "r.json"
        for model in models:
            for workers in (1, 2):
                timed_predict(photos[:1], model, workers, report, batch)  # the files and modules in the page cache
                one = min(timed_predict(photos[:1], model, workers, report, batch)[0] for _ in range(repeats))
                times, summary = [], {}
                for _ in range(repeats):
                    dt, summary = timed_predict(photos, model, workers, report, batch)
                    times.append(dt)
                best = min(times)
                run = {"model": model, "workers": workers, "seconds": round(best, 2),
                       "all_seconds": [round(t, 2) for t in times], "photos_per_s": round(n / best, 2),
                       "one_photo_s": round(one, 2),
                       "steady_photos_per_s": round((n - 1) / max(best - one, 1e-6), 2),
                       "faces": summary.get("faces")}
                result["runs"].append(run)
                print(json.dumps(run), flush=True)
    load_after = os.getloadavg()
    result["load_avg_after"] = [round(x, 2) for x in load_after]
    speedup = {}
    for model in models:
        by = {r["workers"]: r for r in result["runs"] if r["model"] == model}
        saved = 1 / by[1]["steady_photos_per_s"] - 1 / by[2]["steady_photos_per_s"]
        extra = by[2]["one_photo_s"] - by[1]["one_photo_s"]
        speedup[model] = {"photos_per_s": round(by[2]["photos_per_s"] / by[1]["photos_per_s"], 2),
                          "steady_photos_per_s": round(by[2]["steady_photos_per_s"] / by[1]["steady_photos_per_s"], 2),
                          "break_even_photos": (max(0, round(extra / saved)) if saved > 0 else None)}
    result["speedup_2_workers"] = speedup
    shared = max(load_before[0], load_after[0]) > 1.0
    result["machine_shared"] = shared
    result["note"] = (
        ("The machine was shared with other jobs during the measurement (1-minute load average above 1 "
         "before or after): the wall-clock numbers are those of a busy machine, not an idle one. "
         if shared else "")
        + "workers=1 is predict in one process (torch on main_torch_threads threads); workers=2 is two processes "
          "of one thread each, started from a forkserver that has imported torch, with the main process writing.")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(json.dumps({"speedup_2_workers": speedup, "machine_shared": shared}))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
