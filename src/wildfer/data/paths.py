"""Where data sets live: a relative data path that does not exist from the working folder is
looked up under the folder named by the ``WILDFER_DATA`` environment variable.

>>> # WILDFER_DATA=/data/fer holds fer2013/fer2013.csv.gz
>>> data_path("fer2013/fer2013.csv.gz")          # doctest: +SKIP
PosixPath('/data/fer/fer2013/fer2013.csv.gz')

So configs can say ``data: fer2013/fer2013.csv.gz`` and run on any machine that sets the variable.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The environment variable naming the folder that holds the data sets.
DATA_ENV = "WILDFER_DATA"


def data_path(path: str | os.PathLike) -> Path:
    """``path`` itself when it exists or is absolute, else ``$WILDFER_DATA/path`` when that
    exists, else ``path`` unchanged (the caller reports it missing)."""
    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    root = os.environ.get(DATA_ENV)
    if root and (Path(root).expanduser() / p).exists():
        return Path(root).expanduser() / p
    return p


def not_found_hint(path: str | os.PathLike) -> str:
    """The "not found" problem text for a data path, saying where relative paths were looked up."""
    if Path(path).is_absolute():
        return "not found"
    root = os.environ.get(DATA_ENV)
    return f"not found (nor under {DATA_ENV}={root})" if root else f"not found (set {DATA_ENV} to the folder that holds your data sets)"
