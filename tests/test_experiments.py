"""The study's experiments as commands: ``wildfer experiment optimizers|architectures --quick``
run end to end on a small real subset; configs, precedence of overrides, figures and tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kind", ["optimizers", "architectures"])
def test_shipped_configs_equal_builtin_defaults(kind):
    """`wildfer experiment X` without --config runs exactly configs/experiments/X.yaml."""
    from wildfer.train.experiments import DEFAULTS, load_experiment_config

    shipped = yaml.safe_load((ROOT / "configs" / "experiments" / f"{kind}.yaml").read_text())
    assert shipped == DEFAULTS[kind]
    assert load_experiment_config(kind, ROOT / "configs" / "experiments" / f"{kind}.yaml") == load_experiment_config(kind)


def test_architectures_config_lists_the_study_five_plus_ours():
    from wildfer.train.experiments import DEFAULTS, STUDY_ARCHITECTURES
    from wildfer.models import list_models

    models = DEFAULTS["architectures"]["models"]
    assert list(STUDY_ARCHITECTURES) == ["shallow", "alexnet", "vgg16", "inception", "inception_resnet"]
    assert models[:5] == list(STUDY_ARCHITECTURES)
    assert {"vggfer_small", "resnet18_half", "mini_xception"} <= set(models[5:])
    assert set(models) <= set(list_models())
    assert set(DEFAULTS["optimizers"]["runs"]) == {"sgd", "momentum", "rmsprop", "adam"}


def test_override_precedence_base_quick_cli(tmp_path):
    from wildfer.train.experiments import _train_config, load_experiment_config

    cfg = load_experiment_config("architectures", None, ["epochs=3", "model_kwargs.width=0.5", "out=x"])
    assert cfg["out"] == "x"
    full = _train_config(cfg, {"model": "vgg16"}, tmp_path, quick=False, model="vgg16")
    assert full.epochs == 3 and full.subset is None and full.model_kwargs == {"width": 0.5}
    q = _train_config(cfg, {"model": "vgg16"}, tmp_path, quick=True, model="vgg16")
    # --quick shrinks the data and the net; the command line still wins (epochs, width)
    assert q.subset == 500 and q.val_subset == 200 and q.epochs == 3
    assert q.model_kwargs == {"width": 0.5, "fc": 256}
    assert str(q.out) == str(tmp_path)
    with pytest.raises(Exception, match="key=value"):
        load_experiment_config("optimizers", None, ["epochs"])


def test_optimizers_quick(cli, fer2013_csv, tmp_path):
    out = tmp_path / "opt"
    code, text = cli(["experiment", "optimizers", "--quick", "--out", out, "--no-progress", f"data={fer2013_csv}",
                      "subset=256", "val_subset=128", "model_kwargs.num_filters=8"])
    assert code == 0, text
    res = json.loads((out / "results.json").read_text())
    assert [r["rule"] for r in res["rows"]] == ["sgd", "momentum", "rmsprop", "adam"]
    assert res["train_rows"] == 256 and res["val_rows"] == 128 and res["epochs"] == 2
    rows = {r["rule"]: r for r in res["rows"]}
    assert rows["rmsprop"]["optimizer"] == "rmsprop" and rows["adam"]["lr"] == pytest.approx(1e-4)
    # one budget: same data, epochs and initial weights -> identical first loss, near ln 7
    first = {r["initial_loss"] for r in res["rows"]}
    assert len(first) == 1 and abs(first.pop() - math.log(7)) < 0.15
    for r in res["rows"]:
        assert r["epochs"] == 2 and r["iterations"] == 2 * math.ceil(256 / 128)
        run = Path(r["run"])
        assert (run / "best.pt").exists() and (run / "metrics.jsonl").exists()
        assert 0.0 <= r["best_val_acc"] <= 1.0 and r["best_val_acc"] >= r["final_val_acc"]
    for png in ("loss.png", "accuracy.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    md = (out / "results.md").read_text()
    assert "| rule |" in md and "| adam |" in md and "![loss](loss.png)" in md
    assert "Update rules on shallow" in text

    # rerunning into the same folder starts fresh logs (no appended duplicates)
    code, text = cli(["experiment", "optimizers", "--quick", "--out", out, "--no-progress", f"data={fer2013_csv}",
                      "subset=128", "val_subset=64", "epochs=1", "model_kwargs.num_filters=8",
                      "runs={adam: {optimizer: adam, lr: 0.0001}}"])
    assert code == 0, text
    res2 = json.loads((out / "results.json").read_text())
    assert [r["rule"] for r in res2["rows"]] == ["adam"] and res2["rows"][0]["iterations"] == 1


def test_architectures_quick(cli, fer2013_csv, tmp_path):
    from wildfer.train.experiments import DEFAULTS, STUDY_ARCHITECTURES, complexity

    out = tmp_path / "arch"
    code, text = cli(["experiment", "architectures", "--quick", "--out", out, "--no-progress", f"data={fer2013_csv}",
                      "subset=128", "val_subset=64", "batch_size=32"])
    assert code == 0, text
    res = json.loads((out / "results.json").read_text())
    names = [r["model"] for r in res["rows"]]
    assert names == DEFAULTS["architectures"]["models"] and res["skipped"] == []
    quick_over = DEFAULTS["architectures"]["quick"]["model_overrides"]
    for r in res["rows"]:
        assert r["study"] == (r["model"] in STUDY_ARCHITECTURES)
        kw = quick_over.get(r["model"], {}).get("model_kwargs", {})
        assert r["model_kwargs"] == kw
        cx = complexity(r["model"], kw)
        assert (r["params"], r["macs"]) == (cx["params"], cx["macs"]) and r["macs"] > 0
        assert r["epochs"] == 1 and 0.0 <= r["best_val_acc"] <= 1.0 and r["train_seconds"] > 0
        assert (Path(r["run"]) / "best.pt").exists()
    for png in ("accuracy.png", "acc_vs_macs.png", "time.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    md = (out / "results.md").read_text()
    assert md.count("| yes |") == 5 and "MACs (M)" in md and "inception_resnet" in md


def test_architectures_unknown_model_is_skipped_not_fatal(cli, fer2013_csv, tmp_path):
    out = tmp_path / "a2"
    code, text = cli(["experiment", "architectures", "--quick", "--out", out, "--no-progress", "--models",
                      "fastfer,not_a_model", f"data={fer2013_csv}", "subset=64", "val_subset=32"])
    assert code == 0, text
    res = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in res["rows"]] == ["fastfer"]
    assert res["skipped"] == [{"model": "not_a_model", "reason": "not registered in this installation"}]
    assert "Skipped not_a_model" in (out / "results.md").read_text()


def test_experiment_help_lists_both(cli):
    code, text = cli(["experiment", "--help"])
    assert code == 0 and "optimizers" in text and "architectures" in text


def _flat(text: str) -> str:
    """CLI output with the console's line wrapping undone."""
    return " ".join(text.split())


