"""The study's experiments, one command each, every run through the same training engine.

* :func:`run_optimizers` (``wildfer experiment optimizers``): one model, four update rules
  (SGD, SGD + momentum, RMSProp, Adam) under one budget -- the same data, epochs, batch size,
  initial weights (same seed) and schedule; only the rule and its usual learning rate change.
  Writes ``loss.png`` (training loss per iteration, overlaid), ``accuracy.png`` (train and
  validation accuracy per epoch), ``results.md`` / ``results.json`` and one run folder per rule.
* :func:`run_architectures` (``wildfer experiment architectures``): the study's five
  architectures plus ours under one budget: PublicTest accuracy, parameters, multiply-adds,
  training time; ``accuracy.png`` (validation accuracy per epoch), ``acc_vs_macs.png``,
  ``time.png``, ``results.md`` / ``results.json``, one run folder per model.

An experiment config (YAML/TOML, see ``configs/experiments/``) has ``base`` (TrainConfig keys
shared by every run), ``runs`` (optimizers: name -> overrides) or ``models`` (+ optional
``model_overrides``), ``quick`` (overrides applied by ``--quick``: a data subset and few
epochs) and ``out``. The built-in defaults below equal the shipped YAML files, so the
commands also work from any folder.

``--resume`` (``resume=True``) keeps what an earlier call left in ``out``: runs with the same
training config that finished are read back, unfinished ones continue from their ``last.pt``.
A long comparison can so be split over processes (``--models a,b`` in each, one ``--resume``
call at the end to assemble the table), machines or days.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Sequence

from ..errors import WildferError
from ..jsonio import write_json
from .experiment_report import (  # noqa: F401 - read_metrics re-exported: where callers have found it
    _arch_columns,
    _optimizer_columns,
    _plot_architectures,
    _plot_optimizers,
    _print_table,
    _write_tables,
    read_metrics,
)

#: ``wildfer experiment optimizers`` defaults (== configs/experiments/optimizers.yaml).
OPTIMIZERS_DEFAULT: dict[str, Any] = {
    "name": "optimizers",
    "base": {
        "model": "shallow",
        "data": "fer2013/fer2013.csv.gz",
        "epochs": 10,
        "batch_size": 128,
        "schedule": "none",
        "weight_decay": 0.0001,
        "augment": False,
        "label_smoothing": 0.0,
        "seed": 0,
        "channels_last": False,
        "log_every": 1,
    },
    "runs": {
        "sgd": {"optimizer": "sgd", "lr": 0.01},
        "momentum": {"optimizer": "momentum", "lr": 0.01, "momentum": 0.9},
        "rmsprop": {"optimizer": "rmsprop", "lr": 0.0001},
        "adam": {"optimizer": "adam", "lr": 0.0001},
    },
    "quick": {"subset": 1000, "val_subset": 300, "epochs": 2},
    "out": "runs/experiments/optimizers",
}

#: The study's five architectures, then ours.
STUDY_ARCHITECTURES = ("shallow", "alexnet", "vgg16", "inception", "inception_resnet")
OUR_ARCHITECTURES = ("vggfer_small", "resnet18_half", "mini_xception", "fastfer")

#: ``wildfer experiment architectures`` defaults (== configs/experiments/architectures.yaml).
ARCHITECTURES_DEFAULT: dict[str, Any] = {
    "name": "architectures",
    "base": {
        "data": "fer2013/fer2013.csv.gz",
        "epochs": 15,
        "batch_size": 128,
        "optimizer": "nesterov",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 0.0005,
        "schedule": "cosine",
        "warmup_epochs": 0.5,
        "label_smoothing": 0.05,
        "augment": True,
        "seed": 0,
        "channels_last": True,
        "log_every": 10,
    },
    "models": list(STUDY_ARCHITECTURES + OUR_ARCHITECTURES),
    "model_overrides": {},
    "quick": {
        "subset": 500,
        "val_subset": 200,
        "epochs": 1,
        # --quick checks the pipeline, not the numbers: the heavy nets keep their structure
        # (every block type) at reduced width / depth so each trains in seconds
        "model_overrides": {
            "alexnet": {"model_kwargs": {"width": 0.25, "fc": 256}},
            "vgg16": {"model_kwargs": {"width": 0.125, "fc": 256}},
            "inception": {"model_kwargs": {"width": 0.25}},
            "inception_resnet": {"model_kwargs": {"width": 0.125, "repeats": [1, 1, 1]}},
            "vggfer_small": {"model_kwargs": {"widths": [16, 32, 64, 128], "fc": 128}},
            "resnet18_half": {"model_kwargs": {"widths": [16, 32, 64, 128], "layers": [1, 1, 1, 1]}},
        },
    },
    "out": "runs/experiments/architectures",
}

DEFAULTS = {"optimizers": OPTIMIZERS_DEFAULT, "architectures": ARCHITECTURES_DEFAULT}


# ----------------------------------------------------------------------------- config


def load_experiment_config(kind: str, path: str | Path | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The experiment config: ``path`` (YAML/TOML) or the built-in defaults, with ``key=value``
    overrides applied to ``base`` (``epochs=3``, ``base.lr=0.1``) or to top-level keys
    (``out=DIR``, ``models=[shallow,alexnet]``)."""
    from .config import read_config_file, safe_yaml

    cfg = copy.deepcopy(DEFAULTS[kind]) if path is None else read_config_file(path)
    for key in ("base",):
        cfg.setdefault(key, {})
    cfg.setdefault("quick", {})
    cfg.setdefault("name", kind)
    for item in overrides:
        if "=" not in item:
            raise WildferError(f"override {item!r} must look like key=value")
        k, v = item.split("=", 1)
        k = k.strip()
        val = safe_yaml(v, f"override {k}") if v != "" else None
        if k in ("out", "models", "runs", "model_overrides", "quick", "name"):
            cfg[k] = val
        else:  # a training key: wins over the config, its runs / model_overrides and --quick
            k = k[5:] if k.startswith("base.") else k
            if k.startswith(("model_kwargs.", "aug.")):
                head, tail = k.split(".", 1)
                cfg.setdefault("cli", {}).setdefault(head, {})[tail] = val
            else:
                cfg.setdefault("cli", {})[k] = val
    if kind == "optimizers" and not cfg.get("runs"):
        raise WildferError(f"{path or 'config'}: an optimizers experiment needs 'runs' (name -> optimizer, lr)")
    if kind == "architectures" and not cfg.get("models"):
        raise WildferError(f"{path or 'config'}: an architectures experiment needs 'models' (a list of names)")
    return cfg


