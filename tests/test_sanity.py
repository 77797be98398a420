"""``wildfer train --sanity``: initial loss ~ ln 7, a tiny batch can be overfit, the shallow
net's gradients match central differences in float64; failures are reported and exit 1."""

from __future__ import annotations

import math
import re

import torch

from wildfer.train import sanity


def test_train_sanity_cli_passes(cli, fer2013_csv, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the default relative data path is absent here: found via the variable
    monkeypatch.setenv("WILDFER_SHARED_DATA", str(fer2013_csv.parents[1]))
    code, out = cli(["train", "--sanity"])
    assert code == 0, out
    assert "FER2013 training rows" in out  # real faces when the data is there
    assert "1.94" in out  # initial loss printed: ln 7 = 1.9459
    assert len(re.findall(r"│ pass\s+│", out)) == 3 and "FAIL" not in out
    assert "all sanity checks passed" in out


def test_checks_on_random_data_and_their_numbers(tmp_path):
    x, y, source = sanity._tiny_batch(50, tmp_path / "absent.csv.gz", seed=3)
    assert "random" in source and x.shape == (50, 1, 48, 48) and y.max() < 7
    init = sanity.check_initial_loss(x, y)
    assert init.ok and abs(float(init.value) - math.log(7)) < 0.01
    fit = sanity.check_overfit(x, y)  # random labels on noise: memorisation only
    assert fit.ok and fit.value.startswith("100%")


def test_checks_can_fail():
    x, y, _ = sanity._tiny_batch(20, "/nonexistent/fer2013.csv.gz", seed=0)
    # a budget of one step cannot fit 20 faces
    assert not sanity.check_overfit(x, y, max_steps=1).ok
    # large initial weights do not give ln 7
    torch.manual_seed(0)
    from wildfer.models.shallow import ShallowCNN

    net = ShallowCNN(weight_scale=0.5)
    with torch.no_grad():
        loss = float(torch.nn.functional.cross_entropy(net(x), y))
    assert abs(loss - math.log(7)) > 0.05


def test_gradient_check_detects_a_wrong_backward(monkeypatch):
    ok = sanity.check_gradients()
    assert ok.ok and "max rel. error" in ok.value

    class BadReLU(torch.autograd.Function):  # a backward that is off by 10 %
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp_min(0)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * (x > 0) * 1.1

    monkeypatch.setattr(torch, "relu", BadReLU.apply)
    bad = sanity.check_gradients()
    assert not bad.ok


def test_failed_check_exits_nonzero(cli, monkeypatch):
    def failing(*a, **k):
        return sanity.Check("overfit", "40% train acc", "100%", False)

    monkeypatch.setattr(sanity, "check_overfit", failing)
    monkeypatch.setattr(sanity, "check_gradients", lambda **k: sanity.Check("grad", "0", "0", True))
    code, out = cli(["train", "--sanity"])
    assert code == 1
    assert "FAIL" in out and "some sanity checks failed" in out


def test_sanity_checks_the_model_named_on_the_command_line(cli, tmp_path):
    code, out = cli(["train", "--sanity", "model=fastfer", f"data={tmp_path / 'absent.csv.gz'}"])
    assert code == 0, out
    assert "sanity checks of fastfer on 50 random images" in out
    assert out.count("(fastfer") == 3  # every check names the architecture it built
    assert len(re.findall(r"│ pass\s+│", out)) == 3 and "FAIL" not in out


def test_sanity_honours_the_config_file(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # table rows on one line each
    config = tmp_path / "small.yaml"
    config.write_text(f"model: shallow\nmodel_kwargs:\n  num_filters: 4\n  hidden: 16\nseed: 3\n"
                      f"data: {tmp_path / 'absent.csv.gz'}\n")
    code, out = cli(["train", "--sanity", "--config", config])
    assert code == 0, out
    # the configured setting, not the cheap default of each check (8 filters, a tiny gradient-check net)
    assert out.count("num_filters=4, hidden=16") == 2 and "num_filters=8" not in out
    assert "max rel. error" in out and "FAIL" not in out


def test_sanity_refuses_an_unknown_model_in_one_line(cli):
    code, out = cli(["train", "--sanity", "model=no_such_net"])
    assert code != 0 and "no_such_net" in out and "Traceback" not in out
