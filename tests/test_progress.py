"""wildfer.progress: the one progress bar of the long loops, and the bar that shows nothing."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from wildfer.progress import NoProgress, progress_bar


def _column_types(bar: Progress) -> list[type]:
    return [type(c) for c in bar.columns]


def test_columns_and_transience():
    bar = progress_bar(Console(file=io.StringIO()))
    assert isinstance(bar, Progress) and bar.live.transient
    assert _column_types(bar) == [TextColumn, BarColumn, MofNCompleteColumn, TimeRemainingColumn]
    kept = progress_bar(Console(file=io.StringIO()), elapsed=True, transient=False)
    assert not kept.live.transient
    assert _column_types(kept) == [TextColumn, BarColumn, MofNCompleteColumn, TimeElapsedColumn, TimeRemainingColumn]


def test_bar_counts_and_draws_on_its_console():
    out = io.StringIO()
    with progress_bar(Console(file=out, force_terminal=True, width=100), transient=False) as bar:
        task = bar.add_task("predict", total=4)
        bar.advance(task)
        bar.update(task, advance=2, description="video a.mp4")
        assert bar.tasks[0].completed == 3 and bar.tasks[0].description == "video a.mp4"
    assert "3/4" in out.getvalue() and "video a.mp4" in out.getvalue()


def test_disabled_bar_does_nothing(capsys):
    bar = progress_bar(enabled=False)
    assert isinstance(bar, NoProgress)
    with bar as entered:
        assert entered is bar
        task = entered.add_task("train", total=10)
        assert task == 0
        assert entered.update(task, advance=1, description="epoch 1/3") is None
        assert entered.advance(task) is None
    assert capsys.readouterr() == ("", "")


def test_no_progress_lets_errors_through():
    with pytest.raises(KeyError), NoProgress():
        raise KeyError("x")
