"""What a training run is set up from: data (FER2013 and the wild faces), the network and the
weights it starts from (``init``, frozen parameters, a teacher's views), bf16 on the CPU, and the
state a resumed run reads back. :class:`wildfer.train.engine.Trainer` builds on these."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..data.fer2013 import FaceArrays
from ..data.paths import data_path
from ..errors import WildferError
from ..labels import FER2013_CLASSES
from ..models.registry import create_model
from .config import TrainConfig
from .optim import LRSchedule

# ----------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def load_training_data(cfg: TrainConfig) -> tuple[FaceArrays, FaceArrays]:
    """Training and validation arrays for ``cfg.dataset`` (fer2013 or ferplus), through
    :func:`wildfer.data.load_dataset` and its split rule (``train`` / ``Training``, ``val`` /
    ``PublicTest`` ...); a split the data lacks is a :class:`~wildfer.errors.DataError`.
    Every face of ``cfg.extra_train_data`` follows the training split's (same classes, resized to
    its faces), ``cfg.extra_train_repeat`` times."""
    from ..data import load_dataset
    from ..data.formats import select_split

    if cfg.dataset not in ("fer2013", "ferplus"):
        raise WildferError(f"unknown dataset {cfg.dataset!r} (fer2013 | ferplus)")
    if cfg.dataset == "ferplus" and not cfg.ferplus_labels:
        raise WildferError("dataset 'ferplus' needs ferplus_labels=PATH/fer2013new.csv")
    ferplus = cfg.dataset == "ferplus"
    full = load_dataset(cfg.data, dataset=cfg.dataset, labels=cfg.ferplus_labels if ferplus else None,
                        classes=cfg.ferplus_classes if ferplus else None)
    train, val = select_split(full, cfg.train_split), select_split(full, cfg.val_split)
    if cfg.subset:
        train = train.subset(np.arange(min(cfg.subset, len(train))))
    extra = [load_dataset(p) for p in cfg.extra_train_data]
    for p, part in zip(cfg.extra_train_data, extra):
        if tuple(part.classes) != tuple(train.classes):
            raise WildferError(f"extra_train_data {p}: classes {list(part.classes)}, the training data's are "
                               f"{list(train.classes)}")
    if extra:
        side = train.images.shape[-1]
        resized = [part.resized(side) for part in extra]  # once per data set, then repeated
        train = FaceArrays.concat(train, *(part for part in resized for _ in range(cfg.extra_train_repeat)))
    if cfg.val_subset:
        val = val.subset(np.arange(min(cfg.val_subset, len(val))))
    return train, val


def add_wild_data(cfg: TrainConfig, train: FaceArrays, val: FaceArrays) -> tuple[FaceArrays, FaceArrays, dict[str, FaceArrays]]:
    """``(train, val, extra_val)`` with ``cfg.wild_data``'s crops: its training split after
    ``train``'s faces, its validation split as ``val`` (and the old ``val`` as ``extra_val["fer"]``),
    cut at ``cfg.face_side()`` pixels from the photos (in colour with ``cfg.colour``)."""
    from ..wild.align import align_for
    from ..wild.crops import crop_manifest

    if tuple(train.classes) != FER2013_CLASSES:
        raise WildferError(f"wild_data has FER2013's 7 classes; dataset {cfg.dataset!r} has {len(train.classes)}")
    align = align_for(cfg.preprocess())
    wild = crop_manifest(cfg.wild_data, split=cfg.wild_train_split, detector=cfg.wild_detector, align=align,
                         colour=cfg.colour)
    if len(wild) == 0:
        raise WildferError(f"{cfg.wild_data}: no usable faces in split {cfg.wild_train_split!r}")
    extra: dict[str, FaceArrays] = {}
    if cfg.wild_val_split:
        extra["fer"] = val
        val = crop_manifest(cfg.wild_data, split=cfg.wild_val_split, detector=cfg.wild_detector, align=align,
                            colour=cfg.colour)
    return FaceArrays.concat(train, wild), val, extra


# ----------------------------------------------------------------------------- init


def init_from(model: nn.Module, source: str, classes: tuple[str, ...] | None = None,
              skip: list[str] | tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Copy the weights of ``source`` (checkpoint, run folder or built-in name) into ``model``.

    Fine-tuning across label sets is the point: tensors whose name or shape does not match keep
    their fresh initialisation, except a grey net's first convolution in a colour one
    (:func:`grey_to_colour`) and the per-class rows of the output layer when ``classes``
    (the new model's) and the source's share class names: those rows are copied by name (FER+'s
    8 classes -> FER2013's 7 keeps every class but contempt; listed as ``mapped``). Tensors whose
    names start with one of the ``skip`` prefixes are not copied at all (``["fc."]``: a fresh
    head on the source's trunk); a prefix that names no tensor of the model is an error. A source
    of another architecture, where almost nothing matches, is a user mistake and says so.
    Returns the names that were ``loaded``, ``mapped`` and ``skipped``.
    """
    from ..models.loader import builtin_names, load_model

    # a relative path may live under $WILDFER_DATA; a built-in name is that model, even where
    # $WILDFER_DATA has a folder of the same name (its "wild" photos beside the model "wild")
    builtin = source in builtin_names() and not Path(source).exists()
    clf = load_model(source if builtin else str(data_path(source)))
    own, skip = model.state_dict(), tuple(skip)
    for prefix in skip:
        if not any(k.startswith(prefix) for k in own):
            raise WildferError(f"init_skip: {prefix!r} names no tensor of {getattr(model, 'wildfer_name', 'the model')}")
    src = {k: v for k, v in clf.net.state_dict().items() if not k.startswith(skip)}
    loaded = [k for k, v in src.items() if k in own and own[k].shape == v.shape]
    n_params = sum(v.numel() for k, v in own.items() if k in loaded)
    if n_params < 0.5 * sum(v.numel() for k, v in own.items() if not k.startswith(skip)):
        raise WildferError(
            f"init={source}: only {len(loaded)} of {len(own)} tensors match this model; "
            "is it the same architecture (see `wildfer models info`)?"
        )
    state = {k: src[k].to(own[k].dtype) for k in loaded}
    for k in grey_to_colour(src, own, loaded):  # a grey net's first convolution, spread over R, G and B
        state[k] = (src[k] / 3.0).expand_as(own[k]).to(own[k].dtype).clone()
        loaded.append(k)
    mapped = []
    if classes is not None and tuple(clf.classes) != tuple(classes):
        rows = {c: i for i, c in enumerate(clf.classes)}
        shared = [(i, rows[c]) for i, c in enumerate(classes) if c in rows]
        for k in output_layer(src, len(clf.classes)):
            v, mine = src[k], own.get(k)
            if mine is None or not shared or mine.shape[1:] != v.shape[1:] or mine.shape[0] != len(classes):
                continue
            t = mine.clone()
            for i, j in shared:
                t[i] = v[j].to(t.dtype)
            state[k] = t
            if k in loaded:  # same shape, other class order: the rows move by name, not by place
                loaded.remove(k)
            mapped.append(k)
    model.load_state_dict(state, strict=False)
    return {"loaded": loaded, "mapped": mapped, "skipped": sorted(set(own) - set(loaded) - set(mapped))}


