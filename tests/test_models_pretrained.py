"""ImageNet forms: torchvision's (timm's) state-dict key names, loading a user-given weights
file (``.pth`` or ``.safetensors``, RGB -> gray first conv, new class head), freezing the trunk
for the study's "fine-tune only the last FC layers" baseline, and clear errors for a missing or
wrong file. Weight files are written by the tests (we cannot and do not download)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from wildfer.errors import ModelError
from wildfer.models import create_model, freeze, load_torchvision_weights

SMALL = {"width": 0.125, "fc": 64}  # torchvision's layer structure and names at 1/8 width

_W = ("weight", "bias")
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
VGG16_KEYS = {f"features.{i}.{w}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28) for w in _W} | {
    f"classifier.{i}.{w}" for i in (0, 3, 6) for w in _W}
VGG16_BN_CONVS = (0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40)
VGG16_BN_KEYS = ({f"features.{i}.{w}" for i in VGG16_BN_CONVS for w in _W}
                 | {f"features.{i + 1}.{w}" for i in VGG16_BN_CONVS for w in _BN}
                 | {f"classifier.{i}.{w}" for i in (0, 3, 6) for w in _W})
ALEXNET_KEYS = {f"features.{i}.{w}" for i in (0, 3, 6, 8, 10) for w in _W} | {
    f"classifier.{i}.{w}" for i in (1, 4, 6) for w in _W}


def _meta(name, **kw):
    with torch.device("meta"):
        return create_model(name, **kw)


def test_torchvision_key_names():
    assert set(_meta("vgg16_imagenet").state_dict()) == VGG16_KEYS
    assert set(_meta("vgg16_bn_imagenet").state_dict()) == VGG16_BN_KEYS
    assert set(_meta("alexnet_imagenet").state_dict()) == ALEXNET_KEYS
    # the 48x48 forms keep the same names (their weights are interchangeable layer by layer)
    assert set(_meta("vgg16", bn=False).state_dict()) == VGG16_KEYS
    assert set(_meta("alexnet").state_dict()) == ALEXNET_KEYS
    # GoogLeNet: 3 stem + 9 x 6 BasicConv2d (conv + 5 BN tensors) + fc = 344; + 2 aux heads = 364
    g = _meta("inception_imagenet").state_dict()
    assert len(g) == 344 and len(_meta("inception_imagenet", aux_logits=True).state_dict()) == 364
    for k in ("conv1.conv.weight", "conv1.bn.running_var", "conv3.bn.num_batches_tracked",
              "inception3a.branch2.1.conv.weight", "inception4e.branch3.1.bn.bias",
              "inception5b.branch4.1.conv.weight", "fc.weight", "fc.bias"):
        assert k in g, k
    assert tuple(g["inception3a.branch3.1.conv.weight"].shape) == (32, 16, 3, 3)  # torchvision's 3x3 "5x5"
    assert tuple(g["inception5b.branch1.conv.weight"].shape) == (384, 832, 1, 1)
    # timm's inception_resnet_v2: 1306 tensors
    r = _meta("inception_resnet_imagenet").state_dict()
    assert len(r) == 1306
    for k in ("conv2d_1a.conv.weight", "mixed_5b.branch3.1.bn.running_var", "repeat.9.conv2d.bias",
              "repeat_1.19.branch1.2.conv.weight", "repeat_2.8.branch1.1.conv.weight", "block8.conv2d.weight",
              "conv2d_7b.bn.weight", "classif.weight"):
        assert k in r, k
    assert tuple(r["repeat_1.0.branch1.1.conv.weight"].shape) == (160, 128, 1, 7)
    assert tuple(r["conv2d_7b.conv.weight"].shape) == (1536, 2080, 1, 1)


def _source(name: str, **kw) -> nn.Module:
    """A stand-in for an ImageNet checkpoint: random weights and BN statistics, 1000 classes."""
    torch.manual_seed(1)
    src = create_model(name, num_classes=1000, **kw)
    with torch.no_grad():
        for m in src.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return src


def test_load_and_freeze_vgg16_bn(tmp_path):
    src = _source("vgg16_bn_imagenet", **SMALL)
    path = tmp_path / "vgg16_bn-6c64b313.pth"
    torch.save(src.state_dict(), path)
    model = create_model("vgg16_bn_imagenet", num_classes=7, pretrained=str(path), freeze="features", **SMALL)
    s, m = src.state_dict(), model.state_dict()
    for k in m:
        if k.startswith("features.") or k.startswith("classifier.0.") or k.startswith("classifier.3."):
            assert torch.equal(m[k], s[k]), k
    assert m["classifier.6.weight"].shape == (7, 64)  # new head for 7 classes
    # frozen: the conv trunk does not learn, the three FC layers do
    frozen = [p for n, p in model.named_parameters() if n.startswith("features.")]
    head = [p for n, p in model.named_parameters() if n.startswith("classifier.")]
    assert frozen and all(not p.requires_grad for p in frozen)
    assert head and all(p.requires_grad for p in head)
    from wildfer.train.config import TrainConfig
    from wildfer.train.engine import make_optimizer

    opt = make_optimizer(TrainConfig(optimizer="momentum", lr=0.05, weight_decay=1e-3), model.parameters())
    n_opt = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in head)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    x = torch.randn(4, 1, 48, 48)  # wildfer's grayscale faces go straight in
    for _ in range(2):
        loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    for k in before:
        if k.startswith("features."):  # weights and batch-norm running statistics unchanged
            assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["classifier.6.weight"], after["classifier.6.weight"])
    assert not torch.equal(before["classifier.0.weight"], after["classifier.0.weight"])


def test_freeze_all_but_last_and_gray_first_conv(tmp_path):
    src = _source("alexnet_imagenet", **SMALL)
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, path)  # wrapped + DDP prefix
    model = create_model("alexnet_imagenet", in_chans=1, num_classes=7, **SMALL)
    report = load_torchvision_weights(model, path)
    assert report["adapted"] == ["features.0.weight"]
    assert report["reinitialised"] == ["classifier.6.weight", "classifier.6.bias"]
    torch.testing.assert_close(model.features[0].weight, src.features[0].weight.sum(1, keepdim=True))
    assert torch.equal(model.features[3].weight, src.features[3].weight)
    freeze(model, "all_but_last")
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["classifier.6.weight", "classifier.6.bias"]
    assert model(torch.randn(2, 1, 48, 48)).shape == (2, 7)
    with pytest.raises(ModelError, match="freeze"):
        freeze(model, "everything")


def test_safetensors_and_default_folder(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    src = _source("vgg16_imagenet", **SMALL)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    model = create_model("vgg16_imagenet", pretrained=str(tmp_path / "w.safetensors"), freeze_features=True, **SMALL)
    assert torch.equal(model.features[28].weight, src.features[28].weight)
    assert not model.features[0].weight.requires_grad and model.classifier[0].weight.requires_grad
    # pretrained=True looks for torchvision's file name in $WILDFER_PRETRAINED_DIR (then torch hub's folder)
    monkeypatch.setenv("WILDFER_PRETRAINED_DIR", str(tmp_path))
    with pytest.raises(ModelError, match=r"vgg16-397923af\.pth") as e:
        create_model("vgg16_imagenet", pretrained=True, **SMALL)
    assert str(tmp_path) in str(e.value) and "downloads nothing" in str(e.value)
    torch.save(src.state_dict(), tmp_path / "vgg16-397923af.pth")
    model = create_model("vgg16_imagenet", pretrained=True, **SMALL)
    assert torch.equal(model.classifier[3].weight, src.classifier[3].weight)


def test_googlenet_aux_and_irv2_cadene_names(tmp_path):
    src = _source("inception_imagenet", aux_logits=True, width=0.125)
    path = tmp_path / "googlenet-1378be20.pth"
    torch.save(src.state_dict(), path)
    # torchvision's file holds the (untrained) aux heads; a model without them ignores those
    model = create_model("inception_imagenet", width=0.125)
    report = load_torchvision_weights(model, path)
    assert any(k.startswith("aux1.") for k in report["ignored"])
    assert torch.equal(model.inception4c.branch2[1].conv.weight, src.inception4c.branch2[1].conv.weight)
    # with aux heads: loaded, only the class layers are new
    model = create_model("inception_imagenet", aux_logits=True, width=0.125)
    report = load_torchvision_weights(model, path)
    assert sorted(report["reinitialised"]) == sorted(["fc.weight", "fc.bias", "aux1.fc2.weight", "aux1.fc2.bias",
                                                      "aux2.fc2.weight", "aux2.fc2.bias"])
    # Inception-ResNet-v2 in Cadene's naming (last_linear) loads too
    kw = {"width": 0.125, "repeats": (1, 1, 1)}
    src = _source("inception_resnet_imagenet", **kw)
    state = {("last_linear" + k[len("classif"):] if k.startswith("classif") else k): v for k, v in src.state_dict().items()}
    torch.save(state, tmp_path / "irv2.pth")
    model = create_model("inception_resnet_imagenet", num_classes=1000, pretrained=str(tmp_path / "irv2.pth"), **kw)
    assert torch.equal(model.classif.weight, src.classif.weight)


def test_wrong_or_unreadable_file(tmp_path):
    alex = tmp_path / "alexnet.pth"
    torch.save(_source("alexnet_imagenet", **SMALL).state_dict(), alex)
    with pytest.raises(ModelError, match="not torchvision-format weights for vgg16_imagenet"):
        create_model("vgg16_imagenet", pretrained=str(alex), **SMALL)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable weights file"):
        create_model("vgg16_imagenet", pretrained=str(junk), **SMALL)


def test_missing_weights_file_cli_one_line(cli, tmp_path):
    missing = tmp_path / "nowhere" / "vgg16-397923af.pth"
    code, out = cli(["models", "info", "vgg16_imagenet", "--pretrained", missing])
    assert code == 2
    err = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "vgg16-397923af.pth" in err[0] and "not found" in err[0]
    assert "Traceback" not in out


def test_missing_weights_file_in_training_cli(cli, tmp_path, fer2013_csv):
    code, out = cli(["train", f"data={fer2013_csv}", "model=vgg16_imagenet", "subset=64", "val_subset=64",
                     "epochs=1", "progress=false", f"out={tmp_path / 'run'}",
                     f"model_kwargs.pretrained={tmp_path / 'vgg16-397923af.pth'}"])
    assert code == 2, out
    assert "error:" in out and "vgg16-397923af.pth" in out and "Traceback" not in out


def test_info_reports_a_good_file(cli, tmp_path):
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(_source("alexnet_imagenet").state_dict(), path)
    code, out = cli(["models", "info", "alexnet_imagenet", "--pretrained", path])
    assert code == 0, out
    assert "loaded 14 tensors" in out and "classifier.6.weight" in out
