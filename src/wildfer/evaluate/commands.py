"""``wildfer evaluate`` and the ``wildfer experiment ...`` sub-group (the study's experiments)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def _config_opt(kind: str):
    """``--config`` of the ``kind`` experiment (its help names the config file)."""
    return typer.Option(None, "--config", "-c",
                        help=f"Experiment config (configs/experiments/{kind}.yaml); built-in defaults otherwise.")


def register(app: typer.Typer, panel: str) -> None:
    @app.command("evaluate", rich_help_panel=panel)
    def evaluate_cmd(
        data: Path = typer.Argument(..., help="FER2013 CSV (plain or .gz), or an image folder / manifest CSV."),
        model: Optional[List[str]] = typer.Option(
            None, "--model", "-m",
            help="Built-in name (default, fast, ferplus), checkpoint .pt, .safetensors, run folder, or a "
                 "--save-probs .npz. Repeat for an ensemble. Default: the built-in 'default'."),
        ensemble: Optional[str] = typer.Option(None, "--ensemble", help="Comma-separated models to average, e.g. A.pt,B.pt."),
        weights: Optional[str] = typer.Option(None, "--weights", help="Ensemble weights, one per model in order, e.g. 2,1 "
                                              "(normalised). Default: equal."),
        save_probs: Optional[Path] = typer.Option(None, "--save-probs", help="Write the predicted probabilities to P.npz; "
                                                  "--model P.npz later stands in for the model(s) on the same faces "
                                                  "and TTA (ensemble search without rerunning networks)."),
        split: Optional[str] = typer.Option(None, "--split", help="Usage to evaluate (PublicTest, PrivateTest, Training, all). "
                                                                   "Default: PublicTest for CSVs, every face for folders and manifests."),
        tta: Optional[str] = typer.Option(None, "--tta", help="Test-time augmentation: flip or tencrop."),
        ferplus_labels: Optional[Path] = typer.Option(None, "--ferplus-labels", help="fer2013new.csv: evaluate on FER+ majority labels (8 classes)."),
        dataset: str = typer.Option("fer2013", "--dataset", help="fer2013 or ferplus (looks for fer2013new.csv beside DATA)."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Write the full report as JSON."),
        out: Optional[Path] = typer.Option(None, "--out", help="Folder for confusion.png, reliability.png and report.json."),
        batch_size: int = typer.Option(256, "--batch-size", min=1),
        threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Torch CPU threads."),
        device: str = typer.Option("auto", "--device", help="Where the models run: auto (a CUDA GPU when there is "
                                   "one, else the CPU), cpu, cuda or cuda:N."),
    ):
        """Accuracy, macro-F1, per-class precision/recall, top-2, confusion matrix and calibration (ECE, reliability diagram)."""
        from rich.console import Console

        from ..errors import WildferError
        from ..paths import check_output_dir, check_output_file
        from .core import evaluate, load_eval_data, print_report, save_json, write_figures

        console = Console()
        if tta is not None and tta.lower() in ("none", ""):
            tta = None
        if tta is not None and tta not in ("flip", "tencrop"):
            raise WildferError(f"--tta must be flip or tencrop, not {tta!r}")
        models = list(model or [])
        if ensemble:
            models += [s.strip() for s in ensemble.split(",") if s.strip()]
        if not models:
            models = ["default"]
        w = None
        if weights:
            try:
                w = [float(x) for x in weights.split(",") if x.strip()]
            except ValueError:
                raise WildferError(f"--weights takes numbers separated by commas, not {weights!r}") from None
        if save_probs is not None and save_probs.suffix != ".npz":
            raise WildferError(f"--save-probs {save_probs}: the file name must end in .npz")
        # where the results go is checked before any face is read
        if save_probs is not None:
            check_output_file(save_probs, "--save-probs")
        if json_out:
            check_output_file(json_out, "--json")
        if out:
            check_output_dir(out, "--out")
        from ..models.loader import resolve_device

        device = resolve_device(device)  # a GPU that is not there is one line before the data is read
        if threads:
            import torch

            torch.set_num_threads(threads)
        arrays = load_eval_data(data, split, dataset=dataset, ferplus_labels=ferplus_labels)
        report = evaluate(models, arrays, tta=tta, batch_size=batch_size, weights=w, save_probs_to=save_probs,
                          device=device)
        skipped = list((arrays.meta or {}).get("skipped") or [])
        if skipped:  # folder / manifest items that could not be used: reported, never dropped silently
            report["skipped"] = [[str(a) for a in item] if isinstance(item, (list, tuple)) else str(item) for item in skipped]
            console.print(f"[yellow]skipped {len(skipped)} item(s)[/] (listed in the JSON report):", highlight=False)
            for item in report["skipped"][:10]:
                console.print("  " + (": ".join(item) if isinstance(item, list) else item), highlight=False, soft_wrap=True,
                              markup=False)
        print_report(report, console)
        if save_probs is not None:
            console.print(f"wrote {save_probs} (use it as --model {save_probs} with the same data, --split and --tta)",
                          highlight=False, markup=False)
        if json_out:
            save_json(report, json_out)
            console.print(f"wrote {json_out}", highlight=False, markup=False)
        if out:
            figs = write_figures(report, out)
            save_json(report, Path(out) / "report.json")
            console.print(f"wrote {figs['confusion']}, {figs['reliability']}, {Path(out) / 'report.json'}", highlight=False,
                          markup=False)

    exp = typer.Typer(help="The study's experiments: update rules and architectures under one budget.",
                      no_args_is_help=True)
    # the parameters both experiments take
    overrides_arg = typer.Argument(None, help="key=value overrides of the base training config, e.g. epochs=3")
    quick_opt = typer.Option(False, "--quick", help="A small subset and few epochs (the config's 'quick' section).")
    out_opt = typer.Option(None, "--out", help="Output folder. Default: the config's out.")
    progress_opt = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per run.")
    resume_opt = typer.Option(False, "--resume", help="Keep the runs already in --out that have the same config: "
                              "finished ones are read back, unfinished ones continue from last.pt.")

    @exp.command("optimizers")
    def optimizers_cmd(
        overrides: Optional[List[str]] = overrides_arg,
        config: Optional[Path] = _config_opt("optimizers"),
        quick: bool = quick_opt,
        out: Optional[Path] = out_opt,
        progress: bool = progress_opt,
        resume: bool = resume_opt,
    ):
        """SGD, SGD+momentum, RMSProp and Adam on one model under one budget: loss and accuracy curves and a table."""
        from rich.console import Console

        from ..paths import check_output_dir
        from .experiments import run_optimizers

        console = Console()
        if out is not None:
            check_output_dir(out, "--out")
        run_optimizers(config, quick=quick, out=out, overrides=overrides or [], console=console, progress=progress,
                       resume=resume)

    @exp.command("architectures")
    def architectures_cmd(
        overrides: Optional[List[str]] = overrides_arg,
        config: Optional[Path] = _config_opt("architectures"),
        quick: bool = quick_opt,
        out: Optional[Path] = out_opt,
        models: Optional[str] = typer.Option(None, "--models", help="Comma-separated model names instead of the config's list."),
        progress: bool = progress_opt,
        resume: bool = resume_opt,
    ):
        """The study's five architectures plus ours under one budget: accuracy, parameters, multiply-adds, training time."""
        from rich.console import Console

        from ..paths import check_output_dir
        from .experiments import run_architectures

        console = Console()
        if out is not None:
            check_output_dir(out, "--out")
        names = [m.strip() for m in models.split(",") if m.strip()] if models else None
        run_architectures(config, quick=quick, out=out, models=names, overrides=overrides or [], console=console,
                          progress=progress, resume=resume)

    app.add_typer(exp, name="experiment", rich_help_panel=panel)
