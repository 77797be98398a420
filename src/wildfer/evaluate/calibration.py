"""Calibration of a classifier's confidence: temperature scaling, ECE and risk-coverage, in numpy.

* :func:`fit_temperature`: the temperature ``T`` that minimises the negative log-likelihood of
  ``softmax(logits / T)`` on held-out labels (Guo et al. 2017); divide the logits by it before
  the softmax to calibrate a model without changing a single prediction.
* :func:`fit_temperature_bias`: the temperature and a bias per class together (bias-corrected
  temperature scaling, Alexandari et al. 2020): ``softmax(logits / T + b)``. The bias moves the
  model's class prior to that of the held-out faces (a training mix of FER2013 and web faces
  against web faces alone), so it may change predictions; an L2 penalty keeps it small.
* :func:`expected_calibration_error`: top-label ECE over equal-width confidence bins, the
  binning of :func:`wildfer.evaluate.metrics.calibration_bins`.
* :func:`risk_coverage`: the accuracy on the faces a model is surest of, when it answers only a
  fraction of them (selective prediction).

Every function checks its inputs first and raises a one-line :class:`ValueError` naming the
argument that is wrong.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .metrics import ECE_BINS
from .metrics import expected_calibration_error as _binned_ece

#: Points of the coarse search over log T before the golden-section refinement.
GRID_POINTS = 64
#: Width of the final bracket on log T (a relative precision of about 1e-6 on T).
LOG_T_TOLERANCE = 1e-6
#: How far a row of probabilities may sum from 1 (rounded outputs, float32 softmax).
SUM_TOLERANCE = 1e-3
_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0


# ----------------------------------------------------------------------------- checks


def _scores(values, name: str) -> np.ndarray:
    """``values`` as a finite float64 N x C array with N >= 1 and C >= 2."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected an N x C array of numbers") from None
    if a.ndim != 2:
        raise ValueError(f"{name}: expected an N x C array, got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name}: no samples (shape {a.shape})")
    if a.shape[1] < 2:
        raise ValueError(f"{name}: expected at least 2 classes, got {a.shape[1]}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return a


def _probabilities(values) -> np.ndarray:
    p = _scores(values, "probabilities")
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(f"probabilities: values must be in [0, 1], got {p.min():.6g} to {p.max():.6g}")
    off = np.abs(p.sum(1) - 1.0)
    if off.max() > SUM_TOLERANCE:
        row = int(off.argmax())
        raise ValueError(f"probabilities: each row must sum to 1, row {row} sums to {p[row].sum():.6g}")
    return p


def _labels(values, n: int, c: int) -> np.ndarray:
    """``values`` as N class indices in ``0..c-1``."""
    try:
        y = np.asarray(values)
    except (TypeError, ValueError):
        raise ValueError("labels: expected a sequence of class indices") from None
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels: expected {n} class indices (one per row), got shape {y.shape}")
    if y.dtype == bool or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise ValueError(f"labels: expected integer class indices, got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating) and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise ValueError("labels: expected integer class indices, got fractional or non-finite values")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= c:
        raise ValueError(f"labels: class indices must be in 0..{c - 1}, got {y.min()} to {y.max()}")
    return y


# ----------------------------------------------------------------------------- temperature


def _temperature(value) -> float:
    """``value`` as a temperature: a finite number > 0."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"temperature: expected a number > 0, got {value!r}")
    return float(value)


def _bounds(bounds) -> tuple[float, float]:
    """``bounds`` on the temperature as ``(low, high)`` with ``0 < low < high``."""
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds: expected (low, high) with 0 < low < high, got {bounds!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0.0 < low < high):
        raise ValueError(f"bounds: expected (low, high) with 0 < low < high, got {bounds!r}")
    return low, high


def temperature_nll(logits, labels, temperature: float) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)`` at ``labels``: what
    :func:`fit_temperature` minimises (``logits`` may be log-probabilities)."""
    temperature = _temperature(temperature)
    z = _scores(logits, "logits")
    return _nll(z, _labels(labels, *z.shape), temperature)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """:func:`temperature_nll` of checked arrays (the inner loop of :func:`fit_temperature`)."""
    z = logits / temperature
    top = z.max(1)
    log_norm = top + np.log(np.exp(z - top[:, None]).sum(1))
    return float(np.mean(log_norm - z[np.arange(len(labels)), labels]))


def fit_temperature(logits, labels, *, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature ``T`` in ``bounds`` minimising the mean NLL of ``softmax(logits / T)``.

    ``logits`` is N x C (C >= 2), ``labels`` N class indices. The NLL is convex in ``1 / T``,
    so it has one minimum on ``log T``: a grid of :data:`GRID_POINTS` points over ``bounds``
    brackets it and a golden-section search narrows the bracket to :data:`LOG_T_TOLERANCE`.
    Deterministic; a minimum beyond ``bounds`` gives the nearer bound (``T`` -> 0 for logits
    that already separate the classes perfectly).
    """
    z = _scores(logits, "logits")
    y = _labels(labels, *z.shape)
    low, high = _bounds(bounds)

    def loss(log_t: float) -> float:
        return _nll(z, y, math.exp(log_t))

    grid = np.linspace(math.log(low), math.log(high), GRID_POINTS)
    values = [loss(t) for t in grid]
    best = int(np.argmin(values))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, GRID_POINTS - 1)]
    c, d = b - _INV_PHI * (b - a), a + _INV_PHI * (b - a)
    fc, fd = loss(c), loss(d)
    while b - a > LOG_T_TOLERANCE:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _INV_PHI * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + _INV_PHI * (b - a)
            fd = loss(d)
    candidates = [(loss(a), a), (fc, c), (fd, d), (loss(b), b)]
    return float(math.exp(min(candidates)[1]))


#: Newton steps of :func:`fit_temperature_bias` at most (it converges in about ten).
NEWTON_STEPS = 100
#: Stop when the gradient's largest component is below this.
GRADIENT_TOLERANCE = 1e-10


def temperature_bias_nll(logits, labels, temperature: float, class_bias, *, l2: float = 0.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature + class_bias)`` at
    ``labels``, plus ``l2 x |class_bias|^2``: what :func:`fit_temperature_bias` minimises."""
    temperature = _temperature(temperature)
    z = _scores(logits, "logits")
    y = _labels(labels, *z.shape)
    b = _bias(class_bias, z.shape[1])
    return _bias_loss(z, y, 1.0 / temperature, b, _l2(l2))[0]


def _bias(values, c: int) -> np.ndarray:
    try:
        b = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"class_bias: expected {c} numbers") from None
    if b.shape != (c,) or not np.isfinite(b).all():
        raise ValueError(f"class_bias: expected {c} finite numbers (one per class), got shape {b.shape}")
    return b


def _l2(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"l2: expected a number >= 0, got {value!r}")
    return float(value)


def _bias_loss(z: np.ndarray, y: np.ndarray, a: float, b: np.ndarray, l2: float,
               derivatives: bool = False) -> tuple:
    """The penalised NLL of ``softmax(a z + b)``; with ``derivatives``, also its gradient and
    Hessian in ``(a, b)`` (the NLL is that of a linear model in them, so it is convex)."""
    n, c = z.shape
    q = a * z + b
    top = q.max(1, keepdims=True)
    e = np.exp(q - top)
    total = e.sum(1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.mean(top[:, 0] + np.log(total[:, 0]) - q[rows, y]) + l2 * b @ b)
    if not derivatives:
        return (loss,)
    p = e / total
    r = p.copy()
    r[rows, y] -= 1.0
    u = (p * z).sum(1)  # the expected logit under p, per row
    grad = np.concatenate([[np.mean((r * z).sum(1))], r.mean(0) + 2 * l2 * b])
    hess = np.empty((c + 1, c + 1))
    hess[0, 0] = np.mean((p * z * z).sum(1) - u * u)
    hess[0, 1:] = hess[1:, 0] = np.mean(p * z - p * u[:, None], 0)
    hess[1:, 1:] = np.diag(p.mean(0)) - p.T @ p / n + 2 * l2 * np.eye(c)
    return loss, grad, hess


def fit_temperature_bias(logits, labels, *, l2: float = 0.02,
                         bounds: tuple[float, float] = (0.05, 20.0)) -> tuple[float, np.ndarray]:
    """``(T, b)``: the temperature in ``bounds`` and the per-class bias (``C`` numbers that sum
    to 0) minimising the mean NLL of ``softmax(logits / T + b)`` plus ``l2 x |b|^2``.

    The loss is convex in ``(1 / T, b)``; damped Newton steps from ``T = 1, b = 0`` find its
    minimum (the bias's direction that changes no probability, all classes alike, is removed).
    ``l2`` (>= 0) keeps the bias small where the held-out faces are few: 0.02 is what 5-fold
    cross-validation on ExpW ``val`` picks for ``wild_ensemble``
    (``benchmarks/calibration.py --class-bias``). Deterministic.
    """
    z = _scores(logits, "logits")
    y = _labels(labels, *z.shape)
    l2 = _l2(l2)
    low, high = _bounds(bounds)
    c = z.shape[1]
    a_low, a_high = 1.0 / high, 1.0 / low
    theta = np.concatenate([[min(max(1.0, a_low), a_high)], np.zeros(c)])
    # directions that change the loss: a and the bias's components that sum to 0
    basis = np.zeros((c + 1, c))
    basis[0, 0] = 1.0
    basis[1:, 1:] = np.eye(c)[:, 1:] - 1.0 / c
    basis[:, 1:] /= np.linalg.norm(basis[:, 1:], axis=0)
    basis, _ = np.linalg.qr(basis)
    loss, grad, hess = _bias_loss(z, y, theta[0], theta[1:], l2, True)
    for _ in range(NEWTON_STEPS):
        g = basis.T @ grad
        if np.abs(g).max() < GRADIENT_TOLERANCE:
            break
        h = basis.T @ hess @ basis + 1e-12 * np.eye(c)
        step = basis @ np.linalg.solve(h, -g)
        t = 1.0
        while t > 1e-12:  # backtracking, with 1 / T kept within bounds
            cand = theta + t * step
            cand[0] = min(max(cand[0], a_low), a_high)
            cand_loss = _bias_loss(z, y, cand[0], cand[1:], l2)[0]
            if cand_loss <= loss + 1e-4 * t * float(grad @ step) or cand_loss < loss - 1e-15:
                break
            t /= 2
        else:
            break
        if cand_loss >= loss and np.allclose(cand, theta):
            break
        theta = cand
        loss, grad, hess = _bias_loss(z, y, theta[0], theta[1:], l2, True)
    b = theta[1:] - theta[1:].mean()
    return float(1.0 / theta[0]), b


# ----------------------------------------------------------------------------- calibration error


def expected_calibration_error(probabilities, labels, bins: int = ECE_BINS) -> float:
    """Top-label ECE: over ``bins`` equal-width bins of top-1 probability (bin ``i`` holds
    ``(i / bins, (i + 1) / bins]``), the mean |accuracy - mean confidence| of each bin
    weighted by its share of the samples. 0 for a perfectly calibrated model."""
    p = _probabilities(probabilities)
    y = _labels(labels, *p.shape)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins: expected a positive integer, got {bins!r}")
    return _binned_ece(y, p, int(bins))


# ----------------------------------------------------------------------------- selective prediction


#: The shares of the faces, most confident first, that :func:`risk_coverage` answers by default
#: (the rows of the risk-coverage tables in the docs, and of ``evaluate-wild``'s ``calibration``).
COVERAGES = (0.5, 0.8, 1.0)


def risk_coverage(probabilities, labels, coverages: Sequence[float] = COVERAGES) -> list[dict[str, Any]]:
    """Accuracy when only the surest fraction of the samples is answered.

    For each coverage ``c`` in (0, 1], the ``n = ceil(c x N)`` samples with the highest top-1
    probability are answered (equal probabilities in input order). Returns one dict per
    coverage, in the order given: ``coverage`` (``c``), ``n``, ``accuracy`` (of the top-1
    label on those ``n``) and ``threshold`` (the lowest top-1 probability among them).
    """
    p = _probabilities(probabilities)
    y = _labels(labels, *p.shape)
    try:
        cov = np.asarray(coverages, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"coverages: expected a sequence of fractions in (0, 1], got {coverages!r}") from None
    if cov.ndim != 1 or cov.size == 0:
        raise ValueError(f"coverages: expected a sequence of fractions in (0, 1], got {coverages!r}")
    bad = cov[~((cov > 0.0) & (cov <= 1.0))]
    if bad.size:
        raise ValueError(f"coverages: each must be in (0, 1], got {bad[0]:g}")
    conf = p.max(1)
    correct = p.argmax(1) == y
    order = np.argsort(-conf, kind="stable")
    total = len(y)
    out = []
    for c in cov:
        n = min(total, max(1, math.ceil(c * total - 1e-9)))
        answered = order[:n]
        out.append({"coverage": float(c), "n": int(n), "accuracy": float(correct[answered].mean()),
                    "threshold": float(conf[answered[-1]])})
    return out


__all__ = ["COVERAGES", "fit_temperature", "temperature_nll", "fit_temperature_bias", "temperature_bias_nll",
           "expected_calibration_error", "risk_coverage"]