def teacher_reads_its_own_faces(clf, cfg: TrainConfig) -> bool:
    """Whether a teacher cuts faces otherwise than the student (another size, colour or framing,
    or several ways at once): then its cached logits come from its own crops."""
    from ..models.classifier import face_view

    views = clf.face_views
    return len(views) > 1 or face_view(views[0]) != face_view(cfg.preprocess())


def output_layer(state: dict[str, torch.Tensor], num_classes: int) -> list[str]:
    """The per-class tensors of a state dict: those of the last module whose tensors have one
    row per class (the classifier's weight and bias)."""
    rows = [k for k, v in state.items() if v.dim() > 0 and v.shape[0] == num_classes]
    if not rows:
        return []
    module = rows[-1].rpartition(".")[0]
    return [k for k in rows if k.rpartition(".")[0] == module]


def grey_to_colour(src: dict[str, torch.Tensor], own: dict[str, torch.Tensor], loaded: list[str]) -> list[str]:
    """The convolution kernels of ``src`` that take one channel where ``own``'s take three, the
    rest of their shape equal: the first layer of a grey net fine-tuned on colour faces. Each
    channel gets a third of the grey kernel, so a grey face repeated to R = G = B gives the grey
    net's output from the start."""
    return [k for k, v in src.items() if k not in loaded and k in own and v.dim() == 4 and own[k].dim() == 4
            and v.shape[1] == 1 and own[k].shape[1] == 3 and v.shape[0] == own[k].shape[0]
            and v.shape[2:] == own[k].shape[2:]]


def cpu_bf16(setting: bool | str, warn: bool = False) -> bool:
    """Whether CPU training runs under bf16 autocast for the config value ``bf16``: ``"auto"`` on
    a CPU with bf16 units only (:func:`wildfer.machine.has_bf16_units`). ``True`` on a CPU without
    them is obeyed, with one ``notice:`` line on stderr when ``warn``."""
    from ..machine import has_bf16_units

    if setting == "auto":
        return has_bf16_units()
    if setting is True and warn and not has_bf16_units():
        print("notice: bf16=true on a CPU without bf16 units (AVX512-BF16 or AMX): autocast emulates bf16 there "
              "and trains many times slower than fp32; bf16=auto turns it on only where it pays", file=sys.stderr)
    return bool(setting)


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The network ``cfg`` trains; a :class:`WildferError` for ``model_kwargs`` it cannot be built with."""
    from ..models.loader import one_line

    try:
        return create_model(cfg.model, num_classes=num_classes, **(cfg.model_kwargs or {}))
    except (TypeError, ValueError, RuntimeError) as e:
        raise WildferError(f"model={cfg.model} with model_kwargs={cfg.model_kwargs}: cannot be built ({one_line(e)})") from None


def freeze_parameters(model: nn.Module, prefixes) -> list[str]:
    """Stop the parameters whose names start with one of ``prefixes`` from learning (``"*"``:
    every one but the classifier ``fc``); returns their names. A prefix that names no parameter
    is a :class:`WildferError` (a typo would silently train everything)."""
    frozen: list[str] = []
    names = [n for n, _ in model.named_parameters()]
    for prefix in prefixes or ():
        if prefix == "*":
            hit = [n for n in names if not n.startswith("fc.")]
        else:
            hit = [n for n in names if n.startswith(prefix)]
        if not hit:
            raise WildferError(f"freeze: {prefix!r} names no parameter of {getattr(model, 'wildfer_name', 'the model')}")
        frozen += hit
    for n, p in model.named_parameters():
        if n in frozen:
            p.requires_grad_(False)
    return sorted(set(frozen))


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
