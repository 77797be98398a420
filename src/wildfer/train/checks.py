"""The ranges, choices and keyword names a training config may hold, checked before any data is
read and before the run folder is made: a bad value is one line naming the key, never a
traceback an epoch later or a run folder holding only its config.

``model_kwargs`` are checked against the signature of the model's factory (and of the network
class it hands ``**kwargs`` on to); ``aug`` against the fields of
:class:`wildfer.data.augment.Augment`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from collections.abc import Callable
from typing import Any

from ..errors import WildferError, short

# (test, what the value must be); a test sees a number (the type was checked when the config was read)
_Rule = tuple[Callable[[Any], bool], str]


def _at_least(lo) -> _Rule:
    return (lambda v: v >= lo), f">= {lo}"


def _above(lo) -> _Rule:
    return (lambda v: v > lo), f"> {lo}"


def _within(lo, hi, *, hi_open: bool = False) -> _Rule:
    if hi_open:
        return (lambda v: lo <= v < hi), f"in [{lo}, {hi})"
    return (lambda v: lo <= v <= hi), f"in [{lo}, {hi}]"


#: numeric TrainConfig fields and their ranges; ``None`` (where the field allows it) always passes
RANGES: dict[str, _Rule] = {
    "epochs": _at_least(1),
    "batch_size": _at_least(1),
    "subset": ((lambda v: v >= 1), ">= 1 (rows to train on), or null for all"),
    "extra_train_repeat": ((lambda v: v >= 1), ">= 1 (times each extra_train_data face is used)"),
    "val_subset": ((lambda v: v >= 1), ">= 1 (rows to validate on), or null for all"),
    "wild_ratio": _within(0, 1),
    "lr": _at_least(0),  # 0: a run that only measures (the weights stay as they start)
    "momentum": _within(0, 1, hi_open=True),
    "weight_decay": _at_least(0),
    "step_size": _at_least(1),
    "gamma": _above(0),
    "plateau_patience": _at_least(0),
    "warmup_epochs": _at_least(0),
    "min_lr": _at_least(0),
    "label_smoothing": _within(0, 1, hi_open=True),
    "mixup": _at_least(0),
    "cutmix": _at_least(0),
    "grad_clip": ((lambda v: v >= 0), ">= 0 (0 or null: no clipping)"),
    "early_stop": ((lambda v: v >= 0), ">= 0 epochs of patience (0 or null: off)"),
    "time_budget": _above(0),
    "budget_epochs": _at_least(1),
    "distill_alpha": _within(0, 1),
    "distill_temperature": _above(0),
    "seed": ((lambda v: 0 <= v < 2**32), "in [0, 2**32)"),
    "threads": _at_least(1),
    "log_every": _at_least(1),
    "max_iters_per_epoch": _at_least(1),
}

#: string fields with a fixed set of values (compared as written, ``optimizer`` case-insensitively)
CHOICES: dict[str, tuple[str | None, ...]] = {
    "dataset": ("fer2013", "ferplus"),
    "optimizer": ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"),
    "schedule": ("none", "constant", "step", "cosine", "plateau", "onecycle"),
    "class_weights": (None, "balanced", "sqrt"),
}

#: keyword arguments the trainer passes to every model itself
RESERVED_MODEL_KWARGS = ("num_classes",)


def check_config(cfg) -> None:
    """Raise :class:`WildferError` for the first value of ``cfg`` (a TrainConfig) out of range,
    not among its choices, or a ``model_kwargs`` / ``aug`` key the model or augmentation lacks."""
    for name, (ok, words) in RANGES.items():
        v = getattr(cfg, name)
        if v is None:
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise WildferError(f"config key {name}={short(v)}: must be a finite number {words}")
        if not ok(v):
            raise WildferError(f"config key {name}={short(v)}: must be {words}")
    for name, allowed in CHOICES.items():
        v = getattr(cfg, name)
        if (v.lower() if name == "optimizer" and isinstance(v, str) else v) not in allowed:
            shown = " | ".join("null" if a is None else a for a in allowed)
            raise WildferError(f"config key {name}={short(v)}: must be one of {shown}")
    if isinstance(cfg.bf16, str) and cfg.bf16 != "auto":
        raise WildferError(f"config key bf16={short(cfg.bf16)}: must be true, false or auto")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(cfg.device)):
        raise WildferError(f"config key device={short(cfg.device)}: must be auto, cpu, cuda or cuda:N")
    if cfg.wild_data and not 0.0 < cfg.wild_ratio < 1.0:
        raise WildferError(f"config key wild_ratio={short(cfg.wild_ratio)}: with wild_data, must be between 0 and 1 "
                           "(the wild share of an epoch), exclusive")
    if cfg.teacher and cfg.teacher_cache and (cfg.mixup > 0 or cfg.cutmix > 0):
        raise WildferError("teacher_cache=true holds the teacher's logits for unmixed faces; "
                           "set mixup=0 and cutmix=0, or teacher_cache=false")
    if cfg.init_skip and not cfg.init:
        raise WildferError("config key init_skip: names tensors of init=, which is not set")
    check_model_kwargs(cfg.model, cfg.model_kwargs)
    check_colour(cfg)
    check_aug(cfg.aug)


def check_colour(cfg) -> None:
    """A colour run's net takes three channels (a grey run's may take three too: the ImageNet
    forms repeat a grey face)."""
    if not cfg.colour:
        return
    from ..models.registry import model_info

    chans = (cfg.model_kwargs or {}).get("in_chans", model_info(cfg.model).in_chans)
    if chans != 3:
        raise WildferError(f"config key colour=true: the net must take 3 channels (model_kwargs in_chans: 3); "
                           f"model {short(cfg.model)} takes {short(chans)}")


# ----------------------------------------------------------------------------- model_kwargs


def _referenced_module_classes(fn) -> list[type]:
    """The ``nn.Module`` classes a factory's code (lambdas inside it included) names as globals."""
    import torch.nn as nn

    names: list[str] = []
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        names.extend(code.co_names)
        codes.extend(c for c in code.co_consts if inspect.iscode(c))
    found = []
    for n in dict.fromkeys(names):
        obj = fn.__globals__.get(n)
        if isinstance(obj, type) and issubclass(obj, nn.Module) and obj not in found:
            found.append(obj)
    return found


