"""What the training loop does around its epochs: logging, checkpoints, the time budget, early stopping.

A :class:`Callback` has four hooks, each given the :class:`~wildfer.train.engine.Trainer` and the
run's :class:`TrainState`: ``on_fit_start``, ``on_step_end`` (with a :class:`Step`),
``on_epoch_end`` (with the epoch's record) and ``on_fit_end`` (also when the fit fails). A
callback steers the loop through the state (``should_stop``, ``trainer.cfg.epochs``). Hooks run
on every rank, in list order; what only rank 0 writes is guarded by ``trainer.is_main``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn as nn

from ..jsonio import dumps, json_ready
from ..models.loader import save_checkpoint
from ..progress import NoProgress, progress_bar
from .config import TrainConfig, save_config


@dataclass
class TrainState:
    """What one fit holds and changes: the model (``net``: it, or its DDP wrapper) and its
    optimizer, schedule, loss, augmentation and augmentation generator, this rank's training
    rows of each epoch (``sampler``, with ``set_epoch``), the epoch reached, the best validation
    accuracy and the epoch records."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any
    generator: torch.Generator
    steps_per_epoch: int
    sampler: Any = None
    net: nn.Module | None = None
    loss: Any = None
    augment: Any = None
    start_epoch: int = 0
    epoch: int = -1
    best: float = -1.0
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)
    improved: bool = False
    should_stop: bool = False


@dataclass
class Step:
    """One optimizer step: its place in the run, learning rate and loss (None when not read back)."""

    epoch: int
    iteration: int
    step: int
    lr: float
    loss: float | None


class Callback:
    """Hooks of the training loop; each does nothing unless overridden."""

    def on_fit_start(self, trainer, state: TrainState) -> None:
        pass

    def on_step_end(self, trainer, state: TrainState, step: Step) -> None:
        pass

    def on_epoch_end(self, trainer, state: TrainState, record: dict) -> None:
        pass

    def on_fit_end(self, trainer, state: TrainState) -> None:
        pass


class CallbackList(Callback):
    """Callbacks called in order; ``on_fit_end`` reaches each even when one of them fails."""

    def __init__(self, callbacks: list[Callback]):
        self.callbacks = list(callbacks)

    def on_fit_start(self, trainer, state):
        for c in self.callbacks:
            c.on_fit_start(trainer, state)

    def on_step_end(self, trainer, state, step):
        for c in self.callbacks:
            c.on_step_end(trainer, state, step)

    def on_epoch_end(self, trainer, state, record):
        for c in self.callbacks:
            c.on_epoch_end(trainer, state, record)

    def on_fit_end(self, trainer, state):
        errors = []
        for c in self.callbacks:
            try:
                c.on_fit_end(trainer, state)
            except Exception as e:  # the others still close their files
                errors.append(e)
        if errors:
            raise errors[0]


class MetricsLog(Callback):
    """``<out>/metrics.jsonl`` on rank 0: an ``iter`` record every ``cfg.log_every`` iterations,
    an ``epoch`` record per epoch; other records through :meth:`write`. A fresh run starts a
    fresh log, a resumed one (``append``) continues it."""

    def __init__(self, path: Path, append: bool = False):
        self.path, self.append = Path(path), append
        self.file: IO[str] | None = None

    def on_fit_start(self, trainer, state):
        if trainer.is_main:
            self.file = open(self.path, "a" if self.append else "w")

    def write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(dumps(record) + "\n")

    def on_step_end(self, trainer, state, step):
        if step.iteration % max(1, trainer.cfg.log_every) == 0:
            self.write({"type": "iter", "epoch": step.epoch, "iter": step.step, "loss": round(step.loss, 5),
                        "lr": step.lr})

    def on_epoch_end(self, trainer, state, record):
        self.write(record)
        if self.file is not None:
            self.file.flush()

    def on_fit_end(self, trainer, state):
        if self.file is not None:
            self.file.close()
            self.file = None


def _gather_generator_states(gen: torch.Generator, distributed: bool, world: int) -> list[torch.Tensor]:
    """The augmentation generator state of every rank (rank order), for exact resume."""
    state = gen.get_state()
    if not distributed:
        return [state]
    states: list = [None] * world
    torch.distributed.all_gather_object(states, state)
    return [torch.as_tensor(s) for s in states]


class Checkpoints(Callback):
    """Per epoch: ``best.pt`` when the validation accuracy improved, ``epoch_NNN.pt`` with
    ``cfg.keep_epoch_checkpoints``, and ``last.pt`` with the training state ``--resume`` reads."""

    def __init__(self, out: Path):
        self.out = Path(out)

    def on_epoch_end(self, trainer, state, record):
        # every rank's augmentation stream, so that --resume continues each exactly
        gen_states = _gather_generator_states(state.generator, trainer.distributed, trainer.world)
        if not trainer.is_main:
            return
        cfg = trainer.cfg
        common = dict(arch=cfg.model, model_kwargs=cfg.model_kwargs, classes=trainer.classes,
                      preprocess=cfg.preprocess(), epoch=state.epoch,
                      metrics=json_ready(record), config=json_ready(cfg.to_dict()))
        if state.improved:
            save_checkpoint(self.out / "best.pt", state.model, **common)
        if cfg.keep_epoch_checkpoints:
            save_checkpoint(self.out / f"epoch_{state.epoch + 1:03d}.pt", state.model, **common)
        save_checkpoint(self.out / "last.pt", state.model, **common, optimizer=state.optimizer.state_dict(),
                        schedule=state.schedule.state(), best=state.best, bad_epochs=state.bad_epochs,
                        history=json_ready(state.history), generator=gen_states)


