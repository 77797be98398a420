"""The light install: inference with no torch and no scikit-learn.

Each check runs wildfer in a fresh process whose imports of torch and scikit-learn fail (a
``sitecustomize`` on its path), so it means the same in the full test environment as in a venv
made with ``pip install wildfer`` alone, where ``make test`` runs this file too
(``pytest --noconftest tests/test_light_install.py``): commands and the Python API work for
every built-in, and ``torch`` is never imported; what needs torch or scikit-learn (the
``[train]`` and ``[eval]`` extras) says so in one line. The evaluation commands are also run
with scikit-learn and without torch (``pip install 'wildfer[eval]'``) where it is installed.

Self-contained (no conftest): the photo is the portrait that ships inside matplotlib, or the file
``WILDFER_TEST_PHOTO`` names (``make test`` passes that portrait from the full venv, since the
light install has no matplotlib).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BLOCK = textwrap.dedent('''
    import sys

    class _Absent:
        """Imports of these modules fail, as where they are not installed."""

        def __init__(self, modules):
            self.modules = modules

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in self.modules:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _Absent(MODULES))
''')

INSTALL = "pip install 'wildfer[train]'"
EVAL_INSTALL = "pip install 'wildfer[eval]'"


def _env(tmp_path_factory, modules: tuple[str, ...]) -> dict:
    site = tmp_path_factory.mktemp("absent")
    (site / "sitecustomize.py").write_text(BLOCK.replace("MODULES", repr(modules)))
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(site)] + [p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p])
    e.pop("WILDFER_DATA", None)
    return e


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The base install: no torch, no scikit-learn, no matplotlib."""
    return _env(tmp_path_factory, ("torch", "sklearn", "matplotlib"))


@pytest.fixture(scope="module")
def eval_env(tmp_path_factory):
    """The base install with the [eval] extra: scikit-learn, no torch."""
    import importlib.util

    if importlib.util.find_spec("sklearn") is None:
        pytest.skip("scikit-learn (the [eval] extra) is not installed here; what evaluate says without it is "
                    "checked by test_evaluate_says_it_needs_the_eval_extra")
    return _env(tmp_path_factory, ("torch",))


@pytest.fixture(scope="module")
def photo() -> Path:
    if os.environ.get("WILDFER_TEST_PHOTO"):
        return Path(os.environ["WILDFER_TEST_PHOTO"])
    matplotlib = pytest.importorskip("matplotlib.cbook", reason="no photo: matplotlib (its sample portrait) is "
                                     "not installed and WILDFER_TEST_PHOTO is not set")
    return Path(matplotlib.get_sample_data("grace_hopper.jpg", asfileobj=False))