def test_architectures_resume_reuses_finished_and_continues_unfinished(cli, fer2013_csv, tmp_path):
    """A long comparison split over runs / processes: --resume reads finished runs back,
    continues an unfinished one from last.pt, and refuses a folder trained with another config."""
    out = tmp_path / "a3"
    common = ["--quick", "--out", out, "--no-progress", f"data={fer2013_csv}", "subset=64", "val_subset=32"]
    # two processes, one model each (as on a 2-core machine) ...
    assert cli(["experiment", "architectures", "--models", "fastfer", *common])[0] == 0
    code, text = cli(["experiment", "architectures", "--models", "mini_xception", *common, "epochs=2"])
    assert code == 0, text
    first = {m: json.loads((out / m / "summary.json").read_text()) for m in ("fastfer", "mini_xception")}
    w_fast = (out / "fastfer" / "best.pt").read_bytes()

    # ... mini_xception was "interrupted" after its last epoch's checkpoint, before it finished
    (out / "mini_xception" / "summary.json").unlink()
    code, text = cli(["experiment", "architectures", "--models", "fastfer,mini_xception", "--resume", *common,
                      "epochs=2"])
    assert code != 0 and "fastfer" in text and "different config (epochs)" in _flat(text) and "Traceback" not in text

    # the assembling call: fastfer reused as is, mini_xception continued
    code, text = cli(["experiment", "architectures", "--models", "fastfer", "--resume", *common])
    assert code == 0 and "finished earlier: reused" in _flat(text), text
    assert (out / "fastfer" / "best.pt").read_bytes() == w_fast  # not retrained
    res = json.loads((out / "results.json").read_text())
    assert res["rows"][0]["best_val_acc"] == first["fastfer"]["best_val_acc"]
    assert res["rows"][0]["train_seconds"] > 0

    code, text = cli(["experiment", "architectures", "--models", "mini_xception", "--resume", *common, "epochs=2"])
    assert code == 0 and "resumed from last.pt" in _flat(text), text
    again = json.loads((out / "mini_xception" / "summary.json").read_text())
    assert again["epochs_run"] == 2 and again["best_val_acc"] == first["mini_xception"]["best_val_acc"]
    _, epochs = __import__("wildfer.train.experiments", fromlist=["read_metrics"]).read_metrics(out / "mini_xception")
    assert [e["epoch"] for e in epochs] == [0, 1]  # the log is continued, not restarted or doubled

    # without --resume the folder is trained afresh
    code, text = cli(["experiment", "architectures", "--models", "fastfer", *common])
    assert code == 0 and "reused" not in text
