"""Saliency maps of a classifier that reads each face in several crops (an ensemble whose
members align faces their own ways, as the pipeline's ``wild_ensemble`` does): every crop is
explained at once, and the maps meet in the first crop's pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

COUPLE = "groups/deepface_couple.jpg"


class TwoInputs(nn.Module):
    """A network of two inputs: a grey 6 x 6 face and a colour 4 x 4 one."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(36, 3)
        self.b = nn.Linear(48, 3)

    def forward(self, xs):
        a, b = xs
        return torch.tanh(self.a(a.flatten(1))) + self.b(b.flatten(1)) ** 2


def test_packed_inputs_are_the_same_network_and_the_same_gradients():
    from wildfer.explain import get_method
    from wildfer.explain.base import MethodError, PackedInputs

    net = TwoInputs()
    a, b = torch.randn(5, 1, 6, 6), torch.randn(5, 3, 4, 4)
    packed = PackedInputs(net, [(1, 6, 6), (3, 4, 4)])
    x = packed.pack([a, b])
    assert x.shape == (5, 1, 1, 84)
    ua, ub = packed.unpack(x)
    assert torch.equal(ua, a) and torch.equal(ub, b)
    assert torch.allclose(packed(x), net([a, b]))

    target = torch.tensor([0, 1, 2, 0, 1])
    ai, bi = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    net([ai, bi]).gather(1, target[:, None]).sum().backward()
    maps = get_method("vanilla")(packed).attribute(x, target=target)
    ga, gb = packed.unpack(maps)
    assert torch.allclose(ga, ai.grad.abs(), atol=1e-6) and torch.allclose(gb, bi.grad.abs(), atol=1e-6)

    with pytest.raises(MethodError, match="expected batches shaped"):
        packed.pack([b, a])
    with pytest.raises(MethodError, match="values a face"):
        packed.unpack(torch.zeros(5, 1, 1, 80))


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def test_maps_of_several_crops_meet_in_the_first_crops_pixels():
    """A blob of attribution in a fine, rotated 112-pixel crop lands where that part of the
    photo falls in the 48-pixel crop, keeping its total (each coarse pixel sums the fine
    pixels it covers)."""
    from wildfer.photo_maps import in_first_view

    m0 = _similarity(48 / 400, 0.0, -10.0, -20.0)  # photo -> 48-px crop (a loose frame)
    m1 = _similarity(112 / 250, 0.2, -60.0, -80.0)  # photo -> 112-px crop (tighter, turned)
    fine = np.zeros((112, 112), np.float32)
    fine[50:62, 40:52] = 1.0
    out = in_first_view([np.zeros((48, 48), np.float32), fine], [m0, m1])
    assert out.shape == (48, 48) and out.dtype == np.float32
    assert out.sum() == pytest.approx(fine.sum(), rel=0.05)
    # the blob's centre, carried photo-wise from the fine crop into the coarse one
    centre = np.array([45.5, 55.5, 1.0])
    photo = np.linalg.solve(np.vstack([m1, [0, 0, 1]]), centre)
    expect = m0 @ photo
    ys, xs = np.mgrid[:48, :48]
    got = np.array([(out * xs).sum(), (out * ys).sum()]) / out.sum()
    assert np.abs(got - expect).max() < 0.75
    # the first crop's own map is kept as it is, and views add up
    first = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    assert np.allclose(in_first_view([first, np.zeros_like(fine)], [m0, m1]), first)
    assert np.allclose(in_first_view([first, fine], [m0, m1]), first + out, atol=1e-5)


@pytest.fixture(scope="module")
def couple(wild_dir):
    return wild_dir / COUPLE


@pytest.fixture(scope="module")
def ensemble_rec():
    from wildfer.wild import Recognizer

    return Recognizer(model="wild_ensemble", backend="torch")


