"""End-to-end latency of the wild pipeline (decode -> detect -> align -> classify) on 720p
photos, and photos/s over a folder with one and two worker processes.

Writes ``benchmarks/results/wild_latency.json``.

Photos (built from $WILDFER_DATA/wild, JPEG-encoded so decoding is part of the cost):
``one_face_720p``: a KDEF portrait, scaled 1.5x, on a 1280x720 textured background;
``ten_faces_720p``: the UltraFace demo photo with 10 faces, resized to 1280x720;
``one_face_12mp``: the portrait scaled 4.5x on a 4032x3024 background, a phone photo's size,
timed for the pipeline as it ships (a JPEG this large is decoded at 1/2, 1/4 or 1/8 of its size,
``Recognizer``'s ``full_decode``) and decoded whole (``+whole_decode``).

Goals: one face <= 40 ms with the pipeline's model (``wild_ensemble``), <= 20 ms with ``fast``;
ten faces <= 150 ms with it. ``wild`` alone runs beside it for comparison. Each is measured with the classifier on
its default backend (``"auto"``: for the pipeline's model, ``wild`` on its int8 graph and ``wild_mfn``
on its float one), its int8 graphs (``"int8"``), its float graphs on onnxruntime (``"onnx"``) and,
where torch is installed, on torch.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/wild_latency.py [--quick] [--pipeline-only] [--model M] [--out FILE]``
(``--pipeline-only``: the pipeline's model on its default backends alone, no folder throughput).
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

from common import DATA, describe_machine, write_result

ROOT = Path(__file__).resolve().parent.parent
WILD = DATA / "wild"
OUT = ROOT / "benchmarks" / "results" / "wild_latency.json"


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
    big_bg = cv2.GaussianBlur(cv2.resize(rng.integers(0, 256, (142, 189, 3), dtype=np.uint8), (4032, 3024),
                                         interpolation=cv2.INTER_CUBIC), (0, 0), 18)
    big_face = cv2.resize(face, (int(281 * 4.5), int(381 * 4.5)), interpolation=cv2.INTER_CUBIC)
    y, x = (3024 - big_face.shape[0]) // 2, (4032 - big_face.shape[1]) // 2
    big_bg[y:y + big_face.shape[0], x:x + big_face.shape[1]] = big_face
    return {"one_face_720p": _jpeg(one), "ten_faces_720p": _jpeg(ten), "one_face_12mp": _jpeg(big_bg)}


def load_classifier(model: str | None, backend: str = "auto", threads: int | None = None):
    from wildfer.models.loader import PIPELINE_MODEL, load_model

    name = model or PIPELINE_MODEL
    return load_model(name, backend=backend, threads=threads), name


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
    from wildfer.wild import Recognizer

    clf, _ = load_classifier(model_path, threads=1)
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


#: (model, backend, max_side) settings measured; the first is the pipeline as it ships
SETTINGS = [(None, "auto", 640), (None, "int8", 640), (None, "onnx", 640), (None, "torch", 640),
            ("wild", "int8", 640), ("wild", "onnx", 640), ("fast", "int8", 640), ("fast", "onnx", 640),
            (None, "auto", 320)]
GOALS_MS = {("one_face_720p", None): 40.0, ("one_face_720p", "fast"): 20.0, ("ten_faces_720p", None): 150.0}


def measure(photos: dict, n: int, pipeline_only: bool = False) -> dict:
    from wildfer.wild import Recognizer

    from wildfer.models.runtime import has_torch

    out = {}
    for i, (model, backend, max_side) in enumerate(SETTINGS[:1] if pipeline_only else SETTINGS):
        if backend == "torch" and not has_torch():
            continue
        clf, name = load_classifier(model, backend)
        for full_decode in (False, True) if i == 0 else (False,):  # the shipped pipeline also decoding whole
            rec = Recognizer(model=clf, max_side=max_side, full_decode=full_decode)
            for photo, data in photos.items():
                if (model == "fast" and photo != "one_face_720p") or (photo == "one_face_12mp" and i > 0) \
                        or (full_decode and photo != "one_face_12mp"):
                    continue
                r = latency(rec, data, n)
                goal = GOALS_MS.get((photo, model)) if max_side == 640 else None
                r.update(model=name, backend=clf.backend_label, max_side=max_side, detector=rec.detector.name,
                         full_decode=full_decode, goal_ms=goal, meets_goal=None if goal is None else r["median_ms"] <= goal)
                key = f"{photo}@{max_side}+{name}+{clf.backend}" + ("+whole_decode" if full_decode else "")
                out[key] = r
                print(key, r, flush=True)
    return out


def throughput_folder(tmp: str, quick: bool, model: str | None) -> list[dict]:
    files = []
    pool_src = sorted((WILD / "kdef_frontal").glob("*.JPG"))[:: 40] + sorted((WILD / "groups").glob("*.jpg"))
    for i, p in enumerate(pool_src[: 12 if quick else 40]):
        dst = Path(tmp) / f"{i:03d}{p.suffix.lower()}"
        dst.write_bytes(p.read_bytes())
        files.append(str(dst))
    return [throughput(files, w, model, 640) for w in (1, 2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs and photos")
    ap.add_argument("--pipeline-only", action="store_true",
                    help="only the pipeline's model on its default backends, and no folder throughput")
    ap.add_argument("--model", default=None, help="model for the throughput runs (default: the pipeline's)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"where the JSON goes (default {OUT.name})")
    args = ap.parse_args()

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # the light install: onnxruntime only
        pass
    load_before = os.getloadavg()
    result: dict = {
        "torch_threads": 1, "onnxruntime_threads": "its default (one per core)",
        "machine": describe_machine(load_avg_before=[round(x, 2) for x in load_before]),
        "latency": measure(build_photos(), 10 if args.quick else 40, args.pipeline_only),
    }
    if not args.pipeline_only:
        with tempfile.TemporaryDirectory() as tmp:
            result["throughput"] = throughput_folder(tmp, args.quick, args.model)
            print(result["throughput"], flush=True)
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["goals"] = {k: {"median_ms": v["median_ms"], "goal_ms": v["goal_ms"], "met": v["meets_goal"]}
                       for k, v in result["latency"].items() if v["goal_ms"] is not None}
    result["note"] = ("Detector yunet (the shipped YuNet graph on onnxruntime, 1 thread); the classifier on "
                      "torch with 1 thread, or its int8 or float graph on onnxruntime. Other jobs on the machine inflate "
                      "wall-clock numbers; cpu_median_ms is the process's CPU time.")
    write_result(args.out, result)
    print(json.dumps(result["goals"], indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
