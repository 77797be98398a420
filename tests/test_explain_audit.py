"""The trust audit on a network whose evidence is known: it looks only at the mouth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from wildfer.explain.audit import (
    audit_markdown,
    auc,
    faithfulness,
    parameter_layers,
    perturbation_curves,
    randomization_test,
    run_audit,
    spearman_rows,
)
from wildfer.explain.methods import Attribution, register_method
from wildfer.explain.regions import region_shares, template_regions

MOUTH = torch.as_tensor(template_regions(48)["mouth"])


class MouthNet(nn.Module):
    """conv (channel 0 = x, channel 1 = -x) -> ReLU -> linear whose class-0 weights are
    non-zero only on the mouth: class 0's evidence is the brightness of the mouth. The
    structure lives in the weights, so randomizing them must destroy faithful maps."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 48 * 48, 7)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[0, 0, 1, 1] = 1.0
            self.conv.weight[1, 0, 1, 1] = -1.0
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            w = torch.zeros(2, 48, 48)
            w[0][MOUTH] = 0.02
            self.fc.weight[0] = w.flatten()

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture(scope="module")
def faces():
    g = torch.Generator().manual_seed(0)
    x = 0.3 * torch.randn(16, 1, 48, 48, generator=g)
    x[:, 0][:, MOUTH] += 2.0  # a bright mouth: class 0 is predicted with high probability
    return x


@register_method("test_input_magnitude")
class InputMagnitude(Attribution):
    """|x|: depends on the input only, like an edge detector; the audit must flag it."""

    def _attribute(self, x, target):
        return x.abs().amax(1, keepdim=True)


def test_spearman_rows_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = rng.random((4, 50))
    b = a + 0.3 * rng.random((4, 50))
    b[1] = -a[1]
    b[2, :25] = 0  # ties
    a[3] = 1.0  # constant row
    got = spearman_rows(a, b)
    for i in range(3):
        assert got[i] == pytest.approx(spearmanr(a[i], b[i]).statistic)
    assert got[1] == pytest.approx(-1.0) and got[3] == 0.0


def test_parameter_layers_in_forward_order(faces):
    from wildfer.models import create_model

    assert parameter_layers(MouthNet(), faces[:1]) == ["conv", "fc"]
    names = parameter_layers(create_model("shallow"), faces[:1])
    assert names == ["conv", "fc1", "fc2"]


def test_vanilla_maps_land_on_the_mouth(faces):
    from wildfer.explain import get_method

    maps = get_method("vanilla")(MouthNet()).attribute(faces, target=0)
    sh = region_shares(maps)
    assert sh["mouth"] > 0.95


def test_randomization_flags_only_the_input_method(faces):
    net = MouthNet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rep = randomization_test(net, faces, ["vanilla", "gradcam", "test_input_magnitude", "occlusion"], target=0)
    assert rep["layers"] == ["fc", "conv"]  # from the logits down
    for k, v in net.state_dict().items():  # the model itself is untouched
        assert torch.equal(v, before[k]), k
    m = rep["methods"]
    assert m["vanilla"]["spearman"][0] < 0.3 and not m["vanilla"]["flagged"]
    assert m["occlusion"]["final"] < 0.5 and not m["occlusion"]["flagged"]
    assert m["test_input_magnitude"]["final"] == pytest.approx(1.0) and m["test_input_magnitude"]["flagged"]
    assert len(m["gradcam"]["spearman"]) == 2


def test_perturbation_curve_endpoints(faces):
    net = MouthNet().eval()
    maps = MOUTH.float().expand(16, 1, 48, 48)
    with torch.no_grad():
        p0 = torch.softmax(net(faces), 1)[:, 0].numpy()
        mean = faces.mean(dim=(2, 3), keepdim=True).expand_as(faces)
        p_base = torch.softmax(net(mean), 1)[:, 0].numpy()
    d = perturbation_curves(net, faces, maps, 0, mode="deletion", steps=8, baseline="mean")
    assert d.shape == (16, 9)
    np.testing.assert_allclose(d[:, 0], p0, rtol=1e-5)
    np.testing.assert_allclose(d[:, -1], p_base, rtol=1e-5)
    i = perturbation_curves(net, faces, maps, 0, mode="insertion", steps=8, baseline="blur")
    np.testing.assert_allclose(i[:, -1], p0, rtol=1e-5)
    # the mouth (7% of the pixels) goes first: after 1/8 of the pixels the evidence is gone
    assert d[:, 1].max() < 0.5 * p0.min()
    assert auc(np.ones((2, 5))) == pytest.approx([1.0, 1.0])


def test_faithfulness_beats_random(faces):
    rep = faithfulness(MouthNet(), faces, ["vanilla", "ig", "occlusion"], target=0, steps=12, n_random=2)
    rnd = rep["random"]
    assert 0 < rnd["deletion_auc"] < 1 and len(rnd["deletion_curve"]) == 13
    for m in ("vanilla", "ig", "occlusion"):
        r = rep["methods"][m]
        assert r["deletion_auc"] < rnd["deletion_auc"] - 0.2, m
        assert r["insertion_auc"] > rnd["insertion_auc"], m
        assert r["beats_random_deletion"] and r["deletion_win_rate"] == 1.0


def test_run_audit_report_and_markdown(faces):
    rep = run_audit(MouthNet(), faces[:8], ["vanilla", "test_input_magnitude"], steps=6, n_random=1)
    assert set(rep) >= {"randomization", "faithfulness", "methods", "seconds"}
    md = audit_markdown(rep)
    assert "| vanilla |" in md and "no (flagged)" in md and "| random |" in md
    with pytest.raises(Exception, match="unknown saliency method"):
        run_audit(MouthNet(), faces[:2], ["nope"])


def test_parameter_layers_of_every_builtin_cover_every_weight_layer():
    """fastfer's eval path folds batch norm into F.conv2d calls, so its conv modules never run:
    layers are found from the parameters, placed where their block runs."""
    from wildfer.models.loader import builtin_models, load_model

    names = builtin_models()
    if not names:
        pytest.skip("no built-in weights in this installation")
    for name in names:
        clf = load_model(name)
        layers = parameter_layers(clf.net, torch.zeros(1, clf.channels, clf.size, clf.size))
        weighted = [n for n, m in clf.net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert sorted(layers) == sorted(weighted), name
    fast = load_model("fast") if "fast" in names else None
    if fast is not None:
        layers = parameter_layers(fast.net, torch.zeros(1, 1, 48, 48))
        assert len(layers) == 7 and layers[-1] == "fc" and layers[0] == "features.0.conv"


def test_randomization_reaches_every_layer_of_a_fused_net(faces):
    """The audit's "all layers random" row of fastfer randomizes all 7 layers, and says which."""
    from wildfer.models import create_model

    torch.manual_seed(0)
    net = create_model("fastfer").eval()
    rep = randomization_test(net, faces[:4], ["vanilla"])
    assert len(rep["layers"]) == 7 and rep["layers"][0] == "fc"  # from the logits down
    assert rep["randomized"][0] == ["fc"] and rep["randomized"][-1] == rep["layers"]
    assert len(rep["methods"]["vanilla"]["spearman"]) == 7


def test_randomization_refuses_a_layer_left_untouched(faces, monkeypatch):
    from wildfer.errors import WildferError
    from wildfer.explain import audit

    monkeypatch.setattr(audit, "parameter_layers", lambda net, x: ["fc"])  # the conv is never randomized
    with pytest.raises(WildferError, match=r"left 1 weight tensor\(s\) untouched \(conv.weight\)"):
        audit.randomization_test(MouthNet(), faces, ["vanilla"], target=0)
