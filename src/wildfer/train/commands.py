"""``wildfer train``."""

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


def register(app: typer.Typer, panel: str) -> None:
    app.command("train", rich_help_panel=panel)(train)