def py(env, code: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def wildfer(env, *args, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    code = "import sys; from wildfer.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_the_block_works(env, tmp_path):
    r = py(env, "import torch", tmp_path)
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr
    r = py(env, "import sklearn.metrics", tmp_path)
    assert r.returncode != 0 and "No module named 'sklearn" in r.stderr


def test_recognizer_reads_a_photo_without_torch(env, tmp_path, photo):
    r = py(env, textwrap.dedent(f"""
        import json, sys, wildfer
        rec = wildfer.Recognizer()
        res = rec.predict({str(photo)!r})
        assert "torch" not in sys.modules, "torch was imported"
        print(json.dumps({{"backend": rec.classifier.backend, "name": rec.classifier.name,
                           "labels": [f.label for f in res.faces],
                           "sum": [round(float(sum(f.probs.values())), 4) for f in res.faces]}}))
    """), tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["name"] == "wild_ensemble" and out["backend"] == "mixed"
    assert len(out["labels"]) == 1 and out["sum"] == [1.0]


@pytest.mark.parametrize("backend", ["auto", "onnx", "int8"])
def test_every_builtin_loads_and_predicts_without_torch(env, tmp_path, backend):
    r = py(env, textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from wildfer.models.loader import builtin_models, load_model
        from wildfer.models.quantize import shipped_int8
        rng = np.random.default_rng(0)
        done = {{}}
        for name in builtin_models():
            if {backend!r} == "int8" and name not in ("wild_ensemble",) and not shipped_int8(name).is_file():
                continue
            clf = load_model(name, backend={backend!r})
            views = clf.face_views
            faces = [rng.integers(0, 256, (3,) + ((3,) if not v.get("grayscale", True) else ()) + (v["size"],) * 2)
                     .astype(np.uint8) for v in views]
            p = clf.predict_proba(faces if len(faces) > 1 else faces[0])
            assert p.shape == (3, len(clf.labels)) and np.allclose(p.sum(1), 1, atol=1e-5), name
            done[name] = clf.backend
        assert "torch" not in sys.modules
        print(json.dumps(done))
    """), tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout.strip().splitlines()[-1])
    want = {"wild_ensemble", "default", "fast", "wild", "wild_mfn"} | (set() if backend == "int8" else
                                                                     {"accurate", "ferplus", "default_resnet"})
    assert want <= set(done)
    assert "torch" not in done.values()


def test_predict_command_photos_folders_workers_resume_and_video(env, tmp_path, photo):
    import shutil

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        shutil.copy(photo, folder / f"p{i}.jpg")
    r = wildfer(env, "predict", photo, "--json", "one.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "one.json").read_text())
    assert rec["model"] == "wild_ensemble" and rec["complete"]
    faces = rec["images"][0]["faces"]
    assert len(faces) == 1 and len(faces[0]["top2"]) == 2

    r = wildfer(env, "predict", folder, "--csv", "all.csv", "--workers", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "all.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(row["label"] for row in rows)
    r = wildfer(env, "predict", folder, "--csv", "all.csv", "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr

    clip = tmp_path / "clip.mp4"
    r = py(env, f"from wildfer.wild.video import slideshow; slideshow([{str(photo)!r}], {str(clip)!r}, "
                f"fps=10, seconds=1)", tmp_path)
    assert r.returncode == 0, r.stderr
    r = wildfer(env, "predict", clip, "--json", "clip.json", "--timeline", "tl", "--video-stride", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # no matplotlib: the timeline keeps its numbers and page, draws no plot, and says how to add them
    assert "pip install 'wildfer[plots]'" in r.stderr
    tl = tmp_path / "tl" / "clip"
    summary = json.loads((tl / "timeline.json").read_text())
    assert summary["plots"] is False and summary["tracks"] and summary["tracks"][0]["plot"] is None
    assert (tl / f"track_{summary['tracks'][0]['track']}.csv").is_file() and (tl / "scene.csv").is_file()
    assert not list(tl.glob("*.png"))
    assert "wildfer[plots]" in (tl / "summary.html").read_text()


def _eval_inputs(tmp_path: Path, photo: Path) -> tuple[Path, Path]:
    import numpy as np

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{photo},neutral\n")
    rng = np.random.default_rng(0)
    rows = ["emotion,pixels,Usage"] + [f"{i % 7},{' '.join(map(str, rng.integers(0, 256, 48 * 48)))},PublicTest"
                                       for i in range(30)]
    (tmp_path / "fer.csv").write_text("\n".join(rows) + "\n")
    return manifest, tmp_path / "fer.csv"


def test_evaluate_and_evaluate_wild_with_the_eval_extra_without_torch(eval_env, tmp_path, photo):
    manifest, fer = _eval_inputs(tmp_path, photo)
    r = wildfer(eval_env, "evaluate-wild", manifest, "--json", "w.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "w.json").read_text())["detection_recall"] == 1.0
    r = wildfer(eval_env, "evaluate", fer, "--split", "PublicTest", "--model", "fast", "--json", "e.json",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "e.json").read_text())["n"] == 30
    r = py(eval_env, "import sys, wildfer.wild.evaluate, wildfer.evaluate.core; assert 'torch' not in sys.modules",
           tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("command", ["evaluate-wild", "evaluate"])
def test_evaluate_says_it_needs_the_eval_extra(env, tmp_path, photo, command):
    manifest, fer = _eval_inputs(tmp_path, photo)
    args = [manifest] if command == "evaluate-wild" else [fer, "--split", "PublicTest", "--model", "fast"]
    r = wildfer(env, command, *args, "--json", "r.json", cwd=tmp_path)
    assert r.returncode == 2
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and f"wildfer {command} needs scikit-learn" in lines[0] and EVAL_INSTALL in lines[0], r.stderr
    assert not (tmp_path / "r.json").exists()


def test_info_and_models_without_torch(env, tmp_path):
    r = wildfer(env, "info", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["torch"]["installed"] is False and INSTALL in info["torch"]["install"]
    assert info["backends"]["predict"] == "mixed"
    assert info["backends"]["members"] == {"wild": "int8", "wild_mfn": "onnx"}
    r = wildfer(env, "models", "list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "wild_ensemble" in r.stdout and INSTALL in r.stderr
    r = wildfer(env, "models", "info", "wild_ensemble", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args", [
    ["train", "--config", "x.yaml"],
    ["explain", "maps", "x.yaml", "--model", "default", "--out", "m.png"],
    ["explain", "maps", "x.yaml", "--detect", "--out", "m"],
    ["predict", "x.yaml", "--saliency", "gradcam", "--json", "p.json"],
    ["export", "default", "--onnx", "d.onnx"],
])
def test_a_command_that_needs_torch_says_so_in_one_line(env, tmp_path, args):
    (tmp_path / "x.yaml").write_text("model: shallow\n")
    r = wildfer(env, *args, cwd=tmp_path)
    assert r.returncode == 2
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "needs torch" in lines[0] and INSTALL in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_service_predicts_and_explain_answers_501_without_torch(env, tmp_path, photo):
    r = py(env, textwrap.dedent(f"""
        import json, sys
        from fastapi.testclient import TestClient
        from wildfer.serve import create_app
        with TestClient(create_app(), base_url="http://127.0.0.1") as c:
            data = open({str(photo)!r}, "rb").read()
            p = c.post("/v1/predict", files={{"file": ("p.jpg", data, "image/jpeg")}})
            e = c.post("/v1/explain", files={{"file": ("p.jpg", data, "image/jpeg")}})
            m = c.get("/v1/models")
        assert "torch" not in sys.modules
        print(json.dumps({{"p": p.status_code, "faces": len(p.json()["faces"]), "e": e.status_code,
                           "detail": e.json()["detail"], "methods": m.json()["explain_methods"]}}))
    """), tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["p"] == 200 and out["faces"] == 1
    assert out["e"] == 501 and INSTALL in out["detail"] and out["methods"] == []