class EpochLines(Callback):
    """One line per epoch on the trainer's console (rank 0): train and validation loss and accuracy."""

    def on_epoch_end(self, trainer, state, record):
        if not trainer.is_main or trainer.console is None:
            return
        trainer.console.print(
            f"epoch {state.epoch + 1}/{trainer.cfg.epochs}: train loss {record['train_loss']:.4f} "
            f"acc {record['train_acc']:.4f} | val loss {record['val_loss']:.4f} acc {record['val_acc']:.4f}"
            + "".join(f" | {k} {record[f'{k}_val_acc']:.4f}" for k in trainer.extra_val)
            + f" | {record['seconds']:.0f}s"
        )


class TimeBudget(Callback):
    """Fit the run into ``cfg.time_budget`` minutes: after ``cfg.budget_epochs`` epochs, and again
    while at most half the planned epochs are done, set ``cfg.epochs`` to what fits at the pace of
    the last five epochs (at most the configured number). A plan is logged to ``log`` and written
    into the run's ``config.yaml`` (without the budget, so a rerun repeats one schedule of it)."""

    def __init__(self, log: MetricsLog):
        self.log = log
        self.planned, self.max_epochs, self.t0 = False, 0, 0.0

    def on_fit_start(self, trainer, state):
        self.planned, self.max_epochs, self.t0 = False, trainer.cfg.epochs, time.time()

    def on_epoch_end(self, trainer, state, record):
        cfg = trainer.cfg
        if state.epoch + 1 - state.start_epoch < max(1, cfg.budget_epochs) or \
                (self.planned and state.epoch + 1 > cfg.epochs / 2):
            return
        recent = [h["seconds"] for h in state.history[state.start_epoch:][-5:]]  # pace of this fit's epochs
        epochs = self._plan(trainer, state.epoch, time.time() - self.t0, sum(recent) / len(recent))
        if not self.planned or epochs != cfg.epochs:
            self.planned = True
            self._adopt(trainer, state.epoch, epochs)

    def _plan(self, trainer, epoch: int, elapsed: float, epoch_seconds: float) -> int:
        """Epochs that fit the budget (same on every rank: rank 0 decides), between ``epoch + 1``
        and the configured number."""
        left = trainer.cfg.time_budget * 60.0 - elapsed
        n = epoch + 1 + int(max(0.0, left) // max(1e-6, epoch_seconds))
        n = max(epoch + 1, min(self.max_epochs, n))
        if trainer.distributed:
            t = torch.tensor([n], dtype=torch.int64, device=trainer.device)
            torch.distributed.broadcast(t, 0)
            n = int(t)
        return n

    def _adopt(self, trainer, epoch: int, epochs: int) -> None:
        cfg = trainer.cfg
        if trainer.is_main:
            self.log.write({"type": "plan", "epoch": epoch, "epochs": epochs,
                            "configured_epochs": self.max_epochs, "time_budget_min": cfg.time_budget})
            self.log.file.flush()
            if trainer.console is not None:
                trainer.console.print(f"time budget {cfg.time_budget:g} min: {epochs} epochs (configured {self.max_epochs})")
            save_config(TrainConfig.from_dict({**cfg.to_dict(), "epochs": epochs, "time_budget": None}),
                        trainer.out / "config.yaml")
        cfg.epochs = epochs  # the learning-rate schedule and the epoch loop read it


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without a better validation accuracy."""

    def __init__(self, patience: int):
        self.patience = patience

    def on_epoch_end(self, trainer, state, record):
        if state.bad_epochs >= self.patience:
            if trainer.console is not None and trainer.is_main:
                trainer.console.print(f"early stop: no improvement for {state.bad_epochs} epochs")
            state.should_stop = True


class ProgressBar(Callback):
    """A rich progress bar over the run's iterations (rank 0, when ``cfg.progress``); its length
    follows ``cfg.epochs`` when a time budget changes it."""

    def __init__(self):
        self.bar, self.task = NoProgress(), 0

    def _total(self, trainer, state) -> int:
        return (trainer.cfg.epochs - state.start_epoch) * state.steps_per_epoch

    def on_fit_start(self, trainer, state):
        self.bar = progress_bar(trainer.console, enabled=trainer.cfg.progress and trainer.is_main, elapsed=True,
                                transient=False)
        self.bar.__enter__()
        self.task = self.bar.add_task("train", total=self._total(trainer, state))

    def on_step_end(self, trainer, state, step):
        if step.loss is None:
            self.bar.update(self.task, advance=1)
        else:
            self.bar.update(self.task, advance=1, description=f"epoch {step.epoch + 1}/{trainer.cfg.epochs} "
                                                               f"loss {step.loss:.3f}")

    def on_epoch_end(self, trainer, state, record):
        self.bar.update(self.task, total=self._total(trainer, state))

    def on_fit_end(self, trainer, state):
        self.bar.__exit__(None, None, None)
