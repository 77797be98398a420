"""Soak test of ``wildfer serve`` under hostile traffic, on loopback.

Starts ``wildfer serve`` as a separate process (its memory measured alone), warms it up, then
sends the same good requests (photo uploads to ``/v1/predict``) twice from ``--concurrency``
client threads: once clean, once with ``--hostile`` of the requests replaced by hostile ones,
in turn:

* ``huge_png_explain``: a ~40 KB blank 39-megapixel PNG to ``/v1/explain`` (200 on the
  downscaled copy, or the intended 503 when the explain slots are full);
* ``many_parts``: a multipart body of ~10 MB of empty parts to ``/v1/predict`` (400);
* ``slow_headers``: a connection that sends half a request head and nothing more (the server
  must close it after its header time limit);
* ``bad_host``: ``Host: rebind.example`` (400, the DNS-rebinding guard).

Records, to ``benchmarks/results/serve_soak.json``: server errors (5xx other than the
intended 503, and connections the server dropped; must be 0), every status by kind, the
good requests' latency p50 / p99 in the clean and the hostile run, the server's RSS over the
hostile run (read with no request in flight at its start, half-way and end; growth over the
second half: target <= 5 MB; samples every 50 requests in between), how soon the slow connections
were closed, and the machine (CPU model, cores) and date.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_soak.py            # 1,000 requests
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_soak.py --quick    # 100 requests
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

from common import describe_machine, run_threads, write_result
from serve_load import cpu_note, load_photos, rss_mb

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "serve_soak.json"
HOSTILE_KINDS = ("huge_png_explain", "many_parts", "slow_headers", "bad_host")
GOAL = {"server_errors": 0, "rss_growth_second_half_mb_max": 5.0}
HEADER_TIMEOUT_S = 10.0  # wildfer serve's (wildfer.serve.runner.HEADER_TIMEOUT_S)


def blank_png(width: int = 7800, height: int = 5000) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def many_parts_body(max_bytes: int) -> tuple[bytes, str]:
    """A multipart body of empty parts (``name="a"``), as many as fit in ``max_bytes``."""
    part = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n\r\n'
    n = (max_bytes - 8) // len(part)
    return part * n + b"--b--\r\n", "multipart/form-data; boundary=b"


def schedule(n: int, hostile: float) -> list[str]:
    """``n`` request kinds: "good", with ``hostile`` of them spread evenly and cycling through
    :data:`HOSTILE_KINDS`."""
    kinds = ["good"] * n
    n_bad = int(round(n * hostile))
    for j in range(n_bad):
        kinds[int((j + 0.5) * n / n_bad)] = HOSTILE_KINDS[j % len(HOSTILE_KINDS)]
    return kinds


class Soak:
    """Sends requests to ``url``; hostile payloads are built once."""

    def __init__(self, url: str, host: str, port: int, photos, concurrency: int, upload_limit: int):
        self.url, self.host, self.port = url, host, port
        self.photos = photos
        self.concurrency = concurrency
        self.png = blank_png()
        self.parts, self.parts_type = many_parts_body(upload_limit)
        self.held: list[dict] = []  # slow-header connections: opened, closed (monotonic s), watcher
        self.lock = threading.Lock()

    def send(self, client, kind: str, i: int):
        """One request -> its status code (or a transport error's name)."""
        import httpx

        try:
            if kind == "good":
                name, data = self.photos[i % len(self.photos)]
                r = client.post("/v1/predict", files={"file": (name, data, "image/jpeg")})
                if r.status_code == 200:
                    r.json()["faces"]
                return r.status_code
            if kind == "huge_png_explain":
                return client.post("/v1/explain", files={"file": ("blank.png", self.png, "image/png")}).status_code
            if kind == "many_parts":
                return client.post("/v1/predict", content=self.parts, headers={"Content-Type": self.parts_type}).status_code
            if kind == "bad_host":
                return client.get("/v1/models", headers={"Host": "rebind.example"}).status_code
            if kind == "slow_headers":
                s = socket.create_connection((self.host, self.port), timeout=5)
                s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: " + self.host.encode() + b"\r\nContent-Type: ima")
                conn = {"opened": time.monotonic(), "closed": None}
                conn["watcher"] = threading.Thread(target=self._watch, args=(s, conn), daemon=True)
                conn["watcher"].start()
                with self.lock:
                    self.held.append(conn)
                return "held"
        except httpx.HTTPError as e:
            return type(e).__name__
        raise ValueError(kind)

    def run(self, kinds: list[str], on_done=None) -> float:
        """All ``kinds`` from ``concurrency`` threads (each with its own keep-alive client)."""
        import httpx

        counter = iter(range(len(kinds)))

        def client():
            with httpx.Client(base_url=self.url, timeout=60) as c:
                while True:
                    with self.lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    t0 = time.perf_counter()
                    code = self.send(c, kinds[i], i)
                    if on_done is not None:
                        with self.lock:
                            on_done(kinds[i], time.perf_counter() - t0, code)

        return run_threads(client, self.concurrency)

    @staticmethod
    def _watch(s: socket.socket, conn: dict, limit_s: float = 3 * HEADER_TIMEOUT_S) -> None:
        """Wait (at most ``limit_s``) for the server to close ``s``; note when it did."""
        s.settimeout(limit_s)
        try:
            while s.recv(4096):
                pass
            conn["closed"] = time.monotonic()
        except ConnectionResetError:
            conn["closed"] = time.monotonic()
        except TimeoutError:
            pass
        finally:
            s.close()

    def close_held(self) -> list[float | None]:
        """Seconds until the server closed each slow-header connection (None: it never did)."""
        out = []
        for conn in self.held:
            conn["watcher"].join()
            out.append(None if conn["closed"] is None else round(conn["closed"] - conn["opened"], 2))
        self.held.clear()
        return out


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1e3
    return {"n": int(ms.size), "p50": round(float(np.percentile(ms, 50)), 1),
            "p99": round(float(np.percentile(ms, 99)), 1), "max": round(float(ms.max()), 1)}


def is_server_error(code) -> bool:
    """A 5xx other than the intended 503, or a connection the server broke."""
    if isinstance(code, int):
        return code >= 500 and code != 503
    return code != "held"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 requests instead of 1,000")
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--hostile", type=float, default=0.05, help="share of hostile requests in the second run")
    ap.add_argument("--model", default="fast", help="the served model (wildfer serve --model)")
    ap.add_argument("--n-photos", type=int, default=40, help="distinct KDEF photos cycled through")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    n_req = args.requests or (100 if args.quick else 1000)

    import httpx

    from wildfer.serve.runner import ServerProcess

    photos = load_photos("kdef", args.n_photos)
    before = cpu_note()
    good = schedule(n_req, 0.0)
    mixed = schedule(n_req, args.hostile)
    with ServerProcess(["--model", args.model, "--log-level", "error", "--max-queue", 64]) as server:
        info = httpx.get(server.url + "/v1/models").json()
        soak = Soak(server.url, server.host, server.port, photos, args.concurrency,
                    info["limits"]["max_upload_bytes"])
        rss_startup = rss_mb(server.pid)
        # warm-up: every photo, then every hostile kind once, then a concurrent round
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for i in range(len(photos)):
                assert soak.send(c, "good", i) == 200
            warm = {k: soak.send(c, k, 0) for k in HOSTILE_KINDS}
        soak.close_held()
        soak.run(["good"] * max(2 * args.concurrency, len(photos)))

        clean_lat, clean_codes = [], []
        clean_wall = soak.run(good, lambda k, dt, code: (clean_lat.append(dt), clean_codes.append(code)))

        rss_start = rss_mb(server.pid)
        samples = [(0, rss_start)]
        lat = {k: [] for k in ("good", *HOSTILE_KINDS)}
        codes = {k: [] for k in ("good", *HOSTILE_KINDS)}

        def on_done(kind, dt, code):
            lat[kind].append(dt)
            codes[kind].append(code)
            done = sum(len(v) for v in codes.values())
            if done % 50 == 0:
                samples.append((done, rss_mb(server.pid)))

        # in two halves, RSS read between them and after, with no request in flight
        half_n = n_req // 2
        wall = soak.run(mixed[:half_n], on_done)
        rss_half = rss_mb(server.pid)
        wall += soak.run(mixed[half_n:], on_done)
        rss_end = rss_mb(server.pid)
        cut_after = soak.close_held()
        health = httpx.get(server.url + "/healthz", timeout=10).json()

    all_codes = clean_codes + [c for v in codes.values() for c in v]
    server_errors = sum(1 for c in all_codes if is_server_error(c)) + sum(1 for t in cut_after if t is None)
    counts = {k: {str(c): v.count(c) for c in sorted(set(v), key=str)} for k, v in codes.items()}
    res = {
        "benchmark": "serve_soak",
        "quick": args.quick,
        "config": {"requests": n_req, "concurrency": args.concurrency, "hostile_share": args.hostile,
                   "hostile_kinds": list(HOSTILE_KINDS), "model": info["model"], "detector": info["detector"],
                   "limits": info["limits"], "server_cmd": " ".join(server.cmd[1:]),
                   "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                   "huge_png": {"pixels": 7800 * 5000, "bytes": len(soak.png)},
                   "many_parts": {"bytes": len(soak.parts), "parts": soak.parts.count(b"--b\r\n")}},
        "machine": describe_machine(**before, loadavg_after=[round(x, 2) for x in os.getloadavg()],
                                    note="clients and server share the machine's cores"),
        "results": {
            "server_errors": server_errors,
            "status_counts": counts,
            "clean_status_counts": {str(c): clean_codes.count(c) for c in sorted(set(clean_codes), key=str)},
            "warmup_hostile_status": {k: str(v) for k, v in warm.items()},
            "good_latency_ms": {"clean": percentiles(clean_lat), "with_hostile": percentiles(lat["good"])},
            "hostile_latency_ms": {k: percentiles(lat[k]) for k in HOSTILE_KINDS if lat[k]},
            "wall_s": {"clean": round(clean_wall, 2), "with_hostile": round(wall, 2)},
            "slow_headers_closed_after_s": cut_after,
            "rss_mb": {"startup": round(rss_startup, 1), "start": round(rss_start, 1), "at_half": round(rss_half, 1),
                       "end": round(rss_end, 1), "growth": round(rss_end - rss_start, 1),
                       "growth_second_half": round(rss_end - rss_half, 1),
                       "samples": [[n, round(m, 1)] for n, m in samples]},
            "server_health_after": health,
        },
    }
    r = res["results"]
    res["goal"] = {**GOAL, "met": bool(server_errors == 0 and health.get("status") == "ok"
                                       and r["rss_mb"]["growth_second_half"] <= GOAL["rss_growth_second_half_mb_max"])}
    write_result(args.out, res, indent=2)
    print(json.dumps({"server_errors": server_errors, "good_latency_ms": r["good_latency_ms"],
                      "status_counts": counts, "slow_headers_closed_after_s": cut_after,
                      "rss_growth_second_half_mb": r["rss_mb"]["growth_second_half"], "goal_met": res["goal"]["met"]}))
    print(f"wrote {args.out}")
    return 0 if server_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
