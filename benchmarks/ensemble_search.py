"""Which members and weights make the best ensemble? Searched on probabilities saved by
``wildfer evaluate --save-probs`` (no network runs): every subset of the given files, each with
weights on a grid, scored by accuracy and macro-F1 on the faces the files are for.

    python benchmarks/ensemble_search.py runs/probs/default_tencrop.npz runs/probs/default_resnet_tencrop.npz \\
        runs/probs/fast_tencrop.npz --data $WILDFER_DATA/fer2013/fer2013.csv.gz --split PublicTest \\
        --out benchmarks/results/ensemble_search.json

The faces are PublicTest, which also picked every member's epoch: the best weights found here
are selected on the test they are scored on, so their gain over equal weights is optimistic;
the JSON keeps the equal-weight score of every subset beside the best one.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path


from common import describe_machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("probs", nargs="+", help="files written by wildfer evaluate --save-probs (same faces, same TTA)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="PublicTest")
    ap.add_argument("--grid", default="0.5,1,1.5,2,3", help="weights tried for each member (relative)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ensemble_search.json"))
    args = ap.parse_args()

    from wildfer.evaluate.core import load_eval_data
    from wildfer.evaluate.metrics import compute_metrics
    from wildfer.evaluate.predict import align_probs, load_saved_probs

    data = load_eval_data(args.data, args.split)
    saved = [load_saved_probs(p) for p in args.probs]
    for s in saved:
        s.check(data.images, s.tta)  # the same faces (each file's own TTA is kept)
    probs = [align_probs(s.probs, list(s.labels), list(data.classes)) for s in saved]
    names = [Path(p).stem for p in args.probs]
    grid = [float(g) for g in args.grid.split(",")]
    labels, classes = data.labels, list(data.classes)

    def score(idx, w):
        p = sum(wi * probs[i] for i, wi in zip(idx, w)) / sum(w)
        m = compute_metrics(labels, p, classes)
        return {"accuracy": round(float(m["accuracy"]), 4), "macro_f1": round(float(m["macro_f1"]), 4)}

    rows = []
    for k in range(1, len(probs) + 1):
        for idx in itertools.combinations(range(len(probs)), k):
            equal = score(idx, [1.0] * k)
            best_w, best = [1.0] * k, equal
            if k > 1:
                for w in itertools.product(grid, repeat=k):
                    if w[0] != 1.0:  # weights are relative: fix the first member's
                        continue
                    r = score(idx, list(w))
                    if r["accuracy"] > best["accuracy"]:
                        best_w, best = list(w), r
            rows.append({"members": [names[i] for i in idx], "equal": equal, "best_weights": best_w, "best": best})
            print(f"{' + '.join(names[i] for i in idx):70s} equal {100 * equal['accuracy']:.2f}%  "
                  f"best {100 * best['accuracy']:.2f}% at {best_w}", flush=True)
    rows.sort(key=lambda r: -r["equal"]["accuracy"])
    out = {"data": str(args.data), "split": args.split, "n": int(len(labels)), "files": list(args.probs),
           "grid": grid, "note": "weights selected on the same faces they are scored on (optimistic)",
           "machine": describe_machine(), "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
