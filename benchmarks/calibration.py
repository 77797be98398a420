"""How far a model's probabilities can be trusted on the dev sets, before and after temperature
scaling fitted on ExpW ``val``: expected calibration error per set, and the risk-coverage table
(accuracy when only the 50% / 80% / 100% most confident faces are answered), and ExpW ``val``'s ECE
and negative log-likelihood over a sweep of temperatures.

The model runs through the wild pipeline (``evaluate_wild``: YuNet, the model's own alignment)
on ExpW val, LFW and KDEF frontal, and on FER2013 PublicTest's faces. Faces the detector misses
have no probabilities: they are left out of the ECE and of the risk-coverage rows (``n_missed``
says how many; ``evaluate-wild`` counts them as wrong). The temperature divides the model's
log-probabilities (its logits up to a constant per face), so no prediction changes.

Usage::

    python benchmarks/calibration.py --model wild [--out benchmarks/results/calibration_wild.json]

``--temperature T`` scores a given temperature instead of fitting one (the shipped model's card
carries the fitted one in ``preprocess.temperature``; pass ``--temperature 1`` to see it raw).

``--class-bias`` fits a bias per class beside the temperature (``softmax(log p / T + b)``,
:func:`wildfer.evaluate.calibration.fit_temperature_bias`, its L2 penalty ``--l2``): unlike the
temperature it can change predictions, so the JSON also gives ExpW ``val``'s accuracy, macro-F1
and per-class recall after it (missed faces counted as wrong, as ``evaluate-wild`` counts them)
on every set, and ``cross_validation``: 5-fold out-of-fold estimates on ExpW ``val`` (five
shuffles) of the accuracy, NLL and ECE with the temperature alone and with the bias at each L2
of :data:`L2_GRID`, which is how ``--l2``'s default was chosen (the least out-of-fold NLL).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import DATA, ROOT, WILD_SETS, describe_machine

#: temperatures at which ExpW val's ECE and negative log-likelihood are also reported: how much
#: the binned ECE moves between neighbouring temperatures (its noise on a few hundred faces)
SWEEP = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1)
#: the L2 penalties of the class bias that ``cross_validation`` compares
L2_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
FOLDS, SHUFFLES = 5, 5


def wild_probabilities(clf, manifest: Path, split: str | None) -> tuple[np.ndarray, np.ndarray, int]:
    """``(probabilities, label indices, missed)`` of the faces the pipeline finds in ``manifest``."""
    from wildfer.wild import Recognizer
    from wildfer.wild.evaluate import evaluate_wild, read_predictions

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "predictions.csv"
        evaluate_wild(manifest, Recognizer(clf), split=split, save_predictions=out)
        y, found, p = read_predictions(out, clf.labels)
    keep = found & (y >= 0)
    return p[keep], y[keep], int((~found).sum())


def fer_probabilities(clf, csv_path: Path) -> tuple[np.ndarray, np.ndarray]:
    from wildfer.data import load_dataset
    from wildfer.data.formats import select_split

    faces = select_split(load_dataset(csv_path), "PublicTest")
    return clf.predict_proba(faces.images).astype(np.float64), faces.labels


def scaled(p: np.ndarray, temperature: float, bias: np.ndarray | float = 0.0) -> np.ndarray:
    z = np.log(np.clip(p, 1e-7, 1.0)) / temperature + bias
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def scores(p: np.ndarray, y: np.ndarray, missed: int, labels) -> dict:
    """Accuracy with the ``missed`` faces counted as wrong; macro-F1 and recall per class over
    the faces found (a missed face's class is unknown here)."""
    from sklearn.metrics import f1_score, recall_score

    pred = p.argmax(1)
    present = [k for k in range(len(labels)) if (y == k).any()]
    recall = recall_score(y, pred, labels=present, average=None, zero_division=0)
    return {"accuracy": round(float((pred == y).sum() / (len(y) + missed)), 4),
            "macro_f1_found": round(float(f1_score(y, pred, labels=present, average="macro", zero_division=0)), 4),
            "recall_found": {labels[k]: round(float(r), 3) for k, r in zip(present, recall)}}


def cross_validation(p: np.ndarray, y: np.ndarray, missed: int, labels) -> dict:
    """Out-of-fold accuracy (missed faces wrong), NLL, ECE and disgust recall on ExpW ``val``:
    the temperature alone, then with the class bias at each L2 of :data:`L2_GRID`."""
    from wildfer.evaluate.calibration import expected_calibration_error, fit_temperature, fit_temperature_bias

    z = np.log(np.clip(p, 1e-7, 1.0))
    d = list(labels).index("disgust")
    rows = {}
    for l2 in (None, *L2_GRID):
        acc, nll, ece, disgust = [], [], [], []
        for seed in range(SHUFFLES):
            order = np.random.default_rng(seed).permutation(len(y))
            folds = np.array_split(order, FOLDS)
            q = np.zeros_like(z)
            for k, test in enumerate(folds):
                train = np.concatenate([f for j, f in enumerate(folds) if j != k])
                t, b = ((fit_temperature(z[train], y[train]), 0.0) if l2 is None
                        else fit_temperature_bias(z[train], y[train], l2=l2))
                q[test] = scaled(p[test], t, b)
            acc.append((q.argmax(1) == y).sum() / (len(y) + missed))
            nll.append(-np.log(q[np.arange(len(y)), y]).mean())
            ece.append(expected_calibration_error(q, y))
            disgust.append(((q.argmax(1) == d) & (y == d)).sum() / max(1, (y == d).sum()))
        rows["temperature" if l2 is None else f"temperature+bias l2={l2:g}"] = {
            "accuracy": round(float(np.mean(acc)), 4), "nll": round(float(np.mean(nll)), 4),
            "ece": round(float(np.mean(ece)), 4), "disgust_recall_found": round(float(np.mean(disgust)), 3)}
    return {"folds": FOLDS, "shuffles": SHUFFLES, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="wild", help="built-in name, checkpoint, weights or ensemble spec")
    ap.add_argument("--temperature", type=float, default=None, help="score this temperature instead of fitting one")
    ap.add_argument("--class-bias", action="store_true", help="fit a bias per class beside the temperature")
    ap.add_argument("--l2", type=float, default=0.02, help="the class bias's L2 penalty (with --class-bias)")
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/results/calibration_<model>.json")
    args = ap.parse_args()
    if args.class_bias and args.temperature is not None:
        ap.error("--class-bias fits the temperature too: give --temperature or --class-bias, not both")

    from wildfer.evaluate.calibration import (expected_calibration_error, fit_temperature, fit_temperature_bias,
                                              risk_coverage, temperature_nll)
    from wildfer.models.loader import load_model

    clf = load_model(args.model)
    shipped = {k: clf.preprocess[k] for k in ("temperature", "class_bias") if k in clf.preprocess}
    clf.preprocess = {k: v for k, v in clf.preprocess.items() if k not in shipped}  # raw probabilities
    t0 = time.time()
    sets: dict[str, tuple] = {}
    for name, (manifest, split) in WILD_SETS.items():
        sets[name] = wild_probabilities(clf, DATA / "wild" / manifest, split)
    p, y = fer_probabilities(clf, DATA / "fer2013" / "fer2013.csv.gz")
    sets["fer2013_publictest"] = (p, y, 0)
    p_val, y_val, missed_val = sets["expw_val"]
    log_val = np.log(np.clip(p_val, 1e-7, 1.0))  # what scaled() divides by the temperature
    fitted = fit_temperature(log_val, y_val)
    t, bias = (fitted if args.temperature is None else args.temperature), np.zeros(len(clf.labels))
    if args.class_bias:
        t, bias = fit_temperature_bias(log_val, y_val, l2=args.l2)
    result = {"model": args.model, "backend": clf.backend_label, "machine": describe_machine(),
              "date": time.strftime("%Y-%m-%d"),
              "temperature_fitted_on_expw_val": round(fitted, 4), "temperature": round(t, 4),
              "class_bias": [round(float(b), 4) for b in bias] if args.class_bias else None,
              "l2": args.l2 if args.class_bias else None,
              "in_card": shipped, "sets": {}}
    for name, (p, y, missed) in sets.items():
        after = scaled(p, t, bias)
        result["sets"][name] = {
            "n": int(len(y)), "n_missed": int(missed),
            "accuracy_found": round(float((p.argmax(1) == y).mean()), 4),
            "ece_before": round(expected_calibration_error(p, y), 4),
            "ece_after": round(expected_calibration_error(after, y), 4),
            "ece_temperature_alone": round(expected_calibration_error(scaled(p, fitted), y), 4),
            "risk_coverage_before": risk_coverage(p, y),
            "risk_coverage_after": risk_coverage(after, y),
        }
        if args.class_bias:
            result["sets"][name] |= {"before": scores(p, y, missed, clf.labels),
                                     "after": scores(after, y, missed, clf.labels)}
    result["expw_val_sweep"] = [
        {"temperature": s, "ece": round(expected_calibration_error(scaled(p_val, s), y_val), 4),
         "nll": round(temperature_nll(log_val, y_val, s), 4)}
        for s in (*SWEEP, round(t, 4))]
    if args.class_bias:
        result["cross_validation"] = cross_validation(p_val, y_val, missed_val, clf.labels)
    result["seconds"] = round(time.time() - t0, 1)
    safe = Path(args.model).stem if ("/" in args.model or "." in args.model) else args.model
    out = args.out or ROOT / "benchmarks" / "results" / f"calibration_{safe}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: {kk: v[kk] for kk in ("ece_before", "ece_after", "accuracy_found")}
                      for k, v in result["sets"].items()} | {"temperature": result["temperature"],
                                                            "class_bias": result["class_bias"]}))


if __name__ == "__main__":
    main()
