"""The training engine's parts on their own: the loss object, the callbacks, the optimizer and schedule factory."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wildfer.errors import WildferError
from wildfer.train.callbacks import Callback, CallbackList, EarlyStopping, MetricsLog, Step, TrainState
from wildfer.train.config import TrainConfig
from wildfer.train.losses import Batch, TrainingLoss, class_weight_vector, partial_distillation, soft_cross_entropy
from wildfer.train.optim import LRSchedule, make_optimizer


def _batch(n: int = 6, c: int = 7, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = np.arange(n) % c
    logits = torch.randn(n, c, generator=g)
    y = F.one_hot(torch.from_numpy(labels), c).float()
    return labels, logits, Batch(np.arange(n), torch.zeros(n, 1, 4, 4), y)


def test_loss_without_a_teacher_is_smoothed_weighted_cross_entropy():
    labels, logits, batch = _batch()
    w = class_weight_vector(labels, 7, "balanced")
    loss = TrainingLoss(TrainConfig(label_smoothing=0.1), 7, labels, weights=w)
    assert torch.allclose(loss(logits, batch), soft_cross_entropy(logits, batch.y, 0.1, w))


def test_offline_and_live_teachers_give_the_same_distillation_loss():
    labels, logits, batch = _batch()
    tlog = torch.randn(len(labels), 7, generator=torch.Generator().manual_seed(1))
    cfg = TrainConfig(distill_alpha=0.4, distill_temperature=3.0)
    offline = TrainingLoss(cfg, 7, labels, teacher_logits=tlog)(logits, batch)
    live = TrainingLoss(cfg, 7, labels, teacher=lambda x: tlog)(logits, batch)
    kd = F.kl_div(F.log_softmax(logits / 3.0, 1), F.softmax(tlog / 3.0, 1), reduction="batchmean")
    expected = 0.6 * soft_cross_entropy(logits, batch.y) + 0.4 * kd * 9.0
    assert torch.allclose(offline, expected) and torch.allclose(live, expected)


def test_teach_rows_distil_only_the_rows_below_it():
    labels, logits, batch = _batch()
    tlog = torch.randn(len(labels), 7, generator=torch.Generator().manual_seed(2))
    cfg = TrainConfig(distill_alpha=0.5)
    got = TrainingLoss(cfg, 7, labels, teacher_logits=tlog, teach_rows=3)(logits, batch)
    assert torch.allclose(got, partial_distillation(logits, batch.y, tlog, torch.arange(6) < 3, cfg))


def test_targets_are_one_hot_or_soft_and_mixed_with_mixup():
    labels = np.array([0, 1, 2, 3])
    x = torch.rand(4, 1, 8, 8)
    plain = TrainingLoss(TrainConfig(), 7, labels)
    same, y = plain.targets(np.array([2, 0]), x[:2], torch.Generator())
    assert torch.equal(same, x[:2])
    assert y.tolist() == F.one_hot(torch.tensor([2, 0]), 7).float().tolist()
    soft = np.full((4, 7), 1 / 7, dtype=np.float32)
    assert torch.allclose(TrainingLoss(TrainConfig(), 7, labels, soft=soft).targets(np.arange(4), x, None)[1],
                          torch.full((4, 7), 1 / 7))
    mixed_x, mixed_y = TrainingLoss(TrainConfig(mixup=1.0), 7, labels).targets(np.arange(4), x,
                                                                                torch.Generator().manual_seed(0))
    assert mixed_x.shape == x.shape and torch.allclose(mixed_y.sum(1), torch.ones(4))
    assert (mixed_y > 0).sum() > 4  # two classes share some rows


def _trainer(tmp_path, **cfg):
    return SimpleNamespace(cfg=TrainConfig(out=str(tmp_path), **cfg), is_main=True, console=None)


def _state() -> TrainState:
    net = torch.nn.Linear(2, 2)
    return TrainState(net, torch.optim.SGD(net.parameters(), lr=0.1), None, torch.Generator(), steps_per_epoch=4)


def test_metrics_log_writes_iterations_every_log_every_and_each_epoch(tmp_path):
    trainer, state, log = _trainer(tmp_path, log_every=2), _state(), MetricsLog(tmp_path / "m.jsonl")
    log.on_fit_start(trainer, state)
    for it in range(4):
        log.on_step_end(trainer, state, Step(0, it, it, 0.1, 1.0 + it))
    log.on_epoch_end(trainer, state, {"type": "epoch", "epoch": 0})
    log.on_fit_end(trainer, state)
    records = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r.get("iter") for r in records] == [0, 2, None]
    assert records[1] == {"type": "iter", "epoch": 0, "iter": 2, "loss": 3.0, "lr": 0.1}


def test_early_stopping_sets_should_stop_after_patience_bad_epochs(tmp_path):
    trainer, state, stop = _trainer(tmp_path), _state(), EarlyStopping(2)
    state.bad_epochs = 1
    stop.on_epoch_end(trainer, state, {})
    assert not state.should_stop
    state.bad_epochs = 2
    stop.on_epoch_end(trainer, state, {})
    assert state.should_stop


def test_callback_list_ends_every_callback_when_one_fails(tmp_path):
    ended = []

    class Fails(Callback):
        def on_fit_end(self, trainer, state):
            raise RuntimeError("boom")

    class Records(Callback):
        def on_fit_end(self, trainer, state):
            ended.append(True)

    with pytest.raises(RuntimeError, match="boom"):
        CallbackList([Fails(), Records()]).on_fit_end(_trainer(tmp_path), _state())
    assert ended == [True]


@pytest.mark.parametrize("name, kind", [("sgd", torch.optim.SGD), ("momentum", torch.optim.SGD),
                                        ("nesterov", torch.optim.SGD), ("rmsprop", torch.optim.RMSprop),
                                        ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_make_optimizer_decays_weight_matrices_only(name, kind):
    net = torch.nn.Linear(3, 2)
    opt = make_optimizer(TrainConfig(optimizer=name, weight_decay=0.01), net.parameters())
    assert isinstance(opt, kind)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert opt.param_groups[0]["params"][0] is net.weight
    if name == "nesterov":
        assert opt.param_groups[0]["nesterov"]


def test_make_optimizer_names_the_choices():
    with pytest.raises(WildferError, match="adamw"):
        make_optimizer(TrainConfig(optimizer="lion"), torch.nn.Linear(2, 2).parameters())


def test_schedule_warms_up_then_follows_cosine_and_plateau_cuts():
    cfg = TrainConfig(lr=0.1, min_lr=0.0, epochs=4, warmup_epochs=1, schedule="cosine")
    sched = LRSchedule(cfg, steps_per_epoch=10)
    assert sched(0) == pytest.approx(0.01) and sched(9) == pytest.approx(0.1)
    assert sched(10) == pytest.approx(0.1) and sched(39) < 0.001
    plateau = LRSchedule(TrainConfig(lr=0.1, schedule="plateau", warmup_epochs=0, plateau_patience=0, gamma=0.5), 10)
    plateau.epoch_end(0.5)
    plateau.epoch_end(0.4)
    assert plateau(0) == pytest.approx(0.05)
    resumed = LRSchedule(plateau.cfg, 10)
    resumed.load(plateau.state())
    assert resumed(0) == plateau(0) and not math.isinf(resumed.plateau_best)
