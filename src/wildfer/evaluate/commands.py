"""``wildfer evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..paths import file_arg


def evaluate_cmd(
    data: Path = typer.Argument(..., help="FER2013 CSV (plain or .gz), or an image folder / manifest CSV."),
    model: Optional[List[str]] = typer.Option(
        None, "--model", "-m",
        help="Built-in name (default, fast, ferplus), checkpoint .pt, .safetensors, run folder, or a "
             "--save-probs .npz. Repeat for an ensemble. Default: the built-in 'default'."),
    ensemble: Optional[str] = typer.Option(None, "--ensemble", help="Comma-separated models to average, e.g. A.pt,B.pt."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Ensemble weights, one per model in order, e.g. 2,1 "
                                          "(normalised). Default: equal."),
    save_probs: Optional[Path] = typer.Option(None, "--save-probs", parser=file_arg, help="Write the predicted probabilities to P.npz; "
                                              "--model P.npz later stands in for the model(s) on the same faces "
                                              "and TTA (ensemble search without rerunning networks)."),
    split: Optional[str] = typer.Option(None, "--split", help="Usage to evaluate (PublicTest, PrivateTest, Training, all). "
                                                               "Default: PublicTest for CSVs, every face for folders and manifests."),
    tta: Optional[str] = typer.Option(None, "--tta", help="Test-time augmentation: flip, tencrop or none."),
    ferplus_labels: Optional[Path] = typer.Option(None, "--ferplus-labels", help="fer2013new.csv: evaluate on FER+ majority labels (8 classes)."),
    dataset: str = typer.Option("fer2013", "--dataset", help="fer2013 or ferplus (looks for fer2013new.csv beside DATA)."),
    json_out: Optional[Path] = typer.Option(None, "--json", parser=file_arg, help="Write the full report as JSON."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for confusion.png, reliability.png and report.json."),
    batch_size: int = typer.Option(256, "--batch-size", min=1),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Torch CPU threads."),
    device: str = typer.Option("auto", "--device", help="Where the models run: auto (a CUDA GPU when there is "
                               "one, else the CPU), cpu, cuda or cuda:N."),
    backend: str = typer.Option("auto", "--backend", help="How the models compute: auto (each model's default: "
                                "built-ins on onnxruntime, checkpoints on torch), torch, onnx (onnxruntime) or "
                                "int8 (the model's int8 graph on the CPU)."),
):
    """Accuracy, macro-F1, per-class precision/recall, top-2, confusion matrix and calibration (ECE, reliability diagram)."""
    from rich.console import Console

    from ..models.classifier import tta_mode

    console = Console()
    tta = tta_mode(tta, "--tta")
    models, w = _models_and_weights(model, ensemble, weights)
    _check_outputs(save_probs, json_out, out, inputs=[data])  # where the results go is checked before any face is read
    from ..models.classifier import check_backend
    from ..models.loader import auto_backend, resolve_device
    from .core import evaluate, load_eval_data, print_report

    if backend != "auto":  # a GPU that is not there is one line before the data is read
        device = resolve_device(device, check_backend(backend))
    elif models and isinstance(models[0], str) and not models[0].endswith(".npz"):
        auto_backend(models[0], device)  # the same check for a GPU asked for by name
    if threads:
        try:
            import torch
        except ImportError:  # the light install: onnxruntime keeps its own threads
            torch = None
        if torch is not None:
            torch.set_num_threads(threads)
    arrays = load_eval_data(data, split, dataset=dataset, ferplus_labels=ferplus_labels)
    report = evaluate(models, arrays, tta=tta, batch_size=batch_size, weights=w, save_probs_to=save_probs,
                      device=device, backend=backend)
    _report_skipped(report, arrays, console)
    print_report(report, console)
    _write_outputs(report, console, save_probs=save_probs, json_out=json_out, out=out)


def _models_and_weights(model, ensemble, weights) -> tuple[list[str], list[float] | None]:
    """The models of ``--model`` and ``--ensemble`` (the built-in default when none) and the
    ``--weights`` numbers."""
    from ..errors import WildferError

    models = list(model or [])
    if ensemble:
        models += [s.strip() for s in ensemble.split(",") if s.strip()]
    if not models:
        models = ["default"]
    if not weights:
        return models, None
    try:
        return models, [float(x) for x in weights.split(",") if x.strip()]
    except ValueError:
        raise WildferError(f"--weights takes numbers separated by commas, not {weights!r}") from None


def _check_outputs(save_probs, json_out, out, inputs=()) -> None:
    """``--save-probs``, ``--json`` and ``--out`` can be written, and none is an input."""
    from ..errors import WildferError
    from ..paths import check_output_dir, check_output_file

    if save_probs is not None and save_probs.suffix != ".npz":
        raise WildferError(f"--save-probs {save_probs}: the file name must end in .npz")
    if save_probs is not None:
        check_output_file(save_probs, "--save-probs", inputs)
    if json_out:
        check_output_file(json_out, "--json", inputs)
    if out:
        check_output_dir(out, "--out")


def _report_skipped(report: dict, arrays, console) -> None:
    """Folder / manifest items that could not be used: into the report and on the console,
    never dropped silently."""
    skipped = list((arrays.meta or {}).get("skipped") or [])
    if not skipped:
        return
    report["skipped"] = [[str(a) for a in item] if isinstance(item, (list, tuple)) else str(item) for item in skipped]
    console.print(f"[yellow]skipped {len(skipped)} item(s)[/] (listed in the JSON report):", highlight=False)
    for item in report["skipped"][:10]:
        console.print("  " + (": ".join(item) if isinstance(item, list) else item), highlight=False, soft_wrap=True,
                      markup=False)


def _write_outputs(report: dict, console, *, save_probs, json_out, out) -> None:
    """Say where the probabilities went; write the JSON report and the figures."""
    from .core import save_json, write_figures

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


def register(app: typer.Typer, panel: str) -> None:
    app.command("evaluate", rich_help_panel=panel)(evaluate_cmd)
