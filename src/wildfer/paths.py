"""Checks on where a command will write, made before it does any work, so a bad output path
fails at once with one line instead of after minutes of training or evaluation.

Missing parent folders are fine (the writers create them) as long as the nearest folder
that exists can be written to.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import WildferError


def _named(what: str, path) -> str:
    """``--json out.json``; a ``key=`` name is joined without a space (``out=runs/a``)."""
    return f"{what}{path}" if what.endswith("=") else f"{what} {path}"


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_can_create_in(path: Path, what: str) -> None:
    """``path`` does not exist: the folders above it must be creatable."""
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise WildferError(f"{_named(what, path)}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise WildferError(f"{_named(what, path)}: folder {base} is not writable")


def check_output_file(path: str | os.PathLike, what: str) -> Path:
    """Raise :class:`WildferError` unless a file can be written at ``path``.

    ``what`` names the option or output in the message (e.g. ``"--json"``, or ``"out="`` for a
    config key): the message reads ``"--json out/: is a folder, not a file"``. An existing file is overwritten, so it must be
    writable; a missing one needs a writable folder somewhere above it.
    """
    path = Path(path)
    if str(path) == "" or path.name == "":
        raise WildferError(f"{_named(what, repr(str(path)))}: needs a file name")
    if path.is_dir():
        raise WildferError(f"{_named(what, path)}: is a folder, not a file")
    if path.exists():
        if not path.is_file():
            raise WildferError(f"{_named(what, path)}: is not a regular file")
        if not os.access(path, os.W_OK):
            raise WildferError(f"{_named(what, path)}: the file is not writable")
        return path
    _check_can_create_in(path, what)
    return path


def check_output_dir(path: str | os.PathLike, what: str) -> Path:
    """Raise :class:`WildferError` unless ``path`` is, or can be made, a writable folder."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise WildferError(f"{_named(what, path)}: is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise WildferError(f"{_named(what, path)}: the folder is not writable")
        return path
    _check_can_create_in(path, what)
    return path
