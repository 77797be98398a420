"""DDP on CPU: ``torchrun --nproc_per_node 2 -m wildfer.cli train ...`` (gloo) must give the same
run as one process with the same global batch (per-rank batch = half), and only rank 0 writes.

The engine shards one shared permutation per epoch across ranks (DistributedSampler semantics):
with a global batch of 64 split 32 + 32 and gradients averaged by DDP, every optimisation step
sees the same 64 faces as the single-process step, so the metrics agree up to float rounding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

N_TRAIN, N_VAL, EPOCHS, GLOBAL_BATCH = 256, 64, 2, 64


def _write_subset_csv(fer2013, path: Path) -> Path:
    """The first N_TRAIN Training and N_VAL PublicTest rows of the real FER2013, as a CSV."""
    tr, va = fer2013.split("Training"), fer2013.split("PublicTest")
    with open(path, "w") as f:
        f.write("emotion,pixels,Usage\n")
        for arr, usage, n in ((tr, "Training", N_TRAIN), (va, "PublicTest", N_VAL)):
            for i in range(n):
                f.write(f"{arr.labels[i]},{' '.join(map(str, arr.images[i].ravel()))},{usage}\n")
    return path


def _common(csv: Path) -> list[str]:
    return [f"data={csv}", "model=shallow", "model_kwargs.num_filters=8", f"epochs={EPOCHS}", "augment=false", "seed=0", "lr=0.01",
            "schedule=none", "optimizer=momentum", "channels_last=false", "progress=false", "weight_decay=0.0005"]


def _epochs(run: Path) -> list[dict]:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in recs if r["type"] == "epoch"]


@pytest.fixture(scope="module")
def runs(fer2013, tmp_path_factory, cli):
    tmp = tmp_path_factory.mktemp("ddp")
    csv = _write_subset_csv(fer2013, tmp / "subset.csv")
    env = dict(os.environ, OMP_NUM_THREADS="1", WILDFER_CACHE_DIR=str(tmp / "cache"), PYTHONUNBUFFERED="1")
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    two = tmp / "two"
    cmd = launcher + ["--standalone", "--nproc_per_node", "2", "-m", "wildfer.cli", "train",
                      *_common(csv), f"batch_size={GLOBAL_BATCH // 2}", f"out={two}"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the 1-process reference runs in-process through the same CLI entry point
    one = tmp / "one"
    old = os.environ.get("WILDFER_CACHE_DIR")
    os.environ["WILDFER_CACHE_DIR"] = str(tmp / "cache")
    try:
        code, out = cli(["train", *_common(csv), f"batch_size={GLOBAL_BATCH}", f"out={one}"])
    finally:
        if old is None:
            os.environ.pop("WILDFER_CACHE_DIR", None)
        else:
            os.environ["WILDFER_CACHE_DIR"] = old
    assert code == 0, out[-3000:]
    return {"one": one, "two": two, "log2": proc.stdout + proc.stderr}


def test_two_processes_match_one(runs):
    e1, e2 = _epochs(runs["one"]), _epochs(runs["two"])
    assert len(e1) == len(e2) == EPOCHS  # rank 1 wrote no records of its own
    assert [e["world_size"] for e in e1] == [1] * EPOCHS
    assert [e["world_size"] for e in e2] == [2] * EPOCHS
    for a, b in zip(e1, e2):
        # same samples per step and averaged gradients: equal up to float rounding
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=2e-3)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=2e-3)
        assert b["train_acc"] == pytest.approx(a["train_acc"], abs=2 / N_TRAIN)
        assert b["val_acc"] == pytest.approx(a["val_acc"], abs=2 / N_VAL)
    # the reduced metrics cover the whole data, not one rank's shard
    s2 = json.loads((runs["two"] / "summary.json").read_text())
    assert s2["world_size"] == 2 and s2["epochs_run"] == EPOCHS
    # and the run learned something real: loss below chance after two epochs
    assert e2[-1]["train_loss"] < 1.946


def test_two_processes_write_expected_files_once(runs):
    for run in (runs["one"], runs["two"]):
        for name in ("config.yaml", "metrics.jsonl", "best.pt", "last.pt", "summary.json"):
            assert (run / name).is_file(), f"{run / name} missing"
        assert not list(run.glob("*.tmp"))
    iters = [json.loads(line) for line in (runs["two"] / "metrics.jsonl").read_text().splitlines()
             if '"iter"' in line and '"type": "iter"' in line]
    # rank 0 logs its own iterations once: (N_TRAIN / GLOBAL_BATCH) steps per epoch
    assert len(iters) == EPOCHS * N_TRAIN // GLOBAL_BATCH
    # only rank 0 speaks: the final summary line is printed once
    assert runs["log2"].count("best validation accuracy") == 1


def test_ddp_checkpoint_loads_and_predicts(runs):
    import numpy as np

    from wildfer.models.loader import load_model

    clf = load_model(runs["two"])
    p = clf.predict_proba(np.zeros((2, 48, 48), dtype=np.uint8))
    assert p.shape == (2, 7)
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)
    # last.pt keeps one augmentation-generator state per rank for exact --resume
    import torch

    ck = torch.load(runs["two"] / "last.pt", map_location="cpu", weights_only=True)
    assert len(ck["generator"]) == 2


def test_resume_continues_exactly(fer2013, tmp_path):
    """1 epoch + --resume 1 epoch == 2 epochs in one go (weights, optimizer, augmentation
    generators and the log), so a preempted multi-process job can continue where it stopped."""
    import numpy as np
    import torch

    from wildfer.train import TrainConfig, Trainer

    train = fer2013.split("Training").subset(np.arange(128))
    val = fer2013.split("PublicTest").subset(np.arange(64))
    common = dict(model="shallow", model_kwargs={"num_filters": 4, "hidden": 32}, batch_size=32, augment=True,
                  schedule="none", optimizer="momentum", lr=0.01, seed=3, progress=False, channels_last=False)
    straight = Trainer(TrainConfig(epochs=2, out=str(tmp_path / "a"), **common), train=train, val=val).fit()
    Trainer(TrainConfig(epochs=1, out=str(tmp_path / "b"), **common), train=train, val=val).fit()
    resumed = Trainer(TrainConfig(epochs=2, out=str(tmp_path / "b"), **common), train=train, val=val, resume=True).fit()
    assert resumed["epochs_run"] == 2
    for a, b in zip(straight["history"], resumed["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-6)
        assert b["val_acc"] == pytest.approx(a["val_acc"], abs=1e-9)
    wa = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["state_dict"]
    wb = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    # the resumed run appended to its log: two epoch records, like the straight run
    assert len(_epochs(tmp_path / "b")) == len(_epochs(tmp_path / "a")) == 2
