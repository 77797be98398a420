"""Batch inference past one machine on Ray Data: the wild pipeline (detect, align, classify)
as a pool of actors over a Ray Dataset of images, one :class:`~wildfer.wild.Recognizer` per
actor; the public names are re-exported by :mod:`wildfer.batch`.

Each output row is one photo's record in the table form of :mod:`wildfer.batch.records`
(:data:`COLUMNS`): ``path``, ``width``, ``height``, ``mode``, ``truncated``, ``faces`` (JSON
text in the dataset, so every row has one schema in Parquet; objects again in
:func:`write_jsonl`), and ``error`` (empty, or the one-line reason an unreadable photo was
skipped). ``ray`` is an optional extra: ``pip install 'wildfer[ray]'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..data.images import IMAGE_EXTENSIONS
from ..errors import WildferError
from ..jsonio import dumps
from .records import COLUMNS, error_record, photo_row, row_record


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise WildferError("batch inference on Ray needs the 'ray' extra: pip install 'wildfer[ray]'") from None
    return ray


def read_images(paths: str | os.PathLike | list, **read_kwargs):
    """A Ray Dataset of the image files under ``paths`` (files, folders, or any URI Ray reads,
    e.g. ``s3://bucket/prefix/``): one row per file with its ``bytes`` and ``path``. Files are
    chosen by extension (:data:`~wildfer.data.images.IMAGE_EXTENSIONS`). Read tasks ask for a
    quarter CPU (``num_cpus=`` overrides it): reading is I/O, and the model actors keep
    the rest."""
    ray = _ray()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [str(p) for p in paths]
    exts = sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS)
    exts += [e.upper() for e in exts]
    read_kwargs.setdefault("num_cpus", 0.25)
    return ray.data.read_binary_files(paths, include_paths=True, file_extensions=exts, **read_kwargs)


class Predictor:
    """The per-actor callable of :func:`predict_dataset`: builds its Recognizer once, then turns
    batches of ``{"bytes", "path"}`` into result rows (see :data:`COLUMNS`)."""

    def __init__(self, model: Any = None, detector: str = "yunet", mode: str = "detect", threads: int = 1,
                 max_side: int = 640):
        import torch

        from ..wild import Recognizer

        torch.set_num_threads(max(1, int(threads)))
        self.recognizer = Recognizer(model=model, detector=detector, mode=mode, max_side=max_side)

    def __call__(self, batch: dict) -> dict[str, list]:
        out: dict[str, list] = {c: [] for c in COLUMNS}
        for data, path in zip(batch["bytes"], batch["path"]):
            row = self.row(bytes(data), str(path))
            for c in COLUMNS:
                out[c].append(row[c])
        return out

    def row(self, data: bytes, path: str) -> dict[str, Any]:
        """One photo's result row; an unreadable photo gets its one-line ``error`` and no faces."""
        try:
            rec = {**self.recognizer.predict(data).to_dict(), "path": path}
        except WildferError as e:
            rec = error_record(path, f"{path}: {getattr(e, 'problem', e)}")
        return photo_row(rec, self.recognizer.mode)


def predict_dataset(ds, *, model: Any = None, detector: str = "yunet", mode: str = "detect", max_side: int = 640,
                    concurrency: int | tuple[int, int] | None = None, batch_size: int = 16, num_cpus: float = 1,
                    num_gpus: float = 0):
    """Run the wild pipeline over a Ray Dataset with ``bytes`` and ``path`` columns (as
    :func:`read_images` gives) on an actor pool of ``concurrency`` actors (an int, or a
    ``(min, max)`` autoscaling range; default: as many as the cluster's CPUs hold after one CPU
    is left for reading), each holding one model and running ``num_cpus`` (at least one)
    threads. Actors that take every CPU leave none for the read tasks and the pipeline stalls,
    so keep ``concurrency * num_cpus`` below the cluster's CPUs. Returns the lazy dataset of
    result rows."""
    ray = _ray()
    if concurrency is None:
        cpus = float(ray.cluster_resources().get("CPU", 1))
        concurrency = max(1, int((cpus - 1) // num_cpus))
    return ds.map_batches(
        Predictor,
        fn_constructor_kwargs={"model": model, "detector": detector, "mode": mode, "max_side": int(max_side),
                               "threads": max(1, int(num_cpus))},
        batch_size=int(batch_size), batch_format="numpy", concurrency=concurrency, num_cpus=num_cpus,
        num_gpus=num_gpus,
    )


def record(row: dict[str, Any]) -> dict[str, Any]:
    """A result row as ``wildfer predict`` writes a photo (:func:`~wildfer.batch.records.row_record`):
    ``faces`` as objects, and an unreadable photo as ``{"path", "error"}``."""
    return row_record(row)


def write_jsonl(ds, path: str | os.PathLike) -> int:
    """Stream a result dataset into one JSON Lines file on this machine, a line per photo,
    flushed as each arrives into ``PATH.partial``, renamed to ``PATH`` when complete (an
    interruption keeps every line written). Returns the count.
    For outputs too big for one machine use Ray's own writers (``ds.write_parquet(uri)``)."""
    return sum(_stream_jsonl(ds, path))


def _stream_jsonl(ds, path: str | os.PathLike) -> tuple[int, int]:
    """:func:`write_jsonl`, counting (readable, unreadable) photos."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    good = bad = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in ds.iter_rows():
            rec = record(row)
            fh.write(dumps(rec) + "\n")
            fh.flush()
            bad += "error" in rec
            good += "error" not in rec
    os.replace(tmp, path)
    return good, bad


def predict_paths(paths: list, json_file: str | os.PathLike, *, model: Any = None, detector: str = "yunet",
                  mode: str = "detect", max_side: int = 640, concurrency: int | None = None, echo=print) -> int:
    """``wildfer predict --engine ray``: the photos under ``paths`` through :func:`predict_dataset`
    on the Ray cluster ``ray.init()`` finds (``RAY_ADDRESS``, or a local one), written to
    ``json_file`` as JSON Lines. Returns the exit code, 1 only when no photo could be read
    (as the local path)."""
    from ..paths import check_output_file

    json_file = Path(json_file)
    if json_file.suffix.lower() != ".jsonl":
        raise WildferError(f"--json {json_file}: --engine ray writes JSON Lines; give a name ending in .jsonl")
    check_output_file(json_file, "--json")
    missing = [str(p) for p in paths if not str(p).startswith(("s3://", "gs://", "abfs://")) and not Path(p).exists()]
    if missing:
        raise WildferError(f"{missing[0]}: not found")
    ray = _ray()
    if not ray.is_initialized():
        ray.init(log_to_driver=False, configure_logging=False)
    out = predict_dataset(read_images(list(paths)), model=model, detector=detector, mode=mode, max_side=max_side,
                          concurrency=concurrency)
    good, bad = _stream_jsonl(out, json_file)
    echo(f"done: {good + bad} photo(s) on Ray, {bad} unreadable; results written to {json_file}")
    return 0 if good or not bad else 1


__all__ = ["COLUMNS", "Predictor", "read_images", "predict_dataset", "record", "write_jsonl", "predict_paths"]
