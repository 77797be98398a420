"""Is the plain average the best way to combine the wild ensemble's members?

From the members' saved predictions (the folders ``prior_correction.py`` describes: one per
member, each with ``pred_expw_val.csv``, ``pred_lfw.csv``, ``pred_kdef.csv`` and
``probs_publictest.npz``; no network runs), every combination below is fitted on ExpW ``val``
and scored on every dev set, missed faces counted as wrong as ``wildfer evaluate-wild`` counts
them:

* ``average``: the members' probabilities averaged, with weights, then calibrated by a
  temperature and a bias per class (``fit_temperature_bias``, L2 0.02), as ``wild_ensemble``
  ships (its weights are 1 and 1);
* ``log_weights``: one weight per member on its log-probabilities, and a bias per class;
* ``stacker``: one weight per member and class on its log-probabilities, and a bias per class
  (21 numbers for two members): a learned stacking of the members;
* with three or more ``--member`` folders, the plain average of every subset of two or more.

Fitted on the same 840 faces it is scored on, a combination with more numbers flatters itself,
so each is also scored out of fold: 5-fold cross-validation on ExpW ``val``, five shuffles, each
face scored by a fit on the other four fifths (``oof_accuracy``, ``oof_disgust_recall``).

Usage: ``python benchmarks/ensemble_combination.py --member DIR_wild --member DIR_wild_mfn
[--member DIR ...]`` -> ``benchmarks/results/ensemble_combination.json``.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from common import DATA, ROOT, describe_machine, write_result
from prior_correction import member_probabilities, scores

L2 = 0.02
FOLDS, SHUFFLES = 5, 5


def log_probs(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, 1e-12, 1.0))


class Average:
    """The weighted mean of the members' probabilities, calibrated by a temperature and a bias."""

    def __init__(self, weights):
        self.w = np.asarray(weights, np.float64) / np.sum(weights)

    def fit(self, p: np.ndarray, y: np.ndarray) -> "Average":
        from wildfer.evaluate.calibration import fit_temperature_bias

        self.t, self.b = fit_temperature_bias(self._mean(p), y, l2=L2)
        return self

    def _mean(self, p: np.ndarray) -> np.ndarray:
        return log_probs(np.tensordot(self.w, p, axes=1))

    def scores(self, p: np.ndarray) -> np.ndarray:
        return self._mean(p) / self.t + self.b


class LogLinear:
    """``sum_m W_m * log p_m + b``: ``W`` one number per member (``per_class=False``) or per
    member and class, fitted by maximum likelihood with the bias's L2 penalty."""

    def __init__(self, per_class: bool):
        self.per_class = per_class

    def _unpack(self, theta: np.ndarray, m: int, c: int) -> tuple[np.ndarray, np.ndarray]:
        k = m * c if self.per_class else m
        w = theta[:k].reshape(m, c) if self.per_class else np.repeat(theta[:k, None], c, axis=1)
        return w, theta[k:]

    def _z(self, theta, lp):
        w, b = self._unpack(theta, lp.shape[0], lp.shape[2])
        return np.einsum("mc,mnc->nc", w, lp) + b

    def fit(self, p: np.ndarray, y: np.ndarray) -> "LogLinear":
        from scipy.optimize import minimize

        lp = log_probs(p)
        m, _, c = lp.shape

        def loss(theta):
            z = self._z(theta, lp)
            z = z - z.max(1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(1, keepdims=True))
            return -logp[np.arange(len(y)), y].mean() + L2 * np.sum(theta[-c:] ** 2)

        start = np.concatenate([np.full(m * c if self.per_class else m, 1.0 / m), np.zeros(c)])
        self.theta = minimize(loss, start, method="L-BFGS-B").x
        return self

    def scores(self, p: np.ndarray) -> np.ndarray:
        return self._z(self.theta, log_probs(p))


def out_of_fold(make, p: np.ndarray, y: np.ndarray, found: np.ndarray) -> tuple[float, float]:
    """Accuracy and disgust recall on ExpW ``val``, each face scored by a fit on the other
    folds (the found faces of them), averaged over shuffles; a missed face is wrong."""
    accs, disgust = [], []
    for shuffle in range(SHUFFLES):
        order = np.random.default_rng(shuffle).permutation(len(y))
        pred = np.full(len(y), -1)
        for fold in np.array_split(order, FOLDS):
            train = np.setdiff1d(order, fold)
            train = train[found[train]]
            model = make().fit(p[:, train], y[train])
            pred[fold] = np.where(found[fold], model.scores(p[:, fold]).argmax(1), -1)
        accs.append(float((pred == y).mean()))
        disgust.append(float((pred[y == 1] == 1).mean()))
    return round(float(np.mean(accs)), 4), round(float(np.mean(disgust)), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--member", action="append", type=Path, required=True,
                    help="a folder with one model's saved predictions; give it once per member")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ensemble_combination.json")
    args = ap.parse_args()

    from wildfer.data.fer2013 import load_fer2013
    from wildfer.labels import FER2013_CLASSES

    classes = list(FER2013_CLASSES)
    data = member_probabilities(args.member, classes, load_fer2013(DATA / "fer2013" / "fer2013.csv.gz"))
    names = [m.name for m in args.member]
    n = len(names)
    combos: list[tuple[str, list[int], object]] = [("average, weights 1:1" if n == 2 else "average, equal weights",
                                                     list(range(n)), lambda: Average([1.0] * n))]
    if n == 2:
        for w in (0.5, 0.67, 1.5, 2.0):
            combos.append((f"average, weights 1:{w:g}", [0, 1], lambda w=w: Average([1.0, w])))
    combos += [("log_weights", list(range(n)), lambda: LogLinear(per_class=False)),
               ("stacker", list(range(n)), lambda: LogLinear(per_class=True))]
    if n > 2:
        for k in range(2, n):
            for subset in itertools.combinations(range(n), k):
                combos.append((f"average of {' + '.join(names[i] for i in subset)}", list(subset),
                               lambda k=k: Average([1.0] * k)))

    y, found, p = data["expw_val"]
    rows = []
    for name, members, make in combos:
        fitted = make().fit(p[members][:, found], y[found])
        row = {"combination": name, "members": [names[i] for i in members]}
        for set_name, (ys, fs, ps) in data.items():
            row[set_name] = scores(ys, fs, fitted.scores(ps[members]).argmax(1), classes)
        row["oof_accuracy"], row["oof_disgust_recall"] = out_of_fold(make, p[members], y, found)
        rows.append(row)
        print(f"{name}: ExpW val {row['expw_val']['accuracy'] * 100:.1f} (out of fold {row['oof_accuracy'] * 100:.1f}, "
              f"disgust {row['oof_disgust_recall']:.2f}) | LFW {row['lfw']['accuracy'] * 100:.1f} | KDEF "
              f"{row['kdef_frontal']['accuracy'] * 100:.1f} | PublicTest {row['publictest']['accuracy'] * 100:.1f}",
              flush=True)
    out = {"benchmark": "ensemble_combination", "members": names, "l2": L2, "folds": FOLDS, "shuffles": SHUFFLES,
           "rows": rows, "machine": describe_machine()}
    write_result(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
