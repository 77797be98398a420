"""What decoding large JPEGs reduced changes in the pipeline's answers, and what it saves.

KDEF frontal portraits (every 5th, 196 photos), scaled 2x (a 560-pixel face) and 4.5x (a
1260-pixel face), each pasted on a smooth 4032 x 3024 background (a phone photo's size, no other
face in it) and JPEG-encoded; the pipeline's model reads each photo decoded whole
(``Recognizer(full_decode=True)``) and as it ships (a JPEG this large is decoded at 1/2 of its
size or less, faces that would get fewer than ``MIN_SOURCE_PIXELS`` pixels per crop pixel cut from
a decode reduced less). Per zoom: how often the label is the same, how far the probabilities
move (median and largest), accuracy both ways, and the median decode and total milliseconds.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/decode_reduced.py [--quick]`` ->
``benchmarks/results/decode_reduced.json``.

``--server``: the same for the HTTP service, which works on a copy of at most
``SERVER_WORK_PIXELS`` (4 megapixels): each photo's work copy decoded whole and shrunk, against
the copy it makes (decoded at 1/2 or less where that keeps ``MIN_WORK_SHARE`` of the work
pixels; ``wildfer.serve.uploads.decode_photo``), both read by the same Recognizer, with
portraits scaled 0.5x, 1x and 2x (faces of about 140, 280 and 560 pixels in the photo; the
server's copy has a half or a quarter as many pixels). Times are decode and shrink alone, one
OpenCV thread -> ``benchmarks/results/decode_reduced_server.json``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np

from common import DATA, ROOT, describe_machine

OUT = ROOT / "benchmarks" / "results" / "decode_reduced.json"
OUT_SERVER = ROOT / "benchmarks" / "results" / "decode_reduced_server.json"
ZOOMS = (2.0, 4.5)
SERVER_ZOOMS = (0.5, 1.0, 2.0)


def photos(zoom: float, step: int) -> list[tuple[bytes, str]]:
    from PIL import Image

    rows = list(csv.DictReader(open(DATA / "wild" / "kdef_frontal.csv")))[::step]
    noise = np.random.default_rng(0).integers(0, 256, (189, 252, 3), dtype=np.uint8)
    bg = Image.fromarray(noise).resize((4032, 3024), Image.BICUBIC)
    out = []
    for row in rows:
        face = Image.open(DATA / "wild" / row["path"]).convert("RGB")
        face = face.resize((round(face.width * zoom), round(face.height * zoom)), Image.BICUBIC)
        photo = bg.copy()
        photo.paste(face, ((4032 - face.width) // 2, (3024 - face.height) // 2))
        buf = io.BytesIO()
        photo.save(buf, format="JPEG", quality=90)
        out.append((buf.getvalue(), row["label"]))
    return out


def compare(whole, reduced, items: list[tuple[bytes, str]]) -> dict:
    a = [whole.predict(d) for d, _ in items]
    b = [reduced.predict(d) for d, _ in items]
    both = [(x.faces[0], y.faces[0]) for x, y in zip(a, b) if x.faces and y.faces]
    moved = [max(abs(fa.probs[k] - fb.probs[k]) for k in fa.probs) for fa, fb in both]

    def acc(res):
        return round(100 * float(np.mean([bool(r.faces) and r.faces[0].label == y for r, (_, y) in zip(res, items)])), 2)

    def ms(res, key):
        return round(float(np.median([r.timings[key] for r in res])), 2)

    return {"photos": len(items), "faces_found": [sum(bool(r.faces) for r in a), sum(bool(r.faces) for r in b)],
            "same_label_percent": round(100 * float(np.mean([fa.label == fb.label for fa, fb in both])), 2),
            "probability_moved_median": round(float(np.median(moved)), 4),
            "probability_moved_max": round(float(np.max(moved)), 4),
            "accuracy_whole": acc(a), "accuracy_reduced": acc(b),
            "decode_ms_whole": ms(a, "decode"), "decode_ms_reduced": ms(b, "decode"),
            "total_ms_whole": ms(a, "total"), "total_ms_reduced": ms(b, "total")}


def server_copies(items: list[tuple[bytes, str]]) -> tuple[list, list, dict]:
    """Each photo's work copy decoded whole then shrunk, and as the service makes it, with the
    median milliseconds of each (decode and shrink, one OpenCV thread)."""
    import time

    import cv2

    from wildfer.serve.config import SERVER_WORK_PIXELS
    from wildfer.serve.uploads import MIN_WORK_SHARE, decode_photo, decode_image, shrink_to

    cv2.setNumThreads(1)
    whole, served, ms = [], [], {"whole": [], "served": []}
    for data, _ in items:
        t0 = time.perf_counter()
        rgb = decode_image(data, 40_000_000)
        whole.append((shrink_to(rgb, SERVER_WORK_PIXELS), rgb.shape[1]))
        t1 = time.perf_counter()
        rgb, (w, _) = decode_photo(data, 40_000_000, int(SERVER_WORK_PIXELS * MIN_WORK_SHARE))
        served.append((shrink_to(rgb, SERVER_WORK_PIXELS), w))
        t2 = time.perf_counter()
        ms["whole"].append((t1 - t0) * 1e3)
        ms["served"].append((t2 - t1) * 1e3)
    return whole, served, {k: round(float(np.median(v)), 1) for k, v in ms.items()}


def central(res):
    """The face found nearest the photo's centre (the portrait; the smooth noise around it
    sometimes passes for another face), or None."""
    def off(f):
        return abs((f.box[0] + f.box[2]) / 2 - res.width / 2) + abs((f.box[1] + f.box[3]) / 2 - res.height / 2)

    return min(res.faces, key=off) if res.faces else None


def compare_server(rec, items: list[tuple[bytes, str]]) -> dict:
    whole, served, ms = server_copies(items)
    a = [central(rec.predict(img)) for img, _ in whole]
    b = [central(rec.predict(img)) for img, _ in served]
    both = [(x, y) for x, y in zip(a, b) if x and y]
    moved = [max(abs(fa.probs[k] - fb.probs[k]) for k in fa.probs) for fa, fb in both]

    def acc(faces):
        return round(100 * float(np.mean([f is not None and f.label == y for f, (_, y) in zip(faces, items)])), 2)

    def width(faces, copies):  # the face's box width in the photo's pixels
        return round(float(np.median([f.box[2] - f.box[0] for f in faces if f]))
                     * copies[0][1] / copies[0][0].shape[1], 1)

    return {"photos": len(items), "faces_found": [sum(f is not None for f in a), sum(f is not None for f in b)],
            "face_width_px": width(a, whole),
            "copy_pixels": [int(whole[0][0].shape[0] * whole[0][0].shape[1]),
                            int(served[0][0].shape[0] * served[0][0].shape[1])],
            "same_label_percent": round(100 * float(np.mean([fa.label == fb.label for fa, fb in both])), 2),
            "probability_moved_median": round(float(np.median(moved)), 4),
            "probability_moved_max": round(float(np.max(moved)), 4),
            "accuracy_whole": acc(a), "accuracy_served": acc(b),
            "copy_ms_whole": ms["whole"], "copy_ms_served": ms["served"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every 20th portrait instead of every 5th")
    ap.add_argument("--server", action="store_true", help="the HTTP service's work copies instead")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from wildfer.wild import Recognizer
    from wildfer.wild.recognizer import MIN_SOURCE_PIXELS

    if args.server:
        from wildfer.serve.config import SERVER_WORK_PIXELS
        from wildfer.serve.uploads import MIN_WORK_SHARE

        rec = Recognizer()
        result = {"model": rec.classifier.name, "backend": rec.classifier.backend_label,
                  "photo": "4032x3024 JPEG (quality 90), one KDEF frontal portrait at the centre",
                  "work_pixels": SERVER_WORK_PIXELS, "min_work_share": MIN_WORK_SHARE,
                  "machine": describe_machine(), "zooms": {}}
        for zoom in SERVER_ZOOMS:
            result["zooms"][f"{zoom:g}x"] = r = compare_server(rec, photos(zoom, 20 if args.quick else 5))
            print(f"{zoom:g}x", r, flush=True)
        write(result, args.out or OUT_SERVER)
        return

    whole = Recognizer(full_decode=True)
    reduced = Recognizer(model=whole.classifier)
    result = {"model": whole.classifier.name, "backend": whole.classifier.backend_label,
              "photo": "4032x3024 JPEG (quality 90), one KDEF frontal portrait at the centre",
              "min_source_pixels": MIN_SOURCE_PIXELS, "machine": describe_machine(), "zooms": {}}
    for zoom in ZOOMS:
        result["zooms"][f"{zoom:g}x"] = r = compare(whole, reduced, photos(zoom, 20 if args.quick else 5))
        print(f"{zoom:g}x", r, flush=True)
    write(result, args.out or OUT)


def write(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
