"""Errors that mean "the user gave us something wrong".

The CLI prints these as one line (no traceback) and exits with code 2.
"""

from __future__ import annotations


class WildferError(Exception):
    """Base class for user-facing errors (bad file, bad option, missing weights)."""


class DataError(WildferError, ValueError):
    """A data file is malformed. The message names the file and, where known, the row."""

    def __init__(self, path, problem: str, row: int | None = None):
        self.path = str(path)
        self.row = row
        self.problem = problem
        where = f"{self.path}, row {row}" if row is not None else self.path
        super().__init__(f"{where}: {problem}")


class ImageError(WildferError, ValueError):
    """An image could not be read or decoded."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ModelError(WildferError):
    """A model name, checkpoint or weights file is wrong or missing."""
