"""``wildfer train``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer, panel: str) -> None:
    @app.command("train", rich_help_panel=panel)
    def train(
        overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. epochs=5 lr=0.01"),
        config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML or TOML config file."),
        resume: bool = typer.Option(False, "--resume", help="Continue from <out>/last.pt."),
        sanity: bool = typer.Option(False, "--sanity", help="Run the sanity checks (initial loss, overfit, gradient check) and exit."),
    ):
        """Train a model (one loop for every experiment); writes checkpoints and metrics.jsonl."""
        from rich.console import Console

        from .config import load_config

        console = Console(stderr=True)
        if sanity:
            from .sanity import run_sanity

            ok = run_sanity(console=console)
            raise typer.Exit(0 if ok else 1)
        from .engine import Trainer

        cfg = load_config(config, overrides or [])
        summary = Trainer(cfg, resume=resume, console=console).fit()
        console.print(f"best validation accuracy {summary['best_val_acc']:.4f}; run folder {summary['out']}")