def _train_config(cfg: dict, extra: dict, out: Path, quick: bool, model: str | None = None):
    """TrainConfig for one run. Precedence: ``base`` < the run's / model's overrides < ``quick``
    (with ``quick.model_overrides`` for ``model``) < command-line overrides."""
    from .config import TrainConfig

    d = copy.deepcopy(cfg.get("base") or {})
    _merge(d, extra or {})
    if quick:
        q = copy.deepcopy(cfg.get("quick") or {})
        qm = q.pop("model_overrides", None) or {}
        _merge(d, q)
        if model is not None:
            _merge(d, qm.get(model) or {})
    _merge(d, copy.deepcopy(cfg.get("cli") or {}))
    d["out"] = str(out)
    return TrainConfig.from_dict(d)


def _merge(d: dict, extra: dict) -> None:
    """``d.update(extra)``, merging the ``model_kwargs`` / ``aug`` dicts key by key."""
    for k, v in extra.items():
        if k in ("model_kwargs", "aug") and isinstance(v, dict):
            d[k] = {**(d.get(k) or {}), **v}
        else:
            d[k] = v


def _load_data(cfg):
    from .engine import load_training_data

    return load_training_data(cfg)


def _fresh_run_dir(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.jsonl", "summary.json", "best.pt", "last.pt"):
        f = out / name
        if f.exists():
            f.unlink()


#: TrainConfig keys that do not change what a run learns: a finished run is reused by
#: ``--resume`` even when these differ
_RUNTIME_KEYS = ("out", "progress", "threads", "device")


def _config_difference(tcfg, run_dir: Path) -> list[str]:
    """The training keys in which ``run_dir/config.yaml`` differs from ``tcfg`` (runtime keys
    ignored); ``["config.yaml missing"]`` when the folder has no readable config."""
    from .config import TrainConfig, read_config_file

    f = run_dir / "config.yaml"
    try:
        old = TrainConfig.from_dict(read_config_file(f)).to_dict()
    except (WildferError, TypeError):
        return [f"{f.name} missing or unreadable"]
    new = tcfg.to_dict()
    return sorted(k for k in new if k not in _RUNTIME_KEYS and old.get(k) != new[k])


def _train_run(tcfg, train, val, run_dir: Path, console, message: str,
               resume: bool = False) -> tuple[dict, float, list[dict], list[dict]]:
    """One run of an experiment: train ``tcfg`` into a fresh ``run_dir`` (announcing it with
    ``message`` when there is a console). Returns ``(summary, seconds, iteration records,
    epoch records)``.

    With ``resume``, a folder that already holds a run with the same training config is kept:
    a finished one (``summary.json``) is read back without training, an unfinished one
    (``last.pt``) continues from its last epoch. A folder holding a different config is an
    error rather than silently retrained. ``seconds`` is the wall time of all calls that trained it."""
    from .engine import Trainer

    sidecar = run_dir / "experiment_run.json"
    state = None
    if resume and ((run_dir / "summary.json").exists() or (run_dir / "last.pt").exists()):
        diff = _config_difference(tcfg, run_dir)
        if diff:
            raise WildferError(f"{run_dir}: holds a run with a different config ({', '.join(diff)}); "
                               "drop --resume to retrain it, or give another --out")
        state = "done" if (run_dir / "summary.json").exists() else "partial"
    if state == "done":
        summary = json.loads((run_dir / "summary.json").read_text())
        iters, epochs = read_metrics(run_dir)
        secs = _run_seconds(sidecar, epochs)
        if console is not None:
            console.print(message + " [dim](finished earlier: reused)[/]", highlight=False)
        return summary, secs, iters, epochs
    before = 0.0
    if state == "partial":
        before = _run_seconds(sidecar, read_metrics(run_dir)[1])
        message += " [dim](resumed from last.pt)[/]"
    else:
        _fresh_run_dir(run_dir)
        if sidecar.exists():
            sidecar.unlink()
    if console is not None:
        console.print(message, highlight=False)
    t0 = time.time()
    summary = Trainer(tcfg, train=train, val=val, console=console, resume=state == "partial").fit()
    secs = before + time.time() - t0
    write_json(sidecar, {"seconds": round(secs, 2)}, indent=None)
    iters, epochs = read_metrics(run_dir)
    return summary, secs, iters, epochs


def _run_seconds(sidecar: Path, epochs: list[dict]) -> float:
    """Wall seconds a run has taken so far: the experiment's own record when there is one,
    else the sum of its epochs' times (runs trained before the record existed)."""
    if sidecar.exists():
        try:
            return float(json.loads(sidecar.read_text())["seconds"])
        except (ValueError, KeyError, TypeError):
            pass
    return float(sum(e.get("seconds", 0.0) for e in epochs))


# ----------------------------------------------------------------------------- complexity


def complexity(name: str, model_kwargs: dict | None = None, num_classes: int = 7) -> dict[str, Any]:
    """Parameters and multiply-adds of one forward pass of a single image at the model's input
    size (:func:`wildfer.models.complexity.model_complexity`)."""
    from ..models.complexity import model_complexity

    c = model_complexity(name, num_classes=num_classes, **(model_kwargs or {}))
    return {"params": int(c.params), "macs": int(c.macs), "input_size": int(c.input_size)}


# ----------------------------------------------------------------------------- optimizers


def run_optimizers(config: str | Path | dict | None = None, *, quick: bool = False, out: str | Path | None = None,
                   overrides: Sequence[str] = (), console=None, progress: bool | None = None,
                   resume: bool = False) -> dict[str, Any]:
    """Train ``base.model`` once per update rule in ``runs`` under one budget; write the figures
    and tables to ``out``. Returns ``{"rows": [...], "out": ..., "figures": {...}}``."""
    cfg = config if isinstance(config, dict) else load_experiment_config("optimizers", config, overrides)
    out = Path(out or cfg.get("out") or "runs/experiments/optimizers")
    extra_common = {} if progress is None else {"progress": progress}
    first = _train_config(cfg, {**extra_common, **next(iter(cfg["runs"].values()))}, out / "_", quick)
    train, val = _load_data(first)
    rows = []
    for name, run in cfg["runs"].items():
        tcfg = _train_config(cfg, {**extra_common, **(run or {})}, out / name, quick)
        summary, secs, iters, epochs = _train_run(
            tcfg, train, val, out / name, console,
            f"[bold]{name}[/]: {tcfg.optimizer} lr={tcfg.lr} on {tcfg.model}, {len(train)} training faces, "
            f"{tcfg.epochs} epochs", resume=resume)
        last = epochs[-1] if epochs else {}
        rows.append({
            "rule": name, "optimizer": tcfg.optimizer, "lr": tcfg.lr,
            "momentum": tcfg.momentum if tcfg.optimizer in ("momentum", "nesterov") else None,
            "epochs": len(epochs), "iterations": len(iters),
            "initial_loss": iters[0]["loss"] if iters else None,
            "final_train_loss": last.get("train_loss"), "final_train_acc": last.get("train_acc"),
            "final_val_acc": last.get("val_acc"), "best_val_acc": summary["best_val_acc"],
            "seconds": round(secs, 2), "run": str(out / name),
        })
    figures = _plot_optimizers(out, [r["rule"] for r in rows])
    result = {"experiment": "optimizers", "model": first.model, "quick": quick,
              "train_rows": len(train), "val_rows": len(val), "val_split": first.val_split,
              "epochs": first.epochs, "batch_size": first.batch_size, "rows": rows,
              "figures": {k: str(v) for k, v in figures.items()}, "out": str(out)}
    _write_tables(out, result, _optimizer_columns(), f"Update rules on {result['model']}")
    if console is not None:
        _print_table(console, result, _optimizer_columns(), f"Update rules on {result['model']} ({len(train)} training faces)")
    return result


# ----------------------------------------------------------------------------- architectures


def run_architectures(config: str | Path | dict | None = None, *, quick: bool = False, out: str | Path | None = None,
                      models: Sequence[str] | None = None, overrides: Sequence[str] = (), console=None,
                      progress: bool | None = None, resume: bool = False) -> dict[str, Any]:
    """Train every model in the config's ``models`` (or ``models``) under one budget and compare
    PublicTest accuracy, parameters, multiply-adds and training time. Names not registered in
    this installation are listed as skipped, not errors."""
    from ..models.registry import list_models

    cfg = config if isinstance(config, dict) else load_experiment_config("architectures", config, overrides)
    names = list(models) if models else list(cfg["models"])
    out = Path(out or cfg.get("out") or "runs/experiments/architectures")
    extra_common = {} if progress is None else {"progress": progress}
    known = set(list_models())
    first = _train_config(cfg, {**extra_common, "model": "shallow"}, out / "_", quick)
    train, val = _load_data(first)
    rows, skipped = [], []
    for name in names:
        if name not in known:
            skipped.append({"model": name, "reason": "not registered in this installation"})
            if console is not None:
                console.print(f"[yellow]skip[/] {name}: not registered in this installation")
            continue
        over = dict((cfg.get("model_overrides") or {}).get(name) or {})
        tcfg = _train_config(cfg, {**extra_common, **over, "model": name}, out / name, quick, model=name)
        cx = complexity(name, tcfg.model_kwargs, num_classes=len(train.classes))
        summary, secs, _, epochs = _train_run(
            tcfg, train, val, out / name, console,
            f"[bold]{name}[/]: {cx['params'] / 1e6:.2f} M params, {cx['macs'] / 1e6:.1f} M MACs; "
            f"{len(train)} training faces, {tcfg.epochs} epochs", resume=resume)
        train_secs = sum(e.get("seconds", 0.0) for e in epochs)
        n_seen = len(train) * len(epochs)
        rows.append({
            "model": name, "study": name in STUDY_ARCHITECTURES, "model_kwargs": dict(tcfg.model_kwargs),
            "params": cx["params"], "macs": cx["macs"],
            "input_size": cx["input_size"], "epochs": len(epochs),
            "best_val_acc": summary["best_val_acc"], "final_val_acc": epochs[-1]["val_acc"] if epochs else None,
            "final_train_acc": epochs[-1]["train_acc"] if epochs else None,
            "train_seconds": round(secs, 2), "images_per_s": round(n_seen / train_secs, 1) if train_secs else None,
            "run": str(out / name),
        })
    figures = _plot_architectures(out, rows) if rows else {}
    result = {"experiment": "architectures", "quick": quick, "train_rows": len(train), "val_rows": len(val),
              "val_split": first.val_split, "epochs": first.epochs, "batch_size": first.batch_size,
              "rows": rows, "skipped": skipped, "figures": {k: str(v) for k, v in figures.items()}, "out": str(out)}
    title = f"Architectures under one budget ({len(train)} training faces, {first.epochs} epochs, {first.val_split})"
    _write_tables(out, result, _arch_columns(), title)
    if console is not None:
        _print_table(console, result, _arch_columns(), title)
    return result
