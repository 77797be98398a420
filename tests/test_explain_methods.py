"""Saliency methods on cases with known answers, and against captum when it is installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from wildfer.explain.methods import (
    GradCAM,
    GradCAMPlusPlus,
    IntegratedGradients,
    MethodError,
    Occlusion,
    RandomMap,
    SmoothGrad,
    VanillaGradient,
    create_method,
    default_cam_layer,
    find_layer,
    get_method,
    list_methods,
)
from wildfer.models import create_model


def small_cnn(seed: int = 0, num_classes: int = 7) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 12 * 12, 32), nn.Tanh(), nn.Dropout(0.5), nn.Linear(32, num_classes),
    )
    # give BN non-trivial statistics so eval vs train mode differ
    net[1].running_mean.uniform_(-0.2, 0.2)
    net[1].running_var.uniform_(0.5, 2.0)
    return net


@pytest.fixture(scope="module")
def x():
    g = torch.Generator().manual_seed(1)
    return torch.randn(5, 1, 48, 48, generator=g)


def test_registry_names_and_errors():
    from wildfer.explain import SALIENCY_METHODS

    assert set(["vanilla", "smoothgrad", "ig", "gradcam", "occlusion"]) <= set(list_methods())
    assert set(SALIENCY_METHODS) <= set(list_methods())  # the list the commands and the service offer
    assert get_method("integrated_gradients") is IntegratedGradients
    assert get_method("Grad-CAM") is GradCAM
    assert get_method("gradcam++") is GradCAMPlusPlus
    with pytest.raises(MethodError, match="unknown saliency method 'lime'"):
        get_method("lime")
    with pytest.raises(MethodError, match="SmoothGrad"):
        create_method("smoothgrad", small_cnn(), bogus=1)


def test_linear_model_gradient_is_its_weights():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    x = torch.randn(4, 2, 6, 6)
    w = lin[1].weight.detach().view(3, 2, 6, 6)
    raw = VanillaGradient(lin, abs=False).attribute(x, target=[0, 1, 2, 1])
    assert raw.shape == x.shape
    for i, t in enumerate([0, 1, 2, 1]):
        torch.testing.assert_close(raw[i], w[t])
    sal = VanillaGradient(lin).attribute(x, target=2)
    assert sal.shape == (4, 1, 6, 6)
    torch.testing.assert_close(sal[0, 0], w[2].abs().amax(0))
    # no gradient leaks into the parameters
    assert lin[1].weight.grad is None


def test_default_target_is_prediction_and_state_restored(x):
    net = small_cnn()
    net.train()
    net[1].eval()  # mixed states must come back exactly
    before = [m.training for m in net.modules()]
    vg = VanillaGradient(net)
    maps = vg.attribute(x)
    assert [m.training for m in net.modules()] == before
    with torch.no_grad():
        net.eval()
        pred = net(x).argmax(1)
    torch.testing.assert_close(vg.target_, pred)
    torch.testing.assert_close(maps, VanillaGradient(net).attribute(x, target=pred))
    with pytest.raises(MethodError, match="out of range"):
        vg.attribute(x, target=7)
    with pytest.raises(MethodError, match="3 entries for a batch of 5"):
        vg.attribute(x, target=[0, 1, 2])


def test_batching_does_not_change_maps(x):
    net = small_cnn()
    for name in ("vanilla", "ig", "gradcam", "occlusion", "smoothgrad"):
        kw = {"n_samples": 4} if name == "smoothgrad" else {}
        a = create_method(name, net, batch_size=2, **kw).attribute(x, target=3)
        b = create_method(name, net, batch_size=64, **kw).attribute(x, target=3)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_works_under_inference_mode(x):
    net = small_cnn()
    ref = VanillaGradient(net).attribute(x, target=1)
    with torch.inference_mode():
        got = VanillaGradient(net).attribute(x, target=1)
    torch.testing.assert_close(got, ref)


def test_smoothgrad_zero_noise_is_vanilla_and_seeded(x):
    net = small_cnn()
    torch.testing.assert_close(SmoothGrad(net, noise=0.0, n_samples=3).attribute(x, 2),
                               VanillaGradient(net).attribute(x, 2))
    a = SmoothGrad(net, n_samples=6, seed=3).attribute(x, 2)
    b = SmoothGrad(net, n_samples=6, seed=3).attribute(x, 2)
    c = SmoothGrad(net, n_samples=6, seed=4).attribute(x, 2)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == (5, 1, 48, 48) and (a >= 0).all()


@pytest.mark.parametrize("baseline", ["zeros", "black", "blur", "mean", 0.7])
def test_integrated_gradients_completeness(x, baseline):
    net = small_cnn()
    ig = IntegratedGradients(net, steps=64, baseline=baseline)
    attr, delta = ig.attribute(x, target=4, return_convergence_delta=True)
    assert attr.shape == x.shape
    with torch.no_grad():
        net.eval()
        from wildfer.explain.methods import make_baseline

        b = make_baseline(x, baseline, blur_sigma=4.0)
        gap = net(x)[:, 4] - net(b)[:, 4]
    torch.testing.assert_close(attr.flatten(1).sum(1) - gap, delta, rtol=1e-4, atol=1e-4)
    assert delta.abs().max() < 1e-2 * max(1.0, float(gap.abs().max()))


def test_integrated_gradients_linear_is_exact():
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    x = torch.randn(3, 1, 4, 4)
    attr = IntegratedGradients(lin, steps=4, method="riemann_trapezoid").attribute(x, target=1)
    torch.testing.assert_close(attr, x * lin[1].weight.detach()[1].view(1, 1, 4, 4))


class _TwoChannelCAMNet(nn.Module):
    """conv: channel 0 = x, channel 1 = -x (identity kernels); then global mean pool and a
    linear layer with known weights. Grad-CAM weights are w_k / (H W)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 1, 1] = 1.0
            self.conv.weight[1, 0, 1, 1] = -1.0
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_gradcam_known_activation():
    net = _TwoChannelCAMNet()
    x = torch.randn(3, 1, 10, 10)
    cam0 = GradCAM(net).attribute(x, target=0)
    torch.testing.assert_close(cam0, torch.relu(x) * 2.0 / 100)
    cam1 = GradCAM(net, layer="conv").attribute(x, target=1)
    torch.testing.assert_close(cam1, torch.relu(-x) * 3.0 / 100)
    assert not hasattr(net.conv, "_forward_hooks") or len(net.conv._forward_hooks) == 0
    pp = GradCAMPlusPlus(net).attribute(x, target=0)
    assert pp.shape == (3, 1, 10, 10) and (pp >= 0).all()
    # Grad-CAM++ keeps only positive-gradient channels: here the same support as Grad-CAM
    assert torch.equal(pp > 0, cam0 > 0)


