"""The one split rule: which rows of a data set a split name (``train``, ``val``, ``PublicTest`` ...)
keeps, for every format (FER2013 and FER+ usages, a manifest's ``split`` column, a folder's
split folders)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..errors import DataError
from .fer2013 import USAGES, FaceArrays, usage_name, usages_present


def split_rows(usage: np.ndarray, split: str | Sequence[str] | None, source: str | os.PathLike = "data"
               ) -> np.ndarray | None:
    """Which rows of ``usage`` (one usage name per row) ``split`` (a name or several) keeps, by
    the one split rule: a name stands for the usage :func:`~wildfer.data.fer2013.usage_name`
    gives it (case-insensitive; ``train`` -> ``Training``, ``val`` / ``test`` -> ``PublicTest``,
    ``private`` -> ``PrivateTest``); ``None`` (the result too) or ``"all"`` keeps every row. A
    split with no rows is a :class:`DataError` for ``source`` listing the splits present (and
    saying "unknown split" of a name that is neither a FER2013 usage nor a split name)."""
    names = [split] if isinstance(split, str) else list(split or ())
    if not names or any(n.strip().lower() == "all" for n in names):
        return None
    present = usages_present(usage)
    have = {u.lower() for u in present}
    usages = [usage_name(n) for n in names]
    for name, u in zip(names, usages):
        if u.lower() not in have:
            why = f"no rows with usage {u!r}" if u in USAGES else "unknown split"
            raise DataError(source, f"no {name!r} rows ({why}); "
                                    f"splits present: {', '.join(present) or 'none'}, or 'all'")
    return np.isin(np.char.lower(np.asarray(usage).astype(str)), [u.lower() for u in usages])


def select_split(data: FaceArrays, split: str | Sequence[str] | None) -> FaceArrays:
    """``data``'s rows whose usage is ``split`` (a name or several), by the one split rule
    (:func:`split_rows`)."""
    rows = split_rows(data.usage, split, data.source or "data")
    return data if rows is None else data.subset(rows)
