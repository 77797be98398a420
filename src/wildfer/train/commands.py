"""``wildfer train`` and the ``wildfer experiment ...`` sub-group (the study's experiments, which train)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def train(
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. epochs=5 lr=0.01"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML or TOML config file."),
    resume: bool = typer.Option(False, "--resume", help="Continue from <out>/last.pt."),
    sanity: bool = typer.Option(False, "--sanity", help="Run the sanity checks (initial loss, overfit, gradient check) on the "
                                                           "configured model and exit."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                            help="Show the progress bar (default: the config's 'progress', on). "
                                                 "--no-progress for logs of background runs."),
):
    """Train a model (one loop for every experiment); writes checkpoints and metrics.jsonl."""
    from rich.console import Console

    from .config import load_config

    console = Console(stderr=True)
    cfg = load_config(config, overrides or [])
    if sanity:
        from .sanity import run_sanity

        cfg.check()
        ok = run_sanity(console=console, data=cfg.data, seed=cfg.seed, model=cfg.model,
                        model_kwargs=cfg.model_kwargs or None)
        raise typer.Exit(0 if ok else 1)
    from .engine import Trainer

    if progress is not None:
        cfg.progress = progress
    summary = Trainer(cfg, resume=resume, console=console).fit()
    console.print(f"best validation accuracy {summary['best_val_acc']:.4f}; run folder {summary['out']}",
                  markup=False, highlight=False)


def _config_opt(kind: str):
    """``--config`` of the ``kind`` experiment (its help names the config file)."""
    return typer.Option(None, "--config", "-c",
                        help=f"Experiment config (configs/experiments/{kind}.yaml); built-in defaults otherwise.")


# the parameters both experiments take
_OVERRIDES_ARG = typer.Argument(None, help="key=value overrides of the base training config, e.g. epochs=3")
_QUICK_OPT = typer.Option(False, "--quick", help="A small subset and few epochs (the config's 'quick' section).")
_OUT_OPT = typer.Option(None, "--out", help="Output folder. Default: the config's out.")
_PROGRESS_OPT = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per run.")
_RESUME_OPT = typer.Option(False, "--resume", help="Keep the runs already in --out that have the same config: "
                           "finished ones are read back, unfinished ones continue from last.pt.")


def _experiment_console(out: Path | None):
    """The console an experiment reports on, once its ``--out`` folder is known to be writable."""
    from rich.console import Console

    from ..paths import check_output_dir

    if out is not None:
        check_output_dir(out, "--out")
    return Console()


def optimizers_cmd(
    overrides: Optional[List[str]] = _OVERRIDES_ARG,
    config: Optional[Path] = _config_opt("optimizers"),
    quick: bool = _QUICK_OPT,
    out: Optional[Path] = _OUT_OPT,
    progress: bool = _PROGRESS_OPT,
    resume: bool = _RESUME_OPT,
):
    """SGD, SGD+momentum, RMSProp and Adam on one model under one budget: loss and accuracy curves and a table."""
    from .experiments import run_optimizers

    console = _experiment_console(out)
    run_optimizers(config, quick=quick, out=out, overrides=overrides or [], console=console, progress=progress,
                   resume=resume)


def architectures_cmd(
    overrides: Optional[List[str]] = _OVERRIDES_ARG,
    config: Optional[Path] = _config_opt("architectures"),
    quick: bool = _QUICK_OPT,
    out: Optional[Path] = _OUT_OPT,
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated model names instead of the config's list."),
    progress: bool = _PROGRESS_OPT,
    resume: bool = _RESUME_OPT,
):
    """The study's five architectures plus ours under one budget: accuracy, parameters, multiply-adds, training time."""
    from .experiments import run_architectures

    console = _experiment_console(out)
    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    run_architectures(config, quick=quick, out=out, models=names, overrides=overrides or [], console=console,
                      progress=progress, resume=resume)


def register(app: typer.Typer, panel: str) -> None:
    app.command("train", rich_help_panel=panel)(train)
    exp = typer.Typer(help="The study's experiments: update rules and architectures under one budget.",
                      no_args_is_help=True)
    exp.command("optimizers")(optimizers_cmd)
    exp.command("architectures")(architectures_cmd)
    app.add_typer(exp, name="experiment", rich_help_panel=panel)
