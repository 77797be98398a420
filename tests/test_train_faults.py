"""Hostile inputs to train / evaluate / export: each gives one ``error:`` line and exit 2,
before any work and before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_data_cli import fer_csv, one_error_line

from wildfer.errors import WildferError
from wildfer.paths import check_output_dir, check_output_file


def test_check_output_file_refuses_folders_files_as_parents_and_unwritable(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(WildferError, match=r"--json .*: is a folder, not a file"):
        check_output_file(tmp_path, "--json")
    with pytest.raises(WildferError, match=r"a_file is a file, not a folder"):
        check_output_file(tmp_path / "a_file" / "deeper" / "r.json", "--json")
    # writable places pass: an existing file (overwritten) and a file under folders still to be made
    assert check_output_file(tmp_path / "a_file", "--json") == tmp_path / "a_file"
    assert check_output_file(tmp_path / "new" / "sub" / "r.json", "--json") == tmp_path / "new" / "sub" / "r.json"
    assert not (tmp_path / "new").exists()  # checking writes nothing
    monkeypatch.setattr("wildfer.paths.os.access", lambda p, mode: False)
    with pytest.raises(WildferError, match=r"is not writable"):
        check_output_file(tmp_path / "r.json", "--onnx")
    with pytest.raises(WildferError, match=r"the file is not writable"):
        check_output_file(tmp_path / "a_file", "--onnx")


def test_check_output_dir(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(WildferError, match=r"out .*a_file: is a file, not a folder"):
        check_output_dir(tmp_path / "a_file", "out")
    with pytest.raises(WildferError, match=r"a_file is a file, not a folder"):
        check_output_dir(tmp_path / "a_file" / "run", "out")
    assert check_output_dir(tmp_path / "run" / "x", "out") == tmp_path / "run" / "x"
    monkeypatch.setattr("wildfer.paths.os.access", lambda p, mode: False)
    with pytest.raises(WildferError, match=r"the folder is not writable"):
        check_output_dir(tmp_path, "out")


# ----------------------------------------------------------------------------- helpers


@pytest.fixture
def small_csv(tmp_path):
    return fer_csv(tmp_path / "f.csv", [(i % 7, "Training") for i in range(16)] + [(i % 7, "PublicTest") for i in range(8)])


def _common(csv, out, filters=4):
    return ["--no-progress", f"data={csv}", "model=shallow", f"model_kwargs.num_filters={filters}", "epochs=1",
            "batch_size=16", "channels_last=false", f"out={out}"]


# ----------------------------------------------------------------------------- resume from a bad last.pt


def test_resume_from_a_last_pt_that_is_not_a_training_checkpoint(cli, tmp_path, small_csv):
    import fractions
    import pickle
    import shutil

    import torch

    from wildfer.models.loader import save_checkpoint
    from wildfer.models.registry import create_model

    good = tmp_path / "good"
    code, text = cli(["train", *_common(small_csv, good)])
    assert code == 0, text
    other = create_model("mini_xception", num_classes=7)
    # what each last.pt is, and the words that say so
    cases = {
        "garbage": (lambda p: p.write_bytes(bytes(range(256)) * 4), "not a PyTorch file"),
        "text": (lambda p: p.write_text("this is not a checkpoint\n"), "not a PyTorch file"),
        "empty": (lambda p: p.write_bytes(b""), "empty or cut short"),
        "foreign pickle": (lambda p: p.write_bytes(pickle.dumps(fractions.Fraction(1, 3), protocol=2)),
                           "fractions.Fraction"),
        "a list": (lambda p: torch.save([1, 2, 3], p), "not a wildfer checkpoint"),
        "weights only": (lambda p: shutil.copy(good / "best.pt", p), "without training state"),
        "another model": (lambda p: save_checkpoint(p, other, arch="mini_xception", model_kwargs={},
                                                    classes=["a"] * 7, optimizer={}, schedule={}, best=0.0, epoch=0,
                                                    generator=[]), "'mini_xception'"),
        # a shallow run with num_filters=8 resumes the num_filters=4 run's last.pt
        "another width": (None, "weights do not fit"),
    }
    for name, (write, words) in cases.items():
        run = tmp_path / name.replace(" ", "_")
        run.mkdir()
        if write is None:
            shutil.copy(good / "last.pt", run / "last.pt")
        else:
            write(run / "last.pt")
        code, text = cli(["train", *_common(small_csv, run, filters=8 if write is None else 4), "--resume"])
        line = one_error_line(text)
        assert code == 2 and line.startswith("error:") and str(run / "last.pt") in line, (name, text)
        assert words in line, (name, line)
        assert not (run / "metrics.jsonl").exists(), name  # nothing trained, nothing logged
    # the training state of another optimizer (momentum buffers for adam) cannot continue exactly
    run = tmp_path / "another_optimizer"
    shutil.copytree(good, run)
    code, text = cli(["train", *_common(small_csv, run), "optimizer=adam", "--resume"])
    line = one_error_line(text)
    assert code == 2 and str(run / "last.pt") in line and "momentum" in line and "adam" in line, text


def test_checkpoint_and_weights_errors_show_the_whole_reason_on_one_line(tmp_path):
    import fractions
    import pickle

    from wildfer.errors import ModelError
    from wildfer.models.loader import load_model, save_checkpoint
    from wildfer.models.registry import create_model

    bad = tmp_path / "bad.pt"
    bad.write_bytes(pickle.dumps(fractions.Fraction(1, 3), protocol=2))
    with pytest.raises(ModelError) as e:
        load_model(bad)
    assert "fractions.Fraction" in str(e.value) and "\n" not in str(e.value)
    # weights of a narrower net under a wider net's name: every mismatching tensor is named
    net = create_model("shallow", num_classes=7, num_filters=4)
    ck = tmp_path / "mismatch.pt"
    save_checkpoint(ck, net, arch="shallow", model_kwargs={"num_filters": 8}, classes=[str(i) for i in range(7)])
    with pytest.raises(ModelError) as e:
        load_model(ck)
    msg = str(e.value)
    assert "\n" not in msg and "weights do not fit" in msg
    assert all(k in msg for k in net.state_dict() if net.state_dict()[k].shape != create_model(
        "shallow", num_classes=7, num_filters=8).state_dict()[k].shape)


def test_imagenet_weights_and_onnx_errors_are_whole_and_one_line(tmp_path):
    import fractions
    import pickle

    from wildfer.errors import ModelError
    from wildfer.models.onnx import OnnxRunner
    from wildfer.models.pretrained import read_state_dict

    bad = tmp_path / "vgg16.pth"
    bad.write_bytes(pickle.dumps(fractions.Fraction(1, 3), protocol=2))
    with pytest.raises(ModelError) as e:
        read_state_dict(bad)
    assert "fractions.Fraction" in str(e.value) and "\n" not in str(e.value)
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"\x08\x07" + bytes(range(256)) * 8)
    with pytest.raises(ModelError) as e:
        OnnxRunner(onnx)
    msg = str(e.value)
    assert msg.startswith(f"{onnx}: cannot load ONNX model (") and "\n" not in msg
    assert "Protobuf parsing failed" in msg  # the reason, past the path onnxruntime repeats


# ----------------------------------------------------------------------------- ensemble spec cycles


def test_ensemble_spec_that_lists_itself_or_a_cycle(cli, tmp_path):
    import json

    from wildfer.errors import ModelError
    from wildfer.models.loader import load_model

    me = tmp_path / "me.json"
    me.write_text(json.dumps({"arch": "ensemble", "members": ["me.json"]}))
    with pytest.raises(ModelError, match=r"cycle.*me\.json -> .*me\.json") as e:
        load_model(me)
    assert str(e.value).startswith(str(me))
    a, b = tmp_path / "a.json", tmp_path / "sub" / "b.json"
    b.parent.mkdir()
    a.write_text(json.dumps({"arch": "ensemble", "members": ["sub/b.json"]}))
    b.write_text(json.dumps({"arch": "ensemble", "members": [str(a)]}))
    with pytest.raises(ModelError, match=r"cycle: .*a\.json -> .*b\.json -> .*a\.json") as e:
        load_model(a)
    assert str(e.value).count("cycle") == 1  # said once, not once per level
    code, text = cli(["export", str(a), "--onnx", str(tmp_path / "a.onnx")])
    assert code == 2 and "cycle" in one_error_line(text)


def test_builtin_spec_that_lists_itself_is_unavailable_and_says_why(tmp_path, monkeypatch):
    import json

    from wildfer.errors import ModelError
    from wildfer.models import loader

    (tmp_path / "accurate.json").write_text(json.dumps({"arch": "ensemble", "members": ["accurate"]}))
    monkeypatch.setattr(loader, "WEIGHTS_DIR", tmp_path)
    assert "accurate" not in loader.builtin_models()
    with pytest.raises(ModelError, match="cycle"):
        loader.load_model("accurate")


@pytest.mark.parametrize("body, words", [
    ({"weights": ["a"]}, "weights must be a list of 1 numbers"),
    ({"weights": 3}, "weights must be a list of 1 numbers"),
    ({"crop": "abc"}, '"crop" must be a whole number'),
    ({"classes": 5}, '"classes" must be a list of class names'),
])
def test_ensemble_spec_fields_of_the_wrong_kind(tmp_path, body, words):
    import json

    import numpy as np

    from wildfer.errors import ModelError
    from wildfer.models.ensemble import ensemble_weights
    from wildfer.models.loader import load_model, save_checkpoint
    from wildfer.models.registry import create_model

    net = create_model("shallow", num_classes=7, num_filters=4)
    save_checkpoint(tmp_path / "m.pt", net, arch="shallow", model_kwargs={"num_filters": 4},
                    classes=[str(i) for i in range(7)])
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"arch": "ensemble", "members": ["m.pt"], **body}))
    with pytest.raises(ModelError, match=words) as e:
        load_model(spec)
    assert str(e.value).startswith(str(spec))
    assert ensemble_weights(np.array([1.0, 3.0]), 2).tolist() == [0.25, 0.75]


def test_ensemble_spec_may_list_one_member_twice(tmp_path):
    """Listing a member twice (a weight of 2) is no cycle."""
    import json

    from wildfer.models.loader import load_model, save_checkpoint
    from wildfer.models.registry import create_model

    net = create_model("shallow", num_classes=7, num_filters=4)
    save_checkpoint(tmp_path / "m.pt", net, arch="shallow", model_kwargs={"num_filters": 4},
                    classes=[str(i) for i in range(7)])
    (tmp_path / "inner.json").write_text(json.dumps({"arch": "ensemble", "members": ["m.pt"]}))
    spec = tmp_path / "outer.json"
    spec.write_text(json.dumps({"arch": "ensemble", "members": ["inner.json", "inner.json", "m.pt"]}))
    assert len(load_model(spec).net.members) == 3


# ----------------------------------------------------------------------------- config ranges and keys


@pytest.mark.parametrize("bad, words", [
    ("batch_size=0", "batch_size=0"),
    ("lr=-0.1", "lr=-0.1"),
    ("lr=.nan", "lr=nan"),
    ("epochs=0", "epochs=0"),
    ("epochs=-3", "epochs=-3"),
    ("subset=-5", "subset=-5"),
    ("subset=0", "subset=0"),
    ("val_subset=-1", "val_subset=-1"),
    ("weight_decay=-0.001", "weight_decay=-0.001"),
    ("label_smoothing=1.0", "label_smoothing=1.0"),
    ("mixup=-0.2", "mixup=-0.2"),
    ("cutmix=-1", "cutmix=-1"),
    ("wild_ratio=1.5", "wild_ratio=1.5"),
    ("momentum=-0.5", "momentum=-0.5"),
    ("distill_alpha=2", "distill_alpha=2"),
    ("distill_temperature=0", "distill_temperature=0"),
    ("time_budget=-1", "time_budget=-1"),
    ("threads=0", "threads=0"),
    ("log_every=0", "log_every=0"),
    ("step_size=0", "step_size=0"),
    ("max_iters_per_epoch=0", "max_iters_per_epoch=0"),
    ("optimizer=adagrad", "optimizer='adagrad'"),
    ("schedule=linear", "schedule='linear'"),
    ("class_weights=inverse", "class_weights='inverse'"),
    ("device=tpu", "device='tpu'"),
    ("model=nonet", "nonet"),
    ("model_kwargs.bogus=1", "bogus"),
    ("model_kwargs.num_classes=3", "num_classes"),
    ("model_kwargs.input_size=abc", "model_kwargs.input_size='abc': must be an integer in [8, 512]"),
    ("model_kwargs.input_size=0", "model_kwargs.input_size=0: must be an integer"),
    ("bf16=fast", "bf16='fast': must be true, false or auto"),
    ("bf16=3", "bf16=3: must be true, false or auto"),
    ("colour=maybe", "colour='maybe': must be true or false"),
    ("colour=true", "colour=true: the net must take 3 channels"),
    ("aug.bogus=1", "bogus"),
    ("aug.erase=1.5", "erase"),
    ("aug.scale=[0.5]", "aug.scale=[0.5]: must be two numbers"),
    ("aug.jpeg_quality=[80,20]", "aug.jpeg_quality"),
    ("grad_clip=-1", "grad_clip=-1"),
    ("early_stop=-1", "early_stop=-1"),
    ("seed=-1", "seed=-1"),
    ("gamma=0", "gamma=0"),
    ("warmup_epochs=-1", "warmup_epochs=-1"),
    ("min_lr=-1", "min_lr=-1"),
    ("budget_epochs=0", "budget_epochs=0"),
    ("plateau_patience=-1", "plateau_patience=-1"),
    ("model_kwargs.num_filters=-1", "cannot be built"),  # a keyword the model takes, a value it cannot use
])
def test_bad_config_values_fail_before_the_run_folder_exists(cli, tmp_path, small_csv, bad, words):
    out = tmp_path / "run"
    code, text = cli(["train", *_common(small_csv, out), bad])
    line = one_error_line(text)
    assert code == 2 and line.startswith("error:") and words in line, text
    assert not out.exists()


def test_model_kwargs_are_checked_against_the_model_class_signature():
    from wildfer.train.checks import check_model_kwargs

    check_model_kwargs("shallow", {"num_filters": 4})  # the class's own keyword
    check_model_kwargs("resnet18_half", {"widths": [8, 16, 32, 64], "layers": [1, 1, 1, 1]})
    check_model_kwargs("vgg16_imagenet", {"pretrained": None, "freeze": "features", "width": 0.125})
    with pytest.raises(WildferError, match=r"model_kwargs\.num_filter.*shallow.*num_filters"):
        check_model_kwargs("shallow", {"num_filter": 4})


# ----------------------------------------------------------------------------- output paths, before any work


def test_train_refuses_an_unwritable_out_before_reading_data(cli, tmp_path, monkeypatch):
    import os

    real = os.access
    locked = tmp_path / "locked"
    locked.mkdir()
    # a folder the user may not write to (faked: the tests may run as root, who may write anywhere)
    monkeypatch.setattr("wildfer.paths.os.access",
                        lambda p, mode: False if Path(p) == locked else real(p, mode))
    code, text = cli(["train", *_common(tmp_path / "no_such.csv", locked / "run")])
    assert code == 2 and f"folder {locked} is not writable" in one_error_line(text)
    code, text = cli(["evaluate", tmp_path / "no_such.csv", "--json", locked / "r.json"])
    assert code == 2 and f"folder {locked} is not writable" in one_error_line(text)


def test_output_paths_are_checked_before_any_work(cli, tmp_path, small_csv):
    (tmp_path / "a_file").write_text("x")
    missing = tmp_path / "no_such.csv"  # a path check made after loading would report this file instead
    code, text = cli(["evaluate", missing, "--json", tmp_path])
    assert code == 2 and "--json" in one_error_line(text) and "is a folder" in text
    code, text = cli(["evaluate", missing, "--json", tmp_path / "a_file" / "r.json"])
    assert code == 2 and "--json" in one_error_line(text) and "a_file is a file" in text
    code, text = cli(["evaluate", missing, "--out", tmp_path / "a_file"])
    assert code == 2 and "--out" in one_error_line(text)
    code, text = cli(["evaluate", missing, "--save-probs", tmp_path / "a_file" / "p.npz"])
    assert code == 2 and "--save-probs" in one_error_line(text)
    for kind in ("optimizers", "architectures"):
        code, text = cli(["experiment", kind, "--quick", "--no-progress", "--out", tmp_path / "a_file"])
        assert code == 2 and "--out" in one_error_line(text) and "is a file" in text
    code, text = cli(["export", str(tmp_path / "no_such.pt"), "--onnx", tmp_path])
    assert code == 2 and "--onnx" in one_error_line(text) and "is a folder" in text
    for opset in ("1", "99"):
        code, text = cli(["export", str(tmp_path / "no_such.pt"), "--onnx", tmp_path / "m.onnx", "--opset", opset])
        assert code == 2 and f"--opset {opset}: this torch exports ONNX opsets" in one_error_line(text)
    code, text = cli(["train", *_common(missing, tmp_path / "a_file")])
    assert code == 2 and "out=" in one_error_line(text) and "is a file" in text
    code, text = cli(["train", *_common(missing, tmp_path / "a_file" / "run")])
    assert code == 2 and "a_file is a file" in one_error_line(text)


@pytest.mark.parametrize("name, body, words", [
    ("keys.yaml", b"1: 2\n", "config key 1: keys are names"),
    ("mk.yaml", b"model_kwargs: {1: 2}\n", "model_kwargs.1"),
    ("aug.yaml", b"aug: {3: 1}\n", "aug.3"),
    ("binary.yaml", b"\xff\xfe\x00bad", "not a text file"),
    ("list.json", b"[1, 2]", "must be a mapping"),
    ("folder.yaml", None, "a folder, not a config file"),
])
def test_bad_config_files_are_one_line(cli, tmp_path, name, body, words):
    path = tmp_path / name
    if body is None:
        path.mkdir()
    else:
        path.write_bytes(body)
    code, text = cli(["train", "--no-progress", "-c", path, f"out={tmp_path / 'run'}"])
    line = one_error_line(text)
    assert code == 2 and words in line, text
    assert not (tmp_path / "run").exists()


def test_sanity_finds_the_default_data_under_wildfer_data(tmp_path, monkeypatch):
    from wildfer.train.config import TrainConfig
    from wildfer.train.sanity import _default_data

    target = tmp_path / "data" / TrainConfig().data
    target.parent.mkdir(parents=True)
    fer_csv(target, [(i % 7, "Training") for i in range(8)])
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WILDFER_SHARED_DATA", raising=False)
    monkeypatch.setenv("WILDFER_DATA", str(tmp_path / "data"))
    assert _default_data() == target


def test_a_config_built_in_code_is_checked_by_the_trainer(tmp_path):
    from wildfer.train import TrainConfig, Trainer

    for bad, words in ((dict(epochs="3"), "epochs='3': must be an integer"), (dict(batch_size=0), "batch_size=0"),
                       (dict(model_kwargs={"bogus": 1}), "model_kwargs.bogus")):
        cfg = TrainConfig(model="shallow", out=str(tmp_path / "run"), data=str(tmp_path / "none.csv"), **bad)
        with pytest.raises(WildferError, match=words):
            Trainer(cfg)
    assert not (tmp_path / "run").exists()


def test_paths_with_brackets_print_as_they_are(cli, tmp_path):
    """Paths are the user's text, never console markup ("[/]" would even be a markup error)."""
    from wildfer.labels import FER2013_CLASSES
    from wildfer.models.loader import save_checkpoint
    from wildfer.models.registry import create_model

    folder = tmp_path / "[/]" / "[bold red]x"
    folder.mkdir(parents=True)
    data = fer_csv(folder / "f.csv", [(i % 7, "PublicTest") for i in range(8)])
    net = create_model("shallow", num_classes=7, num_filters=4)
    save_checkpoint(folder / "m.pt", net, arch="shallow", model_kwargs={"num_filters": 4}, classes=FER2013_CLASSES)
    report = folder / "[red]r.json"
    code, text = cli(["evaluate", data, "--model", folder / "m.pt", "--json", report])
    assert code == 0, text
    flat = " ".join(text.split())  # the console wraps long lines
    assert f"wrote {report}" in flat and f"{folder / 'm.pt'} on PublicTest" in flat, text
    train = fer_csv(folder / "t.csv", [(i % 7, "Training") for i in range(16)] + [(i % 7, "PublicTest") for i in range(8)])
    run = folder / "[green]run"
    code, text = cli(["train", *_common(train, run)])
    assert code == 0 and f"run folder {run}" in " ".join(text.split()), text


def test_bf16_auto_follows_the_cpu_and_true_without_bf16_units_says_so(monkeypatch, capsys):
    from wildfer import machine
    from wildfer.train.engine import cpu_bf16

    for units in (True, False):
        monkeypatch.setattr(machine, "has_bf16_units", lambda units=units: units)
        assert cpu_bf16("auto") is units and cpu_bf16(False) is False
        assert cpu_bf16(True, warn=True) is True
        notice = capsys.readouterr().err
        assert ("notice: bf16=true on a CPU without bf16 units" in notice) is (not units)
