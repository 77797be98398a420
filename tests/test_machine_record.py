"""The ``machine`` record: what a measurement ran on and when, written into evaluation and
explanation reports (the explain and evaluate-wild tests check theirs) and the benchmarks."""

from __future__ import annotations

import datetime as dt
import json

import badinput as bad
import pytest

FIELDS = {"date", "cpu", "cpu_features", "cores", "platform", "python", "wildfer", "torch", "gpu"}


def test_machine_record_fields():
    import torch

    from wildfer.machine import machine

    m = machine(threads=3)
    assert FIELDS <= set(m) and m["threads"] == 3 and list(m)[-1] == "threads"
    date = dt.datetime.fromisoformat(m["date"])
    assert date.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - date).total_seconds()) < 60
    assert isinstance(m["cpu"], str) and m["cpu"] and isinstance(m["cores"], int) and m["cores"] >= 1
    assert m["torch"] == torch.__version__
    assert m["gpu"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    json.dumps(m)


def test_benchmarks_share_the_record():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "common.py"
    spec = importlib.util.spec_from_file_location("bench_common", path)
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    from wildfer.machine import machine

    assert common.describe_machine is machine


def test_benchmarks_write_their_results_whole(tmp_path, monkeypatch):
    """A benchmark's JSON appears whole under its name (its folder made), and a record that
    cannot be written leaves the previous result as it was."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "common.py"
    spec = importlib.util.spec_from_file_location("bench_common", path)
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    out = tmp_path / "results" / "b.json"
    common.write_result(out, {"a": [1, 2]})
    assert json.loads(out.read_text()) == {"a": [1, 2]} and out.read_text().endswith("\n")
    with pytest.raises(TypeError):
        common.write_result(out, {"a": object()})
    assert json.loads(out.read_text()) == {"a": [1, 2]} and [p.name for p in out.parent.iterdir()] == ["b.json"]


def test_evaluate_json_records_the_machine(cli, tmp_path):
    data = bad.fer_csv(tmp_path)
    js, out = tmp_path / "eval.json", tmp_path / "out"
    code, text = cli(["evaluate", data, "--model", "fast", "--json", js, "--out", out])
    assert code == 0, text
    for report in (json.loads(js.read_text()), json.loads((out / "report.json").read_text())):
        assert FIELDS <= set(report["machine"]), report["machine"]
        assert report["n"] == 7
