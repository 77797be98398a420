"""End-to-end latency of the wild pipeline (decode -> detect -> align -> classify) on 720p
photos, and photos/s over a folder with one and two worker processes.

Writes ``benchmarks/results/wild_latency.json``. Goal: at most 40 ms median for a
one-face 1280x720 photo on a 2-core CPU.

Photos (built from $WILDFER_DATA/wild, JPEG-encoded so decoding is part of the cost):
``one_face_720p``: a KDEF portrait, scaled 1.5x, on a 1280x720 textured background;
``ten_faces_720p``: the UltraFace demo photo with 10 faces, resized to 1280x720.

Usage: ``OMP_NUM_THREADS=1 nice -n 19 python benchmarks/wild_latency.py [--quick] [--model M]``.
A training run or other jobs on the machine inflate every number; the JSON records the load
average before and after so readers can judge.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from common import DATA, describe_machine

ROOT = Path(__file__).resolve().parent.parent
WILD = DATA / "wild"
OUT = ROOT / "benchmarks" / "results" / "wild_latency.json"
GOAL_MS = 40.0


def _jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def build_photos() -> dict[str, bytes]:
    import cv2

    from wildfer.data.images import read_image

    rng = np.random.default_rng(0)
    bg = rng.integers(0, 256, (45, 80, 3), dtype=np.uint8)
    bg = cv2.resize(bg, (1280, 720), interpolation=cv2.INTER_CUBIC)
    bg = cv2.GaussianBlur(bg, (0, 0), 6)
    face = read_image(WILD / "kdef_frontal" / "AF01HAS.JPG")
    face = cv2.resize(face, (int(281 * 1.5), int(381 * 1.5)), interpolation=cv2.INTER_CUBIC)
    y, x = (720 - face.shape[0]) // 2, (1280 - face.shape[1]) // 2
    one = bg.copy()
    one[y:y + face.shape[0], x:x + face.shape[1]] = face
    group = read_image(WILD / "groups" / "ultraface_20.jpg")
    ten = cv2.resize(group, (1280, 720), interpolation=cv2.INTER_AREA)
    return {"one_face_720p": _jpeg(one), "ten_faces_720p": _jpeg(ten)}


def load_classifier(model: str | None):
    from wildfer.models import create_model
    from wildfer.models.loader import Classifier, builtin_models, load_model

    if model:
        return load_model(model), model
    if "default" in builtin_models():
        return load_model("default"), "default"
    ckpt = ROOT / "runs" / "default" / "best.pt"
    if ckpt.exists():
        return load_model(ckpt), str(ckpt.relative_to(ROOT))
    import torch

    torch.manual_seed(0)  # same architecture as the default model, untrained: the cost is the same
    return Classifier(create_model("vggfer_small"), name="vggfer_small (untrained)", arch="vggfer_small"), \
        "vggfer_small (untrained; no default weights yet)"


def latency(rec, data: bytes, n: int, warmup: int = 3) -> dict:
    for _ in range(warmup):
        rec.predict(data)
    tot, cpu, stages, faces = [], [], {}, 0
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        res = rec.predict(data)
        tot.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
        faces = len(res.faces)
        for k, v in res.timings.items():
            stages.setdefault(k, []).append(v)
    return {
        "faces": faces, "runs": n,
        "median_ms": round(float(np.median(tot)), 2), "p95_ms": round(float(np.percentile(tot, 95)), 2),
        "min_ms": round(float(np.min(tot)), 2),
        # CPU time of this (single-threaded) process: what the latency is on an idle core
        "cpu_median_ms": round(float(np.median(cpu)), 2), "cpu_p95_ms": round(float(np.percentile(cpu, 95)), 2),
        "stage_median_ms": {k: round(float(np.median(v)), 2) for k, v in stages.items() if k != "total"},
    }


# -- throughput with a process pool (one recognizer per process, one thread each)
_REC = None


def _init(model_path: str | None, max_side: int):
    global _REC
    import torch

    torch.set_num_threads(1)
    from wildfer.wild import Recognizer

    clf, _ = load_classifier(model_path)
    _REC = Recognizer(model=clf, max_side=max_side)


def _work(path: str) -> int:
    return len(_REC.predict(path).faces)


def _warm(_: int) -> int:
    time.sleep(0.2)
    return 0


def throughput(files: list[str], workers: int, model_path: str | None, max_side: int) -> dict:
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    with ctx.Pool(workers, initializer=_init, initargs=(model_path, max_side)) as pool:
        pool.map(_warm, range(workers * 2), chunksize=1)  # every worker has loaded its model
        t0 = time.perf_counter()
        faces = pool.map(_work, files, chunksize=1)
        dt = time.perf_counter() - t0
    return {"workers": workers, "photos": len(files), "faces": int(sum(faces)), "seconds": round(dt, 2),
            "photos_per_s": round(len(files) / dt, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs and photos")
    ap.add_argument("--model", default=None, help="model (default: built-in default, else runs/default/best.pt)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from wildfer.wild import Recognizer

    load_before = os.getloadavg()
    clf, model_desc = load_classifier(args.model)
    photos = build_photos()
    n = 10 if args.quick else 40
    result: dict = {
        "goal_ms": GOAL_MS, "model": model_desc, "detector": "yunet", "torch_threads": 1,
        "machine": describe_machine(load_avg_before=[round(x, 2) for x in load_before]),
        "latency": {},
    }
    for max_side in (640, 480, 320):
        rec = Recognizer(model=clf, detector="yunet", max_side=max_side)
        for name, data in photos.items():
            r = latency(rec, data, n)
            result["latency"][f"{name}@{max_side}"] = r
            print(name, max_side, r, flush=True)
    # the classifier's share: the same photo with the CPU-oriented fastfer architecture (the
    # built-in "fast" model's; untrained weights here, which cost exactly the same)
    from wildfer.models import create_model, list_models
    from wildfer.models.loader import Classifier

    if "fastfer" in list_models():
        fast = Classifier(create_model("fastfer"), name="fastfer (architecture cost)", arch="fastfer")
        for max_side in (640, 320):
            rec = Recognizer(model=fast, detector="yunet", max_side=max_side)
            r = latency(rec, photos["one_face_720p"], n)
            result["latency"][f"one_face_720p@{max_side}+fastfer"] = r
            print("fastfer", max_side, r, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        pool_src = sorted((WILD / "kdef_frontal").glob("*.JPG"))[:: 40] + sorted((WILD / "groups").glob("*.jpg"))
        pool_src = pool_src[: 12 if args.quick else 40]
        for i, p in enumerate(pool_src):
            dst = Path(tmp) / f"{i:03d}{p.suffix.lower()}"
            dst.write_bytes(p.read_bytes())
            files.append(str(dst))
        result["throughput"] = [throughput(files, w, args.model, 640) for w in (1, 2)]
        print(result["throughput"], flush=True)
    one = result["latency"]["one_face_720p@640"]
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["meets_goal"] = one["median_ms"] <= GOAL_MS
    result["miss_by_ms"] = round(max(0.0, one["median_ms"] - GOAL_MS), 2)
    result["meets_goal_cpu_time"] = one["cpu_median_ms"] <= GOAL_MS
    result["cpu_miss_by_ms"] = round(max(0.0, one["cpu_median_ms"] - GOAL_MS), 2)
    best = min((v["cpu_median_ms"], v["median_ms"], k) for k, v in result["latency"].items() if k.startswith("one_face"))
    result["fastest_one_face"] = {"setting": best[2], "cpu_median_ms": best[0], "median_ms": best[1]}
    result["note"] = ("1-thread classifier and detector; a background training run shared the 2 cores during "
                      "the measurement when load_avg_before is well above 0 - every wall-clock number is then inflated, "
                      "while cpu_median_ms (the process's CPU time) stays close to the idle-machine latency. "
                      "max_side is the detector's working resolution (640 default; 320 finds faces down to "
                      "about 40 px in a 720p photo).")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("meets_goal", "miss_by_ms", "meets_goal_cpu_time", "cpu_miss_by_ms",
                                             "fastest_one_face")}))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
