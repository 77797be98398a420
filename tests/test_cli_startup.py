"""Start-up cost of the command line: ``import wildfer.cli``, ``wildfer --help``, ``--version``
and ``wildfer data info`` must not import torch (about 3 CPU seconds, 20 s on a busy machine).

The package inits of :mod:`wildfer`, :mod:`wildfer.models` and :mod:`wildfer.train` are lazy
(PEP 562); the tests below also check that every public name is still importable from them and
that the model registry is complete however it is reached. Each check runs in a fresh
interpreter, since this test session may have imported torch already.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def _run(code: str, tmp_path, env_extra: dict | None = None) -> str:
    """Run ``code`` in a fresh interpreter; return its stdout, failing with its stderr."""
    import os

    env = dict(os.environ, WILDFER_CACHE_DIR=str(tmp_path / "cache"), **(env_extra or {}))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
        cwd=tmp_path, env=env,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


HEAVY = ("torch", "onnxruntime", "fastapi", "matplotlib", "sklearn", "cv2")


def test_import_cli_does_not_import_torch(tmp_path):
    out = _run(
        f"""
        import sys
        import wildfer.cli
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        """,
        tmp_path,
    )
    assert out.strip() == "[]"


def test_predict_starts_without_torch_or_pydantic(tmp_path):
    """A photo through ``wildfer predict`` imports neither torch nor pydantic (typer 0.29, which
    checks every option through pydantic, made the command 0.15 s slower to start)."""
    from PIL import Image

    Image.new("RGB", (64, 48), (120, 110, 100)).save(tmp_path / "grey.jpg")
    out = _run(
        """
        import sys
        from wildfer.cli import main
        rc = main(["predict", "grey.jpg", "--json", "out.json"])
        print("RC", rc, sorted(m for m in ("torch", "pydantic", "fastapi", "sklearn", "matplotlib") if m in sys.modules))
        """,
        tmp_path,
    )
    assert out.strip().splitlines()[-1] == "RC 0 []"
    assert (tmp_path / "out.json").is_file()


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["models", "--help"], ["train", "--help"]])
def test_help_and_version_do_not_import_torch(tmp_path, args):
    out = _run(
        f"""
        import sys
        from wildfer.cli import main
        rc = main({args!r})
        print("RC", rc, "torch" in sys.modules)
        """,
        tmp_path,
    )
    assert out.strip().splitlines()[-1] == "RC 0 False"
    if args == ["--version"]:
        import wildfer

        assert f"wildfer {wildfer.__version__}" in out
    else:
        assert "Usage" in out


def test_data_info_does_not_import_torch(tmp_path):
    csv = tmp_path / "tiny.csv"
    px = " ".join(["128"] * 48 * 48)
    csv.write_text("emotion,pixels,Usage\n" + "".join(f"{i % 7},{px},Training\n" for i in range(9)))
    out = _run(
        f"""
        import sys
        from wildfer.cli import main
        rc = main(["data", "info", {str(csv)!r}, "--no-cache"])
        print("RC", rc, "torch" in sys.modules)
        """,
        tmp_path,
    )
    assert out.strip().splitlines()[-1] == "RC 0 False"
    assert "total" in out and "9" in out


def test_public_names_still_importable(tmp_path):
    out = _run(
        """
        import sys
        import wildfer, wildfer.models, wildfer.train
        assert "torch" not in sys.modules, "a package init imported torch"
        from wildfer.models import (create_model, list_models, model_info, register_model, registry,
                                    freeze, load_torchvision_weights)
        from wildfer.train import TrainConfig, Trainer, load_config
        import wildfer.models as M
        assert M.vggfer.VGGFer.__module__ == "wildfer.models.vggfer"
        assert wildfer.load_model.__module__ == "wildfer.models.loader"
        assert wildfer.create_model is create_model and wildfer.list_models is list_models
        assert wildfer.Recognizer.__name__ == "Recognizer"
        assert TrainConfig.__module__ == "wildfer.train.config" and Trainer.__module__ == "wildfer.train.engine"
        for mod, name in ((wildfer, "nope"), (M, "nope"), (wildfer.train, "nope")):
            try:
                getattr(mod, name)
            except AttributeError:
                pass
            else:
                raise AssertionError(f"{mod.__name__}.{name} should raise AttributeError")
        assert set(wildfer.models.__all__) <= set(dir(M))
        print(" ".join(list_models()))
        """,
        tmp_path,
    )
    names = out.split()
    for name in ("shallow", "vggfer", "vggfer_small", "resnet18", "fastfer", "mini_xception", "alexnet",
                 "vgg16", "inception", "inception_resnet"):
        assert name in names


def test_registry_complete_when_imported_directly(tmp_path):
    """``from wildfer.models.registry import create_model`` (as the trainer does) sees every
    family although the package init no longer imports them."""
    out = _run(
        """
        from wildfer.models.registry import create_model, list_models, model_info
        from wildfer.models import FAMILIES
        fams = sorted({model_info(n).family for n in list_models()})
        print(len(list_models()), fams == sorted(FAMILIES), type(create_model("shallow")).__name__)
        """,
        tmp_path,
    )
    n, same, cls = out.split()
    assert int(n) >= 17 and same == "True" and cls == "ShallowCNN"
