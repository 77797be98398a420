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
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import DATA, ROOT, WILD_SETS, describe_machine

COVERAGES = (0.5, 0.8, 1.0)
#: temperatures at which ExpW val's ECE and negative log-likelihood are also reported: how much
#: the binned ECE moves between neighbouring temperatures (its noise on a few hundred faces)
SWEEP = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1)


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


def scaled(p: np.ndarray, temperature: float) -> np.ndarray:
    z = np.log(np.clip(p, 1e-7, 1.0)) / temperature
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="wild", help="built-in name, checkpoint, weights or ensemble spec")
    ap.add_argument("--temperature", type=float, default=None, help="score this temperature instead of fitting one")
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/results/calibration_<model>.json")
    args = ap.parse_args()

    from wildfer.evaluate.calibration import expected_calibration_error, fit_temperature, risk_coverage, temperature_nll
    from wildfer.models.loader import load_model

    clf = load_model(args.model)
    shipped_t = float(clf.preprocess.get("temperature", 1.0))
    clf.preprocess = {k: v for k, v in clf.preprocess.items() if k != "temperature"}  # raw probabilities
    t0 = time.time()
    sets: dict[str, tuple] = {}
    for name, (manifest, split) in WILD_SETS.items():
        sets[name] = wild_probabilities(clf, DATA / "wild" / manifest, split)
    p, y = fer_probabilities(clf, DATA / "fer2013" / "fer2013.csv.gz")
    sets["fer2013_publictest"] = (p, y, 0)
    p_val, y_val, _ = sets["expw_val"]
    log_val = np.log(np.clip(p_val, 1e-7, 1.0))  # what scaled() divides by the temperature
    fitted = fit_temperature(log_val, y_val)
    t = fitted if args.temperature is None else args.temperature
    result = {"model": args.model, "backend": clf.backend_label, "machine": describe_machine(),
              "date": time.strftime("%Y-%m-%d"),
              "temperature_fitted_on_expw_val": round(fitted, 4), "temperature": round(t, 4),
              "temperature_in_card": shipped_t, "sets": {}}
    for name, (p, y, missed) in sets.items():
        after = scaled(p, t)
        result["sets"][name] = {
            "n": int(len(y)), "n_missed": int(missed),
            "accuracy_found": round(float((p.argmax(1) == y).mean()), 4),
            "ece_before": round(expected_calibration_error(p, y), 4),
            "ece_after": round(expected_calibration_error(after, y), 4),
            "risk_coverage_before": risk_coverage(p, y, COVERAGES),
            "risk_coverage_after": risk_coverage(after, y, COVERAGES),
        }
    result["expw_val_sweep"] = [
        {"temperature": s, "ece": round(expected_calibration_error(scaled(p_val, s), y_val), 4),
         "nll": round(temperature_nll(log_val, y_val, s), 4)}
        for s in (*SWEEP, round(t, 4))]
    result["seconds"] = round(time.time() - t0, 1)
    safe = Path(args.model).stem if ("/" in args.model or "." in args.model) else args.model
    out = args.out or ROOT / "benchmarks" / "results" / f"calibration_{safe}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: {kk: v[kk] for kk in ("ece_before", "ece_after", "accuracy_found")}
                      for k, v in result["sets"].items()} | {"temperature": result["temperature"]}))


if __name__ == "__main__":
    main()
