"""The training engine: ``Trainer(TrainConfig).fit()``.

One loop for every experiment. The constructor only checks the config; :meth:`Trainer.setup`
(which :meth:`Trainer.fit` calls) reads the data and builds the model (:mod:`.setup`: data,
init, frozen parameters), optimizer and schedule (:mod:`.optim`), maybe resumed from
``last.pt``; then per epoch :meth:`Trainer.train_epoch` and :meth:`Trainer.validate`,
with the loss -- label smoothing, mixup / cutmix, class weights, knowledge distillation -- from
:mod:`.losses` and logging, checkpoints (exact resume), the time budget and early stopping as
callbacks (:mod:`.callbacks`). bf16 autocast + channels_last on CPU and AMP on CUDA, and DDP
when launched under ``torchrun`` (gloo on CPU, nccl on GPU).

Logs go to ``<out>/metrics.jsonl``: ``{"type": "iter", ...}`` per iteration (loss, lr) and
``{"type": "epoch", ...}`` per epoch (train / validation loss and accuracy, seconds).
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Sampler
from torch.utils.data.distributed import DistributedSampler

from ..data.augment import Augment
from ..data.fer2013 import FaceArrays
from ..data.torchdata import MixedEpochSampler, ShardedSampler, dist_info
from ..errors import WildferError
from ..jsonio import write_json
from ..models.classifier import mean_std, normalize_input, scale_pixels
from ..paths import check_output_dir
from .callbacks import (
    Callback,
    CallbackList,
    Checkpoints,
    EarlyStopping,
    EpochLines,
    MetricsLog,
    ProgressBar,
    Step,
    TimeBudget,
    TrainState,
)
from .config import TrainConfig, save_config
from .losses import (
    Batch,
    TrainingLoss,
    class_weight_vector,
    partial_distillation,
    soft_cross_entropy,
)
from .optim import LRSchedule, make_optimizer
from .setup import (  # noqa: F401 - importable from here too
    add_wild_data,
    build_model,
    cpu_bf16,
    freeze_parameters,
    init_from,
    load_training_data,
    RESUME_KEYS,
    resume_state,
    seed_everything,
    teacher_reads_its_own_faces,
)

__all__ = ["Trainer", "init_from", "load_training_data", "add_wild_data", "build_model", "resume_state",
           "RESUME_KEYS", "seed_everything",
           # the loss and optimizer pieces, importable from here too
           "LRSchedule", "make_optimizer", "class_weight_vector", "partial_distillation", "soft_cross_entropy"]


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """One training run of ``cfg``: ``Trainer(cfg).fit()``.

    Constructing a trainer checks the config and works out where it runs (rank, device), and
    nothing more: no data is read, no process group joined, nothing written. :meth:`setup`
    does the work once -- threads, the process group under ``torchrun``, the seed, the data
    (``train`` / ``val`` when given, else ``cfg``'s), the model, optimizer, schedule and loss,
    the state of ``last.pt`` with ``resume`` -- and :meth:`fit` calls it. After it the trainer
    has ``train_data``, ``val_data``, ``extra_val``, ``classes``, ``num_classes`` and ``state``.
    """

    def __init__(self, cfg: TrainConfig, *, train: FaceArrays | None = None, val: FaceArrays | None = None,
                 resume: bool = False, console=None):
        self.cfg = cfg
        self.resume = resume
        cfg.check()  # ranges, choices, model_kwargs and aug keys: before any data is read
        check_output_dir(cfg.out, "config key out=")
        if resume and not (Path(cfg.out) / "last.pt").exists():
            raise WildferError(f"{Path(cfg.out) / 'last.pt'}: nothing to resume (no last.pt in {cfg.out})")
        self.rank, self.local_rank, self.world = dist_info()
        self.distributed = self.world > 1
        self.is_main = self.rank == 0
        self.console = console
        if cfg.device == "auto":
            self.device = torch.device(f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(cfg.device if cfg.device != "cuda" else f"cuda:{self.local_rank}")
        self.norm = mean_std(cfg.preprocess())  # the architecture's input scaling
        self.out = Path(cfg.out)
        self.state: TrainState | None = None
        self._data_given = (train, val)
        self._owns_process_group = False
        if not self.is_main and console is not None and hasattr(console, "quiet"):
            console.quiet = True  # under DDP only rank 0 speaks (progress bar, epoch lines, the caller's summary)

    # -- setting up ---------------------------------------------------------------------------
    def setup(self) -> TrainState:
        """The state a fit starts from, made on the first call and returned by later ones: this
        process set up (:meth:`_setup_process`), the data read (:meth:`_setup_data`), then the
        model, optimizer and schedule (:meth:`_build_state`), wrapped in DDP under ``torchrun``,
        with the run's loss and augmentation."""
        if self.state is not None:
            return self.state
        self._setup_process()
        self._setup_data()
        state = self._build_state()
        state.net = state.model
        if self.distributed:
            state.net = nn.parallel.DistributedDataParallel(
                state.model, device_ids=[self.local_rank] if self.device.type == "cuda" else None)
        state.loss = self._make_loss()
        state.augment = Augment(**self.cfg.aug) if self.cfg.augment else None
        self.state = state
        return state

    def _setup_process(self) -> None:
        """Torch's threads, the process group under ``torchrun`` (gloo on CPU, nccl on GPU), the
        GPU, bf16 autocast on the CPU (:func:`~.setup.cpu_bf16`) and the seeds."""
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        if self.distributed and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend)
            self._owns_process_group = True
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
        self.cpu_bf16 = cpu_bf16(cfg.bf16, self.device.type == "cpu" and self.rank == 0)
        seed_everything(cfg.seed)

    def _setup_data(self) -> None:
        """The training and validation faces as the network reads them: the arrays given, else
        ``cfg``'s data set (:func:`~.setup.load_training_data`), at ``cfg.face_side()``, in
        colour with ``cfg.colour``, with ``cfg.wild_data``'s crops (:func:`~.setup.add_wild_data`)."""
        cfg = self.cfg
        train, val = self._data_given
        if train is None or val is None:
            tr, va = load_training_data(cfg)
            train = train if train is not None else tr
            val = val if val is not None else va
        side = cfg.face_side()  # FER2013's 48-pixel faces upsampled for a net that reads larger ones
        train, val = train.resized(side), val.resized(side)
        if cfg.colour:  # FER2013's grey faces as R = G = B beside the wild photos' colour
            train, val = train.in_colour(), val.in_colour()
        self.extra_val: dict[str, FaceArrays] = {}
        if cfg.wild_data:
            train, val, self.extra_val = add_wild_data(cfg, train, val)
        self.train_data, self.val_data = train, val
        self.classes = tuple(train.classes)
        self.num_classes = len(self.classes)

    # -- pieces -----------------------------------------------------------------------------
    def _batch_tensor(self, images: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images))
        if device is not None:
            x = x.to(device, non_blocking=True)  # uint8 over the bus: a quarter of the float bytes
        x = scale_pixels(x.float())
        return x.unsqueeze(1) if x.dim() == 3 else x  # grey N x H x W; colour faces are N x 3 x H x W

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_input(x, self.norm)

    def _autocast(self):
        if self.device.type == "cuda" and self.cfg.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if self.device.type == "cpu" and self.cpu_bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.no_grad()
    def _batch_logits(self, model: nn.Module, data: FaceArrays, idx: np.ndarray, batch_size: int = 256):
        """``(rows, float32 logits on the device)`` for ``data``'s un-augmented faces ``idx``, a batch at a time."""
        for i in range(0, len(idx), batch_size):
            b = idx[i : i + batch_size]
            x = self._prep(self._normalize(self._batch_tensor(data.images[b], self.device)))
            with self._autocast():
                logits = model(x)
            yield b, logits.float()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: FaceArrays, batch_size: int = 256) -> dict[str, float]:
        """Loss and accuracy on ``data`` (sharded across ranks, reduced)."""
        model.eval()
        idx = np.arange(self.rank, len(data), self.world)
        loss_sum, correct, count = 0.0, 0, 0
        for b, logits in self._batch_logits(model, data, idx, batch_size):
            y = torch.from_numpy(data.labels[b]).to(self.device)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
            count += len(b)
        t = torch.tensor([loss_sum, correct, count], dtype=torch.float64, device=self.device)
        if self.distributed:
            torch.distributed.all_reduce(t)
        loss_sum, correct, count = t.tolist()
        return {"loss": loss_sum / max(1, count), "acc": correct / max(1, count), "n": int(count)}


    # -- what setup builds --------------------------------------------------------------------
    def _build_state(self) -> TrainState:
        """The model (initialised from ``cfg.init``), optimizer, schedule and generator of a fit,
        and with ``resume`` the training state of ``last.pt``."""
        cfg = self.cfg
        model = build_model(cfg, self.num_classes).to(self.device)
        if cfg.init and not self.resume:
            self.init_report = init_from(model, cfg.init, self.classes, cfg.init_skip)
        freeze_parameters(model, cfg.freeze)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = make_optimizer(cfg, model.parameters())
        sampler = self._epoch_sampler()
        steps_per_epoch = math.ceil(len(sampler) / cfg.batch_size)
        if cfg.max_iters_per_epoch:
            steps_per_epoch = min(steps_per_epoch, cfg.max_iters_per_epoch)
        sched = LRSchedule(cfg, steps_per_epoch)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.rank)
        state = TrainState(model, opt, sched, gen, steps_per_epoch, sampler=sampler)
        if self.resume:
            state.start_epoch, state.best, state.history, state.bad_epochs = resume_state(
                self.out / "last.pt", cfg, model, opt, sched, gen, self.rank)
            state.epoch = state.start_epoch - 1
        return state

    def _epoch_sampler(self) -> Sampler[int]:
        """This rank's training rows of each epoch, from one order shared by every rank, padded to
        a multiple of the world size and sharded (``DistributedSampler``): a shuffle of every face
        seeded from ``(cfg.seed, epoch)``, or with ``cfg.wild_data`` the epoch's mix of FER2013
        and wild faces (:class:`~wildfer.data.torchdata.MixedEpochSampler`)."""
        cfg = self.cfg
        if cfg.wild_data:
            n_fer, n_wild = self.train_data.meta["parts"]
            mixed = MixedEpochSampler(n_fer, n_wild, cfg.wild_ratio, seed=cfg.seed)
            return ShardedSampler(mixed, self.rank, self.world)
        return DistributedSampler(range(len(self.train_data)), num_replicas=self.world, rank=self.rank,
                                  shuffle=True, seed=cfg.seed * 7919)

    def _make_loss(self) -> TrainingLoss:
        """The loss of this run, with ``cfg.teacher`` live or, with ``cfg.teacher_cache``, its
        logits for every training face computed once (then no mixup / cutmix: checks.check_config)."""
        cfg = self.cfg
        teacher = teacher_logits = None
        if cfg.teacher:
            from ..models.loader import load_model

            clf = load_model(cfg.teacher)
            if cfg.teacher_cache and cfg.wild_data and teacher_reads_its_own_faces(clf, cfg):
                teacher_logits = self._teacher_logits_own_views(clf)
            else:
                if clf.size != cfg.face_side():
                    raise WildferError(f"teacher {cfg.teacher} reads {clf.size}-pixel faces; this run's model reads "
                                       f"{cfg.face_side()} (model_kwargs input_size)")
                if clf.channels != (3 if cfg.colour else 1):
                    raise WildferError(f"teacher {cfg.teacher} reads {'colour' if clf.channels == 3 else 'grey'} "
                                       f"faces; this run trains on {'colour' if cfg.colour else 'grey'} ones "
                                       f"(config key colour)")
                net = clf.net.to(self.device).eval()
                if cfg.teacher_cache:  # kept on the CPU
                    rows = np.arange(len(self.train_data))
                    teacher_logits = torch.cat([lg.cpu() for _, lg in self._batch_logits(net, self.train_data, rows)])
                else:
                    teacher = functools.partial(self._teacher_logits, net)
        weights = class_weight_vector(self.train_data.labels, self.num_classes, cfg.class_weights)
        soft = self.train_data.soft if (cfg.dataset == "ferplus" and cfg.ferplus_soft) else None
        # learning without forgetting: on mixed epochs the teacher speaks for the FER2013 faces only
        teach_rows = self.train_data.meta["parts"][0] if cfg.wild_data and not cfg.teacher_on_wild else None
        return TrainingLoss(cfg, self.num_classes, self.train_data.labels, soft=soft,
                            weights=None if weights is None else weights.to(self.device),
                            teacher=teacher, teacher_logits=teacher_logits, teach_rows=teach_rows)

    def _teacher_logits_own_views(self, clf) -> torch.Tensor:
        """A cached teacher's log-probabilities for every training face, each face cut the way the
        teacher reads it: the wild faces again from their photos in each of its views (the crop
        cache serves them), FER2013's pre-cut faces as they are (every member resizes them)."""
        from ..wild.align import align_for
        from ..wild.crops import crop_manifest

        cfg = self.cfg
        n_fer, n_wild = self.train_data.meta["parts"]
        fer = np.ascontiguousarray(self.train_data.images[:n_fer])
        views = [crop_manifest(cfg.wild_data, split=cfg.wild_train_split, detector=cfg.wild_detector,
                               align=align_for(v), colour=not v.get("grayscale", True))
                 for v in clf.face_views]
        own_rows = self.train_data.rows[n_fer:] if self.train_data.rows is not None else None
        if any(len(v) != n_wild or (own_rows is not None and not np.array_equal(v.rows, own_rows)) for v in views):
            raise WildferError(f"teacher {cfg.teacher}: its crops of {cfg.wild_data} are not the training faces")
        wild = [v.images for v in views]
        parts = [clf.logits(fer[i : i + 256]) for i in range(0, n_fer, 256)]
        parts += [clf.logits([w[i : i + 256] for w in wild] if len(wild) > 1 else wild[0][i : i + 256])
                  for i in range(0, n_wild, 256)]
        return torch.log_softmax(torch.cat(parts).float(), dim=1)

    @torch.no_grad()
    def _teacher_logits(self, teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return teacher(x).float()

    def _callbacks(self) -> CallbackList:
        cfg = self.cfg
        log = MetricsLog(self.out / "metrics.jsonl", append=self.resume)
        callbacks: list[Callback] = [log, Checkpoints(self.out), EpochLines()]
        if cfg.time_budget:
            callbacks.append(TimeBudget(log))
        if cfg.early_stop:
            callbacks.append(EarlyStopping(cfg.early_stop))
        return CallbackList(callbacks + [ProgressBar()])

    # -- the loop -----------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train for ``cfg.epochs`` (or until a callback stops the run) from :meth:`setup`'s
        state; the run's summary."""
        state = self.setup()
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.out / "config.yaml")
        callbacks = self._callbacks()
        callbacks.on_fit_start(self, state)
        try:
            while state.epoch + 1 < self.cfg.epochs and not state.should_stop:
                state.epoch += 1
                t0 = time.time()
                train = self.train_epoch(state, callbacks)
                callbacks.on_epoch_end(self, state, self._end_epoch(state, train, self.validate(state), t0))
        finally:
            callbacks.on_fit_end(self, state)
        return self._summary(state)

    def _epoch_rows(self, state: TrainState) -> np.ndarray:
        """This rank's training rows of ``state.epoch`` (see :meth:`_epoch_sampler`)."""
        state.sampler.set_epoch(state.epoch)
        return np.fromiter(state.sampler, dtype=np.int64, count=len(state.sampler))

    def train_epoch(self, state: TrainState, callbacks: Callback) -> dict[str, float]:
        """One epoch of optimizer steps; training loss and accuracy over every rank."""
        cfg = self.cfg
        state.net.train()
        rows = self._epoch_rows(state)
        # running sums stay on the device: on a GPU the loop reads a number back (a sync)
        # only every log_every iterations; on a CPU every step (free there)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        count = 0
        for it in range(state.steps_per_epoch):
            b = rows[it * cfg.batch_size : (it + 1) * cfg.batch_size]
            if len(b) == 0:
                break
            step = Step(state.epoch, it, state.epoch * state.steps_per_epoch + it, 0.0, None)
            loss, logits = self._train_step(state, step, b)
            loss_sum += loss.detach().double() * len(b)
            labels = torch.from_numpy(self.train_data.labels[b]).to(self.device, non_blocking=True)
            correct += (logits.detach().argmax(1) == labels).sum()
            count += len(b)
            callbacks.on_step_end(self, state, step)
        total = float(loss_sum)
        if not math.isfinite(total):
            raise WildferError(f"loss became {total} in epoch {state.epoch}; lower lr={cfg.lr}")
        stats = torch.tensor([total, float(correct), count], dtype=torch.float64, device=self.device)
        if self.distributed:
            torch.distributed.all_reduce(stats)
        total, right, n = stats.tolist()
        return {"loss": total / max(1, n), "acc": right / max(1, n)}

    def _train_step(self, state: TrainState, step: Step, b: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on the training rows ``b``; fills ``step``'s lr and loss; ``(loss, logits)``."""
        cfg, on_gpu = self.cfg, self.device.type == "cuda"
        step.lr = state.schedule(step.step)
        for g in state.optimizer.param_groups:
            g["lr"] = step.lr
        x = self._batch_tensor(self.train_data.images[b], self.device if on_gpu else None)  # augmented on a GPU there
        if state.augment is not None:
            x = state.augment(x, state.generator)
        x, y = state.loss.targets(b, self._normalize(x), state.generator)
        batch = Batch(b, self._prep(x), y.to(self.device))
        with self._autocast():
            logits = state.net(batch.x)
        logits = logits.float()
        loss = state.loss(logits, batch)
        if not on_gpu or step.iteration % max(1, cfg.log_every) == 0 or step.iteration == state.steps_per_epoch - 1:
            step.loss = float(loss.detach())
            if not math.isfinite(step.loss):
                raise WildferError(f"loss became {step.loss} at epoch {step.epoch} iteration {step.iteration}; "
                                   f"lower lr={cfg.lr}")
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(state.net.parameters(), cfg.grad_clip)
        state.optimizer.step()
        return loss, logits

    def validate(self, state: TrainState) -> dict[str, float]:
        """``val_loss`` and ``val_acc`` on the validation split (NaN without one), ``<name>_val_acc``
        on each extra split; steps a plateau schedule."""
        if len(self.val_data):
            val = self.evaluate(state.model, self.val_data)
        else:
            val = {"loss": float("nan"), "acc": float("nan"), "n": 0}
        state.schedule.epoch_end(val["acc"])
        return {"val_loss": val["loss"], "val_acc": val["acc"],
                **{f"{name}_val_acc": self.evaluate(state.model, data)["acc"] for name, data in self.extra_val.items()}}

    def _end_epoch(self, state: TrainState, train: dict, val: dict, t0: float) -> dict[str, Any]:
        """The epoch's record, added to the history; the best accuracy and the epochs without it."""
        spe = state.steps_per_epoch
        rec = {"type": "epoch", "epoch": state.epoch, "train_loss": train["loss"], "train_acc": train["acc"],
               "val_loss": val["val_loss"], "val_acc": val["val_acc"], "lr": state.schedule(max(0, (state.epoch + 1) * spe - 1)),
               "seconds": round(time.time() - t0, 2), "world_size": self.world, **val}
        state.history.append(rec)
        state.improved = rec["val_acc"] > state.best
        if state.improved:
            state.best, state.bad_epochs = rec["val_acc"], 0
        else:
            state.bad_epochs += 1
        return rec

    def _summary(self, state: TrainState) -> dict[str, Any]:
        """The run's summary (rank 0 writes ``summary.json``); under DDP, the end of the process group."""
        summary = {"best_val_acc": state.best, "epochs_run": len(state.history), "history": state.history,
                   "out": str(self.out), "world_size": self.world, "rank": self.rank}
        if self.is_main:
            write_json(self.out / "summary.json", summary)
        if self.distributed:
            torch.distributed.barrier()  # rank 0 has written its files before anyone returns
            if self._owns_process_group:
                torch.distributed.destroy_process_group()
        return summary
