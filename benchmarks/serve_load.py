"""Load test of ``wildfer serve``: N concurrent clients on loopback.

Starts ``wildfer serve`` as a separate process (so its memory and CPU are measured alone),
warms it up, then sends ``--requests`` photo uploads from ``--concurrency`` client threads
(each with its own keep-alive connection), bounded by ``--max-seconds``. Records, to
``benchmarks/results/serve_load.json``:

* photos/s, latency percentiles, errors (anything but 200);
* the server's resident memory (RSS, all its processes) at startup, after the warm-up and
  after every 100 requests, the growth and its trend (MB per 1,000 requests);
* the server's CPU seconds per photo (process CPU clock: meaningful on a busy machine too,
  where wall-clock rates are not), and the share of it spent in inference;
* a per-stage CPU profile of the same pipeline in this process (``--no-profile`` to skip):
  multipart parsing, decode, detect, align, classify (one photo, and batches of 8), JSON.

Goal: >= 20 photos/s at concurrency 8 on a 2-core CPU, 0 errors, flat
memory over 1,000 requests; on 2 cores, 20 photos/s leaves at most ~90 ms of CPU per photo
for the server and the clients together.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/serve_load.py            # 1,000 requests
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/serve_load.py --quick    # 200 requests
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from common import DATA, describe_machine, run_threads, write_result

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "serve_load.json"
GOAL = {"photos_per_s_min": 20, "errors": 0, "rss_growth_second_half_mb_max": 5.0}


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and its child processes (uvicorn's workers with ``--workers N``)."""
    return [pid] + _children(pid)


