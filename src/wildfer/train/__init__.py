"""Training: ``Trainer(TrainConfig(...)).fit()``; ``wildfer train --config FILE``.

The loop is :mod:`.engine`; its loss in :mod:`.losses`, its callbacks (logging, checkpoints,
time budget, early stopping, progress) in :mod:`.callbacks`, optimizers and learning-rate
schedules in :mod:`.optim`.

Imports are lazy (PEP 562) so that ``wildfer --help``, which imports
:mod:`wildfer.train.commands`, does not import torch (via :mod:`.engine`) or yaml.
"""

from __future__ import annotations

import importlib

__all__ = ["TrainConfig", "Trainer", "load_config"]

_EXPORTS = {"TrainConfig": "config", "load_config": "config", "Trainer": "engine"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
