"""The page's live camera, measured in headless Chromium: frames per second answered and the
time from capture to drawn label, for a 640 x 480 fake camera playing a clip of one real face
(a KDEF portrait), against a real server on this machine.

Targets on a 2-core CPU: >= 10 frames/s answered, <= 150 ms from capture to label.

Usage: ``python benchmarks/serve_live.py [--model wild_ensemble] [--seconds 20] [--backend auto]``
(needs chromium, chromedriver and selenium). Writes ``benchmarks/results/serve_live.json``:
the page's own figures (``document.body.dataset.liveFps`` / ``liveLatencyMs``, over its last
2 s and 30 frames), sampled every second after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import DATA, ROOT, describe_machine, write_result

OUT = ROOT / "benchmarks" / "results" / "serve_live.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="the server's model (default: the pipeline's)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from wildfer.models import PIPELINE_MODEL
    from wildfer.serve.app import create_app
    from wildfer.serve.runner import ServerThread
    from wildfer.wild.video import slideshow

    model = args.model or PIPELINE_MODEL
    with tempfile.TemporaryDirectory() as tmp:
        clip = slideshow([DATA / "wild" / "kdef_frontal" / "AF01HAS.JPG"], Path(tmp) / "face.y4m", fps=15, seconds=2)
        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                    f"--use-file-for-fake-video-capture={clip}", f"--user-data-dir={tmp}/profile"):
            opts.add_argument(arg)
        app = create_app(model=model, backend=args.backend, timeout=30)
        with ServerThread(app) as srv:
            drv = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=opts)
            try:
                drv.get(srv.url + "/")
                drv.find_element(By.ID, "webcam-button").click()
                WebDriverWait(drv, 30).until(lambda d: d.execute_script(
                    "return document.getElementById('webcam-video').videoWidth") > 0)
                drv.find_element(By.ID, "live-button").click()
                time.sleep(args.warmup)
                samples = []
                t_end = time.monotonic() + args.seconds
                while time.monotonic() < t_end:
                    time.sleep(1.0)
                    d = drv.execute_script("const s = document.body.dataset; return [s.liveFps, s.liveLatencyMs, "
                                           "s.liveFrames, s.liveFaces];")
                    samples.append({"fps": float(d[0]), "latency_ms": float(d[1]), "frames": int(d[2]),
                                    "faces": int(d[3])})
                size = drv.execute_script("const v = document.getElementById('webcam-video'); "
                                          "return [v.videoWidth, v.videoHeight];")
            finally:
                drv.quit()
    fps = [s["fps"] for s in samples]
    lat = [s["latency_ms"] for s in samples]
    out = {
        "benchmark": "serve_live", "model": model, "backend": args.backend, "camera": f"{size[0]}x{size[1]}",
        "seconds": args.seconds, "fps_median": round(statistics.median(fps), 2),
        "latency_ms_median": round(statistics.median(lat), 1), "faces_per_frame": samples[-1]["faces"],
        "frames_answered": samples[-1]["frames"], "samples": samples,
        "targets": {"fps_min": 10, "latency_ms_max": 150}, "machine": describe_machine(),
    }
    write_result(args.out, out)
    print(json.dumps({k: out[k] for k in ("model", "camera", "fps_median", "latency_ms_median")}))


if __name__ == "__main__":
    main()
