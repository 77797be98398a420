"""Video speed: frames per second of ``wildfer predict clip.mp4 --video-stride 1`` on a 10-second
1280 x 720 clip at 30 frames/s with two faces (a couple's photo from the group set, with a slow
zoom so the faces move: ``wildfer.wild.video.slideshow``).

Measures, in a fresh process each (median of ``--repeat``): the whole command, start-up
included, and the frames it processed per second of that wall time, for the pipeline's model
on its default backend and for ``fast``. The goal for a pipelined core is 3x real time: >= 90
frames/s with stride 1 on 2 cores.

Usage: ``python benchmarks/video_speed.py [--repeat 3] [--seconds 10] [--models wild_ensemble,fast]``.
Writes ``benchmarks/results/video_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATA, ROOT, describe_machine, write_result

OUT = ROOT / "benchmarks" / "results" / "video_speed.json"
PHOTO = DATA / "wild" / "groups" / "deepface_couple.jpg"
FPS = 30.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--models", default="wild_ensemble,fast")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    from wildfer.wild.video import slideshow

    wildfer_cli = str(Path(sys.executable).with_name("wildfer"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = slideshow([PHOTO], tmp / "clip.mp4", fps=FPS, seconds=args.seconds, size=(1280, 720))
        frames = int(round(FPS * args.seconds))
        for model in args.models.split(","):
            walls, faces = [], None
            for i in range(args.repeat + 1):  # the first warms the file cache
                out = tmp / f"{model}_{i}.json"
                t0 = time.perf_counter()
                subprocess.run([wildfer_cli, "predict", str(clip), "--model", model, "--video-stride", "1",
                                "--json", str(out)], check=True, capture_output=True)
                wall = time.perf_counter() - t0
                if i:
                    walls.append(wall)
                rec = json.loads(out.read_text())
                video = rec["videos"][0]
                faces = sum(len(f["faces"]) for f in video["frames"])
            wall = statistics.median(walls)
            results[model] = {"wall_s_median": round(wall, 2), "wall_s": [round(w, 2) for w in walls],
                              "frames": frames, "faces": faces, "frames_per_s": round(frames / wall, 1),
                              "x_real_time": round(args.seconds / wall, 2)}
            print(model, results[model], flush=True)
    out = {"benchmark": "video_speed", "clip": f"1280x720, {FPS:g} frames/s, {args.seconds:g} s, two faces "
           f"({PHOTO.name} with a slow zoom)", "stride": 1, "repeat": args.repeat, "results": results,
           "goal": {"frames_per_s": 90}, "machine": describe_machine()}
    write_result(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
