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
ZOOMS = (2.0, 4.5)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every 20th portrait instead of every 5th")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    from wildfer.wild import Recognizer
    from wildfer.wild.recognizer import MIN_SOURCE_PIXELS

    whole = Recognizer(full_decode=True)
    reduced = Recognizer(model=whole.classifier)
    result = {"model": whole.classifier.name, "backend": whole.classifier.backend_label,
              "photo": "4032x3024 JPEG (quality 90), one KDEF frontal portrait at the centre",
              "min_source_pixels": MIN_SOURCE_PIXELS, "machine": describe_machine(), "zooms": {}}
    for zoom in ZOOMS:
        result["zooms"][f"{zoom:g}x"] = r = compare(whole, reduced, photos(zoom, 20 if args.quick else 5))
        print(f"{zoom:g}x", r, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
