"""The training engine: ``Trainer(TrainConfig).fit()``.

One loop for every experiment: optimizers (sgd, momentum, nesterov, rmsprop, adam, adamw),
per-iteration LR schedules with warm-up (step, cosine, plateau, one-cycle), label smoothing,
mixup / cutmix, class weights, knowledge distillation, early stopping on the validation
split, a checkpoint every epoch with exact resume, bf16 autocast + channels_last on CPU and
AMP on CUDA, and DDP when launched under ``torchrun`` (gloo on CPU, nccl on GPU).

Logs go to ``<out>/metrics.jsonl``: ``{"type": "iter", ...}`` per iteration (loss, lr) and
``{"type": "epoch", ...}`` per epoch (train / validation loss and accuracy, seconds).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.augment import Augment, mixup_cutmix
from ..data.fer2013 import FaceArrays
from ..errors import WildferError
from ..labels import FER2013_CLASSES
from ..models.loader import DEFAULT_PREPROCESS, save_checkpoint
from ..models.registry import create_model
from ..paths import check_output_dir
from .config import TrainConfig, save_config


# ----------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def dist_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment (0, 0, 1 otherwise)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def load_training_data(cfg: TrainConfig) -> tuple[FaceArrays, FaceArrays]:
    """Training and validation arrays for ``cfg.dataset`` (fer2013 or ferplus)."""
    if cfg.dataset == "fer2013":
        from ..data.fer2013 import load_fer2013

        full = load_fer2013(cfg.data)
    elif cfg.dataset == "ferplus":
        from ..data.ferplus import load_ferplus

        if not cfg.ferplus_labels:
            raise WildferError("dataset 'ferplus' needs ferplus_labels=PATH/fer2013new.csv")
        full = load_ferplus(cfg.data, cfg.ferplus_labels)
    else:
        raise WildferError(f"unknown dataset {cfg.dataset!r} (fer2013 | ferplus)")
    train, val = full.split(cfg.train_split), full.split(cfg.val_split)
    if len(train) == 0:
        raise WildferError(f"{cfg.data}: no rows with usage {cfg.train_split!r}")
    if cfg.subset:
        train = train.subset(np.arange(min(cfg.subset, len(train))))
    if cfg.val_subset:
        val = val.subset(np.arange(min(cfg.val_subset, len(val))))
    return train, val


def add_wild_data(cfg: TrainConfig, train: FaceArrays, val: FaceArrays) -> tuple[FaceArrays, FaceArrays, dict[str, FaceArrays]]:
    """``(train, val, extra_val)`` with ``cfg.wild_data``'s crops: its training split after
    ``train``'s faces, its validation split as ``val`` (and the old ``val`` as ``extra_val["fer"]``)."""
    from ..wild.crops import crop_manifest

    if tuple(train.classes) != FER2013_CLASSES:
        raise WildferError(f"wild_data has FER2013's 7 classes; dataset {cfg.dataset!r} has {len(train.classes)}")
    wild = crop_manifest(cfg.wild_data, split=cfg.wild_train_split, detector=cfg.wild_detector)
    if len(wild) == 0:
        raise WildferError(f"{cfg.wild_data}: no usable faces in split {cfg.wild_train_split!r}")
    extra: dict[str, FaceArrays] = {}
    if cfg.wild_val_split:
        extra["fer"] = val
        val = crop_manifest(cfg.wild_data, split=cfg.wild_val_split, detector=cfg.wild_detector)
    return FaceArrays.concat(train, wild), val, extra


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


def class_weight_vector(labels: np.ndarray, num_classes: int, mode: str | None) -> torch.Tensor | None:
    if not mode:
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64) + 1.0
    w = counts.sum() / (num_classes * counts)
    if mode == "sqrt":
        w = np.sqrt(w)
    elif mode != "balanced":
        raise WildferError(f"unknown class_weights {mode!r} (balanced | sqrt)")
    return torch.tensor(w / w.mean(), dtype=torch.float32)


# ----------------------------------------------------------------------------- init


