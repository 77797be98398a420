"""The model zoo: every registered model builds and maps its input to class logits; the study
architectures are faithful to their originals (torchvision/timm parameter counts and layer
names); complexity counting; fastfer's folded eval path; ``wildfer models list/info``."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

from wildfer.models import create_model, list_models, model_info
from wildfer.models.complexity import complexity_table, count_macs, count_params, model_complexity

#: same layer structure and names as the ImageNet forms, a fraction of the cost
SMALL_IMAGENET = {
    "alexnet_imagenet": {"width": 0.125, "fc": 64},
    "vgg16_imagenet": {"width": 0.125, "fc": 64},
    "vgg16_bn_imagenet": {"width": 0.125, "fc": 64},
    "inception_imagenet": {"width": 0.125},
    "inception_resnet_imagenet": {"width": 0.125, "repeats": (1, 2, 1)},
}
STUDY = ("shallow", "alexnet", "vgg16", "inception", "inception_resnet")
OURS = ("mini_xception", "fastfer", "vggfer", "vggfer_small", "resnet18", "resnet18_half")


def test_registry_has_study_and_cpu_nets():
    names = set(list_models())
    for n in STUDY + OURS:
        assert n in names
        assert model_info(n).input_size == 48 and model_info(n).in_chans == 1
    for n in ("alexnet_imagenet", "vgg16_imagenet", "vgg16_bn_imagenet", "inception_imagenet",
              "inception_resnet_imagenet"):
        assert n in names
        assert model_info(n).in_chans == 3 and model_info(n).input_size in (224, 299)


@pytest.mark.parametrize("name", [n for n in list_models()])
def test_forward_shape_at_input_size(name):
    """Every model maps a batch at its own input size to N x num_classes finite logits, and the
    ImageNet forms also take wildfer's 48x48 grayscale faces directly."""
    info = model_info(name)
    torch.manual_seed(0)
    kw = dict(SMALL_IMAGENET.get(name, {}))
    model = create_model(name, num_classes=5, **kw).eval()
    x = torch.randn(2, info.in_chans, info.input_size, info.input_size)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 5)
        assert torch.isfinite(out).all()
        if name.endswith("_imagenet"):
            out48 = model(torch.randn(2, 1, 48, 48))
            assert out48.shape == (2, 5) and torch.isfinite(out48).all()
    # one training step runs and changes the output layer
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    nn.functional.cross_entropy(model(x), torch.tensor([0, 4])).backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


# Published parameter counts with 1000 ImageNet classes (torchvision docs; timm for IRv2;
# Keras' trainable count for Arriaga et al.'s mini_XCEPTION).
PUBLISHED = {
    "alexnet_imagenet": 61_100_840,
    "vgg16_imagenet": 138_357_544,
    "vgg16_bn_imagenet": 138_365_992,
    "inception_imagenet": 6_624_904,
    "inception_resnet_imagenet": 55_843_464,
}


@pytest.mark.parametrize("name,count", sorted(PUBLISHED.items()))
def test_imagenet_forms_match_published_parameter_counts(name, count):
    assert model_complexity(name, num_classes=1000).params == count


def test_vggfer_for_larger_faces_keeps_the_48_pixel_weights():
    """input_size=96 with head_side=3 has exactly the 48-pixel net's parameters (so init= copies
    all of them) and reads 96-pixel faces; without head_side the head grows with the input."""
    small = create_model("vggfer", fc=32).eval()
    big = create_model("vggfer", fc=32, input_size=96, head_side=3).eval()
    a, b = small.state_dict(), big.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    big.load_state_dict(a)
    assert big(torch.randn(2, 1, 96, 96)).shape == (2, 7) and big.input_size == 96
    wide = create_model("vggfer", fc=32, input_size=96)
    assert wide.classifier[2].in_features == 512 * 6 * 6 and wide(torch.randn(1, 1, 96, 96)).shape == (1, 7)


def test_param_counts_sane():
    table = {c.name: c for c in complexity_table()}
    assert table["mini_xception"].params == 56_951  # Keras' count for mini_XCEPTION, 7 classes
    assert table["fastfer"].params < 300_000 and table["fastfer"].macs < 10_000_000
    assert table["shallow"].params == 32 * 25 + 32 + 32 * 24 * 24 * 500 + 500 + 500 * 7 + 7
    # the 48x48 forms keep the originals' conv trunks: same conv parameters at 1 input channel
    a48 = create_model("alexnet")
    convs = sum(p.numel() for m in a48.features for p in m.parameters())
    assert convs == 64 * 1 * 25 + 64 + 192 * 64 * 25 + 192 + 384 * 192 * 9 + 384 + 256 * 384 * 9 + 256 + 256 * 256 * 9 + 256
    for c in table.values():
        assert c.params > 10_000 and c.macs > 1_000_000
        assert c.trainable_params == c.params
    # the ImageNet sizes cost what the originals do (torchvision: 0.71 / 15.47 / 1.50 GMACs)
    assert abs(table["alexnet_imagenet"].macs / 1e9 - 0.71) < 0.02
    assert abs(table["vgg16_imagenet"].macs / 1e9 - 15.47) < 0.1
    assert abs(table["inception_imagenet"].macs / 1e9 - 1.50) < 0.05


