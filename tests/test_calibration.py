"""Temperature scaling, top-label ECE and risk-coverage (wildfer.evaluate.calibration) on
synthetic predictions whose calibration is known, and on small examples computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from wildfer.evaluate.calibration import (expected_calibration_error, fit_temperature, fit_temperature_bias,
                                          risk_coverage, temperature_bias_nll, temperature_nll)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _draw_labels(p: np.ndarray, rng) -> np.ndarray:
    """One class per row, drawn with the row's probabilities."""
    return (rng.uniform(size=(len(p), 1)) > np.cumsum(p, 1)).sum(1).clip(0, p.shape[1] - 1)


# ----------------------------------------------------------------------------- temperature


@pytest.mark.parametrize("t0", [0.5, 2.0, 4.0])
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with(t0):
    rng = np.random.default_rng(1)
    logits = rng.normal(0.0, 3.0, (20000, 7))
    labels = _draw_labels(_softmax(logits / t0), rng)

    def nll(temp):
        p = _softmax(logits / temp)
        return -np.mean(np.log(p[np.arange(len(labels)), labels]))

    t = fit_temperature(logits, labels)
    assert t == pytest.approx(t0, rel=0.10)
    assert nll(t) < nll(t * 1.05) and nll(t) < nll(t / 1.05)  # the minimum: a little either side is worse


def test_temperature_nll_is_the_log_loss_fit_temperature_minimises():
    rng = np.random.default_rng(3)
    logits = rng.normal(0.0, 2.0, (400, 5))
    labels = _draw_labels(_softmax(logits / 1.5), rng)
    for temp in (0.5, 1.0, 2.0):
        p = _softmax(logits / temp)
        assert temperature_nll(logits, labels, temp) == pytest.approx(-np.mean(np.log(p[np.arange(400), labels])))
    # log-probabilities give the same losses as the logits they came from
    log_p = np.log(_softmax(logits))
    assert temperature_nll(log_p, labels, 0.7) == pytest.approx(temperature_nll(logits, labels, 0.7))
    t = fit_temperature(logits, labels)
    assert temperature_nll(logits, labels, t) <= min(temperature_nll(logits, labels, t * f) for f in (0.95, 1.05))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature"):
            temperature_nll(logits, labels, bad)


def test_fit_temperature_is_deterministic_and_stays_within_bounds():
    rng = np.random.default_rng(2)
    logits = rng.normal(0.0, 1.0, (500, 3))
    labels = logits.argmax(1)  # perfectly separated: the NLL keeps falling as T -> 0
    assert fit_temperature(logits, labels) == fit_temperature(logits, labels)
    assert fit_temperature(logits, labels, bounds=(0.5, 3.0)) == pytest.approx(0.5, rel=1e-5)
    wrong = logits.argmin(1)  # always the least likely class: T as large as allowed
    assert fit_temperature(logits, wrong, bounds=(0.5, 3.0)) == pytest.approx(3.0, rel=1e-5)


# ----------------------------------------------------------------------------- temperature and class bias


def test_fit_temperature_bias_recovers_the_temperature_and_the_prior_shift():
    """Labels drawn from softmax(z / T0 + b0): the fit (no penalty) finds T0 and b0 (up to the
    constant that changes no probability), and its loss is the least nearby."""
    rng = np.random.default_rng(5)
    logits = rng.normal(0.0, 2.0, (30000, 5))
    b0 = np.array([0.6, -0.4, 0.1, -0.5, 0.2])
    labels = _draw_labels(_softmax(logits / 1.6 + b0), rng)
    t, b = fit_temperature_bias(logits, labels, l2=0.0)
    assert t == pytest.approx(1.6, rel=0.05)
    assert b.sum() == pytest.approx(0.0, abs=1e-9)
    assert np.abs(b - (b0 - b0.mean())).max() < 0.06
    best = temperature_bias_nll(logits, labels, t, b)
    for dt, db in ((1.03, 0), (1 / 1.03, 0), (1, 0.05 * np.eye(5)[0]), (1, -0.05 * np.eye(5)[3])):
        assert best < temperature_bias_nll(logits, labels, t * dt, b + db)
    # a constant added to every class changes nothing
    assert temperature_bias_nll(logits, labels, t, b + 3.0) == pytest.approx(best)


