"""The progress bar of wildfer's long loops (training, photos, predictions): one set of rich
columns, and a bar that does nothing where none is wanted.

>>> with progress_bar(console, elapsed=True) as bar:          # doctest: +SKIP
...     task = bar.add_task("train", total=100)
...     bar.update(task, advance=1, description="epoch 1/3")
"""

from __future__ import annotations

from typing import Any


class NoProgress:
    """A progress bar that shows nothing: the calls of :class:`rich.progress.Progress` that
    wildfer makes, each doing nothing."""

    def __enter__(self) -> "NoProgress":
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def add_task(self, *args, **kwargs) -> int:
        return 0

    def update(self, *args, **kwargs) -> None:
        pass

    def advance(self, *args, **kwargs) -> None:
        pass

    def remove_task(self, *args, **kwargs) -> None:
        pass


def progress_bar(console: Any = None, *, enabled: bool = True, elapsed: bool = False, transient: bool = True):
    """A rich ``Progress`` on ``console``: description, bar, ``done/total``, the time elapsed
    (with ``elapsed``) and the time remaining; left on screen at the end unless ``transient``.
    A :class:`NoProgress` when not ``enabled``. Use it as a context manager."""
    if not enabled:
        return NoProgress()
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TimeElapsedColumn()] if elapsed else []
    return Progress(*columns, TimeRemainingColumn(), console=console, transient=transient)


__all__ = ["NoProgress", "progress_bar"]