def rss_by_process(pid: int) -> dict[int, float]:
    """Resident memory (MB) of ``pid`` and each of its children (Linux /proc)."""
    out = {}
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[p] = int(line.split()[1]) / 1024.0
        except OSError:
            pass
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children in MB."""
    return sum(rss_by_process(pid).values())


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its children."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def load_photos(kind: str, n: int) -> list[tuple[str, bytes]]:
    wild = DATA / "wild"
    manifest = {"kdef": "kdef_frontal.csv", "groups": "groups.csv", "lfw": "lfw.csv"}[kind]
    rows = list(csv.DictReader(open(wild / manifest)))
    step = max(1, len(rows) // n)
    picked = rows[::step][:n]
    return [(r["path"], (wild / r["path"]).read_bytes()) for r in picked]


def cpu_note() -> dict:
    load = os.getloadavg()
    others = []
    try:
        out = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True, timeout=5).stdout
        others = [ln.strip() for ln in out.splitlines()[1:4]]
    except Exception:  # noqa: BLE001 - informational only
        pass
    return {"cpus": os.cpu_count(), "loadavg_1_5_15": [round(x, 2) for x in load], "top_processes_before": others}


def trend_mb_per_1000(samples: list[tuple[int, float]], skip: int = 100) -> float | None:
    """Least-squares slope of RSS over requests (after the first ``skip``), MB per 1,000."""
    pts = [(n, m) for n, m in samples if n >= skip]
    if len(pts) < 2:
        return None
    x, y = np.array(pts, dtype=np.float64).T
    return round(float(np.polyfit(x, y, 1)[0] * 1000), 2)


# ----------------------------------------------------------------------------- stage profile


def profile_stages(photos: list[tuple[str, bytes]], model: str, backend: str, reps: int) -> dict:
    """CPU ms per photo of each step the server takes, on this thread's CPU clock (torch and
    onnxruntime on one thread, as in a server inference thread)."""
    import httpx
    import torch
    from fastapi.responses import JSONResponse

    from wildfer.jsonio import json_ready
    from wildfer.serve.app import load_recognizer
    from wildfer.serve.uploads import decode_image, extract_image_bytes
    from wildfer.wild.align import align_face, to_gray

    torch.set_num_threads(1)
    rec = load_recognizer(model, "yunet", backend, compute_threads=1)
    bodies = []
    for name, data in photos:
        req = httpx.Request("POST", "http://x/v1/predict", files={"file": (name, data, "image/jpeg")})
        bodies.append((req.read(), req.headers["content-type"]))
    clock = time.thread_time
    acc = dict.fromkeys(("multipart", "decode", "detect", "align", "classify_1", "json"), 0.0)
    faces = 0
    for rep in range(reps + 1):  # the first pass warms up
        for body, ctype in bodies:
            t0 = clock()
            data = extract_image_bytes(body, ctype, 50 << 20)
            t1 = clock()
            rgb = decode_image(data, 40_000_000)
            t2 = clock()
            dets = rec.detector.detect(rgb)
            t3 = clock()
            gray = to_gray(rgb)
            crops = [align_face(gray, d, rec.align, rec.detector.name)[0] for d in dets]
            t4 = clock()
            if crops:
                rec.classifier.predict_proba(np.stack(crops))
            t5 = clock()
            res = rec.classify_prepared([rec.prepare(rgb)])[0]  # the result to serialise (not timed)
            t6 = clock()
            JSONResponse(json_ready(res.to_dict()))
            t7 = clock()
            if rep:
                faces += len(dets)
                for k, v in (("multipart", t1 - t0), ("decode", t2 - t1), ("detect", t3 - t2), ("align", t4 - t3),
                             ("classify_1", t5 - t4), ("json", t7 - t6)):
                    acc[k] += v
    n = reps * len(bodies)
    out = {k: round(v / n * 1e3, 2) for k, v in acc.items()}
    works = [rec.prepare(decode_image(extract_image_bytes(b, c, 50 << 20), 40_000_000)) for b, c in bodies[:8]]
    rec.classify_prepared(works)
    t0 = clock()
    for _ in range(reps):
        rec.classify_prepared(works)
    out["classify_in_batches_of_8"] = round((clock() - t0) / (reps * len(works)) * 1e3, 2)
    out["total_one_by_one"] = round(sum(out[k] for k in ("multipart", "decode", "detect", "align", "classify_1", "json")), 2)
    out["faces_per_photo"] = round(faces / n, 2)
    out["backend"] = rec.classifier.backend
    return out


# ----------------------------------------------------------------------------- load test


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 requests instead of 1,000, a shorter profile")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--photos", choices=["kdef", "groups", "lfw"], default="kdef")
    ap.add_argument("--n-photos", type=int, default=40, help="distinct photos cycled through")
    ap.add_argument("--model", default="default")
    ap.add_argument("--workers", type=int, default=1, help="server processes (wildfer serve --workers)")
    ap.add_argument("--threads", type=int, default=None, help="inference threads per process (wildfer serve --threads)")
    ap.add_argument("--backend", default="auto", help="classifier backend (wildfer serve --backend)")
    ap.add_argument("--max-seconds", type=float, default=900.0, help="stop sending after this long")
    ap.add_argument("--no-profile", action="store_true", help="skip the per-stage CPU profile")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    n_req = args.requests or (200 if args.quick else 1000)

    import httpx

    from wildfer.serve.runner import ServerProcess

    photos = load_photos(args.photos, args.n_photos)
    before = cpu_note()
    serve_args = ["--model", args.model, "--workers", args.workers, "--backend", args.backend, "--log-level", "warning",
                  "--max-queue", max(64, 4 * args.concurrency)]
    if args.threads:
        serve_args += ["--threads", args.threads]
    with ServerProcess(serve_args) as server:
        url = server.url
        rss_startup = rss_mb(server.pid)
        info = httpx.get(url + "/v1/models").json()

        def post(c, i):
            name, data = photos[i % len(photos)]
            return c.post("/v1/predict", files={"file": (name, data, "image/jpeg")})

        def run_clients(n: int, on_done=None) -> float:
            counter = iter(range(n))
            lock = threading.Lock()
            stop_at = time.monotonic() + args.max_seconds

            def client():
                with httpx.Client(base_url=url, timeout=60) as c:
                    while time.monotonic() < stop_at:
                        with lock:
                            i = next(counter, None)
                        if i is None:
                            return
                        t0 = time.perf_counter()
                        try:
                            r = post(c, i)
                            code = r.status_code
                            nf = len(r.json()["faces"]) if code == 200 else 0
                        except httpx.HTTPError as e:
                            code, nf = type(e).__name__, 0
                        if on_done is not None:
                            with lock:
                                on_done(time.perf_counter() - t0, code, nf)

            return run_threads(client, args.concurrency)

        # warm-up: every photo once, then a concurrent round (allocators, batch sizes, threads)
        with httpx.Client(base_url=url, timeout=60) as c:
            for i in range(len(photos)):
                assert post(c, i).status_code == 200
        run_clients(max(2 * args.concurrency, len(photos)))
        rss_start = rss_mb(server.pid)
        cpu_start = cpu_s(server.pid)
        health0 = httpx.get(url + "/healthz").json()

        lat, codes, faces = [], [], []
        samples = [(0, rss_start)]

        def on_done(dt, code, nf):
            lat.append(dt)
            codes.append(code)
            faces.append(nf)
            if len(lat) % 100 == 0:
                samples.append((len(lat), rss_mb(server.pid)))

        wall = run_clients(n_req, on_done)
        rss_end_by_pid = rss_by_process(server.pid)
        rss_end = sum(rss_end_by_pid.values())
        cpu_used = cpu_s(server.pid) - cpu_start
        health = httpx.get(url + "/healthz").json()
    load_after = [round(x, 2) for x in os.getloadavg()]

    profile = None
    if not args.no_profile:
        profile = profile_stages(photos, args.model, info["model"].get("backend") or args.backend, 1 if args.quick else 3)

    lat_ms = np.asarray(lat) * 1e3
    done = len(lat)
    errors = sum(1 for c in codes if c != 200)
    half = [s for s in samples if s[0] >= done // 2]
    mid_rss = half[0][1] if half else rss_start
    inference_cpu = None
    if args.workers == 1 and "inference_cpu_s" in health:
        inference_cpu = health["inference_cpu_s"] - health0.get("inference_cpu_s", 0.0)
    res = {
        "benchmark": "serve_load",
        "quick": args.quick,
        "config": {"concurrency": args.concurrency, "requests": n_req, "photos": args.photos, "n_photos": len(photos),
                   "model": info["model"], "detector": info["detector"], "workers": args.workers,
                   "threads_per_process": health.get("threads"), "server_cmd": " ".join(server.cmd[1:]),
                   "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "niceness": os.nice(0)},
        "machine": describe_machine(**before, loadavg_after=load_after,
                                    note="clients and server share the machine's cores; other jobs running at the same time (see "
                                         "top_processes_before, loadavg) take CPU from both, so on a busy machine "
                                         "read the CPU seconds per photo, not photos/s"),
        "results": {
            "completed": done,
            "wall_s": round(wall, 2),
            "photos_per_s": round(done / wall, 2),
            "faces_per_s": round(sum(faces) / wall, 2),
            "latency_ms": {"p50": round(float(np.percentile(lat_ms, 50)), 1), "p90": round(float(np.percentile(lat_ms, 90)), 1),
                           "p99": round(float(np.percentile(lat_ms, 99)), 1), "mean": round(float(lat_ms.mean()), 1),
                           "max": round(float(lat_ms.max()), 1)},
            "server_cpu_s": round(cpu_used, 2),
            "server_cpu_ms_per_photo": round(1e3 * cpu_used / max(done, 1), 1),
            "server_inference_cpu_ms_per_photo": None if inference_cpu is None else round(1e3 * inference_cpu / max(done, 1), 1),
            "server_cpu_share_of_wall": round(cpu_used / wall, 2),
            "cpu_bound_photos_per_s_on_2_free_cores": round(2 * done / cpu_used, 1) if cpu_used > 0 else None,
            "errors": errors,
            "status_counts": {str(k): codes.count(k) for k in sorted(set(codes), key=str)},
            "rss_mb": {"startup": round(rss_startup, 1), "after_warmup": round(rss_start, 1), "at_half": round(mid_rss, 1),
                       "end": round(rss_end, 1), "growth": round(rss_end - rss_start, 1),
                       "growth_second_half": round(rss_end - mid_rss, 1),
                       "trend_mb_per_1000_requests": trend_mb_per_1000(samples),
                       "end_by_process": {str(p): round(m, 1) for p, m in rss_end_by_pid.items()},
                       "samples": [[n, round(m, 1)] for n, m in samples]},
            "server_health_after": health,
        },
        "cpu_ms_per_photo_by_stage": profile,
    }
    r = res["results"]
    res["goal"] = {**GOAL, "met": bool(r["photos_per_s"] >= GOAL["photos_per_s_min"] and errors == 0 and done == n_req
                                       and r["rss_mb"]["growth_second_half"] <= GOAL["rss_growth_second_half_mb_max"])}
    write_result(args.out, res, indent=2)
    print(json.dumps({k: r[k] for k in ("completed", "photos_per_s", "latency_ms", "errors", "server_cpu_ms_per_photo",
                                        "server_inference_cpu_ms_per_photo")}, indent=None))
    if profile:
        print("CPU ms per photo by stage:", json.dumps(profile))
    print(f"rss MB: startup {r['rss_mb']['startup']}, {r['rss_mb']['after_warmup']} -> {r['rss_mb']['end']} "
          f"(second half {r['rss_mb']['growth_second_half']:+}, trend {r['rss_mb']['trend_mb_per_1000_requests']} "
          f"MB/1000); goal met: {res['goal']['met']}; wrote {args.out}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
