"""Errors that mean "the user gave us something wrong".

The CLI prints these as one line (no traceback) and exits with code 2.
"""

from __future__ import annotations


def one_line(text) -> str:
    """``text`` on one line: runs of whitespace (newlines, tabs) become one space, terminal colour codes go."""
    import re

    return " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(text)).split())


def short(value, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for echoing a user's value in an error
    line: a huge or deeply nested value is never formatted whole (:mod:`reprlib` cuts
    containers as it goes)."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 2, 4, 4, 4, 4
    r.maxstring = r.maxother = r.maxlong = limit
    text = r.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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


class OutputError(WildferError):
    """An output could not be written (a full disk, a read-only folder, a name too long). It
    stops a batch run: unlike a bad input, it would fail again for the next one."""


class ModelError(WildferError):
    """A model name, checkpoint or weights file is wrong or missing."""


#: module -> the extra that installs it (what the light install leaves out)
EXTRAS = {"torch": "train", "onnx": "train", "safetensors": "train", "scipy": "train", "sklearn": "eval", "ray": "ray",
          "captum": "captum", "matplotlib": "plots"}
#: how to add torch to the light install
TORCH_INSTALL = "pip install 'wildfer[train]'"


#: module -> the name it is installed by, where they differ
PACKAGES = {"sklearn": "scikit-learn"}


def missing_module(what: str, module: str = "torch") -> str:
    """The line that says ``what`` needs ``module`` (one of :data:`EXTRAS`) and how to install it."""
    return (f"{what} needs {PACKAGES.get(module, module)}, which this installation does not have: "
            f"pip install 'wildfer[{EXTRAS[module]}]'")


class MissingTorch(ModelError):
    """Something that needs torch (training, saliency maps, export, the ``torch`` backend) was
    asked for in an installation without it. The message says what and how to install it."""

    def __init__(self, what: str):
        super().__init__(missing_module(what))


def import_torch(what: str):
    """``torch``, or a :class:`MissingTorch` naming ``what`` needed it."""
    try:
        import torch
    except ImportError:
        raise MissingTorch(what) from None
    return torch
