"""``wildfer train``, the ``wildfer experiment ...`` sub-group (the study's experiments, which
train) and ``wildfer export`` (a trained model as an ONNX graph, or an int8 graph calibrated on a
data set's faces: here, where a data set may be read, not in wildfer.models)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..paths import file_arg


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


def export(
    model: str = typer.Argument(..., help="Built-in name (default, fast, ferplus), checkpoint .pt or .safetensors."),
    onnx: Path = typer.Option(..., "--onnx", parser=file_arg, help="Where to write the ONNX file."),
    opset: int = typer.Option(17, help="ONNX opset."),
    check: bool = typer.Option(True, help="Compare torch and onnxruntime probabilities on random faces."),
    int8: bool = typer.Option(False, "--int8", help="Write the int8 graph (static QDQ quantisation) instead; "
                              "name it MODEL.int8.onnx beside the weights file for backend int8."),
    calibrate: Optional[Path] = typer.Option(None, "--calibrate", help="Faces whose activations set the int8 "
                                             "ranges (a FER2013 / FER+ CSV or an image folder; its Training rows "
                                             "when it has them; 512 drawn, seeded)."),
):
    """Export a model to ONNX (dynamic batch; class names in the metadata)."""
    from rich.console import Console

    from ..errors import WildferError
    from ..models.loader import load_model
    from ..models.onnx import export_onnx, onnx_opsets
    from ..models.quantize import export_int8
    from ..paths import check_output_file

    lo, hi = onnx_opsets()
    if not lo <= opset <= hi:
        raise WildferError(f"--opset {opset}: this torch exports ONNX opsets {lo} to {hi}")
    if int8 and calibrate is None:
        raise WildferError("--int8 needs --calibrate FACES (a FER2013 CSV or an image folder)")
    check_output_file(onnx, "--onnx", [model])  # before the model is loaded and traced
    clf = load_model(model)
    path = export_int8(clf, onnx, _calibration_images(calibrate)) if int8 else export_onnx(clf, onnx, opset)
    msg = f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)"
    if check:
        msg += f"; max |p_torch - p_onnx| = {_onnx_disagreement(clf, path):.2e}"
    Console().print(msg, soft_wrap=True, highlight=False, markup=False)


def _calibration_images(faces: Path):
    """The faces of a data set (any format ``load_dataset`` reads), its Training rows when it
    has them: what an int8 graph's activation ranges are calibrated on."""
    from ..data import load_dataset

    data = load_dataset(faces)
    if any(u.lower() == "training" for u in data.usages()):
        data = data.split("Training")
    return data.images


def _onnx_disagreement(clf, path: Path) -> float:
    """The largest difference between torch's and onnxruntime's probabilities on 16 random faces."""
    import numpy as np

    from ..models.classifier import softmax
    from ..models.runtime import OnnxRunner

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(16, clf.size, clf.size), dtype=np.uint8)
    p_torch = clf.predict_proba(faces)
    p_onnx = softmax(OnnxRunner(path)(clf.to_tensor(faces).numpy()))
    return float(np.abs(p_torch - p_onnx).max())


def register(app: typer.Typer, panel: str) -> None:
    app.command("export", rich_help_panel="Models")(export)  # beside `wildfer models`, as the help lists it
    app.command("train", rich_help_panel=panel)(train)
    exp = typer.Typer(help="The study's experiments: update rules and architectures under one budget.",
                      no_args_is_help=True)
    exp.command("optimizers")(optimizers_cmd)
    exp.command("architectures")(architectures_cmd)
    app.add_typer(exp, name="experiment", rich_help_panel=panel)
