"""Memory of a video timeline over a long video: resident memory after 1, 6 and 10 minutes of
a 720p clip processed at stride 3 with ``--timeline`` (rows streamed to disk, no per-frame
results kept: what ``wildfer predict clip.mp4 --timeline DIR`` does without ``--json``).

The clip is made from the shared group photos (``wildfer.wild.video.slideshow``: each photo
for 10 s with a slow zoom, 1280 x 720, 30 fps, the 36 photos in turn, repeated to the length
asked): after 6 minutes every photo has been seen once. The pipeline's own memory grows while
it meets photos with more faces at once than before (larger batches), so memory is judged flat
from 6 to 10 minutes, where the photos come again and the tracks keep coming. The classifier is
``fast`` unless ``--model`` says otherwise: memory, not accuracy, is measured here.
``--no-timeline`` measures the same run without a timeline, for comparison.

Usage: ``python benchmarks/video_timeline.py [--minutes 1,6,10] [--quick] [--model fast]``
(``--quick``: 0.25 and 1 minute). Writes ``benchmarks/results/video_timeline.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from common import DATA, ROOT, describe_machine, write_result

OUT = ROOT / "benchmarks" / "results" / "video_timeline.json"


def rss_mb() -> float:
    """This process's resident memory now (MB), from /proc (the peak where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", default="1,6,10", help="checkpoints in minutes of video (the last is its length)")
    ap.add_argument("--no-timeline", action="store_true", help="the same run without a timeline")
    ap.add_argument("--quick", action="store_true", help="0.25 and 1 minute")
    ap.add_argument("--model", default="fast")
    ap.add_argument("--stride", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    marks = [0.25, 1.0] if args.quick else [float(m) for m in args.minutes.split(",")]
    fps = 30.0

    from wildfer.wild import Recognizer
    from wildfer.wild.timeline import TimelineWriter
    from wildfer.wild.video import process_video, slideshow

    photos = sorted((DATA / "wild" / "groups").glob("*.jpg"))
    per_photo_s = 10.0
    n = int(round(marks[-1] * 60 / per_photo_s))
    rec = Recognizer(model=args.model)
    with tempfile.TemporaryDirectory() as tmp:
        clip = slideshow([photos[k % len(photos)] for k in range(n)], Path(tmp) / "long.mp4", fps=fps,
                         seconds=per_photo_s, size=(1280, 720))
        samples: list[dict] = []
        todo = [m * 60 for m in marks]
        t0 = time.perf_counter()

        tl = None if args.no_timeline else TimelineWriter(Path(tmp) / "tl", rec.labels, video=str(clip))

        def on_frame(fr, frame_bgr):
            if tl is not None:
                tl.add(fr, frame_bgr)
            if todo and fr["time_s"] >= todo[0] - args.stride / fps:
                samples.append({"video_minutes": round(todo.pop(0) / 60, 3), "rss_mb": round(rss_mb(), 1),
                                "wall_s": round(time.perf_counter() - t0, 1)})

        record = process_video(rec, clip, stride=args.stride, keep_frames=False, on_frame=on_frame)
        tracks = len(tl.close()["tracks"]) if tl is not None else None
    out = {
        "benchmark": "video_timeline", "model": args.model, "stride": args.stride, "video": "1280x720, 30 fps",
        "frames_total": record["frames_total"], "frames_processed": record["frames_processed"],
        "timeline": not args.no_timeline, "faces_total": record["faces_total"], "tracks_kept": tracks,
        "samples": samples,
        "rss_growth_mb": round(samples[-1]["rss_mb"] - samples[0]["rss_mb"], 1) if len(samples) > 1 else None,
        "rss_growth_last_mb": round(samples[-1]["rss_mb"] - samples[-2]["rss_mb"], 1) if len(samples) > 1 else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": describe_machine(),
    }
    write_result(args.out, out)
    print(json.dumps({k: out[k] for k in ("samples", "rss_growth_mb", "rss_growth_last_mb", "peak_rss_mb")}, indent=1))


if __name__ == "__main__":
    main()
