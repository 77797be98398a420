"""Does face geometry help read wild expressions? The detector's 5 landmarks as a second input.

The landmarks come for free with every YuNet detection and do not care about the texture
domain (grey level, blur, JPEG), which is what separates FER2013 from web photos. Measured on
ExpW (the crops of ``wildfer.wild.crops``: the landmarks in aligned-crop pixels, so the
geometry is already normalised for position, scale and roll):

* ``geometry``: multinomial logistic regression on 14 geometric features alone;
* ``cnn``: the model's own argmax;
* ``cnn + geometry``: logistic regression on the model's log-probabilities with and without
  the geometric features (late fusion), fitted on ExpW ``train`` and scored on ``val``.

The model should not have seen ExpW ``train`` (use ``default``): a model fine-tuned on it gives
over-confident training log-probabilities, and the fusion would learn to trust them.

Usage: ``python benchmarks/wild_geometry.py [--model default]`` ->
``benchmarks/results/wild_geometry.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common import DATA, describe_machine

ROOT = Path(__file__).resolve().parent.parent


def geometry(lm: np.ndarray) -> np.ndarray:
    """N x 5 x 2 landmarks (right eye, left eye, nose, right / left mouth corner) -> N x 14."""
    eye_d = np.linalg.norm(lm[:, 1] - lm[:, 0], axis=1, keepdims=True).clip(1.0, None)
    mouth_w = np.linalg.norm(lm[:, 4] - lm[:, 3], axis=1, keepdims=True)
    eye_c, mouth_c = lm[:, :2].mean(1), lm[:, 3:].mean(1)
    nose = lm[:, 2]
    return np.hstack([
        lm.reshape(len(lm), -1) / 48.0,
        mouth_w / eye_d,  # a smile widens the mouth
        np.linalg.norm(mouth_c - nose, axis=1, keepdims=True) / eye_d,  # an open mouth drops its centre
        (mouth_c[:, 1:] - eye_c[:, 1:]) / eye_d,
        (lm[:, 3:, 1].mean(1, keepdims=True) - mouth_c[:, 1:]) / eye_d,  # corners up or down
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--manifest", type=Path, default=DATA / "wild" / "expw.csv")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "wild_geometry.json")
    args = ap.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from wildfer.models.loader import load_model
    from wildfer.wild.crops import crop_manifest

    clf = load_model(args.model)
    parts = {}
    for split in ("train", "val"):
        d = crop_manifest(args.manifest, split=split)
        ok = d.meta["found"] & np.isfinite(d.meta["landmarks"]).all((1, 2))
        logp = np.log(np.clip(clf.predict_proba(d.images[ok]), 1e-6, None))
        parts[split] = (geometry(d.meta["landmarks"][ok].astype(np.float64)), logp, d.labels[ok])

    def fit_score(cols):
        x_tr = np.hstack([parts["train"][c] for c in cols])
        x_va = np.hstack([parts["val"][c] for c in cols])
        m = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0)).fit(x_tr, parts["train"][2])
        p = m.predict(x_va)
        return {"accuracy": round(float(accuracy_score(parts["val"][2], p)), 4),
                "macro_f1": round(float(f1_score(parts["val"][2], p, average="macro")), 4)}

    y_va, cnn = parts["val"][2], parts["val"][1].argmax(1)
    out = {
        "model": args.model, "manifest": str(args.manifest),
        "faces": {s: int(len(v[2])) for s, v in parts.items()},
        "note": "faces the detector found with landmarks; accuracy over those faces only",
        "cnn": {"accuracy": round(float((cnn == y_va).mean()), 4),
                "macro_f1": round(float(f1_score(y_va, cnn, average="macro")), 4)},
        "geometry": fit_score([0]),
        "cnn_recalibrated": fit_score([1]),
        "cnn_plus_geometry": fit_score([1, 0]),
        "machine": describe_machine(),
    }
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("faces", "cnn", "geometry", "cnn_recalibrated", "cnn_plus_geometry")}))


if __name__ == "__main__":
    main()