def test_gradcam_layers_upsampling_and_errors(x):
    net = create_model("vggfer_small")
    name, _ = find_layer(net, None)
    assert name == "features.10.2"  # the last Conv2d, after its BatchNorm and ReLU
    assert default_cam_layer(create_model("resnet18_half")) == "layers.3.1"  # the last block
    assert default_cam_layer(create_model("shallow")) == "conv"
    assert default_cam_layer(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))) == "1"
    cam = GradCAM(net).attribute(x, target=0)
    assert cam.shape == (5, 1, 48, 48) and (cam >= 0).all()
    cam_early = GradCAM(net, layer="features.0.0").attribute(x, target=0)
    assert cam_early.shape == (5, 1, 48, 48)
    assert sum(len(m._forward_hooks) for m in net.modules()) == 0
    with pytest.raises(MethodError, match="no layer 'features.99'"):
        GradCAM(net, layer="features.99")
    with pytest.raises(MethodError, match="no Conv2d"):
        GradCAM(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
    # an in-place ReLU right after the hooked layer must not corrupt the activation
    shallow = create_model("shallow")
    torch.manual_seed(0)
    c1 = GradCAM(shallow).attribute(x, target=2)
    assert torch.isfinite(c1).all() and c1.shape == (5, 1, 48, 48)


class _PatchModel(nn.Module):
    """Looks only at one 6x6 patch: class 0 score = sum of the patch, class 1 = 0."""

    def forward(self, x):
        s = x[:, :, 20:26, 30:36].sum(dim=(1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_occlusion_finds_the_only_patch():
    x = torch.ones(2, 1, 48, 48)
    occ = Occlusion(_PatchModel(), window=4, stride=2, baseline=0.0).attribute(x, target=0)
    assert occ.shape == (2, 1, 48, 48)
    m = occ[0, 0]
    # pixels that no window touching the patch covers get exactly 0
    far = torch.ones(48, 48, dtype=torch.bool)
    far[16:30, 26:40] = False
    assert m[far].abs().max() == 0
    assert m[20:26, 30:36].min() > 0
    assert m.argmax() // 48 in range(20, 26) and m.argmax() % 48 in range(30, 36)
    # a fully covered patch pixel loses, on average, the pixels its windows hide inside the patch
    assert float(m[22, 32]) == pytest.approx(float(m[23, 33]))


def test_random_map_is_seeded(x):
    net = small_cnn()
    a = RandomMap(net, seed=1).attribute(x)
    b = RandomMap(net, seed=1).attribute(x)
    torch.testing.assert_close(a, b)
    assert a.shape == (5, 1, 48, 48)


def test_classifier_and_uint8_faces():
    from wildfer.models.loader import Classifier

    clf = Classifier(small_cnn())
    faces = np.random.default_rng(0).integers(0, 256, size=(3, 48, 48), dtype=np.uint8)
    a = VanillaGradient(clf).attribute(faces, target=1)
    b = VanillaGradient(clf.net).attribute(clf.to_tensor(faces), target=1)
    torch.testing.assert_close(a, b)
    with pytest.raises(MethodError, match="need a wildfer Classifier"):
        VanillaGradient(clf.net).attribute(faces)


# ----------------------------------------------------------------------------- captum


@pytest.fixture(scope="module")
def captum():
    return pytest.importorskip("captum.attr", reason="captum not installed (optional test dependency)")


def test_against_captum_saliency_ig_occlusion(captum, x):
    net = small_cnn().eval()
    t = torch.tensor([0, 1, 2, 3, 4])
    ours = VanillaGradient(net).attribute(x, target=t)
    ref = captum.Saliency(net).attribute(x.clone().requires_grad_(), target=t, abs=True)
    torch.testing.assert_close(ours, ref.amax(1, keepdim=True))

    for method in ("gausslegendre", "riemann_trapezoid"):
        ours = IntegratedGradients(net, steps=20, method=method, baseline="zeros").attribute(x, target=t)
        ref = captum.IntegratedGradients(net).attribute(x, baselines=torch.zeros_like(x), target=t, n_steps=20,
                                                        method=method)
        if method == "riemann_trapezoid":
            # captum's trapezoid weights are 1/n (ends halved), summing to (n-1)/n; ours are the
            # textbook 1/(n-1), summing to 1 (so completeness holds for a linear model)
            ref = ref * 20 / 19
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5, msg=method)

    ours = Occlusion(net, window=8, stride=4, baseline=0.0).attribute(x, target=t)
    ref = captum.Occlusion(net).attribute(x, sliding_window_shapes=(1, 8, 8), strides=(1, 4, 4), baselines=0.0,
                                          target=t)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_against_captum_gradcam(captum, x):
    net = create_model("vggfer_small").eval()
    layer = net.features[10][0]
    t = torch.tensor([6, 5, 4, 3, 2])
    ours = GradCAM(net, layer="features.10.0", upsample="none").attribute(x, target=t)
    ref = captum.LayerGradCam(net, layer).attribute(x, target=t, relu_attributions=True)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)
    # the default layer: the block output, an in-place ReLU (our hook copies its output)
    ours_block = GradCAM(net, upsample="none").attribute(x, target=t)
    ref_block = captum.LayerGradCam(net, net.features[10][2]).attribute(x, target=t, relu_attributions=True)
    torch.testing.assert_close(ours_block, ref_block, rtol=1e-4, atol=1e-6)
    up = GradCAM(net, layer=layer).attribute(x, target=t)
    ref_up = captum.LayerAttribution.interpolate(ref, (48, 48), interpolate_mode="bilinear")
    torch.testing.assert_close(up, ref_up, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "vanilla", "smoothgrad", "ig", "occlusion"])
def test_one_method_object_serves_two_threads_at_once(x, name):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    net = small_cnn()
    net.train()  # each call switches to eval; the other thread must not see train mode come back
    kw = {"n_samples": 4} if name == "smoothgrad" else {"steps": 8} if name == "ig" else {}
    meth = create_method(name, net, batch_size=2, **kw)
    inputs = [x, torch.flip(x, dims=(0, 3)) * 0.5 + 0.3]
    expected = [meth.explain(inp) for inp in inputs]
    start = Barrier(2)

    def run(inp):
        start.wait()
        return [meth.explain(inp) for _ in range(3)]

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(run, inputs))
    for want, got in zip(expected, runs):
        for result in got:
            torch.testing.assert_close(result.maps, want.maps, msg=name)
            torch.testing.assert_close(result.target, want.target)
            if name == "ig":
                torch.testing.assert_close(result.convergence_delta, want.convergence_delta)
    assert all(m.training for m in net.modules())
    assert not any(m._forward_hooks for m in net.modules())