def test_the_explained_network_computes_the_photos_probabilities(ensemble_rec, couple, monkeypatch):
    """What a saliency method differentiates is what read the photo: each member on its own
    crop of each face, so its output (calibrated as the model is) gives the faces' labels and
    probabilities."""
    import wildfer.photo_maps as photo_maps
    from wildfer.explain import get_method

    seen = {}
    base = get_method("vanilla")

    class Recording(base):
        def explain(self, x, target=None):
            seen["net"], seen["x"] = self.net, x
            return super().explain(x, target)

    monkeypatch.setattr(photo_maps, "saliency_method", lambda name: Recording)
    rec = ensemble_rec
    work = rec.prepare(str(couple), keep_rgb=True)
    res = rec.classify_prepared([work])[0]
    assert len(res.faces) == 2 and work.views is not None and len(work.view_mats[0]) == 2
    ex = photo_maps.explain_prepared(rec, work, res, method="vanilla")

    pre = rec.classifier.preprocess
    with torch.inference_mode():
        z = seen["net"](seen["x"]) / pre.get("temperature", 1.0) + torch.tensor(pre.get("class_bias", [0.0] * 7))
    probs = torch.softmax(z, 1).numpy()
    want = np.array([[f.probs[c] for c in rec.labels] for f in res.faces])
    assert np.abs(probs - want).max() < 1e-4
    assert [rec.labels[k] for k in probs.argmax(1)] == [f.label for f in res.faces]
    for f in ex.faces:  # one map per face, in the first (48-pixel) crop, scaled to a maximum of 1
        assert f.saliency.shape == (48, 48) and f.saliency.max() == pytest.approx(1.0)
        assert (f.saliency > 0).mean() > 0.5  # a gradient map covers the face, not a few pixels
    assert ex.heatmap.shape == (res.height, res.width) and 0.9 < ex.heatmap.max() <= 1.0


def test_methods_that_cannot_read_several_crops_are_refused_before_any_work(ensemble_rec, couple):
    from wildfer.errors import ModelError
    from wildfer.photo_maps import check_saliency_method, default_saliency_method, explain_photo, saliency_methods_for

    clf = ensemble_rec.classifier
    assert saliency_methods_for(clf) == ["vanilla", "smoothgrad", "ig"]
    assert default_saliency_method(clf) == "vanilla"
    assert explain_photo(ensemble_rec, str(couple)).method == "vanilla"  # the documented call, no method named
    for method, why in (("gradcam", "Grad-CAM"), ("occlusion", "reads each face in 2 crops")):
        with pytest.raises(ModelError, match=why):
            check_saliency_method(method, clf)
    with pytest.raises(ModelError, match="baseline 'blur'"):
        explain_photo(ensemble_rec, str(couple), method="ig", baseline="blur")
    check_saliency_method("ig", clf, baseline="black")
    single = pytest.importorskip("wildfer.wild").Recognizer(model="wild").classifier
    assert saliency_methods_for(single) == ["vanilla", "smoothgrad", "ig", "gradcam", "occlusion"]
    assert default_saliency_method(single) == "gradcam"


def test_command_line_refuses_or_drops_a_method_the_model_cannot_use(cli, couple, tmp_path):
    out = tmp_path / "o"
    code, text = cli(["predict", str(couple), "--saliency", "gradcam", "--out", str(out)])
    assert code != 0 and "Grad-CAM" in text and "Traceback" not in text
    assert not out.exists() or not any(out.iterdir())  # nothing begun
    code, text = cli(["predict", str(couple), "--saliency", "occlusion", "--out", str(out)])
    assert code != 0 and "reads each face in 2 crops" in text

    maps = tmp_path / "maps"
    code, text = cli(["explain", "maps", str(couple), "--detect", "--model", "wild_ensemble", "--out", str(maps)])
    assert code == 0, text
    assert "gradcam cannot explain wild_ensemble" in " ".join(text.split())
    assert sorted(p.name for p in maps.glob("*.png")) == ["deepface_couple_smoothgrad.png",
                                                          "deepface_couple_vanilla.png"]
    faces = json.loads((maps / "detect.json").read_text())[0]["faces"]
    assert len(faces) == 2 and set(faces[0]["region_shares"]) == {"vanilla", "smoothgrad"}
    code, text = cli(["explain", "maps", str(couple), "--detect", "--model", "wild_ensemble",
                      "--method", "gradcam", "--out", str(tmp_path / "none")])
    assert code != 0 and "Grad-CAM" in text and "Traceback" not in text


def test_service_offers_the_methods_that_read_every_crop(ensemble_rec, couple):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from wildfer.serve.app import create_app

    with TestClient(create_app(ensemble_rec), base_url="http://127.0.0.1:8000") as c:
        assert c.get("/v1/models").json()["explain_methods"] == ["vanilla", "smoothgrad", "ig"]
        body = {"file": ("couple.jpg", couple.read_bytes(), "image/jpeg")}
        r = c.post("/v1/explain?method=occlusion", files=body)
        assert r.status_code == 422 and r.json()["error"] == "method_unsupported"
        assert "2 crops" in r.json()["detail"]
        r = c.post("/v1/explain?format=json", files=body)
        assert r.status_code == 200 and r.json()["method"] == "vanilla" and len(r.json()["faces"]) == 2
