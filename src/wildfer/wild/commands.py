"""``wildfer evaluate-wild``: the wild pipeline on a labelled manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..models import PIPELINE_MODEL
from ..paths import file_arg
from ..progress import progress_bar


def evaluate_wild_cmd(
    manifest: Path = typer.Argument(..., help="CSV: path,label[,left,top,right,bottom] (paths relative to the manifest)."),
    model: str = typer.Option(PIPELINE_MODEL, "--model", "-m", help="Built-in model name (wild_ensemble: the pipeline's; default: FER2013), checkpoint, weights or ensemble spec."),
    mode: str = typer.Option("detect", "--mode", help="detect, search or whole."),
    detector: str = typer.Option("yunet", "--detector", "-d", help="Face detector: yunet, yuface, haar or centerface."),
    json_file: Optional[Path] = typer.Option(None, "--json", parser=file_arg, help="Write the metrics as JSON."),
    iou: float = typer.Option(0.3, "--iou", min=0.0, max=1.0, help="Least IoU for a detection to match a labelled box."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N faces."),
    max_side: int = typer.Option(640, "--max-side", min=32, help="Longer side photos are downscaled to for detection."),
    classes: Optional[str] = typer.Option(None, "--classes", help="fer2013: fold an 8-class FER+ model's contempt away (7 classes, as the manifest's labels)."),
    split: Optional[str] = typer.Option(None, "--split", help="Only the rows of this split (train, val ...) by the split rule of every data loader: val and test are PublicTest, a row without a split is Training."),
    save_predictions: Optional[Path] = typer.Option(None, "--save-predictions", parser=file_arg, help="Write one CSV row per face: path, label, prediction, found, probabilities."),
    tta: bool = typer.Option(False, "--tta", help="Average each face with its mirror image (as predict --tta)."),
    full_decode: bool = typer.Option(False, "--full-decode", help="Decode every photo whole (as predict --full-decode; by default a JPEG at least twice --max-side across is decoded reduced)."),
    device: str = typer.Option("auto", "--device", help="Where the classifier runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N."),
    backend: str = typer.Option("auto", "--backend", help="How the classifier computes: auto (the model's default: built-ins on their float graphs on onnxruntime, wild_ensemble's wild member on its int8 graph, checkpoints on torch), torch, onnx (onnxruntime) or int8 (the model's int8 graph on the CPU)."),
):
    """Detection recall and accuracy of the wild pipeline on a labelled manifest."""
    from rich.console import Console
    from rich.markup import escape

    from ..jsonio import write_json
    from ..machine import machine
    from ..models.classifier import check_backend
    from ..models.loader import load_model
    from ..paths import check_output_file
    from .evaluate import evaluate_wild
    from .recognizer import Recognizer

    err = Console(stderr=True)
    for f, what in ((json_file, "--json"), (save_predictions, "--save-predictions")):  # before any work
        if f is not None:
            check_output_file(f, what, [manifest]).parent.mkdir(parents=True, exist_ok=True)
    clf = load_model(model, classes=classes, device=device) if classes else model
    rec = Recognizer(model=clf, detector=detector, mode=mode, max_side=max_side, tta=tta, device=device,
                     backend=backend if backend == "auto" else check_backend(backend), full_decode=full_decode)
    with progress_bar(err) as bar:
        task = bar.add_task(f"evaluate {mode}", total=None)
        res = evaluate_wild(manifest, rec, iou=iou, limit=limit, split=split, save_predictions=save_predictions,
                            progress=lambda d, n: bar.update(task, completed=d, total=n))
    title = (f"{Path(manifest).name}" + (f" split={split}" if split else "") + f": {mode}"
             + ("" if mode == "whole" else f" ({rec.detector.name})"))
    Console().print(_metrics_table(res, title))
    for u in res["unreadable"]:
        err.print(f"[yellow]unreadable:[/] {escape(u['error'])}", highlight=False)
    if json_file:
        write_json(json_file, {**res, "machine": machine()})
        err.print(f"metrics written to {json_file}", highlight=False, markup=False)
    if save_predictions:
        err.print(f"predictions written to {save_predictions}", highlight=False, markup=False)


def _metrics_table(res: dict, title: str):
    """evaluate-wild's counts, recall, accuracies, macro-F1 and speed."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in ("n", "n_found", "n_search", "detection_recall", "accuracy", "accuracy_found", "accuracy_search",
              "macro_f1", "images_per_s"):
        v = res.get(k)
        table.add_row(k, "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v)))
    cal = res.get("calibration")
    if cal:
        table.add_row("ece (faces found)", f"{cal['ece']:.4f}")
        for r in cal["risk_coverage"][:-1]:
            table.add_row(f"accuracy of the {r['coverage']:.0%} surest", f"{r['accuracy']:.4f} (p >= {r['threshold']:.2f})")
    return table


def register(app: typer.Typer, panel: str) -> None:
    app.command("evaluate-wild", rich_help_panel=panel)(evaluate_wild_cmd)
