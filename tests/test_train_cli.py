"""``wildfer train`` command-line switches."""

from __future__ import annotations

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
