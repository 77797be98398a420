"""Does face geometry help read wild expressions? The detector's 5 landmarks as a second input.

The landmarks come for free with every YuNet detection and do not care about the texture
domain (grey level, blur, JPEG), which is what separates FER2013 from web photos. Measured on
ExpW (the crops of ``wildfer.wild.crops``: the landmarks in aligned-crop pixels, so the
geometry is already normalised for position, scale and roll):

* ``geometry``: multinomial logistic regression on 14 geometric features alone;
* ``cnn``: the model's own argmax;
* ``cnn + geometry``: logistic regression on the model's log-probabilities with and without
  the geometric features (late fusion), fitted on ExpW ``train`` and scored on ``val``.

With ``--mesh face_landmark.tflite`` (from a mediapipe 0.10 wheel; ``facemesh.py``) the dense
468-point face mesh is a third input: it sees brows, eyelids and both lips, which five points
cannot. ``mesh`` is logistic regression on the mesh alone, ``cnn + mesh`` the late fusion, and
``cnn x mesh`` multiplies the model's probabilities by the mesh classifier's to a power ``w``
(the model's own outputs untouched, so it is fair to a model trained on ExpW ``train`` too);
every fusion fitted on ExpW ``train`` is scored on ExpW ``val``, LFW and KDEF.

The model should not have seen ExpW ``train`` (use ``default``): a model fine-tuned on it gives
over-confident training log-probabilities, and the fusion would learn to trust them.

Usage: ``python benchmarks/wild_geometry.py [--model default] [--mesh FILE]`` ->
``benchmarks/results/wild_geometry.json`` (``wild_geometry_mesh.json`` with ``--mesh``, with
``_MODEL`` added for a model other than ``default``).
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


def fit_logreg(x: np.ndarray, y: np.ndarray):
    """Standardised multinomial logistic regression; the dense mesh's 1,404 features get a firmer prior."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    c_reg = 1.0 if x.shape[1] < 100 else 0.01
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=c_reg)).fit(x, y)


def fit_score(parts: dict, cols: list[int], test: str) -> dict:
    """Logistic regression on ExpW ``train``'s feature blocks ``cols``, scored on ``test``."""
    from sklearn.metrics import accuracy_score, f1_score

    x_tr = np.hstack([parts["train"][c] for c in cols])
    x_te = np.hstack([parts[test][c] for c in cols])
    p = fit_logreg(x_tr, parts["train"][-1]).predict(x_te)
    return {"accuracy": round(float(accuracy_score(parts[test][-1], p)), 4),
            "macro_f1": round(float(f1_score(parts[test][-1], p, average="macro")), 4)}


def product_score(parts: dict, weights=(0.25, 0.5, 1.0)) -> dict:
    """``log p(cnn) + w log p(mesh)`` with the mesh's classifier fitted on ExpW ``train`` and the
    model's own probabilities as they are (nothing refitted on them, so a model that has seen
    ExpW ``train`` is measured fairly): accuracy per test set and weight."""
    m = fit_logreg(parts["train"][2], parts["train"][-1])
    out = {}
    for test, (_, logp, feats, y) in ((k, v) for k, v in parts.items() if k != "train"):
        mesh_logp = m.predict_log_proba(feats)
        out[test] = {f"w={w}": round(float(((logp + w * mesh_logp).argmax(1) == y).mean()), 4) for w in weights}
    return out


def collect(clf, manifest: Path, split: str | None, mesh) -> tuple:
    """``(5-point geometry, log-probabilities[, mesh features], labels)`` of the faces found with landmarks."""
    from wildfer.wild.align import AlignConfig
    from wildfer.wild.crops import crop_manifest

    d = crop_manifest(manifest, split=split)
    ok = d.meta["found"] & np.isfinite(d.meta["landmarks"]).all((1, 2))
    logp = np.log(np.clip(clf.predict_proba(d.images[ok]), 1e-6, None))
    blocks = [geometry(d.meta["landmarks"][ok].astype(np.float64)), logp]
    if mesh is not None:
        from facemesh import SIDE, mesh_features

        big = crop_manifest(manifest, split=split, align=AlignConfig(size=SIDE, margin=2.7, center_y=0.52))
        blocks.append(mesh_features(mesh(big.images[ok])[0].astype(np.float64)))
    return (*blocks, d.labels[ok])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--manifest", type=Path, default=DATA / "wild" / "expw.csv")
    ap.add_argument("--mesh", type=Path, help="face_landmark.tflite of a mediapipe 0.10 wheel: add the dense mesh")
    ap.add_argument("--out", type=Path, default=None, help="JSON (default benchmarks/results/wild_geometry[_mesh].json)")
    args = ap.parse_args()
    from sklearn.metrics import f1_score

    from wildfer.models.loader import load_model

    name = "wild_geometry" + ("_mesh" if args.mesh else "") + ("" if args.model == "default" else f"_{args.model}")
    out_path = args.out or ROOT / "benchmarks" / "results" / f"{name}.json"
    mesh = None
    if args.mesh:
        from facemesh import FaceMesh

        mesh = FaceMesh(args.mesh)
    clf = load_model(args.model)
    sets = {"train": (args.manifest, "train"), "val": (args.manifest, "val")}
    if args.mesh:  # the fusion fitted on ExpW, scored on the other dev sets too
        sets |= {"lfw": (DATA / "wild" / "lfw.csv", None), "kdef": (DATA / "wild" / "kdef_frontal.csv", None)}
    parts = {key: collect(clf, manifest, split, mesh) for key, (manifest, split) in sets.items()}
    arms = {"geometry": [0], "cnn_recalibrated": [1], "cnn_plus_geometry": [1, 0]}
    if mesh is not None:
        arms |= {"mesh": [2], "cnn_plus_mesh": [1, 2]}
    tests = [s for s in parts if s != "train"]
    scores = {}
    for test in tests:
        y, cnn = parts[test][-1], parts[test][1].argmax(1)
        scores[test] = {"cnn": {"accuracy": round(float((cnn == y).mean()), 4),
                                "macro_f1": round(float(f1_score(y, cnn, average="macro")), 4)}}
        scores[test] |= {arm: fit_score(parts, cols, test) for arm, cols in arms.items()}
    out = {
        "model": args.model, "manifest": str(args.manifest), "mesh": str(args.mesh) if args.mesh else None,
        "faces": {s: int(len(v[-1])) for s, v in parts.items()},
        "note": "faces the detector found with landmarks; accuracy over those faces only; "
                "every fusion is fitted on ExpW train",
        **(scores["val"] if not args.mesh else {"scores": scores, "cnn_times_mesh": product_score(parts)}),
        "machine": describe_machine(),
    }
    out_path.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k not in ("machine", "note")}, indent=1))


if __name__ == "__main__":
    main()
