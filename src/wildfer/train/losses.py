"""The training loss: cross-entropy against (soft, mixed) targets, with label smoothing and class
weights, and knowledge distillation from a teacher.

:class:`TrainingLoss` is one object per run. ``targets(rows, x, gen)`` gives a batch's targets
(one-hot labels, FER+ vote distributions, mixup / cutmix of both); calling it,
``loss(logits, batch)``, gives the batch's loss. A teacher speaks either from logits computed
once for every training face (offline, ``teacher_logits``) or live on each augmented batch
(``teacher``); with ``teach_rows`` only the faces with a row index below it are distilled
(learning without forgetting on mixed FER2013 + wild epochs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data.augment import mixup_cutmix
from ..errors import WildferError
from .config import TrainConfig


@dataclass
class Batch:
    """One training batch: ``rows`` of the training arrays, the network input ``x`` and the targets ``y``."""

    rows: np.ndarray
    x: torch.Tensor
    y: torch.Tensor


def class_weight_vector(labels: np.ndarray, num_classes: int, mode: str | None) -> torch.Tensor | None:
    """Per-class loss weights from the label counts (``balanced`` or ``sqrt`` of it), mean 1."""
    if not mode:
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64) + 1.0
    w = counts.sum() / (num_classes * counts)
    if mode == "sqrt":
        w = np.sqrt(w)
    elif mode != "balanced":
        raise WildferError(f"unknown class_weights {mode!r} (balanced | sqrt)")
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy against soft targets, with label smoothing and optional class weights."""
    c = logits.shape[1]
    if smoothing > 0:
        target = target * (1 - smoothing) + smoothing / c
    logp = F.log_softmax(logits, dim=1)
    per = -(target * logp)
    if weights is not None:
        per = per * weights.view(1, -1)
        return per.sum(1).sum() / (target * weights.view(1, -1)).sum()
    return per.sum(1).mean()


def partial_distillation(logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor,
                         teach: torch.Tensor, cfg: TrainConfig, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per face: ``(1 - alpha) CE + alpha T^2 KL(teacher || student)`` where ``teach`` is True,
    plain CE where it is False; the mean over the batch."""
    c, T, a = logits.shape[1], cfg.distill_temperature, cfg.distill_alpha
    t = target * (1 - cfg.label_smoothing) + cfg.label_smoothing / c if cfg.label_smoothing > 0 else target
    w = torch.ones(c, device=logits.device) if weights is None else weights
    ce = -(t * F.log_softmax(logits, 1) * w).sum(1) / (t * w).sum(1).mean()
    kl = F.kl_div(F.log_softmax(logits / T, 1), F.softmax(teacher_logits / T, 1), reduction="none").sum(1)
    m = teach.float()
    return ((1 - a * m) * ce + a * m * kl * T * T).mean()


class TrainingLoss:
    """The loss of one training run (see the module docstring).

    ``labels`` are the training faces' class indices, ``soft`` their target distributions (or
    None for one-hot), ``weights`` per-class loss weights. ``teacher`` maps a batch input to
    float32 teacher logits; ``teacher_logits`` holds them for every training face instead.
    """

    def __init__(self, cfg: TrainConfig, num_classes: int, labels: np.ndarray, *, soft: np.ndarray | None = None,
                 weights: torch.Tensor | None = None, teacher: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 teacher_logits: torch.Tensor | None = None, teach_rows: int | None = None):
        self.cfg, self.num_classes, self.labels, self.soft, self.weights = cfg, num_classes, labels, soft, weights
        self.teacher, self.teacher_logits, self.teach_rows = teacher, teacher_logits, teach_rows

    def targets(self, rows: np.ndarray, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` for the faces ``rows``: ``y`` on ``x``'s device, both mixed when mixup / cutmix is on."""
        if self.soft is not None:
            y = torch.from_numpy(self.soft[rows]).float()
        else:
            y = F.one_hot(torch.from_numpy(self.labels[rows]), self.num_classes).float()
        y = y.to(x.device)
        if self.cfg.mixup > 0 or self.cfg.cutmix > 0:
            x, y = mixup_cutmix(x, y, self.num_classes, self.cfg.mixup, self.cfg.cutmix, gen)
        return x, y

    def _teacher_logits(self, batch: Batch) -> torch.Tensor:
        if self.teacher_logits is not None:
            return self.teacher_logits[torch.from_numpy(batch.rows)].to(batch.y.device, non_blocking=True)
        return self.teacher(batch.x)

    def __call__(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        cfg = self.cfg
        if self.teacher is None and self.teacher_logits is None:
            return soft_cross_entropy(logits, batch.y, cfg.label_smoothing, self.weights)
        tlog = self._teacher_logits(batch)
        if self.teach_rows is not None:
            teach = torch.from_numpy(batch.rows < self.teach_rows).to(logits.device)
            return partial_distillation(logits, batch.y, tlog, teach, cfg, self.weights)
        T = cfg.distill_temperature
        loss = soft_cross_entropy(logits, batch.y, cfg.label_smoothing, self.weights)
        kd = F.kl_div(F.log_softmax(logits / T, 1), F.softmax(tlog / T, 1), reduction="batchmean")
        return (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * kd * T * T
