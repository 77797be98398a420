"""The installation as a user meets it: ``wildfer info``, the public API, the detector
fallback where ``yuface`` is not installed (it has no build for Python >= 3.12), and data paths under WILDFER_DATA."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import wildfer
from wildfer.cli import main
from wildfer.errors import DataError


def test_dir_lists_the_public_api_and_every_name_resolves():
    names = dir(wildfer)
    for name in ("Recognizer", "load_model", "create_model", "list_models", "create_detector", "load_dataset",
                 "Trainer", "get_method", "create_app", "environment", "explain", "wild", "serve"):
        assert name in names
    assert not [n for n in names if n.startswith("_") and n != "__version__"]
    for name in wildfer.__all__:
        assert getattr(wildfer, name) is not None
    assert wildfer.explain.SmoothGrad.__name__ == "SmoothGrad"
    with pytest.raises(AttributeError):
        wildfer.no_such_name  # noqa: B018


def test_info_json_names_versions_detector_and_backends(capsys):
    assert main(["info", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["wildfer"] == wildfer.__version__
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["packages"]["torch"]
    assert env["detector"]["active"] in env["detector"]["available"]
    # the pipeline model's default: wild on its int8 graph, wild_mfn on its float one
    assert env["backends"]["predict"] == "mixed"
    assert env["backends"]["members"] == {"wild": "int8", "wild_mfn": "onnx"}
    assert "wild" in env["models"]["builtin"]
    assert {"wild", "default", "fast"} <= set(env["models"]["int8"]) <= set(env["models"]["builtin"])


def test_info_text_is_one_line_per_topic(capsys):
    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(":")[0] for ln in lines[:3]] == ["wildfer", "python", "platform"]
    assert any(ln.startswith("detector:") and "active" in ln for ln in lines)


def _without_yuface(monkeypatch):
    """Make ``yuface`` unimportable, as on Python >= 3.12 where it has no wheel."""
    from wildfer.wild.detectors import yunet

    monkeypatch.setitem(sys.modules, "yuface", None)
    monkeypatch.setitem(sys.modules, "yuface.yuface", None)
    monkeypatch.setattr(yunet, "_DETECT", None)
    monkeypatch.setattr(yunet, "_CNN", None)


def test_yuface_detector_falls_back_to_yunet_with_one_notice_when_yuface_is_missing(monkeypatch, capsys):
    from wildfer.wild import detectors

    _without_yuface(monkeypatch)
    monkeypatch.setattr(detectors, "_NOTICED", set())
    det = detectors.create_detector("yuface", max_side=320, threads=2)
    assert det.name == "yunet" and det.max_side == 320 and det.threads == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("notice:") and "yuface" in err[0] and "'yunet'" in err[0]
    assert detectors.create_detector("yuface").name == "yunet"
    assert capsys.readouterr().err == ""  # once per process
    assert "yuface" not in detectors.available_detectors() and "yunet" in detectors.available_detectors()
    assert det.detect(np.zeros((64, 64, 3), np.uint8)) == []


def test_recognizer_and_info_work_without_yuface(monkeypatch, capsys):
    """The default detector runs the shipped YuNet graph on onnxruntime: no yuface needed."""
    from wildfer.wild import Recognizer, detectors

    _without_yuface(monkeypatch)
    monkeypatch.setattr(detectors, "_NOTICED", set())
    rec = Recognizer(model="fast")
    result = rec.predict(np.full((96, 96, 3), 128, np.uint8))
    assert result.faces == []
    assert rec.detector.name == "yunet"
    assert capsys.readouterr().err == ""  # no fallback notice
    assert main(["info", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["detector"]["default"] == "yunet" and env["detector"]["active"] == "yunet"


def test_relative_data_paths_are_found_under_wildfer_data(tmp_path, monkeypatch):
    from wildfer.data import load_dataset
    from wildfer.data.paths import data_path

    root = tmp_path / "sets"
    (root / "fer").mkdir(parents=True)
    rows = ["emotion,pixels,Usage"] + [f"{i % 7},{' '.join(['7'] * 2304)},Training" for i in range(3)]
    (root / "fer" / "mini.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WILDFER_DATA", str(root))
    assert data_path("fer/mini.csv") == root / "fer" / "mini.csv"
    assert len(load_dataset("fer/mini.csv", use_cache=False)) == 3
    monkeypatch.delenv("WILDFER_DATA")
    with pytest.raises(DataError, match="set WILDFER_DATA"):
        load_dataset("fer/mini.csv", use_cache=False)


def test_configs_name_data_relative_to_wildfer_data():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for cfg in sorted((root / "configs").rglob("*.yaml")):
        assert "shared/data" not in cfg.read_text(), cfg
