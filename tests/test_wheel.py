"""The wheel a user installs: built from this tree, installed into a clean virtualenv with the
pinned dependencies (``constraints.txt``), then used from another folder with no source tree
and no network: ``wildfer predict photo.jpg`` finds and reads the face with the built-in weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_wheel_carries_the_weights_and_predicts_offline_from_a_clean_venv(tmp_path):
    from wildfer.models.loader import builtin_models

    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-q", "-w", dist])
    (wheel,) = dist.glob("wildfer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for model in builtin_models():
        assert f"wildfer/weights/{model}.json" in names and f"wildfer/weights/{model}.md" in names
    assert "wildfer/weights/wild.onnx" in names and "wildfer/serve/static/index.html" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "configs/"))]
    assert [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]  # the MIT licence text

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    _run([bin_dir / "python", "-m", "pip", "install", "-q", wheel, "-c", ROOT / "constraints.txt"])

    import matplotlib.cbook

    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), work / "photo.jpg")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "WILDFER"))}
    env.update(HOME=str(tmp_path / "home"), http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="")
    _run([bin_dir / "wildfer", "predict", "photo.jpg", "--json", "out.json"], cwd=work, env=env)
    result = json.loads((work / "out.json").read_text())
    (image,) = result["images"]
    assert len(image["faces"]) == 1 and image["faces"][0]["label"] in result["labels"]

    info = json.loads(_run([bin_dir / "wildfer", "info", "--json"], cwd=work, env=env).stdout)
    assert Path(info["executable"]).parent == bin_dir
    assert info["detector"]["active"] in info["detector"]["available"]
    assert info["detector"]["active"] == "yunet"  # the shipped YuNet graph: no optional package needed
    located = _run([bin_dir / "python", "-c", "import wildfer; print(wildfer.__file__)"], cwd=work, env=env).stdout
    assert str(venv) in located and str(ROOT / "src") not in located
