"""``wildfer explain ...`` end to end on tiny synthetic data and small checkpoints."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from PIL import Image

from wildfer.labels import FER2013_CLASSES


def drawn_face(rng: np.random.Generator, cls: int) -> np.ndarray:
    """A 48x48 cartoon face (head, eyes, a mouth whose shape depends on the class) + noise."""
    yy, xx = np.mgrid[0:48, 0:48]
    img = np.full((48, 48), 40.0)
    img[((xx - 23.5) / 17) ** 2 + ((yy - 25) / 23) ** 2 <= 1] = 170
    for cx in (15.5, 31.5):
        img[((xx - cx) / 4) ** 2 + ((yy - 17.5) / 2.5) ** 2 <= 1] = 30
    h = 1 + cls % 4
    img[((xx - 23.5) / 8) ** 2 + ((yy - 39) / h) ** 2 <= 1] = 60
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """A FER2013-layout CSV (3 PublicTest + 1 Training face per class), a run folder with two
    epoch checkpoints of the study's shallow CNN, and a folder of face images."""
    from wildfer.models import create_model
    from wildfer.models.loader import save_checkpoint

    root = tmp_path_factory.mktemp("explain")
    rng = np.random.default_rng(0)
    csv = root / "mini.csv.gz"
    with gzip.open(csv, "wt") as f:
        f.write("emotion,pixels,Usage\n")
        for c in range(7):
            for k in range(4):
                px = " ".join(map(str, drawn_face(rng, c).ravel()))
                f.write(f"{c},{px},{'Training' if k == 3 else 'PublicTest'}\n")
    run = root / "run"
    run.mkdir()
    for e in (1, 2):
        torch.manual_seed(e)
        net = create_model("shallow", num_filters=4, hidden=16)
        save_checkpoint(run / f"epoch_{e:03d}.pt", net, arch="shallow", model_kwargs={"num_filters": 4, "hidden": 16},
                        classes=FER2013_CLASSES, epoch=e, metrics={"val_acc": 0.1 * e})
    import shutil

    shutil.copy(run / "epoch_002.pt", run / "best.pt")
    plain = root / "plain_run"  # a run without per-epoch checkpoints
    plain.mkdir()
    shutil.copy(run / "epoch_001.pt", plain / "best.pt")
    imgs = root / "imgs"
    imgs.mkdir()
    for i in range(3):
        Image.fromarray(drawn_face(rng, i)).resize((96, 96)).save(imgs / f"face{i}.png")
    (imgs / "broken.jpg").write_bytes(b"not a jpeg at all")
    return {"csv": csv, "run": run, "plain": plain, "ckpt": run / "epoch_002.pt", "ckpt1": run / "epoch_001.pt", "imgs": imgs,
            "root": root}


def test_maps_for_a_data_set(cli, mini, tmp_path):
    out = tmp_path / "maps"
    code, text = cli(["explain", mini["csv"], "-m", mini["ckpt"], "--method", "gradcam,vanilla", "--per-class", "1",
                      "--target", "true", "--out", out])
    assert code == 0, text
    idx = json.loads((out / "index.json").read_text())
    assert idx["n"] == 7 and idx["methods"] == ["gradcam", "vanilla"]
    assert [f["true"] for f in idx["faces"]] == list(FER2013_CLASSES)
    assert all(f["explained_class"] == f["true"] for f in idx["faces"])
    assert (out / "grid.png").exists() and (out / idx["faces"][0]["overlays"]["gradcam"]).exists()
    z = np.load(out / "maps.npz")
    assert z["map_vanilla"].shape == (7, 48, 48) and z["faces"].shape == (7, 48, 48)
    assert list(z["targets"]) == list(range(7))


def test_maps_for_a_folder_skips_bad_images(cli, mini, tmp_path):
    out = tmp_path / "folder"
    code, text = cli(["explain", "maps", mini["imgs"], "--model", mini["ckpt"], "--method", "smoothgrad",
                      "--out", out, "--no-overlays"])
    assert code == 0, text
    assert "skipped" in text and "broken.jpg" in text
    idx = json.loads((out / "index.json").read_text())
    assert [f["name"] for f in idx["faces"]] == ["face0", "face1", "face2"]
    assert idx["skipped"][0]["path"].endswith("broken.jpg")
    assert not list(out.glob("face0_*.png"))


