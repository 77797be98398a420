"""A small on-disk cache for parsed data sets (numpy ``.npz``), keyed by a file's identity."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``override``, else ``$WILDFER_CACHE_DIR``, else the user cache dir."""
    if override is not None:
        d = Path(override)
    elif os.environ.get("WILDFER_CACHE_DIR"):
        d = Path(os.environ["WILDFER_CACHE_DIR"])
    else:
        from platformdirs import user_cache_dir

        d = Path(user_cache_dir("wildfer"))
    return d


def file_key(path: str | os.PathLike, salt: str = "") -> str:
    """Key from the file's resolved path, size and mtime (and a format salt)."""
    p = Path(path).resolve()
    st = p.stat()
    raw = f"{p}|{st.st_size}|{st.st_mtime_ns}|{salt}".encode()
    return hashlib.sha1(raw).hexdigest()[:20]


def load(key: str, directory: Path) -> dict[str, np.ndarray] | None:
    f = directory / f"{key}.npz"
    if not f.exists():
        return None
    try:
        with np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:  # a torn cache file is simply rebuilt
        return None


def save(key: str, directory: Path, arrays: dict[str, np.ndarray]) -> Path | None:
    """Write atomically; a read-only or missing cache folder is not an error (returns None)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{key}.{os.getpid()}.tmp.npz"
        np.savez(tmp, **arrays)
        final = directory / f"{key}.npz"
        os.replace(tmp, final)
        return final
    except OSError:
        return None
