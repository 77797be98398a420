"""wildfer.jsonio: JSON-safe values and strict JSON files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from wildfer.jsonio import dumps, json_ready, write_json


def test_json_ready_turns_library_values_into_python_ones():
    value = {
        "f32": np.float32(0.5), "i64": np.int64(3), "flag": np.bool_(True), "array": np.arange(3),
        "tensor": torch.tensor([[1.0, 2.0]]), "scalar": torch.tensor(4), "path": Path("runs") / "a",
        "pair": (1, (2, 3)), 7: "int key", "nested": [{"x": np.float64(1.25)}], "none": None, "text": "s",
    }
    ready = json_ready(value)
    assert ready == {
        "f32": 0.5, "i64": 3, "flag": True, "array": [0, 1, 2], "tensor": [[1.0, 2.0]], "scalar": 4,
        "path": str(Path("runs") / "a"), "pair": [1, [2, 3]], "7": "int key", "nested": [{"x": 1.25}],
        "none": None, "text": "s",
    }
    assert type(ready["f32"]) is float and type(ready["i64"]) is int and type(ready["flag"]) is bool
    json.dumps(ready, allow_nan=False)  # strict JSON as it is


def test_non_finite_numbers_become_none():
    value = [math.nan, math.inf, -math.inf, np.float32("nan"), np.array([1.0, np.nan]), torch.tensor(float("inf"))]
    assert json_ready(value) == [None, None, None, None, [1.0, None], None]
    assert dumps({"loss": math.nan}) == '{"loss": null}'


def test_dumps_is_one_line_by_default():
    assert "\n" not in dumps({"a": [1, 2], "b": {"c": 3}})
    assert dumps({"a": 1}, indent=2) == '{\n  "a": 1\n}'


def test_write_json_makes_the_folder_and_ends_in_a_newline(tmp_path):
    path = write_json(tmp_path / "new" / "sub" / "r.json", {"acc": np.float64(0.75), "loss": float("nan")})
    assert path == tmp_path / "new" / "sub" / "r.json"
    text = path.read_text()
    assert text.endswith("}\n") and text.count("\n") == 4  # indent=2 by default
    assert json.loads(text) == {"acc": 0.75, "loss": None}
    write_json(path, [1, 2], indent=None)
    assert path.read_text() == "[1, 2]\n"


def test_values_json_cannot_hold_still_fail():
    with pytest.raises(TypeError):
        dumps({"s": {1, 2}})
