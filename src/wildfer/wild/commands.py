"""``wildfer predict`` and ``wildfer evaluate-wild``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from ..paths import file_arg

from ..models import PIPELINE_MODEL
from ..progress import progress_bar


def predict(
    paths: List[Path] = typer.Argument(..., help="Images, folders (searched recursively) and videos."),
    model: str = typer.Option(PIPELINE_MODEL, "--model", "-m", help="Built-in model name (wild_ensemble: the pipeline's, for web faces; default: FER2013), checkpoint (.pt), weights (.safetensors), ensemble spec or run folder."),
    detector: str = typer.Option("yunet", "--detector", "-d", help="Face detector: yunet, yuface, haar or centerface."),
    mode: str = typer.Option("detect", "--mode", help="detect; search (detect, then search windows where nothing was found); whole (the whole photo as one face, the study's path)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for annotated images, saliency overlays and predictions.json."),
    json_file: Optional[Path] = typer.Option(None, "--json", parser=file_arg, help="Write all results as JSON (a name ending in .jsonl: one line per photo)."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", parser=file_arg, help="Write one CSV row per face."),
    annotate: bool = typer.Option(False, "--annotate", help="Save images (and videos) with boxes, labels and probability bars under --out."),
    timeline: Optional[Path] = typer.Option(None, "--timeline", help="For each video, write per-track CSVs and plots of the expressions over time, a scene plot and summary.html in a folder under this one."),
    saliency: Optional[str] = typer.Option(None, "--saliency", help="Save a saliency overlay per image under --out (gradcam, vanilla, smoothgrad, ig ...)."),
    video_stride: int = typer.Option(5, "--video-stride", min=1, help="Process every N-th video frame."),
    max_side: int = typer.Option(640, "--max-side", min=32, help="Longer side photos are downscaled to for detection."),
    batch: int = typer.Option(16, "--batch", min=1, help="Photos whose faces are classified in one batch."),
    tta: bool = typer.Option(False, "--tta", help="Average each face with its mirror image."),
    resume: bool = typer.Option(False, "--resume", help="Complete the outputs of an interrupted run: keep what they hold and skip those photos."),
    device: str = typer.Option("auto", "--device", help="Where the classifier runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N."),
    backend: str = typer.Option("auto", "--backend", help="How the classifier computes: auto (the model's default: built-ins on onnxruntime, wild_ensemble on its int8 graphs, checkpoints on torch), torch, onnx (onnxruntime) or int8 (the model's int8 graph on the CPU)."),
    engine: str = typer.Option("local", "--engine", help="local, or ray: photos through Ray Data on the cluster ray.init() finds (RAY_ADDRESS, else a local one), results in --json FILE.jsonl."),
    workers: int = typer.Option(1, "--workers", help="Local processes that photos are processed by, each loading the model once on one thread (videos stay in the main process); outputs are those of one process. Starting them takes a second or two, so it pays from about a hundred photos."),
):
    """Find every face in photos and videos and classify its expression.

    Results are written as each batch is done; Ctrl-C keeps what is finished, and --resume completes it."""
    from ..errors import WildferError

    if engine not in ("local", "ray"):
        raise WildferError(f"--engine {engine!r}: use local or ray")
    if engine == "ray":
        extras = [o for o, v in (("--out", out), ("--csv", csv_file), ("--annotate", annotate), ("--timeline", timeline),
                                 ("--saliency", saliency), ("--resume", resume), ("--tta", tta),
                                 ("--device", device != "auto"), ("--workers", workers != 1),
                                 ("--backend", backend != "auto")) if v]
        raise SystemExit(_predict_on_ray(paths, json_file, extras, model=model, detector=detector, mode=mode,
                                         max_side=max_side))
    code = run_predict(paths, model=model, detector=detector, mode=mode, out=out, json_file=json_file,
                       csv_file=csv_file, annotate=annotate, saliency=saliency, video_stride=video_stride,
                       max_side=max_side, batch=batch, tta=tta, resume=resume, device=device,
                       workers=workers, backend=backend, timeline=timeline)
    if code:
        # SystemExit, not typer.Exit: click in non-standalone mode returns Exit's code
        # instead of raising it, and wildfer.cli.main would turn it into 0
        raise SystemExit(code)


def _predict_on_ray(paths, json_file, extras: list[str], **settings) -> int:
    """``--engine ray``: the photos through :func:`wildfer.batch.predict_paths`, into the
    ``--json`` file only (``extras``: the options given that it does not take); its exit code."""
    from ..batch import predict_paths
    from ..errors import WildferError

    if extras or json_file is None:
        raise WildferError(f"--engine ray writes --json FILE.jsonl only{' (not ' + ', '.join(extras) + ')' if extras else ''}")
    return predict_paths(paths, json_file, **settings)


def run_predict(paths, *, model=None, detector="yunet", mode="detect", out=None, json_file=None, csv_file=None,
                annotate=False, saliency=None, video_stride=5, max_side=640, batch=16, tta=False,
                resume=False, device=None, workers=1, backend=None, timeline=None) -> int:
    """``wildfer predict`` on ``paths`` (the work is :mod:`wildfer.wild.batch_predict`'s) with a
    progress bar and a summary; the exit code."""
    from rich.console import Console

    from ..errors import WildferError
    from ..locks import output_lock
    from . import batch_predict as bp
    from .recognizer import Recognizer, check_saliency_method
    from .video import is_video_file

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise WildferError(f"--workers {workers}: give the number of processes, 1 or more")
    err = Console(stderr=True)
    outputs = bp.predict_outputs(out, json_file, csv_file, annotate=annotate, saliency=saliency)
    outputs.check()
    if resume and outputs.progress is None:
        raise WildferError("--resume needs the output to complete: give --json, --csv or --out")
    if saliency:
        check_saliency_method(saliency)  # fail early on an unknown method
    if timeline is not None:
        from ..paths import check_output_dir, check_outside

        check_output_dir(timeline, "--timeline")
    inputs, missing = bp.collect_inputs(paths)
    outputs.check_inputs(paths, [src for src, _ in inputs])
    if timeline is not None:
        check_outside(timeline, paths, "--timeline")
        if not any(is_video_file(src) for src, _ in inputs):
            err.print("note: no video among the inputs; --timeline writes nothing", highlight=False)
    # the workers' processes get ready while this one loads its model
    if workers > 1 and not all(is_video_file(src) for src, _ in inputs):
        from ..models.loader import auto_backend

        computes = backend if backend not in (None, "auto") else auto_backend(model, device)
        ctx = bp.worker_context(torch=computes == "torch")
    else:
        ctx = None
    settings = dict(model=model, detector=detector, mode=mode, max_side=max_side, tta=tta, device=device,
                    backend=backend)
    with output_lock(outputs.locked):
        rec = Recognizer(**settings)
        made_with = bp.run_settings(model or PIPELINE_MODEL, detector=rec.detector.name if mode != "whole" else None,
                                    mode=mode, max_side=max_side, tta=tta, backend=backend, video_stride=video_stride)
        writer = bp.ResultWriter(outputs.progress, outputs.csv_file, rec.labels, resume=resume,
                                 report=outputs.report, inputs={str(src) for src, _ in inputs}, settings=made_with,
                                 jsonl=outputs.jsonl)
        records: dict[str, dict] = dict(writer.done)
        steps = bp.plan_steps(inputs, outputs.out, done=writer.done, batch=batch, annotate=annotate,
                              saliency=saliency, timeline=timeline)
        try:
            interrupted = _run_with_bar(rec, steps, writer, records, err=err, total=len(inputs), saliency=saliency,
                                        video_stride=video_stride, workers=workers, settings=settings, ctx=ctx,
                                        keep_frames=outputs.progress is not None)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            with bp.no_interrupt():
                writer.close()
        with bp.no_interrupt():
            if outputs.progress is not None:  # what the outputs hold is what the progress file holds
                records = {r["path"]: r for r in bp.read_progress(outputs.progress)}
            report = bp.build_report(rec, mode, inputs, missing, records, complete=not interrupted,
                                     settings=made_with)
            bp.complete_outputs(outputs, report)
    return _print_summary(err, report, outputs, inputs, len(records), show_out=annotate or bool(saliency))


def _run_with_bar(rec, steps, writer, records: dict, *, err, total: int, saliency, video_stride: int, workers: int,
                  settings: dict, ctx, keep_frames: bool = True) -> bool:
    """The steps of a run under a progress bar, each finished record written and kept in
    ``records``; True when Ctrl-C stopped the workers."""
    from rich.markup import escape

    from .batch_predict import run_steps, video_record

    with progress_bar(err) as bar:
        task = bar.add_task("predict", total=total, completed=len(writer.done))

        def finished(r: dict) -> None:
            writer.add(r)
            writer.flush()
            records[r["path"]] = r
            bar.advance(task)

        def video(job) -> None:
            name = escape(job.path.name)
            bar.update(task, description=f"video {name}")
            frames = bar.add_task(f"frames of {name}", total=None)
            t0 = time.perf_counter()

            def seen(done: int, n: int) -> None:  # frames read so far, and their rate
                if done % 10 == 0 or done == n:
                    rate = done / max(time.perf_counter() - t0, 1e-6)
                    bar.update(frames, completed=done, total=n or None,
                               description=f"frames of {name}: {rate:.0f}/s")

            finished(video_record(rec, job, stride=video_stride, progress=seen, keep_frames=keep_frames))
            bar.remove_task(frames)
            bar.update(task, description="predict")

        return run_steps(rec, steps, saliency=saliency, finished=finished, video=video, workers=workers,
                         settings=settings, err=err, ctx=ctx)


def _print_summary(err, report: dict, outputs, inputs, n_done: int, *, show_out: bool) -> int:
    """The results table (when no file holds them), what was done, unreadable and truncated,
    where the outputs are; the exit code."""
    from rich.markup import escape

    from .video import is_video_file

    images, videos, unreadable = report["images"], report["videos"], report["unreadable"]
    truncated = [r["path"] for r in images if r.get("truncated")]
    interrupted, written = not report["complete"], outputs.written
    if not written and (images or videos):
        _print_results_table(images, videos)
    err.print(f"[bold]{'so far' if interrupted else 'done'}:[/] {_summary_line(report['summary'])}", highlight=False)
    for u in unreadable:
        err.print(f"  [yellow]unreadable[/] {escape(u['error'])}", highlight=False, soft_wrap=True)
    for p in truncated:
        err.print(f"  [yellow]truncated[/] {escape(p)}: the file ends early; the rest of the photo is filler",
                  highlight=False, soft_wrap=True)
    if outputs.out is not None and show_out:
        err.print(f"outputs in {outputs.out}", highlight=False, markup=False)
    if interrupted:
        what = "files" if any(is_video_file(src) for src, _ in inputs) else "photos"
        where = (f"written to {' and '.join(map(str, written))}; --resume completes it" if written
                 else "done, nothing written (no --json, --csv or --out)")
        err.print(f"interrupted: {n_done} of {len(inputs)} {what} {where}", highlight=False, soft_wrap=True,
                  markup=False)
        return 130
    if written:
        err.print(f"results written to {' and '.join(map(str, written))}", highlight=False, soft_wrap=True, markup=False)
    if not images and not videos:
        err.print("[bold red]error:[/] nothing could be processed", highlight=False)
        return 1
    return 0


def _summary_line(summary: dict) -> str:
    """``N photo(s) with F face(s)[, V video(s) ...]; U unreadable[; T truncated]``."""
    msg = f"{summary['images']} photo(s) with {summary['faces']} face(s)"
    if summary["videos"]:
        msg += f", {summary['videos']} video(s) with {summary['video_faces']} face detections"
    msg += f"; {summary['unreadable']} unreadable"
    if summary["truncated"]:
        msg += f"; {summary['truncated']} truncated"
    return msg


def _print_results_table(images: list[dict], videos: list[dict]) -> None:
    """Each photo's faces and labels (the first 200 photos) and each video's tracks, on stdout."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_edge=False)
    for c in ("path", "faces", "labels"):
        table.add_column(c)
    for r in images[:200]:
        table.add_row(escape(r.get("path", "")) + (" (truncated)" if r.get("truncated") else ""), str(len(r["faces"])),
                      ", ".join(f["label"] for f in r["faces"][:12]) + (" ..." if len(r["faces"]) > 12 else ""))
    for v in videos:
        table.add_row(escape(v["path"]), f"{len(v['tracks'])} tracks", ", ".join(str(t["label"]) for t in v["tracks"][:12]))
    Console().print(table)
    if len(images) > 200:
        Console().print(f"... {len(images) - 200} more photos (use --json or --csv for all)")


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
    split: Optional[str] = typer.Option(None, "--split", help="Only rows whose split column holds this value (train, val ...); all rows when the manifest has no split column."),
    save_predictions: Optional[Path] = typer.Option(None, "--save-predictions", parser=file_arg, help="Write one CSV row per face: path, label, prediction, found, probabilities."),
    tta: bool = typer.Option(False, "--tta", help="Average each face with its mirror image (as predict --tta)."),
    device: str = typer.Option("auto", "--device", help="Where the classifier runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N."),
    backend: str = typer.Option("auto", "--backend", help="How the classifier computes: auto (the model's default: built-ins on onnxruntime, wild_ensemble on its int8 graphs, checkpoints on torch), torch, onnx (onnxruntime) or int8 (the model's int8 graph on the CPU)."),
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
                     backend=backend if backend == "auto" else check_backend(backend))
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
    return table


def register(app: typer.Typer, panel: str) -> None:
    app.command("predict", rich_help_panel=panel)(predict)
    app.command("evaluate-wild", rich_help_panel=panel)(evaluate_wild_cmd)
