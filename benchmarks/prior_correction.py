"""Does dividing an ensemble's probabilities by its training prior help on the dev sets?

The wild recipes train on ExpW ``train`` (balanced) mixed 1:1 with FER2013 ``Training`` (1.5%
disgust, 25% happy), so the members learn a prior of about 8% disgust and 20% happy, while ExpW
``val`` and KDEF are balanced and LFW is mostly happy. Logit adjustment scores each class by
``log p(y|x) - tau * log prior(y)``: ``tau = 1`` undoes the training prior, ``tau = 0`` is the
plain average. This scores a grid of ``tau`` on every dev set from per-face probabilities saved
by the members' own evaluations (no network runs), with missed faces counted as wrong as
``wildfer evaluate-wild`` counts them.

Each ``--member`` is a folder holding what these commands write for one model ``M``:

    wildfer evaluate-wild $WILDFER_DATA/wild/expw.csv --split val --model M --save-predictions DIR/pred_expw_val.csv
    wildfer evaluate-wild $WILDFER_DATA/wild/lfw.csv --model M --save-predictions DIR/pred_lfw.csv
    wildfer evaluate-wild $WILDFER_DATA/wild/kdef_frontal.csv --model M --save-predictions DIR/pred_kdef.csv
    wildfer evaluate $WILDFER_DATA/fer2013/fer2013.csv.gz --split PublicTest --model M --save-probs DIR/probs_publictest.npz

Usage: ``python benchmarks/prior_correction.py --member DIR_wild --member DIR_wild_mfn
[--wild-ratio 0.5] [--taus 0,0.25,0.5,0.75,1]``. Writes
``benchmarks/results/prior_correction.json``. The members' probabilities are averaged with
equal weights, as ``wild_ensemble`` averages them (its temperature changes no prediction).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from common import DATA, ROOT, describe_machine, write_result

SETS = {"expw_val": "pred_expw_val.csv", "lfw": "pred_lfw.csv", "kdef_frontal": "pred_kdef.csv"}


def training_prior(fer, classes: list[str], wild_ratio: float) -> np.ndarray:
    """The class shares of a wild recipe's training faces: ExpW ``train`` and the ``Training``
    faces of ``fer`` (FER2013) mixed ``wild_ratio : 1 - wild_ratio``."""
    fer = fer.split("Training")
    fer_share = np.bincount(fer.labels, minlength=len(classes)) / len(fer.labels)
    with open(DATA / "wild" / "expw.csv", newline="", encoding="utf-8") as f:
        expw = [r["label"] for r in csv.DictReader(f) if r["split"] == "train"]
    expw_share = np.array([expw.count(c) for c in classes]) / len(expw)
    return wild_ratio * expw_share + (1 - wild_ratio) * fer_share


def scores(y: np.ndarray, found: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict:
    from sklearn.metrics import f1_score

    pred = np.where(found, pred, -1)  # a missed face is wrong, as evaluate-wild counts it
    present = sorted(set(y.tolist()) - {-1})
    return {"accuracy": round(float((pred == y).mean()), 4),
            "macro_f1": round(float(f1_score(y, pred, labels=present, average="macro", zero_division=0)), 4),
            "recall": {classes[k]: round(float((pred[y == k] == k).mean()), 3) for k in present}}


def member_probabilities(members: list[Path], classes: list[str], fer) -> dict[str, tuple]:
    """Per dev set: ``(labels, found by every member, probabilities M x N x C)`` from the
    members' saved predictions (the files the module docstring lists), missed faces' rows
    uniform; ``fer`` gives PublicTest's labels."""
    from wildfer.evaluate.predict import load_saved_probs
    from wildfer.wild.evaluate import read_predictions

    data: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name, fname in SETS.items():
        read = [read_predictions(m / fname, classes) for m in members]
        y, found = read[0][0], read[0][1]
        if any(not np.array_equal(r[0], y) for r in read):
            raise SystemExit(f"{fname}: the members' files list other faces")
        data[name] = (y, found & np.logical_and.reduce([r[1] for r in read]), np.stack([r[2] for r in read]))
    pt = fer.split("PublicTest")
    saved = [load_saved_probs(m / "probs_publictest.npz") for m in members]
    order = [[list(s.labels).index(c) for c in classes] for s in saved]
    data["publictest"] = (np.asarray(pt.labels), np.ones(len(pt.labels), bool),
                          np.stack([s.probs[:, o] for s, o in zip(saved, order)]))
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--member", action="append", type=Path, required=True,
                    help="a folder with one model's saved predictions (see above); give it once per member")
    ap.add_argument("--wild-ratio", type=float, default=0.5, help="the recipes' share of ExpW faces")
    ap.add_argument("--taus", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "prior_correction.json")
    args = ap.parse_args()

    from wildfer.data.fer2013 import load_fer2013
    from wildfer.labels import FER2013_CLASSES

    classes = list(FER2013_CLASSES)
    fer = load_fer2013(DATA / "fer2013" / "fer2013.csv.gz")  # read once: its Training prior, its PublicTest labels
    prior = training_prior(fer, classes, args.wild_ratio)
    data = {name: (y, found, np.mean(probs, axis=0))
            for name, (y, found, probs) in member_probabilities(args.member, classes, fer).items()}

    rows = []
    for tau in (float(t) for t in args.taus.split(",")):
        row = {"tau": tau}
        for name, (y, found, probs) in data.items():
            adjusted = np.log(np.clip(probs, 1e-12, 1.0)) - tau * np.log(prior)
            row[name] = scores(y, found, adjusted.argmax(1), classes)
        rows.append(row)
        print(f"tau {tau:.2f}: " + " | ".join(f"{n} {row[n]['accuracy'] * 100:.1f} (F1 {row[n]['macro_f1'] * 100:.1f})"
                                              for n in data) + f" | ExpW disgust recall {row['expw_val']['recall']['disgust']:.2f}")
    out = {"benchmark": "prior_correction", "members": [m.name for m in args.member], "wild_ratio": args.wild_ratio,
           "training_prior": {c: round(float(p), 4) for c, p in zip(classes, prior)}, "rows": rows,
           "machine": describe_machine()}
    write_result(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
