"""Optimizers and learning-rate schedules for the training engine.

``make_optimizer(cfg, params)``: sgd, momentum, nesterov, rmsprop, adam or adamw, with weight
decay on weight matrices only. ``LRSchedule(cfg, steps_per_epoch)``: the learning rate per
iteration (step, cosine, plateau, one-cycle; linear warm-up), resumable through ``state`` / ``load``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import WildferError
from .config import TrainConfig


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    name = cfg.optimizer.lower()
    decay, no_decay = [], []
    for p in params:
        if p.requires_grad:
            (no_decay if p.dim() <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.0)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov or name == "nesterov")
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=0.99, eps=1e-8)
    if name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise WildferError(f"unknown optimizer {cfg.optimizer!r} (sgd | momentum | nesterov | rmsprop | adam | adamw)")


@dataclass
class LRSchedule:
    """Learning rate as a function of the global step; ``plateau`` also uses epoch metrics."""

    cfg: TrainConfig
    steps_per_epoch: int
    plateau_scale: float = 1.0
    plateau_best: float = -math.inf
    plateau_bad: int = 0

    def __call__(self, step: int) -> float:
        cfg, spe = self.cfg, max(1, self.steps_per_epoch)
        total = cfg.epochs * spe
        warm = int(cfg.warmup_epochs * spe)
        base = cfg.lr
        if cfg.schedule == "onecycle":
            # linear warm-up to lr over 30% (or warmup_epochs), then cosine down to ~0
            warm = warm or int(0.3 * total)
            if step < warm:
                return base * (0.04 + 0.96 * step / max(1, warm))
            t = (step - warm) / max(1, total - warm)
            return cfg.min_lr + (base - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        if step < warm:
            return base * (step + 1) / warm
        if cfg.schedule == "cosine":
            t = (step - warm) / max(1, total - warm)
            return cfg.min_lr + (base - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        if cfg.schedule == "step":
            return base * cfg.gamma ** ((step // spe) // max(1, cfg.step_size))
        if cfg.schedule == "plateau":
            return max(cfg.min_lr, base * self.plateau_scale)
        if cfg.schedule in ("none", "constant"):
            return base
        raise WildferError(f"unknown schedule {cfg.schedule!r} (none | step | cosine | plateau | onecycle)")

    def epoch_end(self, metric: float) -> None:
        if self.cfg.schedule != "plateau":
            return
        if metric > self.plateau_best + 1e-4:
            self.plateau_best, self.plateau_bad = metric, 0
        else:
            self.plateau_bad += 1
            if self.plateau_bad > self.cfg.plateau_patience:
                self.plateau_scale *= self.cfg.gamma if self.cfg.gamma < 1 else 0.1
                self.plateau_bad = 0

    def state(self) -> dict:
        return {"scale": self.plateau_scale, "best": self.plateau_best, "bad": self.plateau_bad}

    def load(self, s: dict) -> None:
        self.plateau_scale, self.plateau_best, self.plateau_bad = s["scale"], s["best"], s["bad"]