def test_the_class_bias_penalty_shrinks_it_and_without_a_shift_it_stays_near_zero():
    rng = np.random.default_rng(6)
    logits = rng.normal(0.0, 2.0, (2000, 4))
    labels = _draw_labels(_softmax(logits / 0.8 + np.array([0.5, 0.0, 0.0, -0.5])), rng)
    sizes = [np.abs(fit_temperature_bias(logits, labels, l2=l2)[1]).max() for l2 in (0.0, 0.05, 1.0)]
    assert sizes[0] > sizes[1] > sizes[2] and sizes[2] < 0.1
    fair = _draw_labels(_softmax(logits / 0.8), rng)
    t, b = fit_temperature_bias(logits, fair, l2=0.0)
    assert np.abs(b).max() < 0.15 and t == pytest.approx(fit_temperature(logits, fair), rel=0.05)
    # the penalised loss is what the fit minimises
    t, b = fit_temperature_bias(logits, labels, l2=0.05)
    best = temperature_bias_nll(logits, labels, t, b, l2=0.05)
    assert best < temperature_bias_nll(logits, labels, t, b * 1.2, l2=0.05)
    assert best < temperature_bias_nll(logits, labels, t, b * 0.8, l2=0.05)
    assert fit_temperature_bias(logits, labels)[0] == fit_temperature_bias(logits, labels)[0]  # deterministic


def test_fit_temperature_bias_checks_its_arguments():
    logits, labels = np.zeros((4, 3)), [0, 1, 2, 0]
    for kw, match in (({"l2": -1.0}, "l2"), ({"l2": float("nan")}, "l2"), ({"bounds": (2.0, 1.0)}, "bounds")):
        with pytest.raises(ValueError, match=match):
            fit_temperature_bias(logits, labels, **kw)
    with pytest.raises(ValueError, match="class_bias: expected 3 finite numbers"):
        temperature_bias_nll(logits, labels, 1.0, [0.0, 1.0])
    with pytest.raises(ValueError, match="labels"):
        fit_temperature_bias(logits, [0, 1, 5, 0])


# ----------------------------------------------------------------------------- ECE


def test_ece_of_a_hand_example():
    # 5 bins of 0.2: 0.9 right (bin 4); 0.55 wrong (bin 2); 0.7 and 0.75 right (bin 3)
    p = [[0.9, 0.1], [0.55, 0.45], [0.3, 0.7], [0.25, 0.75]]
    ece = expected_calibration_error(p, [0, 1, 1, 1], bins=5)
    assert ece == pytest.approx(1 / 4 * 0.1 + 1 / 4 * 0.55 + 2 / 4 * (1 - 0.725))


def test_ece_is_small_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(3)
    n, c = 20000, 4
    top = rng.uniform(0.3, 1.0, n)
    p = np.column_stack([top] + [(1 - top) / (c - 1)] * (c - 1))
    calibrated = _draw_labels(p, rng)  # class 0 is right with probability top
    assert expected_calibration_error(p, calibrated) < 0.02
    # right 25 points less often than the model says
    overconfident = np.where(rng.uniform(size=n) < top - 0.25, 0, 1)
    assert expected_calibration_error(p, overconfident) == pytest.approx(0.25, abs=0.02)


# ----------------------------------------------------------------------------- risk-coverage


