"""``wildfer train`` command-line switches."""

from __future__ import annotations

import pytest
import yaml

from test_data_cli import fer_csv


def test_no_progress_switch_overrides_the_config(cli, tmp_path):
    csv = fer_csv(tmp_path / "f.csv", [(i % 7, "Training") for i in range(48)] + [(i % 7, "PublicTest") for i in range(16)])
    common = [f"data={csv}", "model=shallow", "model_kwargs.num_filters=4", "epochs=1", "batch_size=16",
              "channels_last=false"]
    for flag, want in (("--no-progress", False), ("--progress", True)):
        out = tmp_path / flag.strip("-")
        code, text = cli(["train", flag, *common, f"out={out}", "progress=" + str(not want).lower()])
        assert code == 0, text
        # the switch wins over the key=value override and is what the saved config records
        assert yaml.safe_load((out / "config.yaml").read_text())["progress"] is want
        assert "best validation accuracy" in text


def test_time_budget_replans_epochs_once_and_records_the_plan(cli, tmp_path):
    import json

    csv = fer_csv(tmp_path / "f.csv", [(i % 7, "Training") for i in range(48)] + [(i % 7, "PublicTest") for i in range(16)])
    common = [f"data={csv}", "model=shallow", "model_kwargs.num_filters=4", "batch_size=16", "channels_last=false",
              "budget_epochs=1"]
    # a budget far too small for the configured 6 epochs: cut to the first (timed) one
    out = tmp_path / "tight"
    code, text = cli(["train", "--no-progress", *common, "epochs=6", "time_budget=0.00001", f"out={out}"])
    assert code == 0, text
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    plans = [r for r in records if r["type"] == "plan"]
    assert plans == [{"type": "plan", "epoch": 0, "epochs": 1, "configured_epochs": 6, "time_budget_min": 0.00001}]
    assert sum(r["type"] == "epoch" for r in records) == 1
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["epochs"] == 1 and saved["time_budget"] is None  # the config repeats the schedule as run
    assert "time budget" in text
    # a generous budget never adds epochs beyond the configured ones
    out = tmp_path / "roomy"
    code, text = cli(["train", "--no-progress", *common, "epochs=2", "time_budget=100", f"out={out}"])
    assert code == 0, text
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epochs"] for r in records if r["type"] == "plan"] == [2]
    assert sum(r["type"] == "epoch" for r in records) == 2


def test_teacher_cache_equals_live_teacher_without_augmentation(cli, tmp_path):
    """Offline distillation (teacher_cache) gives the teacher's logits of each face once; with no
    augmentation the live teacher sees the same faces, so both runs must train identically."""
    import json

    csv = fer_csv(tmp_path / "f.csv", [(i % 7, "Training") for i in range(48)] + [(i % 7, "PublicTest") for i in range(16)])
    common = [f"data={csv}", "model=shallow", "model_kwargs.num_filters=4", "batch_size=16", "channels_last=false",
              "epochs=1"]
    code, text = cli(["train", "--no-progress", *common, f"out={tmp_path / 'teacher'}"])
    assert code == 0, text
    logs = {}
    for cache in ("false", "true"):
        out = tmp_path / f"student_{cache}"
        code, text = cli(["train", "--no-progress", *common, "augment=false", "epochs=2", f"teacher={tmp_path / 'teacher'}",
                          "distill_alpha=0.7", f"teacher_cache={cache}", f"out={out}"])
        assert code == 0, text
        logs[cache] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = {k: [r["loss"] for r in v if r["type"] == "iter"] for k, v in logs.items()}
    assert len(losses["true"]) == 6
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-4)
    # mixing faces would pair cached logits with the wrong images: refused in one line
    code, text = cli(["train", "--no-progress", *common, f"teacher={tmp_path / 'teacher'}", "teacher_cache=true",
                      "mixup=0.2", f"out={tmp_path / 'mixed'}"])
    assert code != 0 and "teacher_cache" in text and "Traceback" not in text


def test_config_values_of_the_wrong_type_get_one_line_errors(cli, tmp_path):
    csv = fer_csv(tmp_path / "f.csv", [(i % 7, "Training") for i in range(16)] + [(i % 7, "PublicTest") for i in range(8)])
    common = [f"data={csv}", "model=shallow", "model_kwargs.num_filters=4", "batch_size=16", f"out={tmp_path / 'r'}"]
    for bad, words in (("epochs=abc", "epochs='abc': must be an integer"),
                       ("epochs=true", "epochs=True: must be an integer"),
                       ("time_budget=abc", "time_budget='abc': must be a number or null"),
                       ("teacher_cache=maybe", "teacher_cache='maybe': must be true or false"),
                       ("aug=3", "aug=3: must be a mapping")):
        code, text = cli(["train", "--no-progress", *common, bad])
        assert code != 0 and words in text and "Traceback" not in text, (bad, text)
    assert not (tmp_path / "r" / "metrics.jsonl").exists()  # refused before any training