def _keywords(fn) -> set[str] | None:
    """Keyword names ``fn`` accepts; through ``**kwargs`` those of the network classes it builds;
    ``None`` when that cannot be told (anything goes)."""
    params = inspect.signature(fn).parameters.values()
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        return names
    if inspect.isclass(fn):  # a class's own **kwargs lead nowhere we can follow
        return None
    classes = _referenced_module_classes(fn)
    if not classes:
        return None
    for cls in classes:
        more = _keywords(cls)
        if more is None:
            return None
        names |= more
    return names


def model_keywords(model: str) -> set[str] | None:
    """The ``model_kwargs`` keys the registered model ``model`` accepts (``None``: not known)."""
    from ..models.registry import model_info

    kw = _keywords(model_info(model).factory)  # a ModelError for an unknown model
    return None if kw is None else kw - {"self", *RESERVED_MODEL_KWARGS}


#: ``model_kwargs.input_size``, which the trainer reads too (the side it resizes and cuts faces at)
INPUT_SIZE = (8, 512)


def check_model_kwargs(model: str, model_kwargs: dict[str, Any]) -> None:
    """Raise :class:`WildferError` for a ``model_kwargs`` key the model's constructor does not take,
    or an ``input_size`` that is not a face side in pixels."""
    side = (model_kwargs or {}).get("input_size")
    if side is not None and not (isinstance(side, int) and not isinstance(side, bool)
                                 and INPUT_SIZE[0] <= side <= INPUT_SIZE[1]):
        raise WildferError(f"config key model_kwargs.input_size={short(side)}: must be an integer in "
                           f"[{INPUT_SIZE[0]}, {INPUT_SIZE[1]}] (the side of the faces the net reads, in pixels)")
    for k in RESERVED_MODEL_KWARGS:
        if k in (model_kwargs or {}):
            raise WildferError(f"config key model_kwargs.{k}: set by the trainer from the data's classes; remove it")
    known = model_keywords(model)
    if known is None:
        return
    unknown = sorted(map(str, set(model_kwargs or {}) - known))
    if unknown:
        raise WildferError(f"config key {', '.join('model_kwargs.' + k for k in unknown)}: not a keyword of model "
                           f"{short(model)} (it takes: {', '.join(sorted(known)) or 'none'})")


# ----------------------------------------------------------------------------- aug


def _pair(lo, hi=math.inf, *, ints: bool = False, hi_open: bool = False):
    """A ``[a, b]`` range with ``lo <= a <= b <= hi``."""
    def ok(v):
        return (isinstance(v, (list, tuple)) and len(v) == 2
                and all(isinstance(x, int if ints else (int, float)) and not isinstance(x, bool) for x in v)
                and lo <= v[0] <= v[1] and (v[1] < hi if hi_open else v[1] <= hi))
    kind = "integers" if ints else "numbers"
    top = "" if hi == math.inf else (f" < {hi}" if hi_open else f" <= {hi}")
    return ok, f"two {kind} [a, b] with {lo} <= a <= b{top}"


def _number(rule: _Rule) -> _Rule:
    ok, words = rule
    return ((lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and ok(v)),
            f"a number {words}")


_PROBABILITY = _number(_within(0, 1))
#: Augment's fields and the values each may take
AUG_RULES: dict[str, _Rule] = {
    "scale": _pair(1e-6, 1.0),
    "ratio": _pair(1e-6),
    "shift": _number(_within(0, 1)),
    "rotate": _number(_within(0, 180)),
    "hflip": ((lambda v: isinstance(v, bool)), "true or false"),
    "brightness": _number(_within(0, 1)),
    "contrast": _number(_within(0, 1)),
    "erase": _PROBABILITY,
    "erase_area": _pair(0.0, 1.0),
    "shear": _number(_at_least(0)),
    "gamma": _number(_at_least(0)),
    "blur": _PROBABILITY,
    "blur_sigma": _pair(1e-6),
    "lowres": _PROBABILITY,
    "lowres_side": _pair(1, ints=True),
    "noise": _number(_at_least(0)),
    "jpeg": _PROBABILITY,
    "jpeg_quality": _pair(1, 100, ints=True),
}


def check_aug(aug: dict[str, Any]) -> None:
    """Raise :class:`WildferError` for an ``aug`` key Augment lacks or a value out of its range."""
    from ..data.augment import Augment

    fields = [f.name for f in dataclasses.fields(Augment)]
    unknown = sorted(map(str, set(aug or {}) - set(fields)))
    if unknown:
        raise WildferError(f"config key {', '.join('aug.' + k for k in unknown)}: not an augmentation parameter "
                           f"(known: {', '.join(fields)})")
    for k, v in (aug or {}).items():
        rule = AUG_RULES.get(k)
        if rule is not None and not rule[0](v):
            raise WildferError(f"config key aug.{k}={short(v)}: must be {rule[1]}")