def test_risk_coverage_of_a_hand_example():
    # top-1 probabilities 0.9, 0.6, 0.8, 0.6, 0.5; right, wrong, right, right, wrong
    p = [[0.9, 0.1], [0.4, 0.6], [0.8, 0.2], [0.6, 0.4], [0.5, 0.5]]
    y = [0, 0, 0, 0, 1]
    rows = risk_coverage(p, y, coverages=(0.4, 0.6, 1.0))
    # by confidence: samples 0, 2, then 1 before 3 (equal, input order), then 4
    assert rows == [
        {"coverage": 0.4, "n": 2, "accuracy": 1.0, "threshold": 0.8},
        {"coverage": 0.6, "n": 3, "accuracy": pytest.approx(2 / 3), "threshold": 0.6},
        {"coverage": 1.0, "n": 5, "accuracy": 0.6, "threshold": 0.5},
    ]
    default = risk_coverage(p, y)
    assert [(r["coverage"], r["n"], r["accuracy"]) for r in default] == [(0.5, 3, pytest.approx(2 / 3)),
                                                                          (0.8, 4, 0.75), (1.0, 5, 0.6)]
    assert risk_coverage(p, y, coverages=[0.01])[0]["n"] == 1


# ----------------------------------------------------------------------------- bad inputs


GOOD_P = [[0.7, 0.3], [0.2, 0.8]]


@pytest.mark.parametrize("call, words", [
    (lambda: fit_temperature(np.zeros(4), [0, 1, 0, 1]), "logits: expected an N x C array"),
    (lambda: fit_temperature(np.zeros((0, 3)), []), "logits: no samples"),
    (lambda: fit_temperature(np.zeros((2, 1)), [0, 0]), "logits: expected at least 2 classes"),
    (lambda: fit_temperature([[0.0, np.nan]], [0]), "logits: contains NaN"),
    (lambda: fit_temperature(np.zeros((2, 3)), [0]), "labels: expected 2 class indices"),
    (lambda: fit_temperature(np.zeros((2, 3)), [0, 3]), "labels: class indices must be in 0..2"),
    (lambda: fit_temperature(np.zeros((2, 3)), [0, 1.5]), "labels: expected integer class indices"),
    (lambda: fit_temperature(np.zeros((2, 3)), ["a", "b"]), "labels: expected integer class indices"),
    (lambda: fit_temperature(np.zeros((2, 3)), [0, 1], bounds=(2.0, 1.0)), "bounds: expected (low, high)"),
    (lambda: fit_temperature(np.zeros((2, 3)), [0, 1], bounds=(0.0, 1.0)), "bounds: expected (low, high)"),
    (lambda: fit_temperature(np.zeros((2, 3)), [0, 1], bounds=3), "bounds: expected (low, high)"),
    (lambda: expected_calibration_error([[0.7, 0.5], [0.2, 0.8]], [0, 1]), "row 0 sums to 1.2"),
    (lambda: expected_calibration_error([[1.5, -0.5], [0.2, 0.8]], [0, 1]), "probabilities: values must be in [0, 1]"),
    (lambda: expected_calibration_error(GOOD_P, [0, -1]), "labels: class indices must be in 0..1"),
    (lambda: expected_calibration_error(GOOD_P, [0, 1], bins=0), "bins: expected a positive integer"),
    (lambda: expected_calibration_error(GOOD_P, [0, 1], bins=2.5), "bins: expected a positive integer"),
    (lambda: risk_coverage(GOOD_P, [0, 1], coverages=(0.5, 0.0)), "coverages: each must be in (0, 1], got 0"),
    (lambda: risk_coverage(GOOD_P, [0, 1], coverages=(1.2,)), "coverages: each must be in (0, 1], got 1.2"),
    (lambda: risk_coverage(GOOD_P, [0, 1], coverages=()), "coverages: expected a sequence"),
    (lambda: risk_coverage(GOOD_P, [[0, 1]]), "labels: expected 2 class indices"),
])
def test_bad_inputs_are_one_line_value_errors(call, words):
    with pytest.raises(ValueError) as e:
        call()
    assert words in str(e.value) and "\n" not in str(e.value)