def test_maps_single_image_and_class_target(cli, mini, tmp_path):
    out = tmp_path / "one"
    code, text = cli(["explain", mini["imgs"] / "face1.png", "-m", mini["ckpt"], "--method", "ig,occlusion",
                      "--target", "happy", "--out", out])
    assert code == 0, text
    idx = json.loads((out / "index.json").read_text())
    assert idx["faces"][0]["explained_class"] == "happy"
    assert (out / "face1_ig.png").exists() and (out / "face1_occlusion.png").exists()


def test_maps_of_an_ensemble_leave_grad_cam_out_with_a_note(cli, mini, tmp_path):
    """An ensemble has no single network for Grad-CAM: the default methods go on without it
    and say so; Grad-CAM alone is refused in one line before anything is written."""
    spec = tmp_path / "pair.json"
    spec.write_text(json.dumps({"arch": "ensemble", "members": [str(mini["ckpt"]), str(mini["ckpt1"])]}))
    out = tmp_path / "pair"
    code, text = cli(["explain", mini["imgs"] / "face1.png", "-m", spec, "--out", out])
    assert code == 0, text
    assert "gradcam cannot explain" in " ".join(text.split())
    assert sorted(p.name for p in out.glob("face1_*.png")) == ["face1_smoothgrad.png", "face1_vanilla.png"]
    code, text = cli(["explain", mini["imgs"] / "face1.png", "-m", spec, "--method", "gradcam", "--out",
                      tmp_path / "none"])
    assert code == 2 and "Grad-CAM" in text and "Traceback" not in text
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "lime"], "unknown saliency method 'lime'"),
        (["--target", "true"], "needs labelled faces"),
        (["--target", "bored"], "not one of pred, true"),
    ],
)
def test_maps_user_errors_are_one_line(cli, mini, tmp_path, args, message):
    code, text = cli(["explain", mini["imgs"], "-m", mini["ckpt"], "--out", tmp_path / "x", *args])
    assert code == 2 and message in text and "Traceback" not in text


def test_epochs_figure_and_region_shares(cli, mini, tmp_path):
    out = tmp_path / "epochs"
    code, text = cli(["explain", "epochs", mini["run"], "--data", mini["csv"], "--out", out, "--n-regions", "3"])
    assert code == 0, text
    rep = json.loads((out / "epochs_vanilla.json").read_text())
    assert [e["epoch"] for e in rep["epochs"]] == [1, 2]
    assert [e["val_acc"] for e in rep["epochs"]] == [0.1, 0.2]
    assert rep["sample_classes"] == list(FER2013_CLASSES) and rep["n_faces"] == 21
    for e in rep["epochs"]:
        assert sum(e["shares"].values()) == pytest.approx(1.0, abs=1e-3)
        assert set(e["per_class"]) == set(FER2013_CLASSES)
    assert (out / "epochs_vanilla.png").exists() and (out / "epochs_vanilla_regions.png").exists()
    code, text = cli(["explain", "epochs", mini["root"], "--data", mini["csv"], "--out", out])
    assert code == 2 and "no per-epoch checkpoints" in text


def test_compare_models(cli, mini, tmp_path):
    out = tmp_path / "cmp"
    code, text = cli(["explain", "compare", "-m", mini["ckpt1"], "-m", mini["ckpt"], "--data", mini["csv"],
                      "--method", "vanilla,gradcam", "--out", out])
    assert code == 0, text
    rep = json.loads((out / "compare.json").read_text())
    assert list(rep["models"]) == ["run/epoch_001", "run/epoch_002"]
    assert len(rep["faces"]) == 7
    assert set(rep["models"]["run/epoch_001"]["shares"]) == {"vanilla", "gradcam"}
    assert (out / "compare.png").exists()


