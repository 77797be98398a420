"""Checks on where a command will write, made before it does any work, so a bad output path
fails at once with one line instead of after minutes of training or evaluation.

Missing parent folders are fine (the writers create them) as long as the nearest folder
that exists can be written to. Only regular files are ever replaced (never a device, FIFO or
folder), and no output may be one of the command's inputs.

Files are written whole (:func:`written_whole`): under a hidden temporary name in their
folder, renamed to their final name only once complete, so a full disk, a read-only folder or
an interruption never leaves a half-written file under its final name, nor a damaged copy of
the file it was to replace. A write that fails is one line naming the path.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable, Iterator

from .errors import OutputError, WildferError


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


def check_output_file(path: str | os.PathLike, what: str, inputs: Iterable = ()) -> Path:
    """Raise :class:`WildferError` unless a file can be written at ``path``.

    ``what`` names the option or output in the message (e.g. ``"--json"``, or ``"out="`` for a
    config key): the message reads ``"--json out/: is a folder, not a file"``. An existing file is overwritten, so it must be
    writable and a regular file, and not one of the command's ``inputs``; a missing one needs a
    writable folder somewhere above it.
    """
    path = Path(path)
    check_not_input(path, inputs, what)
    if str(path) == "" or path.name == "":
        raise WildferError(f"{_named(what, repr(str(path)))}: needs a file name")
    if path.is_dir():
        raise WildferError(f"{_named(what, path)}: is a folder, not a file")
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise WildferError(f"{_named(what, path)}: is not a regular file (a device, FIFO or socket is never "
                               "replaced); give a file name")
        if not os.access(path, os.W_OK):
            raise WildferError(f"{_named(what, path)}: the file is not writable")
        return path
    _check_can_create_in(path, what)
    return path


def file_arg(value: str) -> Path:
    """The ``parser`` of a command-line option that names an output file: a name ending in a
    slash names a folder and is refused (``--json out/`` would otherwise write a file ``out``)."""
    value = str(value)
    if value.endswith(("/", os.sep)):
        raise WildferError(f"{value}: ends with a slash, which names a folder; give a file name "
                           f"(e.g. {value.rstrip('/' + os.sep) or '.'}/results.json)")
    return Path(value)


def _identity(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def check_not_input(path: str | os.PathLike, inputs: Iterable, what: str) -> None:
    """Raise :class:`WildferError` when the output ``path`` is one of ``inputs`` (the same file,
    by any name: links included), which writing it would destroy."""
    ident = _identity(path)
    if ident is None:
        return
    for src in inputs:
        if _identity(src) == ident:
            raise WildferError(f"{_named(what, path)}: is also an input ({src}); writing it would destroy it, "
                               "so give another name")


def check_outside(folder: str | os.PathLike, searched: Iterable, what: str) -> None:
    """Raise :class:`WildferError` when the output ``folder`` is one of the ``searched`` input
    folders or inside one: a later run would read its own outputs as inputs."""
    out = Path(os.path.abspath(folder)).resolve()
    for src in searched:
        if not Path(src).is_dir():
            continue
        base = Path(src).resolve()
        if out == base or base in out.parents:
            raise WildferError(f"{_named(what, folder)}: is inside the input folder {src}, which is searched for "
                               "photos (a later run would read its own outputs); give a folder outside it")


# ----------------------------------------------------------------------------- writing whole


def partial_path(final: str | os.PathLike) -> Path:
    """Where ``final`` is written until it is complete: a hidden name in the same folder (so
    the rename is atomic), with the same suffix (writers choose the format from it)."""
    final = Path(final)
    return final.with_name(f".{final.stem}.partial{final.suffix}")


def write_failed(path, e: OSError) -> OutputError:
    """The one-line error of a write to ``path`` that failed with ``e`` (full disk, read-only
    folder, name too long ...)."""
    return OutputError(f"{path}: cannot write it ({e.strerror or e})")


@contextlib.contextmanager
def written_whole(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``final`` to; rename it to ``final`` when the block
    ends normally, remove it when the block fails or is interrupted. An ``OSError`` (full
    disk, read-only folder ...) becomes a one-line :class:`WildferError` naming ``final``;
    an existing ``final`` that is not a regular file is never replaced."""
    final = Path(final)
    tmp = partial_path(final)
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if not tmp.exists():
            raise OutputError(f"{final}: the writer produced no file")
        if final.is_dir():
            raise OutputError(f"{final}: is a folder, not a file")
        if (final.exists() or final.is_symlink()) and not final.is_file():
            raise OutputError(f"{final}: is not a regular file, and is never replaced")
        os.replace(tmp, final)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise write_failed(final, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def write_bytes_whole(final: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``final`` whole (see :func:`written_whole`)."""
    with written_whole(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def write_text_whole(final: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``final`` whole (see :func:`written_whole`)."""
    with written_whole(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)


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
