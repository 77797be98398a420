"""One writer per output: an exclusive lock that a second run on the same output refuses on.

:func:`output_lock` takes a lock file beside the output (``out.json`` -> ``.out.json.lock``,
holding the owner's process id) with ``flock``, which the system releases when the process
ends, however it ends: a killed run never leaves a stale lock. The lock file is removed when the
lock is given back. Where ``fcntl`` does not exist (Windows) there is no lock.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable, Iterator

from .errors import WildferError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of ``output``: a hidden name beside it."""
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


def _owner(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text().strip() or 0)
        if pid:
            return f" (process {pid})"
    return ""


def _acquire(output: Path) -> int | None:
    """The descriptor of ``output``'s lock file, locked; raise when another process holds it."""
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WildferError(f"{output}: another wildfer run is writing it{_owner(path)}; wait for it to end "
                               "or give another name") from None
        except BaseException:
            os.close(fd)
            raise
        # the file may have been removed by its last owner between our open and our lock:
        # then the lock is on a name no one else sees, and we take the new file instead
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


@contextlib.contextmanager
def output_lock(outputs: Iterable[str | os.PathLike | None]) -> Iterator[None]:
    """Hold an exclusive lock on every output (``None`` entries are skipped) for the block;
    raise :class:`WildferError` at once when another run holds one of them."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    held: list[tuple[Path, int]] = []
    try:
        for out in dict.fromkeys(Path(o).absolute() for o in outputs if o is not None):
            held.append((out, _acquire(out)))
        yield
    finally:
        for out, fd in reversed(held):
            # removed while still held, so no other run can lock this file after we let it go
            with contextlib.suppress(OSError):
                os.unlink(lock_path(out))
            os.close(fd)


__all__ = ["output_lock", "lock_path"]