def test_macs_of_a_known_net():
    """conv 1->2 3x3 on 4x4 (pad 1): 2*4*4*9 = 288 MACs; linear 32->3: 96 MACs."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 3))
    assert count_macs(net, (1, 4, 4)) == 288 + 96
    assert count_macs(net, (5, 1, 4, 4)) == 288 + 96  # per sample
    assert count_params(net) == 2 * 9 + 2 + 32 * 3 + 3
    strided = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, groups=1), nn.Conv2d(8, 8, 3, padding=1, groups=8))
    # 8 x 4 x 4 outputs x 27 + depthwise 8 x 4 x 4 x 9
    assert count_macs(strided, (3, 8, 8)) == 8 * 16 * 27 + 8 * 16 * 9


def test_fastfer_eval_folds_batch_norm_exactly():
    torch.manual_seed(0)
    model = create_model("fastfer")
    for m in model.modules():  # non-trivial statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        ref = x
        for layer in model.features:
            ref = torch.relu(layer.bn(layer.conv(ref)))
        ref = model.fc(torch.flatten(model.pool(ref), 1))
        out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    # and the state dict is a plain conv + BN one that round-trips
    clone = create_model("fastfer")
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(clone.eval()(x), out)


def test_inception_aux_heads():
    model = create_model("inception", aux_logits=True, width=0.25).train()
    out = model(torch.randn(2, 1, 48, 48))
    assert isinstance(out, tuple) and len(out) == 3
    assert all(o.shape == (2, 7) for o in out)
    assert model.eval()(torch.randn(2, 1, 48, 48)).shape == (2, 7)


def test_width_and_repeats_scale_the_study_nets():
    full = model_complexity("inception_resnet")
    small = model_complexity("inception_resnet", repeats=[2, 4, 2], width=0.25)
    assert small.macs < full.macs / 20 and small.params < full.params / 20
    assert model_complexity("vgg16", width=0.25, fc=512).macs < model_complexity("vgg16").macs / 10


def test_models_list_cli(cli, tmp_path):
    out_json = tmp_path / "models.json"
    code, out = cli(["models", "list", "--json", out_json])
    assert code == 0, out
    rows = {r["name"]: r for r in json.loads(out_json.read_text())}
    assert set(rows) == set(list_models())
    for name, r in rows.items():
        assert name in out
        assert r["params"] > 0 and r["macs"] > 0
    # the table shows the human-readable numbers
    assert "15.5 G" in out  # vgg16_imagenet MACs
    assert "6.72 M" in out  # fastfer MACs
    assert rows["vgg16_imagenet"]["input_size"] == 224 and rows["vgg16_imagenet"]["in_chans"] == 3
    code, out = cli(["models", "list", "vgg16*"])
    assert code == 0 and "vgg16_bn_imagenet" in out and "alexnet" not in out


def test_models_info_and_unknown_name(cli):
    code, out = cli(["models", "info", "mini_xception"])
    assert code == 0
    assert "56,951" in out and "Arriaga" in out
    code, out = cli(["models", "info", "no_such_net"])
    assert code == 2
    assert "unknown model" in out and "Traceback" not in out


def test_models_list_and_info_show_the_builtin_models(cli):
    from wildfer.models.loader import builtin_info, builtin_models

    have = builtin_models()
    if "default" not in have:
        pytest.skip("built-in weights not installed")
    code, out = cli(["models", "list"])
    assert code == 0, out
    assert "built-in trained models" in out
    for name in have:
        assert name in out
    assert "ensemble of default + default_resnet" in out and "(FER+)" in out
    info = builtin_info("default")
    assert info["arch"] == "vggfer" and info["weights_mb"] > 1 and 0.6 < info["val_acc"] < 1
    code, out = cli(["models", "info", "default"])
    assert code == 0, out
    assert "Model card" in out and "FER2013" in out and "default.md" in out
    code, out = cli(["models", "info", "accurate"])
    assert code == 0 and "ten-crop" in out


def test_builtin_models_are_the_weights_folder_json_files_in_their_order(tmp_path, monkeypatch):
    from wildfer.models import loader

    assert loader.BUILTIN == ("wild_ensemble", "default", "fast", "ferplus", "default_resnet", "accurate", "wild",
                              "wild_mfn")
    assert loader.builtin_names() == loader.BUILTIN
    for name, body in {"b": {"arch": "shallow", "order": 2}, "a": {"arch": "shallow"},
                       "c": {"arch": "ensemble", "members": ["b"], "order": 1}, "notes": [1, 2]}.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(body))
    (tmp_path / "broken.json").write_text("{")
    monkeypatch.setattr(loader, "WEIGHTS_DIR", tmp_path)
    assert loader.builtin_names() == ("c", "b", "a")