def test_audit_writes_json_and_markdown(cli, mini, tmp_path):
    js, md = tmp_path / "audit.json", tmp_path / "audit.md"
    code, text = cli(["explain", "audit", "-m", mini["ckpt"], "--data", mini["csv"], "--n", "7",
                      "--methods", "vanilla,gradcam", "--steps", "6", "--random-seeds", "1", "--json", js, "--md", md])
    assert code == 0, text
    rep = json.loads(js.read_text())
    assert rep["data"]["n"] == 7
    assert {"date", "cpu", "cores", "python", "torch", "gpu"} <= set(rep["machine"]), rep["machine"]
    assert rep["randomization"]["layers"] == ["fc2", "fc1", "conv"]
    for m in ("vanilla", "gradcam"):
        assert len(rep["randomization"]["methods"][m]["spearman"]) == 3
        assert len(rep["faithfulness"]["methods"][m]["deletion_curve"]) == 7
    assert "Cascading randomization" in md.read_text()
    assert (tmp_path / "audit_deletion.png").exists() and (tmp_path / "audit_insertion.png").exists()


def test_regions_table(cli, mini, tmp_path):
    js, md = tmp_path / "regions.json", tmp_path / "regions.md"
    code, text = cli(["explain", "regions", "-m", mini["ckpt"], "--data", mini["csv"], "--per-class", "2",
                      "--method", "vanilla,gradcam", "--json", js, "--md", md])
    assert code == 0, text
    rep = json.loads(js.read_text())
    assert {"date", "cpu", "cores", "python", "torch", "gpu"} <= set(rep["machine"]), rep["machine"]
    e = rep["models"]["run/epoch_002"]["methods"]["vanilla"]
    assert set(e["per_class"]) == set(FER2013_CLASSES) and rep["n_faces"] == 14
    assert sum(e["all"].values()) == pytest.approx(1.0, abs=1e-3)
    assert e["enrichment"]["mouth"] == pytest.approx(e["all"]["mouth"] / rep["area"]["mouth"], rel=1e-2)
    text_md = md.read_text()
    assert "| *area* |" in text_md and "| happy |" in text_md
    code, text = cli(["explain", "regions", "-m", mini["ckpt"], "--data", mini["csv"], "--split", "PrivateTest"])
    assert code == 2 and "no 'PrivateTest' rows" in text


def test_detect_whole_photo_regions_from_landmarks(cli, mini, wild_dir, tmp_path):
    """A KDEF portrait: detect, align, explain; region shares measured with the face's own landmarks."""
    photo = sorted((wild_dir / "kdef_frontal").glob("*.JPG"))[0]
    out = tmp_path / "det"
    code, text = cli(["explain", photo, "--detect", "-m", mini["ckpt"], "--method", "vanilla", "--out", out])
    assert code == 0, text
    rep = json.loads((out / "detect.json").read_text())
    faces = rep[0]["faces"]
    assert len(faces) == 1
    shares = faces[0]["region_shares"]["vanilla"]
    assert set(shares) == {"eyes", "brows", "nose", "mouth", "face_other", "outside"}
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    assert (out / f"{photo.stem}_vanilla.png").exists()


def test_report_one_command(cli, mini, tmp_path):
    out = tmp_path / "report"
    code, text = cli(["explain", "report", mini["run"], mini["plain"], "--data", mini["csv"], "--out", out,
                      "--method", "vanilla", "--per-class", "2", "--n-regions", "2"])
    assert code == 0, text
    assert "no epochs figure for" in text  # plain_run has only best.pt
    assert (out / "run_epochs" / "epochs_vanilla.png").exists() and not (out / "plain_run_epochs").exists()
    reg = json.loads((out / "regions.json").read_text())
    assert list(reg["models"]) == ["run", "plain_run"]
    md = (out / "report.md").read_text()
    assert "## run: vanilla saliency over training" in md and "| area |" in md and "**plain_run**, vanilla" in md
    assert (out / "compare" / "compare.png").exists()
