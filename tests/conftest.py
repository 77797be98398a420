"""Shared fixtures. Real data lives at ../shared/data relative to the repo root; tests that
need it skip with a clear reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("WILDFER_SHARED_DATA", ROOT.parent / "shared" / "data"))
FER2013_CSV = SHARED / "fer2013" / "fer2013.csv.gz"
FERPLUS_CSV = SHARED / "fer2013" / "fer2013new.csv"
WILD = SHARED / "wild"

os.environ.setdefault("OMP_NUM_THREADS", "2")
# configs name data sets relative to WILDFER_DATA (e.g. data: fer2013/fer2013.csv.gz)
os.environ.setdefault("WILDFER_DATA", str(SHARED))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="session")
def fer2013_csv() -> Path:
    return _need(FER2013_CSV)


@pytest.fixture(scope="session")
def ferplus_csv() -> Path:
    return _need(FERPLUS_CSV)


@pytest.fixture(scope="session")
def wild_dir() -> Path:
    return _need(WILD)


@pytest.fixture(scope="session")
def fer2013(fer2013_csv):
    from wildfer.data.fer2013 import load_fer2013

    return load_fer2013(fer2013_csv)


@pytest.fixture(scope="session")
def cli():
    """Run the CLI in-process: cli(["data", "info", ...]) -> (exit_code, output)."""
    from typer.testing import CliRunner

    from wildfer.cli import app, main

    def run(args, **kw):
        import io
        import contextlib

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
        return code, out.getvalue() + err.getvalue()

    return run


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A small, untrained shallow FER2013 checkpoint (seeded): fast to load and run."""
    import torch

    from wildfer.labels import FER2013_CLASSES
    from wildfer.models import create_model
    from wildfer.models.loader import save_checkpoint

    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(p, create_model("shallow", num_filters=8, hidden=32), arch="shallow",
                    model_kwargs={"num_filters": 8, "hidden": 32}, classes=FER2013_CLASSES)
    return p
