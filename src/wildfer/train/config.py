"""Training configuration: one dataclass, loaded from YAML or TOML, overridable from the CLI.

``wildfer train --config configs/default.yaml epochs=30 optimizer.lr=0.05`` -- overrides are
``key=value`` pairs (values parsed as YAML scalars); dotted keys are flattened with ``_``
(``optim.lr`` == ``lr``), so both spellings work.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import WildferError, short
from ..paths import write_text_whole


@dataclass
class TrainConfig:
    # what to train
    model: str = "shallow"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # colour faces: wild crops cut in RGB, FER2013's grey faces repeated to R = G = B; the net
    # takes three channels (model_kwargs in_chans: 3) and its checkpoint says grayscale: false
    colour: bool = False
    # data
    data: str = "fer2013/fer2013.csv.gz"
    dataset: str = "fer2013"  # fer2013 | ferplus
    ferplus_labels: str | None = None  # path to fer2013new.csv when dataset == ferplus
    ferplus_soft: bool = False  # train on FER+ vote distributions instead of majority labels
    # FER+'s classes: "ferplus" (8, with contempt) or "fer2013" (FER2013's 7: contempt votes
    # dropped, the rest renormalised), so FER+ labels can be mixed with wild_data
    ferplus_classes: str = "ferplus"
    train_split: str = "Training"
    val_split: str = "PublicTest"
    # more labelled faces for the training split, with FER2013's classes (any format
    # wildfer.data.load_dataset reads, every row; e.g. ckplus48/ckplus48.csv): they join the
    # FER2013 side of the mix, resized to its faces, each face extra_train_repeat times (a
    # small set, such as CK+'s 927 posed faces, is otherwise a few dozen faces an epoch)
    extra_train_data: list[str] = field(default_factory=list)
    extra_train_repeat: int = 1
    subset: int | None = None  # use only the first N training rows (quick runs / tests)
    val_subset: int | None = None
    # wild photos mixed into training: a manifest (path,label[,left,top,right,bottom],split) whose
    # faces are cut out once by the wild pipeline (detect + align, wildfer.wild.crops) and cached
    wild_data: str | None = None
    wild_train_split: str = "train"
    # validation and model selection on this split of wild_data (null: on val_split); the
    # val_split faces are still scored every epoch ("fer_val_acc" in the log)
    wild_val_split: str | None = "val"
    wild_ratio: float = 0.5  # share of each epoch's faces that are wild
    wild_detector: str = "yunet"
    # with a teacher and wild_data: false = the teacher's term covers only the FER2013 faces of
    # a batch (the wild faces learn from their labels alone: learning without forgetting)
    teacher_on_wild: bool = True
    augment: bool = True
    aug: dict[str, Any] = field(default_factory=dict)  # Augment(...) overrides
    # optimisation
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "momentum"  # sgd | momentum | nesterov | rmsprop | adam | adamw
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # none | step | cosine | plateau | onecycle
    step_size: int = 10  # epochs, for step
    gamma: float = 0.1
    plateau_patience: int = 3
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    class_weights: str | None = None  # None | "balanced" | "sqrt"
    grad_clip: float | None = None
    early_stop: int | None = None  # patience in epochs on the validation metric
    # minutes one fit (fresh or resumed) may train for: from `budget_epochs` epochs on, `epochs` is
    # re-planned at each epoch's end from the pace of the last (up to) 5 epochs (never above the configured
    # count) until half of the plan is done, then frozen; the schedule follows the plan. Each
    # plan is logged, and the run folder's config.yaml is rewritten with the planned epochs and
    # no budget (a rerun of it uses one schedule of that length)
    time_budget: float | None = None
    budget_epochs: int = 2
    # start from trained weights (checkpoint, run folder or built-in name such as "default");
    # tensors whose shape differs -- the classifier head when the class count changes -- start fresh
    init: str | None = None
    # tensors of ``init`` that keep their fresh initialisation: those whose names start with one
    # of these prefixes (e.g. ["fc."]: a fresh classifier head on the pretrained trunk)
    init_skip: list[str] = field(default_factory=list)
    # parameters that do not learn: those whose names start with one of these prefixes (e.g.
    # ["conv1", "dw_conv1", "blocks.0."]: a pretrained trunk's first layers; ["*"]: all but "fc")
    freeze: list[str] = field(default_factory=list)
    # distillation (teacher checkpoint or built-in name)
    teacher: str | None = None
    distill_alpha: float = 0.5
    distill_temperature: float = 4.0
    # the teacher's logits on the un-augmented training faces, computed once and reused every
    # epoch (offline distillation: one teacher pass instead of one per step; no mixup/cutmix)
    teacher_cache: bool = False
    # runtime
    seed: int = 0
    out: str = "runs/run"
    device: str = "auto"  # auto | cpu | cuda
    # bf16 autocast on CPU: fast only where the CPU has bf16 units (AVX512-BF16 or AMX), many times
    # slower than fp32 elsewhere; "auto" turns it on only there (wildfer.machine.has_bf16_units)
    bf16: bool | str = False
    amp: bool = True  # fp16/bf16 autocast on CUDA
    channels_last: bool = True
    threads: int | None = None
    keep_epoch_checkpoints: bool = False  # weights of every epoch (for saliency over training)
    log_every: int = 1  # iterations between loss records in the JSONL log
    progress: bool = True
    max_iters_per_epoch: int | None = None

    def face_side(self) -> int:
        """The side of the faces the network reads: ``model_kwargs["input_size"]``, else the
        architecture's declared face size (:attr:`~wildfer.models.registry.ModelInfo.preprocess`),
        else FER2013's 48. Training faces are resized to it and wild crops cut at it."""
        if "input_size" in self.model_kwargs:
            return int(self.model_kwargs["input_size"])
        return int(self._arch_preprocess()["size"])

    def _arch_preprocess(self) -> dict[str, Any]:
        """DEFAULT_PREPROCESS under what the architecture declares (an unknown one: the default)."""
        from ..errors import ModelError
        from ..models.classifier import DEFAULT_PREPROCESS
        from ..models.registry import model_info

        try:
            declared = model_info(self.model).preprocess
        except ModelError:  # an unknown model is reported by check() with the known names
            declared = {}
        return {**DEFAULT_PREPROCESS, **declared}

    def preprocess(self) -> dict[str, Any]:
        """The preprocessing record of this run's checkpoints: the architecture's normalisation and
        alignment (FER2013's unless it declares its own) at :meth:`face_side` pixels, grey or
        (``colour``) RGB. A five-point template, given in a face of the architecture's size, is
        scaled to :meth:`face_side` with it, so a smaller input keeps the same framing."""
        pre, side = self._arch_preprocess(), self.face_side()
        if pre.get("template") is not None and side != int(pre["size"]):
            k = side / float(pre["size"])
            pre = {**pre, "template": [[round(x * k, 4), round(y * k, 4)] for x, y in pre["template"]]}
        return {**pre, "size": side, "grayscale": not self.colour}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        flat = _flatten(d)
        unknown = sorted(set(flat) - names)
        if unknown:
            raise WildferError(f"unknown config keys: {', '.join(unknown)}")
        _check_types(cls, flat)
        cfg = cls(**flat)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise :class:`WildferError` for a value of the wrong type or out of range, an unknown
        choice or a ``model_kwargs`` / ``aug`` key the model or augmentation lacks (:mod:`.checks`)."""
        from .checks import check_config

        _check_types(type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        check_config(self)


#: the value types a config key may hold, by the annotation of its TrainConfig field
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "bool": ((bool,), "true or false"),
    "bool | str": ((bool, str), "true, false or auto"),
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "str": ((str, os.PathLike), "a string"),
    "dict[str, Any]": ((dict,), "a mapping"),
    "list[str]": ((list,), "a list of strings"),
}


def _check_types(cls, values: dict[str, Any]) -> None:
    """One-line error for a value of the wrong type (``epochs=abc``, ``time_budget=[1]``) here,
    instead of a traceback deep inside training."""
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        v, ann = values[f.name], str(f.type)
        optional = ann.endswith(" | None")
        kinds, words = _TYPES[ann.removesuffix(" | None")]
        if v is None and optional:
            continue
        if ann == "list[str]" and isinstance(v, list) and not all(isinstance(x, str) for x in v):
            raise WildferError(f"config key {f.name}: must be {words}")
        if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
            raise WildferError(f"config key {f.name}={short(v)}: must be {words}" + (" or null" if optional else ""))


def _flatten(d: dict[str, Any]) -> dict[str, Any]:
    """Accept nested sections ({optim: {lr: ..}}) as well as flat keys; model_kwargs/aug stay dicts."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    out: dict[str, Any] = {}
    for k, v in d.items():
        if not isinstance(k, str):
            raise WildferError(f"config key {short(k)}: keys are names, not {type(k).__name__}s")
        k = k.replace("-", "_")
        if isinstance(v, dict) and k not in ("model_kwargs", "aug"):
            for kk, vv in _flatten(v).items():
                out[kk if kk in names else f"{k}_{kk}"] = vv
        else:
            out[k] = v
    return out


