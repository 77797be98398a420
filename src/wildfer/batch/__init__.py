"""Batch prediction: many photos and videos through the wild pipeline, on this machine
(``wildfer predict``, ``--workers N`` processes) or past it on Ray Data.

>>> import ray
>>> from wildfer import batch
>>> ray.init()                       # a local Ray; ray.init(address="ray://HEAD:10001") for a cluster
>>> ds = batch.read_images("photos/")               # a folder, a list of files, "s3://bucket/prefix/"
>>> out = batch.predict_dataset(ds, model="wild")   # lazy: nothing runs until it is consumed
>>> batch.write_jsonl(out, "predictions.jsonl")     # doctest: +SKIP  (or out.write_parquet("s3://..."))

Both engines write the same records (:mod:`~wildfer.batch.records`: one per input, the CSV
rows of its faces, the table row of a photo). Pieces: :mod:`~wildfer.batch.plan` (the inputs,
their output names, what a resumed run still has to do), :mod:`~wildfer.batch.steps` (a
batch of photos or a video, in whichever process runs it), :mod:`~wildfer.batch.pool` (the
local engine and its worker processes), :mod:`~wildfer.batch.outputs` (the progress file, the
CSV, the report and the settings ``--resume`` checks, written as they go and guarded from
Ctrl-C), :mod:`~wildfer.batch.report` (the report and the summary),
:mod:`~wildfer.batch.ray_data` (the Ray Data engine; ``pip install 'wildfer[ray]'``) and
:mod:`~wildfer.batch.commands` (``wildfer predict``).
"""

from __future__ import annotations

import importlib
import os

# wildfer is offline: Ray's usage statistics stay off unless a user turns them on (set here,
# before any Ray name is first used, so a ray.init() made after ``import wildfer.batch`` obeys it)
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

#: public name -> the module that defines it, imported on first use (``import wildfer.batch``
#: stays light): the Ray Data engine's names.
_EXPORTS = {name: "ray_data" for name in ("COLUMNS", "Predictor", "read_images", "predict_dataset", "record",
                                           "write_jsonl", "predict_paths")}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'wildfer.batch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, "commands", "outputs", "plan", "pool", "ray_data", "records", "report", "steps"})
