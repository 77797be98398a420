"""Evaluation: ``evaluate(model_or_models, arrays, tta=None|"flip"|"tencrop") -> dict``;
``wildfer evaluate DATA --model NAME_OR_CHECKPOINT``; the study's experiments
(``wildfer experiment optimizers|architectures``).

Imports are lazy so that ``wildfer --help`` (which imports :mod:`wildfer.evaluate.commands`)
stays fast.
"""

from __future__ import annotations

__all__ = ["evaluate", "load_eval_data", "compute_metrics"]

_WHERE = {"evaluate": "core", "load_eval_data": "core", "compute_metrics": "metrics"}


def __getattr__(name):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
