"""``init=SOURCE``: fine-tuning starts from trained weights; a new label set gets a fresh head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wildfer.data.fer2013 import FaceArrays
from wildfer.errors import WildferError
from wildfer.labels import FER2013_CLASSES, FERPLUS_CLASSES
from wildfer.train.config import TrainConfig
from wildfer.train.engine import Trainer, init_from
from wildfer.models.registry import create_model


def _arrays(n: int, classes, usage: str, seed: int) -> FaceArrays:
    rng = np.random.default_rng(seed)
    return FaceArrays(images=rng.integers(0, 256, (n, 48, 48), dtype=np.uint8),
                      labels=rng.integers(0, len(classes), n).astype(np.int64),
                      usage=np.array([usage] * n), classes=tuple(classes))


def _cfg(tmp_path, name, **kw) -> TrainConfig:
    return TrainConfig(model="shallow", model_kwargs={"num_filters": 4, "hidden": 16}, epochs=1,
                       batch_size=16, augment=False, progress=False, channels_last=False,
                       lr=0.01, out=str(tmp_path / name), **kw)


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("init")
    Trainer(_cfg(tmp, "src"), train=_arrays(64, FER2013_CLASSES, "Training", 0),
            val=_arrays(16, FER2013_CLASSES, "PublicTest", 1)).fit()
    return tmp / "src"


def test_init_copies_every_matching_tensor_and_keeps_a_fresh_head(source_run):
    src = torch.load(source_run / "best.pt", map_location="cpu", weights_only=True)["state_dict"]
    torch.manual_seed(123)
    net = create_model("shallow", num_classes=8, num_filters=4, hidden=16)
    fresh_head = net.state_dict()["fc2.weight"].clone() if "fc2.weight" in net.state_dict() else None
    report = init_from(net, str(source_run))
    own = net.state_dict()
    assert report["loaded"] and report["skipped"]
    for k in report["loaded"]:
        assert torch.equal(own[k], src[k].to(own[k].dtype)), k
    for k in report["skipped"]:  # the 7-class output layer cannot be reused for 8 classes
        assert own[k].shape != src[k].shape
        assert own[k].shape[0] == 8
    if fresh_head is not None:
        assert torch.equal(own["fc2.weight"], fresh_head)


def test_init_into_another_architecture_is_a_clear_error(source_run):
    net = create_model("fastfer", num_classes=7)
    with pytest.raises(WildferError, match="tensors match this model"):
        init_from(net, str(source_run))


def test_fine_tuning_run_starts_from_the_source(source_run, tmp_path):
    """An 8-class run with init= and lr=0 keeps the source's features exactly."""
    cfg = _cfg(tmp_path, "ft", init=str(source_run))
    cfg.lr = 0.0
    cfg.weight_decay = 0.0
    trainer = Trainer(cfg, train=_arrays(32, FERPLUS_CLASSES, "Training", 2),
                      val=_arrays(16, FERPLUS_CLASSES, "PublicTest", 3))
    trainer.fit()
    # the output layer's weight and bias: 8 classes, not 7, so their rows are copied by class name
    assert trainer.init_report["skipped"] == [] and len(trainer.init_report["mapped"]) == 2
    src = torch.load(source_run / "best.pt", map_location="cpu", weights_only=True)["state_dict"]
    out = torch.load(tmp_path / "ft" / "last.pt", map_location="cpu", weights_only=True)["state_dict"]
    for k in trainer.init_report["loaded"]:
        assert torch.allclose(out[k], src[k]), k
    for k in trainer.init_report["mapped"]:
        for i, c in enumerate(FERPLUS_CLASSES):
            if c in FER2013_CLASSES:
                assert torch.allclose(out[k][i], src[k][FER2013_CLASSES.index(c)]), (k, c)


def test_init_skip_keeps_named_tensors_fresh(source_run):
    """init_skip=["fc2."]: the source's trunk with a fresh head, even where the head would map."""
    src = torch.load(source_run / "best.pt", map_location="cpu", weights_only=True)["state_dict"]
    torch.manual_seed(7)
    net = create_model("shallow", num_classes=7, num_filters=4, hidden=16)
    fresh = {k: v.clone() for k, v in net.state_dict().items() if k.startswith("fc2.")}
    assert fresh
    report = init_from(net, str(source_run), FER2013_CLASSES, skip=["fc2."])
    own = net.state_dict()
    assert sorted(report["skipped"]) == sorted(fresh) and report["mapped"] == []
    for k, v in fresh.items():
        assert torch.equal(own[k], v) and not torch.equal(own[k], src[k].to(v.dtype)), k
    for k in report["loaded"]:
        assert torch.equal(own[k], src[k].to(own[k].dtype)), k
    with pytest.raises(WildferError, match="init_skip: 'fc9.' names no tensor"):
        init_from(net, str(source_run), FER2013_CLASSES, skip=["fc9."])
    with pytest.raises(WildferError, match="init_skip"):
        _cfg(source_run.parent, "x", init_skip=["fc2."]).check()  # no init= to skip tensors of


def test_init_without_classes_keeps_a_fresh_head(source_run):
    torch.manual_seed(0)
    net = create_model("shallow", num_classes=8, num_filters=4, hidden=16)
    report = init_from(net, str(source_run), classes=None)
    assert report["mapped"] == [] and len(report["skipped"]) == 2


def test_a_trainer_is_cheap_to_make_and_sets_up_once(tmp_path):
    """The constructor checks the config only: the data are read, the model built and the
    process set up by setup(), which fit() calls and which returns the same state again."""
    lazy = Trainer(_cfg(tmp_path, "lazy", data=str(tmp_path / "missing.csv")))
    assert lazy.state is None and not hasattr(lazy, "train_data") and not (tmp_path / "lazy").exists()
    with pytest.raises(WildferError, match="missing.csv"):
        lazy.setup()  # the data set is looked for only now
    trainer = Trainer(_cfg(tmp_path, "given"), train=_arrays(32, FER2013_CLASSES, "Training", 4),
                      val=_arrays(16, FER2013_CLASSES, "PublicTest", 5))
    state = trainer.setup()
    assert trainer.setup() is state and state.net is state.model and state.loss is not None
    assert trainer.num_classes == 7 and len(trainer.train_data) == 32 and not (tmp_path / "given").exists()
    summary = trainer.fit()
    assert summary["epochs_run"] == 1 and trainer.state is state and (tmp_path / "given" / "best.pt").exists()


def test_a_builtin_name_is_that_model_beside_a_data_folder_of_the_same_name(tmp_path, monkeypatch):
    """init=wild names the built-in model even where $WILDFER_DATA holds the wild photos' folder."""
    from wildfer.models import load_model

    (tmp_path / "fast").mkdir()
    monkeypatch.setenv("WILDFER_DATA", str(tmp_path))
    ref = load_model("fast", backend="torch")
    model = create_model(ref.arch, **ref.model_kwargs)
    report = init_from(model, "fast", tuple(ref.classes))
    assert report["loaded"] and not report["skipped"]
    mine, theirs = model.state_dict(), ref.net.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
