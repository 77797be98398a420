"""An ensemble of graphs spends the cores on its members at once: each member gets a share of
the threads, and the probabilities equal those of the members taking turns."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from wildfer.models import ensemble
from wildfer.models.ensemble import member_threads
from wildfer.models.loader import builtin_models, load_model


@pytest.mark.parametrize("threads, cores, expected", [
    (None, 2, (1, 2)),    # every core: one each, both at once
    (None, 16, (8, 2)),
    (None, 1, (None, 1)),  # one core: onnxruntime's default, in turn
    (1, 8, (1, 1)),       # one thread asked for: the members take turns on it
    (3, 8, (1, 2)),
    (4, 8, (2, 2)),
])
def test_member_threads_share_the_budget(monkeypatch, threads, cores, expected):
    monkeypatch.setattr(ensemble, "cpu_cores", lambda: cores)
    assert member_threads(threads, 2) == expected
    assert member_threads(threads, 1) == (threads, 1)  # one member keeps what it was given


@pytest.fixture(scope="module")
def views():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (6, 48, 48), dtype=np.uint8), rng.integers(0, 256, (6, 3, 112, 112), dtype=np.uint8)]


@pytest.mark.parametrize("backend", ["onnx", "int8"])
def test_members_at_once_give_the_probabilities_of_members_in_turn(views, backend):
    if "wild_ensemble" not in builtin_models():
        pytest.skip("built-in wild_ensemble not installed (src/wildfer/weights/wild_mfn.onnx missing)")
    clf = load_model("wild_ensemble", backend=backend, threads=2)
    assert clf.runner.workers == 2 and [m.runner.threads for m in clf.runner.members] == [1, 1]
    together = clf.predict_proba(views)
    clf.runner.workers = 1
    in_turn = clf.predict_proba(views)
    np.testing.assert_array_equal(together, in_turn)
    assert together.shape == (6, 7) and np.allclose(together.sum(1), 1, atol=1e-5)
    one = load_model("wild_ensemble", backend=backend, threads=1)
    assert one.runner.workers == 1 and [m.runner.threads for m in one.runner.members] == [1, 1]
    np.testing.assert_allclose(one.predict_proba(views), together, atol=1e-6)


_FORKED = {}


def _predict_in_child():
    clf, views = _FORKED["clf"], _FORKED["views"]
    return clf.predict_proba(views)


def test_a_forked_process_makes_its_own_member_threads(views):
    """A process forked after the ensemble has run (its pool's threads stay in the parent)
    computes with threads of its own instead of waiting for ones that do not exist there."""
    if "wild_ensemble" not in builtin_models():
        pytest.skip("built-in wild_ensemble not installed (src/wildfer/weights/wild_mfn.onnx missing)")
    clf = load_model("wild_ensemble", backend="onnx", threads=2)
    expected = clf.predict_proba(views)
    assert clf.runner._pool is not None
    _FORKED.update(clf=clf, views=views)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(_predict_in_child).get(timeout=120)
    np.testing.assert_array_equal(got, expected)
