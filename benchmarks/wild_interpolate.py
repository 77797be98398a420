"""Weight interpolation between a model and its wild fine-tune (WiSE-FT, Wortsman et al. 2022).

For each ``alpha`` the network ``(1 - alpha) * start + alpha * tuned`` (every floating-point
tensor, batch-norm statistics included; both must have the same architecture, and ``tuned``
must have been fine-tuned from ``start`` (``init=`` in its recipe), or from the same network
as ``start``: at ``alpha = 0.5`` two such siblings make a weight soup) is scored where the wild
models are scored: ExpW ``val``, LFW and KDEF frontal through the pipeline (``wildfer
evaluate-wild``, a missed face counts as wrong), and FER2013 PublicTest (``wildfer evaluate``).
``alpha = 0`` is ``start``, ``1`` is ``tuned``. One model, so no ensemble's extra cost.

Usage::

    python benchmarks/wild_interpolate.py --start default --tuned runs/wild_from_default_fp32/best.pt \\
        --alpha 0.25 0.5 0.75

-> ``benchmarks/results/wild_interpolate.json``. ``--keep DIR`` also keeps each network as
``DIR/alpha_<alpha>.pt``, to score it in an ensemble.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from common import DATA, ROOT, WILD_SETS, describe_machine


def interpolated(start: str, tuned: str, alpha: float, path: Path) -> Path:
    """Write the checkpoint ``tuned`` with its weights moved to ``(1 - alpha) start + alpha tuned``."""
    from wildfer.models.loader import load_model

    base = load_model(start).net.state_dict()
    ckpt = torch.load(tuned, map_location="cpu", weights_only=True)
    state = ckpt["state_dict"]
    for key, value in state.items():
        if value.is_floating_point():
            if base[key].shape != value.shape:
                raise SystemExit(f"{tuned}: {key} has shape {tuple(value.shape)}, {start} {tuple(base[key].shape)}: "
                                 f"not the same architecture")
            state[key] = (1 - alpha) * base[key].float() + alpha * value.float()
    torch.save(ckpt, path)
    return path


def score(model: str) -> dict:
    """Accuracy and macro-F1 on the wild dev sets and FER2013 PublicTest (the model loaded once)."""
    from wildfer.evaluate.core import evaluate, load_eval_data
    from wildfer.models.loader import load_model
    from wildfer.wild import Recognizer
    from wildfer.wild.evaluate import evaluate_wild

    clf = load_model(model)
    rec = Recognizer(model=clf)
    out = {}
    for name, (csv, split) in WILD_SETS.items():
        r = evaluate_wild(DATA / "wild" / csv, rec, split=split)
        out[name] = {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "detection_recall": r["detection_recall"],
                     "recall": {c: v["recall"] for c, v in r["per_class"].items()}}
    r = evaluate(clf, load_eval_data(DATA / "fer2013" / "fer2013.csv.gz", "PublicTest"))
    out["fer2013_publictest"] = {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--start", required=True, help="the model fine-tuned from: built-in name or checkpoint")
    ap.add_argument("--tuned", required=True, help="the fine-tuned checkpoint (same architecture)")
    ap.add_argument("--alpha", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "wild_interpolate.json"))
    ap.add_argument("--keep", type=Path, default=None, help="keep each interpolated checkpoint in this folder")
    args = ap.parse_args()
    if not Path(args.tuned).is_file():
        raise SystemExit(f"{args.tuned}: no such checkpoint (give the best.pt of a run fine-tuned from --start)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        where = args.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        for alpha in args.alpha:
            path = interpolated(args.start, args.tuned, alpha, where / f"alpha_{alpha}.pt")
            rows.append({"alpha": alpha, **score(str(path))})
            print(json.dumps({"alpha": alpha, **{k: round(100 * v["accuracy"], 1) for k, v in rows[-1].items()
                                                 if isinstance(v, dict)}}), flush=True)
    report = {"benchmark": "wild_interpolate", "start": args.start, "tuned": args.tuned, "runs": rows,
              "machine": describe_machine()}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