def init_from(model: nn.Module, source: str, classes: tuple[str, ...] | None = None) -> dict[str, list[str]]:
    """Copy the weights of ``source`` (checkpoint, run folder or built-in name) into ``model``.

    Fine-tuning across label sets is the point: tensors whose name or shape does not match keep
    their fresh initialisation, except the per-class rows of the output layer when ``classes``
    (the new model's) and the source's share class names: those rows are copied by name (FER+'s
    8 classes -> FER2013's 7 keeps every class but contempt; listed as ``mapped``). A source of
    another architecture, where almost nothing matches, is a user mistake and says so.
    Returns the names that were ``loaded``, ``mapped`` and ``skipped``.
    """
    from ..models.loader import load_model

    clf = load_model(source)
    src = clf.net.state_dict()
    own = model.state_dict()
    loaded = [k for k, v in src.items() if k in own and own[k].shape == v.shape]
    n_params = sum(v.numel() for k, v in own.items() if k in loaded)
    if n_params < 0.5 * sum(v.numel() for v in own.values()):
        raise WildferError(
            f"init={source}: only {len(loaded)} of {len(own)} tensors match this model; "
            "is it the same architecture (see `wildfer models info`)?"
        )
    state = {k: src[k].to(own[k].dtype) for k in loaded}
    mapped = []
    if classes is not None and tuple(clf.classes) != tuple(classes):
        rows = {c: i for i, c in enumerate(clf.classes)}
        shared = [(i, rows[c]) for i, c in enumerate(classes) if c in rows]
        for k, v in src.items():
            mine = own.get(k)
            if (k in state or mine is None or not shared or v.dim() == 0 or mine.shape[1:] != v.shape[1:]
                    or v.shape[0] != len(clf.classes) or mine.shape[0] != len(classes)):
                continue
            t = mine.clone()
            for i, j in shared:
                t[i] = v[j].to(t.dtype)
            state[k] = t
            mapped.append(k)
    model.load_state_dict(state, strict=False)
    return {"loaded": loaded, "mapped": mapped, "skipped": sorted(set(own) - set(loaded) - set(mapped))}


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The network ``cfg`` trains; a :class:`WildferError` for ``model_kwargs`` it cannot be built with."""
    from ..models.loader import one_line

    try:
        return create_model(cfg.model, num_classes=num_classes, **_kw(cfg.model_kwargs))
    except (TypeError, ValueError, RuntimeError) as e:
        raise WildferError(f"model={cfg.model} with model_kwargs={cfg.model_kwargs}: cannot be built ({one_line(e)})") from None


#: what a ``last.pt`` holds beyond a model's weights, for ``--resume``
RESUME_KEYS = ("optimizer", "schedule", "epoch", "best", "generator")


def resume_state(last: Path, cfg: TrainConfig, model: nn.Module, opt: torch.optim.Optimizer, sched: LRSchedule,
                 gen: torch.Generator, rank: int = 0) -> tuple[int, float, list, int]:
    """Load ``last`` (a checkpoint written by this loop) into ``model``, ``opt``, ``sched`` and
    ``gen``; ``(start_epoch, best, history, bad_epochs)``. Anything else -- not a checkpoint, the
    weights of another model, a checkpoint without training state -- is one :class:`WildferError`
    naming the file and the problem."""
    from ..models.loader import one_line, read_checkpoint

    ck = read_checkpoint(last)  # torch.load(weights_only=True); names the file and the reason
    missing = [k for k in RESUME_KEYS if k not in ck]
    if missing:
        raise WildferError(f"{last}: a checkpoint without training state ({', '.join(missing)} missing): "
                           "it cannot be resumed (start a fresh run, or init= from it)")
    if ck["arch"] != cfg.model:
        raise WildferError(f"{last}: a checkpoint of model {ck['arch']!r}; this run trains {cfg.model!r}")
    saved = ck.get("config") if isinstance(ck.get("config"), dict) else {}
    if isinstance(saved.get("optimizer"), str) and saved["optimizer"].lower() != cfg.optimizer.lower():
        raise WildferError(f"{last}: holds the state of optimizer={saved['optimizer']}; this run uses "
                           f"optimizer={cfg.optimizer} (resume with the same optimizer, or start a fresh run)")
    try:
        model.load_state_dict(ck["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise WildferError(f"{last}: weights do not fit model {cfg.model!r} with model_kwargs={cfg.model_kwargs} "
                           f"(saved with {ck.get('model_kwargs')}): {one_line(e)}") from None
    try:
        opt.load_state_dict(ck["optimizer"])
        sched.load(ck["schedule"])
        start_epoch, best = int(ck["epoch"]) + 1, float(ck["best"])
        history, bad_epochs = list(ck.get("history", [])), int(ck.get("bad_epochs", 0))
        gens = ck["generator"]
        gen.set_state(gens[rank] if rank < len(gens) else gens[0])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
        raise WildferError(f"{last}: training state does not fit this run's optimizer={cfg.optimizer} "
                           f"({type(e).__name__}: {one_line(e)})") from None
    return start_epoch, best, history, bad_epochs


# ----------------------------------------------------------------------------- trainer


class Trainer:
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
        self.console = console
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        if cfg.device == "auto":
            self.device = torch.device(f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(cfg.device if cfg.device != "cuda" else f"cuda:{self.local_rank}")
        self._owns_process_group = False
        if self.distributed and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend)
            self._owns_process_group = True
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True  # fixed 48x48 shapes: let cuDNN pick its fastest kernels
        seed_everything(cfg.seed)
        if train is None or val is None:
            tr, va = load_training_data(cfg)
            train = train if train is not None else tr
            val = val if val is not None else va
        self.extra_val: dict[str, FaceArrays] = {}
        if cfg.wild_data:
            train, val, self.extra_val = add_wild_data(cfg, train, val)
        self.train_data, self.val_data = train, val
        self.classes = tuple(train.classes)
        self.num_classes = len(self.classes)
        self.out = Path(cfg.out)
        self.is_main = self.rank == 0
        if not self.is_main and console is not None and hasattr(console, "quiet"):
            console.quiet = True  # under DDP only rank 0 speaks (progress bar, epoch lines, the caller's summary)

    # -- pieces -----------------------------------------------------------------------------
    def _batch_tensor(self, images: np.ndarray, device: torch.device | None = None) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images))
        if device is not None:
            x = x.to(device, non_blocking=True)  # uint8 over the bus: a quarter of the float bytes
        return x.float().div_(255.0).unsqueeze(1)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - DEFAULT_PREPROCESS["mean"]) / DEFAULT_PREPROCESS["std"]

    def _autocast(self):
        if self.device.type == "cuda" and self.cfg.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        if self.device.type == "cpu" and self.cfg.bf16:
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

    def _plan_epochs(self, epoch: int, elapsed: float, epoch_seconds: float, max_epochs: int) -> int:
        """Epochs that fit ``cfg.time_budget`` minutes at ``epoch_seconds`` per epoch (same on
        every rank: rank 0 decides), between ``epoch + 1`` and ``max_epochs``."""
        cfg = self.cfg
        left = cfg.time_budget * 60.0 - elapsed
        n = epoch + 1 + int(max(0.0, left) // max(1e-6, epoch_seconds))
        n = max(epoch + 1, min(max_epochs, n))
        if self.distributed:
            t = torch.tensor([n], dtype=torch.int64, device=self.device)
            torch.distributed.broadcast(t, 0)
            n = int(t)
        return n

    def _replan(self, log, epoch: int, new_epochs: int, configured: int) -> None:
        """Adopt a time-budget plan: log it, rewrite the run's config.yaml with that length
        (and no budget, so a rerun repeats one schedule of it), and set ``cfg.epochs``, which the
        learning-rate schedule and the epoch loop read."""
        cfg = self.cfg
        if self.is_main:
            log.write(json.dumps({"type": "plan", "epoch": epoch, "epochs": new_epochs,
                                  "configured_epochs": configured, "time_budget_min": cfg.time_budget}) + "\n")
            log.flush()
            if self.console is not None:
                self.console.print(f"time budget {cfg.time_budget:g} min: {new_epochs} epochs (configured {configured})")
            save_config(TrainConfig.from_dict({**cfg.to_dict(), "epochs": new_epochs, "time_budget": None}),
                        self.out / "config.yaml")
        cfg.epochs = new_epochs

    # -- main loop --------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        model = build_model(cfg, self.num_classes).to(self.device)
        if cfg.init and not self.resume:
            self.init_report = init_from(model, cfg.init, self.classes)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = make_optimizer(cfg, model.parameters())
        sampler = None
        if cfg.wild_data:
            from ..data.torchdata import MixedEpochSampler

            n_fer, n_wild = self.train_data.meta["parts"]
            sampler = MixedEpochSampler(n_fer, n_wild, cfg.wild_ratio, seed=cfg.seed)
        n_train = len(sampler) if sampler is not None else len(self.train_data)
        per_rank = math.ceil(n_train / self.world)
        steps_per_epoch = math.ceil(per_rank / cfg.batch_size)
        if cfg.max_iters_per_epoch:
            steps_per_epoch = min(steps_per_epoch, cfg.max_iters_per_epoch)
        sched = LRSchedule(cfg, steps_per_epoch)
        start_epoch, best, history, bad_epochs = 0, -1.0, [], 0
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.rank)

        last = self.out / "last.pt"
        if self.resume:
            start_epoch, best, history, bad_epochs = resume_state(last, cfg, model, opt, sched, gen, self.rank)

        net = model
        if self.distributed:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.local_rank] if self.device.type == "cuda" else None
            )
        teacher = None
        if cfg.teacher:
            from ..models.loader import load_model

            teacher = load_model(cfg.teacher).net.to(self.device).eval()
        teacher_logits = None
        if teacher is not None and cfg.teacher_cache:  # (no mixup / cutmix then: checks.check_config)
            # the teacher's logits for every training face, once (kept on the CPU)
            teacher_logits = torch.cat([lg.cpu() for _, lg in self._batch_logits(
                teacher, self.train_data, np.arange(len(self.train_data)))])
            teacher = None
        weights = class_weight_vector(self.train_data.labels, self.num_classes, cfg.class_weights)
        if weights is not None:
            weights = weights.to(self.device)
        aug = Augment(**cfg.aug) if cfg.augment else None
        soft_labels = self.train_data.soft if (cfg.dataset == "ferplus" and cfg.ferplus_soft) else None

        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out / "config.yaml")
        # a fresh run starts a fresh log; a resumed one appends
        log = open(self.out / "metrics.jsonl", "a" if self.resume else "w") if self.is_main else None
        progress = _progress(cfg.progress and self.is_main, self.console)
        summary: dict[str, Any] = {}
        try:
            with progress:
                task = progress.add_task("train", total=(cfg.epochs - start_epoch) * steps_per_epoch)
                fit_t0, planned, max_epochs = time.time(), False, cfg.epochs
                # running sums stay on the device: on a GPU the loop reads a number back (a sync)
                # only every log_every iterations; on a CPU every step (free there), as before
                on_gpu = self.device.type == "cuda"
                epoch = start_epoch - 1
                while epoch + 1 < cfg.epochs:
                    epoch += 1
                    t0 = time.time()
                    net.train()
                    # same permutation on every rank, then each takes its shard (DistributedSampler semantics)
                    if sampler is not None:
                        sampler.set_epoch(epoch)
                        perm = np.fromiter(sampler, dtype=np.int64, count=n_train)
                    else:
                        perm_gen = torch.Generator().manual_seed(cfg.seed * 7919 + epoch)
                        perm = torch.randperm(n_train, generator=perm_gen).numpy()
                    if self.world > 1:
                        pad = per_rank * self.world - n_train
                        perm = np.concatenate([perm, perm[:pad]])[self.rank :: self.world]
                    tl_t = torch.zeros((), dtype=torch.float64, device=self.device)
                    tc_t = torch.zeros((), dtype=torch.int64, device=self.device)
                    tn = 0
                    for it in range(steps_per_epoch):
                        b = perm[it * cfg.batch_size : (it + 1) * cfg.batch_size]
                        if len(b) == 0:
                            break
                        step = epoch * steps_per_epoch + it
                        lr = sched(step)
                        for g in opt.param_groups:
                            g["lr"] = lr
                        # on a GPU the batch is augmented there
                        x = self._batch_tensor(self.train_data.images[b], self.device if on_gpu else None)
                        if aug is not None:
                            x = aug(x, gen)
                        x = self._normalize(x)
                        y_idx = torch.from_numpy(self.train_data.labels[b])
                        if soft_labels is not None:
                            y = torch.from_numpy(soft_labels[b]).float()
                        else:
                            y = F.one_hot(y_idx, self.num_classes).float()
                        y = y.to(x.device)
                        if cfg.mixup > 0 or cfg.cutmix > 0:
                            x, y = mixup_cutmix(x, y, self.num_classes, cfg.mixup, cfg.cutmix, gen)
                        x = self._prep(x)
                        y = y.to(self.device)
                        with self._autocast():
                            logits = net(x)
                        logits = logits.float()
                        loss = soft_cross_entropy(logits, y, cfg.label_smoothing, weights)
                        if teacher is not None or teacher_logits is not None:
                            if teacher_logits is not None:
                                tlog = teacher_logits[torch.from_numpy(b)].to(self.device, non_blocking=True)
                            else:
                                with torch.no_grad(), self._autocast():
                                    tlog = teacher(x).float()
                            T = cfg.distill_temperature
                            if sampler is not None and not cfg.teacher_on_wild:
                                # learning without forgetting: the teacher speaks for the FER2013 faces only
                                teach = torch.from_numpy(b < sampler.n_a).to(self.device)
                                loss = partial_distillation(logits, y, tlog, teach, cfg, weights)
                            else:
                                kd = F.kl_div(F.log_softmax(logits / T, 1), F.softmax(tlog / T, 1), reduction="batchmean")
                                loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * kd * T * T
                        sync = not on_gpu or it % max(1, cfg.log_every) == 0 or it == steps_per_epoch - 1
                        lv = float(loss.detach()) if sync else None
                        if lv is not None and not math.isfinite(lv):
                            raise WildferError(f"loss became {lv} at epoch {epoch} iteration {it}; lower lr={cfg.lr}")
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        if cfg.grad_clip:
                            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                        opt.step()
                        tl_t += loss.detach().double() * len(b)
                        tc_t += (logits.detach().argmax(1) == y_idx.to(self.device, non_blocking=True)).sum()
                        tn += len(b)
                        if log and (it % max(1, cfg.log_every) == 0):
                            log.write(json.dumps({"type": "iter", "epoch": epoch, "iter": step, "loss": round(lv, 5),
                                                  "lr": lr}) + "\n")
                        if lv is not None:
                            progress.update(task, advance=1, description=f"epoch {epoch + 1}/{cfg.epochs} loss {lv:.3f}")
                        else:
                            progress.update(task, advance=1)
                    tl = float(tl_t)
                    if not math.isfinite(tl):
                        raise WildferError(f"loss became {tl} in epoch {epoch}; lower lr={cfg.lr}")
                    train_stats = torch.tensor([tl, float(tc_t), tn], dtype=torch.float64, device=self.device)
                    if self.distributed:
                        torch.distributed.all_reduce(train_stats)
                    tl, tc, tn = train_stats.tolist()
                    val = self.evaluate(model, self.val_data) if len(self.val_data) else {"loss": float("nan"), "acc": float("nan"), "n": 0}
                    sched.epoch_end(val["acc"])
                    rec = {
                        "type": "epoch", "epoch": epoch, "train_loss": tl / max(1, tn), "train_acc": tc / max(1, tn),
                        "val_loss": val["loss"], "val_acc": val["acc"], "lr": sched(max(0, (epoch + 1) * steps_per_epoch - 1)),
                        "seconds": round(time.time() - t0, 2), "world_size": self.world,
                    }
                    for name, data in self.extra_val.items():
                        rec[f"{name}_val_acc"] = self.evaluate(model, data)["acc"]
                    history.append(rec)
                    improved = val["acc"] > best
                    if improved:
                        best, bad_epochs = val["acc"], 0
                    else:
                        bad_epochs += 1
                    # every rank's augmentation stream, so that --resume continues each exactly
                    gen_states = _gather_generator_states(gen, self.distributed, self.world)
                    if self.is_main:
                        log.write(json.dumps(rec) + "\n")
                        log.flush()
                        common = dict(arch=cfg.model, model_kwargs=cfg.model_kwargs, classes=self.classes,
                                      preprocess=DEFAULT_PREPROCESS, epoch=epoch, metrics=_clean(rec),
                                      config=_clean(cfg.to_dict()))
                        if improved:
                            save_checkpoint(self.out / "best.pt", model, **common)
                        if cfg.keep_epoch_checkpoints:
                            save_checkpoint(self.out / f"epoch_{epoch + 1:03d}.pt", model, **common)
                        save_checkpoint(last, model, **common, optimizer=opt.state_dict(), schedule=sched.state(),
                                        best=best, bad_epochs=bad_epochs, history=[_clean(h) for h in history],
                                        generator=gen_states)
                        if self.console is not None:
                            self.console.print(
                                f"epoch {epoch + 1}/{cfg.epochs}: train loss {rec['train_loss']:.4f} acc {rec['train_acc']:.4f} | "
                                f"val loss {val['loss']:.4f} acc {val['acc']:.4f}"
                                + "".join(f" | {k} {rec[f'{k}_val_acc']:.4f}" for k in self.extra_val)
                                + f" | {rec['seconds']:.0f}s"
                            )
                    if cfg.time_budget and epoch + 1 - start_epoch >= max(1, cfg.budget_epochs) \
                            and (not planned or epoch + 1 <= cfg.epochs / 2):
                        recent = [h["seconds"] for h in history[start_epoch:][-5:]]  # pace of this fit's epochs
                        new_epochs = self._plan_epochs(epoch, time.time() - fit_t0, sum(recent) / len(recent),
                                                       max_epochs)
                    else:
                        new_epochs = None
                    if new_epochs is not None and (not planned or new_epochs != cfg.epochs):
                        planned = True
                        self._replan(log, epoch, new_epochs, max_epochs)
                        progress.update(task, total=(cfg.epochs - start_epoch) * steps_per_epoch)
                    if cfg.early_stop and bad_epochs >= cfg.early_stop:
                        if self.console is not None and self.is_main:
                            self.console.print(f"early stop: no improvement for {bad_epochs} epochs")
                        break
        finally:
            if log:
                log.close()
        summary = {"best_val_acc": best, "epochs_run": len(history), "history": history, "out": str(self.out),
                   "world_size": self.world, "rank": self.rank}
        if self.is_main:
            (self.out / "summary.json").write_text(json.dumps(_clean(summary), indent=2))
        if self.distributed:
            torch.distributed.barrier()  # rank 0 has written its files before anyone returns
            if self._owns_process_group:
                torch.distributed.destroy_process_group()
        return summary


def _gather_generator_states(gen: torch.Generator, distributed: bool, world: int) -> list[torch.Tensor]:
    """The augmentation generator state of every rank (rank order), for exact resume."""
    state = gen.get_state()
    if not distributed:
        return [state]
    states: list = [None] * world
    torch.distributed.all_gather_object(states, state)
    return [torch.as_tensor(s) for s in states]


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


def _kw(d: dict) -> dict:
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in (d or {}).items()}


def _clean(obj):
    """Make a structure safe for weights_only loading / JSON (floats, ints, str, lists, dicts)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass


def _progress(enabled: bool, console=None):
    if not enabled:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=False)