#: The most values a config may hold once YAML aliases are expanded (an alias bomb of nine
#: nested aliases expands to billions), how deeply they may nest, and its largest file size.
MAX_CONFIG_VALUES = 10_000
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_BYTES = 1 << 20


def check_config_size(data: Any, where: str) -> None:
    """Raise :class:`WildferError` when ``data`` holds more than :data:`MAX_CONFIG_VALUES`
    values counted with every alias expanded, or nests deeper than :data:`MAX_CONFIG_DEPTH`.
    Counted without expanding anything: a shared value is counted once per place it appears,
    and the count stops at the bound."""
    stack, n = [(data, 0)], 0
    while stack:
        v, depth = stack.pop()
        n += 1
        if n > MAX_CONFIG_VALUES:
            raise WildferError(f"{where}: more than {MAX_CONFIG_VALUES:,} values once its YAML aliases are expanded; "
                               "a config is a short mapping of keys to values")
        if depth > MAX_CONFIG_DEPTH:
            raise WildferError(f"{where}: nested more than {MAX_CONFIG_DEPTH} levels deep")
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for kv in v.items() for x in kv)
        elif isinstance(v, (list, tuple)):
            stack.extend((x, depth + 1) for x in v)


def safe_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load(text)``, bounded (:func:`check_config_size`); a document nested too
    deeply for the parser is a one-line :class:`WildferError` too."""
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise WildferError(f"{where}: nested too deeply to read") from None
    check_config_size(data, where)
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise WildferError(f"{path}: config file not found")
    if path.is_dir():
        raise WildferError(f"{path}: a folder, not a config file")
    if not path.is_file():
        raise WildferError(f"{path}: not a regular file (a FIFO or device is not read as a config)")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise WildferError(f"{path}: {path.stat().st_size:,} bytes; a config is at most {MAX_CONFIG_BYTES:,}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise WildferError(f"{path}: not a text file (a config is YAML, TOML or JSON in UTF-8)") from None
    except OSError as e:
        raise WildferError(f"{path}: cannot read config ({e.strerror or e})") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = safe_yaml(text, str(path)) or {}
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise WildferError(f"{path}: cannot parse config ({str(e).splitlines()[0][:200]})") from None
    except RecursionError:
        raise WildferError(f"{path}: nested too deeply to read") from None
    check_config_size(data, str(path))
    if not isinstance(data, dict):
        raise WildferError(f"{path}: config must be a mapping of keys to values")
    return data


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    d = dict(d)
    for item in overrides:
        if "=" not in item:
            raise WildferError(f"override {short(item)} must look like key=value")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        try:
            val = safe_yaml(v, f"override {k}") if v != "" else None
        except yaml.YAMLError as e:
            raise WildferError(f"override {short(item)}: cannot parse the value ({str(e).splitlines()[0]})") from None
        if "." in k:
            head, tail = k.split(".", 1)
            if head in ("model_kwargs", "aug"):
                sub = dict(d.get(head) or {})
                sub[tail] = val
                d[head] = sub
                continue
            k = tail if tail in {f.name for f in dataclasses.fields(TrainConfig)} else k.replace(".", "_")
        d[k] = val
    return d


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    base = read_config_file(path) if path else {}
    return TrainConfig.from_dict(apply_overrides(base, overrides or []))


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    write_text_whole(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
