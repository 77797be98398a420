"""Wild photos as training data: manifest splits, the crop cache, the mixing sampler, the wild
augmentations and a short wild fine-tune through ``wildfer train``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

KDEF = ["kdef_frontal/AF01AFS.JPG", "kdef_frontal/AF01HAS.JPG", "kdef_frontal/AF01SAS.JPG",
        "kdef_frontal/AF02HAS.JPG", "kdef_frontal/AF02ANS.JPG", "kdef_frontal/AF02SUS.JPG"]


@pytest.fixture()
def split_manifest(wild_dir, tmp_path):
    """Six KDEF portraits (4 train, 2 val, one of them with a box), a blank photo, a broken file."""
    (tmp_path / "blank.png").write_bytes(b"")
    Image.new("RGB", (160, 160), (128, 128, 128)).save(tmp_path / "grey.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with open(wild_dir / "kdef_frontal.csv") as fh:
        labels = {r["path"]: r["label"] for r in csv.DictReader(fh)}
    rows = ["path,label,left,top,right,bottom,split"]
    for i, p in enumerate(KDEF):
        box = "60,110,220,300" if i == 4 else ",,,"
        rows.append(f"{wild_dir / p},{labels[p]},{box},{'train' if i < 4 else 'val'}")
    rows += ["grey.png,happy,20,20,120,120,train", "grey.png,sad,,,,,train", "broken.jpg,sad,,,,,val"]
    man = tmp_path / "m.csv"
    man.write_text("\n".join(rows) + "\n")
    return man


def test_read_manifest_split(split_manifest, tmp_path):
    from wildfer.errors import DataError
    from wildfer.wild.evaluate import read_manifest

    assert len(read_manifest(split_manifest)) == 9
    train = read_manifest(split_manifest, split="train")
    assert len(train) == 6 and {it.split for it in train} == {"train"}
    assert len(read_manifest(split_manifest, split="VAL")) == 3
    # the one split rule of every data loader: test and val both name PublicTest
    assert read_manifest(split_manifest, split="test") == read_manifest(split_manifest, split="val")
    with pytest.raises(DataError, match=r"no 'private' rows \(no rows with usage 'PrivateTest'\); "
                                        r"splits present: Training, PublicTest, or 'all'"):
        read_manifest(split_manifest, split="private")
    plain = tmp_path / "plain.csv"
    plain.write_text("path,label\na.jpg,happy\nb.jpg,sad\n")
    assert len(read_manifest(plain, split="train")) == len(read_manifest(plain, split="all")) == 2  # no split: Training
    with pytest.raises(DataError, match=r"no 'val' rows .*splits present: Training, or 'all'"):
        read_manifest(plain, split="val")


def test_crop_manifest_cache_and_bad_photos(split_manifest, tmp_path, monkeypatch):
    from wildfer.wild import crops

    calls = []
    real = crops._crop_items
    monkeypatch.setattr(crops, "_crop_items", lambda *a, **k: calls.append(1) or real(*a, **k))
    train = crops.crop_manifest(split_manifest, split="train", cache_dir=tmp_path / "cache")
    # 4 portraits + the grey photo with a box (framed from the box); the grey photo without a box is skipped
    assert len(train) == 5 and train.images.shape == (5, 48, 48) and train.images.dtype == np.uint8
    assert train.meta["found"].tolist() == [True, True, True, True, False] and train.meta["n_found"] == 4
    assert [p for p, _ in train.meta["skipped"]] == [str(tmp_path / "grey.png")]
    assert "no face found and no box" in train.meta["skipped"][0][1]
    lm = train.meta["landmarks"]
    assert np.isfinite(lm[:4]).all() and np.isnan(lm[4]).all()
    eyes_y = lm[:4, :2, 1]
    assert ((eyes_y > 8) & (eyes_y < 30)).all()  # eyes in the upper half of the aligned crop
    val = crops.crop_manifest(split_manifest, split="val", cache_dir=tmp_path / "cache")
    assert len(val) == 2 and calls == [1]  # the second split came from the cache
    assert [p for p, _ in val.meta["skipped"]] == [str(tmp_path / "broken.jpg")]
    assert val.class_counts()["angry"] + val.class_counts()["surprise"] == 2
    # the crops are what the pipeline would classify
    from wildfer.wild.align import align_face, to_gray
    from wildfer.wild.detectors import create_detector

    from wildfer.data.images import read_image

    rgb = read_image(train.paths[0])
    det = create_detector("yunet", max_side=640).detect(rgb)[0]
    assert np.array_equal(align_face(to_gray(rgb), det)[0], train.images[0])
    again = crops.crop_manifest(split_manifest, split="train", cache_dir=tmp_path / "cache", cache=False)
    assert calls == [1, 1] and np.array_equal(again.images, train.images)


def test_mixed_epoch_sampler():
    from wildfer.data.torchdata import MixedEpochSampler

    s = MixedEpochSampler(100, 20, ratio=0.5, seed=3)
    assert len(s) == 40
    e0 = list(s)
    assert len(e0) == 40 and sum(i >= 100 for i in e0) == 20 and sorted(i for i in e0 if i >= 100) == list(range(100, 120))
    assert len(set(e0)) == 40  # without replacement
    assert list(s) == e0  # the same epoch, the same order
    s.set_epoch(1)
    e1 = list(s)
    assert e1 != e0 and {i for i in e1 if i < 100} != {i for i in e0 if i < 100}  # a fresh draw of the first set
    r = MixedEpochSampler(100, 20, ratio=0.25)
    assert len(r) == 80 and sum(i >= 100 for i in r) == 20
    small = MixedEpochSampler(10, 20, ratio=0.5)  # the first set too small: all of it, the second cut to match
    idx = list(small)
    assert sum(i < 10 for i in idx) == 10 and sum(i >= 10 for i in idx) == 10
    many = MixedEpochSampler(100, 20, ratio=0.8)  # 20 wild faces and 5 of the first set
    assert sum(i >= 100 for i in many) == 20 and len(many) == 25
    with pytest.raises(ValueError, match="ratio"):
        MixedEpochSampler(10, 10, ratio=1.0)


def test_wild_augmentations_off_by_default_and_deterministic():
    from wildfer.data.augment import Augment, downsample_up, gaussian_blur, jpeg_roundtrip

    x = torch.rand(16, 1, 48, 48)
    plain = Augment()(x, torch.Generator().manual_seed(0))
    # zero-strength wild options leave the random stream, hence the output, exactly as before
    assert torch.equal(Augment(shear=0, blur=0, jpeg=0, noise=0, lowres=0, gamma=0)(x, torch.Generator().manual_seed(0)), plain)
    wild = Augment(shear=0.2, gamma=0.3, blur=0.5, lowres=0.5, noise=0.05, jpeg=0.5)
    a, b = wild(x, torch.Generator().manual_seed(1)), wild(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= float(a.min()) and float(a.max()) <= 1
    # each degradation does what it says
    img = torch.zeros(2, 1, 48, 48)
    img[:, :, :, 24:] = 1.0  # a hard vertical edge
    do = torch.tensor([True, False])
    blurred = gaussian_blur(img, do, torch.tensor([1.5, 1.5]))
    assert 0.1 < float(blurred[0, 0, 10, 23]) < 0.5 and torch.equal(blurred[1], img[1])
    small = downsample_up(img, do, torch.tensor([12, 12]))
    assert 0.2 < float(small[0, 0, 10, 24]) < 0.8 and torch.equal(small[1], img[1])
    noisy = torch.rand(2, 1, 48, 48)
    j = jpeg_roundtrip(noisy, do, torch.tensor([10, 10]))
    assert 0.01 < float((j[0] - noisy[0]).abs().mean()) and torch.equal(j[1], noisy[1])


def test_concat_faces():
    from wildfer.data.fer2013 import FaceArrays
    from wildfer.errors import DataError

    a = FaceArrays(np.zeros((3, 48, 48), np.uint8), np.array([0, 1, 2]), np.array(["Training"] * 3))
    b = FaceArrays(np.ones((2, 48, 48), np.uint8), np.array([3, 4]), np.array(["train"] * 2),
                   soft=np.full((2, 7), 1 / 7, np.float32))
    c = FaceArrays.concat(a, b)
    assert len(c) == 5 and c.meta["parts"] == [3, 2] and c.labels.tolist() == [0, 1, 2, 3, 4]
    assert c.soft.shape == (5, 7) and c.soft[1].tolist() == np.eye(7)[1].tolist()
    with pytest.raises(DataError, match="faces are"):
        FaceArrays.concat(a, FaceArrays(np.zeros((1, 64, 64), np.uint8), np.array([0]), np.array(["x"])))


def test_train_with_wild_data(cli, fer2013_csv, split_manifest, tmp_path, monkeypatch):
    monkeypatch.setenv("WILDFER_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code, text = cli(["train", "--no-progress", "model=shallow", "model_kwargs.num_filters=8", "model_kwargs.hidden=16",
                      f"data={fer2013_csv}", "subset=40", "val_subset=30", f"wild_data={split_manifest}",
                      "wild_ratio=0.5", "epochs=2", "batch_size=8", "aug.blur=0.5", "aug.jpeg=0.5", f"out={out}"])
    assert code == 0, text
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [e for e in epochs if e["type"] == "epoch"]
    assert len(epochs) == 2
    # 5 wild training faces + 5 FER2013 faces per epoch: 2 batches of 8 (8 + 2)
    iters = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"iter"' in line]
    assert max(i["iter"] for i in iters) == 3
    # validation on the 2 wild val crops; FER2013's 30 PublicTest faces scored beside
    assert all(round(e["val_acc"] * 2) == e["val_acc"] * 2 for e in epochs)
    assert all(round(e["fer_val_acc"] * 30, 6) == round(e["fer_val_acc"] * 30) for e in epochs)
    code, text = cli(["train", "--no-progress", f"data={fer2013_csv}", "subset=40", f"wild_data={split_manifest}",
                      "wild_ratio=1.5", "epochs=1", f"out={tmp_path / 'bad'}"])
    assert code == 2 and "wild_ratio=1.5" in text and "Traceback" not in text


def test_train_with_ferplus_soft_labels_and_wild_data(cli, fer2013_csv, ferplus_csv, split_manifest, tmp_path,
                                                      monkeypatch):
    """FER+ votes on FER2013's 7 classes as soft targets for the FER2013 half, the wild faces' labels one-hot."""
    from wildfer.train.engine import Trainer
    from wildfer.train.config import TrainConfig

    monkeypatch.setenv("WILDFER_CACHE_DIR", str(tmp_path / "cache"))
    cfg = TrainConfig(model="shallow", model_kwargs={"num_filters": 8, "hidden": 16}, data=str(fer2013_csv),
                      dataset="ferplus", ferplus_labels=str(ferplus_csv), ferplus_soft=True, ferplus_classes="fer2013",
                      subset=40, val_subset=30, wild_data=str(split_manifest), epochs=1, batch_size=8,
                      out=str(tmp_path / "soft"))
    trainer = Trainer(cfg)
    trainer.setup()
    data = trainer.train_data
    assert tuple(data.classes) == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert data.soft.shape == (len(data), 7) and np.allclose(data.soft.sum(1), 1, atol=1e-5)
    wild = data.soft[40:]
    assert len(wild) == 5 and np.array_equal(wild, np.eye(7, dtype=wild.dtype)[data.labels[40:]])
    assert (data.soft[:40].max(1) < 1).any()  # FER+ votes are distributions
    code, text = cli(["train", "--no-progress", "model=shallow", "model_kwargs.num_filters=8", "model_kwargs.hidden=16",
                      f"data={fer2013_csv}", "dataset=ferplus", f"ferplus_labels={ferplus_csv}", "ferplus_soft=true",
                      "ferplus_classes=fer2013", "subset=40", "val_subset=30", f"wild_data={split_manifest}",
                      "epochs=1", "batch_size=8", f"out={tmp_path / 'run'}"])
    assert code == 0, text
    assert (tmp_path / "run" / "metrics.jsonl").exists()


def test_partial_distillation():
    import torch.nn.functional as F

    from wildfer.train.config import TrainConfig
    from wildfer.train.engine import partial_distillation, soft_cross_entropy

    g = torch.Generator().manual_seed(0)
    logits, tlog = torch.randn(6, 7, generator=g), torch.randn(6, 7, generator=g)
    y = F.one_hot(torch.tensor([0, 1, 2, 3, 4, 5]), 7).float()
    cfg = TrainConfig(label_smoothing=0.1, distill_alpha=0.4, distill_temperature=3.0)
    T = 3.0
    kd = F.kl_div(F.log_softmax(logits / T, 1), F.softmax(tlog / T, 1), reduction="batchmean")
    every = (1 - 0.4) * soft_cross_entropy(logits, y, 0.1) + 0.4 * kd * T * T
    assert torch.allclose(partial_distillation(logits, y, tlog, torch.ones(6, dtype=torch.bool), cfg), every)
    none = partial_distillation(logits, y, tlog, torch.zeros(6, dtype=torch.bool), cfg)
    assert torch.allclose(none, soft_cross_entropy(logits, y, 0.1))
    half = torch.tensor([True, True, True, False, False, False])
    parts = (partial_distillation(logits[:3], y[:3], tlog[:3], half[:3], cfg)
             + partial_distillation(logits[3:], y[3:], tlog[3:], half[3:], cfg)) / 2
    assert torch.allclose(partial_distillation(logits, y, tlog, half, cfg), parts)


def test_train_larger_faces(fer2013_csv, split_manifest, wild_dir, tmp_path, monkeypatch):
    """model_kwargs input_size: FER2013's faces upsampled, the wild crops cut at that side from the
    photos, and the checkpoint tells the pipeline to cut its faces so."""
    from wildfer.errors import WildferError
    from wildfer.models.loader import load_model
    from wildfer.train.config import TrainConfig
    from wildfer.train.engine import Trainer
    from wildfer.wild.crops import crop_manifest
    from wildfer.wild.align import AlignConfig
    from wildfer.wild.recognizer import Recognizer

    monkeypatch.setenv("WILDFER_CACHE_DIR", str(tmp_path / "cache"))
    kw = {"input_size": 64, "head_side": 3, "fc": 16}
    cfg = TrainConfig(model="vggfer_small", model_kwargs=kw, data=str(fer2013_csv), subset=40, val_subset=30,
                      wild_data=str(split_manifest), epochs=1, batch_size=8, out=str(tmp_path / "run"))
    trainer = Trainer(cfg)
    trainer.setup()
    assert trainer.train_data.images.shape == (45, 64, 64) and trainer.val_data.images.shape == (2, 64, 64)
    assert trainer.extra_val["fer"].images.shape == (30, 64, 64)
    wild = crop_manifest(split_manifest, split="train", align=AlignConfig(size=64))
    assert np.array_equal(trainer.train_data.images[40:], wild.images)  # cut from the photos, not upsampled
    trainer.fit()
    clf = load_model(tmp_path / "run" / "best.pt")
    assert clf.size == 64 and clf.preprocess["size"] == 64
    rec = Recognizer(model=clf)
    assert rec.align.size == 64
    faces = rec.predict(wild_dir / KDEF[0]).faces
    assert len(faces) == 1 and faces[0].label in clf.labels and faces[0].crop.shape == (64, 64)
    bad = TrainConfig(**{**cfg.to_dict(), "teacher": str(tmp_path / "run" / "best.pt"), "out": str(tmp_path / "t")})
    bad.model_kwargs = {"fc": 16}
    with pytest.raises(WildferError, match="reads 64-pixel faces; this run's model reads 48"):
        Trainer(bad).fit()


def test_train_colour_faces(fer2013_csv, split_manifest, wild_dir, tmp_path, monkeypatch):
    """colour=true: the wild crops cut in RGB from the photos, FER2013's grey faces repeated to
    R = G = B, a grey init's first convolution spread over the three channels, and a checkpoint
    whose pipeline cuts colour faces."""
    from wildfer.data.images import read_image
    from wildfer.errors import WildferError
    from wildfer.models.loader import load_model
    from wildfer.train.config import TrainConfig
    from wildfer.train.engine import Trainer
    from wildfer.wild.align import align_face
    from wildfer.wild.detectors import create_detector
    from wildfer.wild.recognizer import Recognizer

    monkeypatch.setenv("WILDFER_CACHE_DIR", str(tmp_path / "cache"))
    grey = TrainConfig(model="vggfer_small", model_kwargs={"fc": 16}, data=str(fer2013_csv), subset=40, val_subset=30,
                       wild_data=str(split_manifest), epochs=1, batch_size=8, out=str(tmp_path / "grey"))
    Trainer(grey).fit()
    cfg = TrainConfig(**{**grey.to_dict(), "colour": True, "model_kwargs": {"fc": 16, "in_chans": 3},
                         "init": str(tmp_path / "grey" / "best.pt"), "out": str(tmp_path / "run")})
    trainer = Trainer(cfg)
    state = trainer.setup()
    imgs = trainer.train_data.images
    assert imgs.shape == (45, 3, 48, 48) and trainer.val_data.images.shape == (2, 3, 48, 48)
    assert (imgs[:40, 0] == imgs[:40, 1]).all() and (imgs[:40, 1] == imgs[:40, 2]).all()  # FER2013: R = G = B
    assert trainer.extra_val["fer"].images.shape == (30, 3, 48, 48)
    rgb = read_image(wild_dir / KDEF[0])
    det = max(create_detector("yunet").detect(rgb), key=lambda d: d.score)
    assert np.array_equal(imgs[40], align_face(rgb, det)[0])  # the first wild face, cut in colour
    assert not (imgs[40, 0] == imgs[40, 2]).all()

    # the grey net's first layer / 3 on each channel: a grey face gives the grey net's logits
    src = load_model(tmp_path / "grey" / "best.pt")
    faces = trainer.extra_val["fer"].images[:4]
    with torch.no_grad():
        x = trainer._normalize(trainer._batch_tensor(faces))
        assert torch.allclose(state.model.eval()(x), src.net(x[:, :1]), atol=1e-4)
    trainer.fit()
    clf = load_model(tmp_path / "run" / "best.pt")
    assert clf.channels == 3 and clf.preprocess["grayscale"] is False
    face = Recognizer(model=clf).predict(wild_dir / KDEF[0]).faces[0]
    assert face.crop.shape == (3, 48, 48) and face.label in clf.labels
    # grey faces (FER2013, evaluate) are repeated for it; a grey classifier turns colour ones grey
    assert clf.predict_proba(faces[:, 0]).shape == (4, 7)
    assert np.allclose(src.predict_proba(faces), src.predict_proba(faces[:, 0]), atol=1e-5)
    # an ensemble of a grey and a colour net reads colour faces and gives each member its own
    from wildfer.models.ensemble import ensemble_classifier

    both = ensemble_classifier([src, clf])
    assert both.channels == 3
    want = (src.predict_proba(faces) + clf.predict_proba(faces)) / 2
    assert np.allclose(both.predict_proba(faces), want, atol=1e-5)

    with pytest.raises(WildferError, match="colour=true: the net must take 3 channels"):
        Trainer(TrainConfig(**{**cfg.to_dict(), "model_kwargs": {"fc": 16}}))
    with pytest.raises(WildferError, match="reads grey faces; this run trains on colour ones"):
        Trainer(TrainConfig(**{**cfg.to_dict(), "teacher": str(tmp_path / "grey" / "best.pt"),
                               "out": str(tmp_path / "t")})).fit()
