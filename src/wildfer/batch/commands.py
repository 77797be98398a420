"""``wildfer predict``: photos, folders and videos through the wild pipeline, on this machine
(:mod:`wildfer.batch.pool`, ``--workers N`` processes) or on Ray Data (``--engine ray``,
:mod:`wildfer.batch.ray_data`).

Output paths are checked before the model is loaded; results are written as they are made
(:mod:`wildfer.batch.outputs`); Ctrl-C keeps what is finished (exit code 130 and a line saying
how many inputs the outputs hold) and ``--resume`` completes it. Bad inputs never stop the
run: each is listed in the summary, and the exit code is 1 only when nothing at all could be
processed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from ..models import PIPELINE_MODEL
from ..paths import file_arg
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
    unsure_below: float = typer.Option(0.0, "--unsure-below", help="Flag faces whose likeliest label's probability is below this (0 to 1) as unsure; 0.47 flags about half of web faces, and 64% of the rest are right with wild_ensemble."),
    full_decode: bool = typer.Option(False, "--full-decode", help="Decode every photo whole (by default a JPEG at least twice --max-side across is decoded at 1/2, 1/4 or 1/8 of its size where its faces stay large enough: a 12-megapixel photo in a fifth of the time)."),
    resume: bool = typer.Option(False, "--resume", help="Complete the outputs of an interrupted run: keep what they hold and skip those photos."),
    device: str = typer.Option("auto", "--device", help="Where the classifier runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N."),
    backend: str = typer.Option("auto", "--backend", help="How the classifier computes: auto (the model's default: built-ins on their float graphs on onnxruntime, wild_ensemble's wild member on its int8 graph, checkpoints on torch), torch, onnx (onnxruntime) or int8 (the model's int8 graph on the CPU)."),
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
                                 ("--backend", backend != "auto"), ("--unsure-below", unsure_below != 0),
                                 ("--full-decode", full_decode)) if v]
        raise SystemExit(_predict_on_ray(paths, json_file, extras, model=model, detector=detector, mode=mode,
                                         max_side=max_side))
    code = run_predict(paths, model=model, detector=detector, mode=mode, out=out, json_file=json_file,
                       csv_file=csv_file, annotate=annotate, saliency=saliency, video_stride=video_stride,
                       max_side=max_side, batch=batch, tta=tta, resume=resume, device=device,
                       workers=workers, backend=backend, timeline=timeline, unsure_below=unsure_below,
                       full_decode=full_decode)
    if code:
        # SystemExit, not typer.Exit: click in non-standalone mode returns Exit's code
        # instead of raising it, and wildfer.cli.main would turn it into 0
        raise SystemExit(code)


def _predict_on_ray(paths, json_file, extras: list[str], **settings) -> int:
    """``--engine ray``: the photos through :func:`wildfer.batch.ray_data.predict_paths`, into the
    ``--json`` file only (``extras``: the options given that it does not take); its exit code."""
    from ..errors import WildferError
    from .ray_data import predict_paths

    if extras or json_file is None:
        raise WildferError(f"--engine ray writes --json FILE.jsonl only{' (not ' + ', '.join(extras) + ')' if extras else ''}")
    return predict_paths(paths, json_file, **settings)


def run_predict(paths, *, model=None, detector="yunet", mode="detect", out=None, json_file=None, csv_file=None,
                annotate=False, saliency=None, video_stride=5, max_side=640, batch=16, tta=False,
                resume=False, device=None, workers=1, backend=None, timeline=None, unsure_below=0.0,
                full_decode=False) -> int:
    """``wildfer predict`` on ``paths`` with a progress bar and a summary; the exit code."""
    from rich.console import Console

    from ..errors import WildferError
    from ..locks import output_lock
    from ..wild.recognizer import Recognizer, checked_unsure_below
    from ..wild.video import is_video_file
    from .outputs import ResultWriter, complete_outputs, no_interrupt, predict_outputs, read_progress, run_settings
    from .plan import collect_inputs, plan_steps
    from .report import build_report, print_summary

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise WildferError(f"--workers {workers}: give the number of processes, 1 or more")
    checked_unsure_below(unsure_below, "--unsure-below")
    err = Console(stderr=True)
    outputs = predict_outputs(out, json_file, csv_file, annotate=annotate, saliency=saliency)
    outputs.check()
    if resume and outputs.progress is None:
        raise WildferError("--resume needs the output to complete: give --json, --csv or --out")
    if saliency:
        from ..photo_maps import check_saliency_method

        check_saliency_method(saliency)  # fail early on an unknown method
    if timeline is not None:
        from ..paths import check_output_dir, check_outside

        check_output_dir(timeline, "--timeline")
    inputs, missing = collect_inputs(paths)
    outputs.check_inputs(paths, [src for src, _ in inputs])
    videos = sum(is_video_file(src) for src, _ in inputs)
    if timeline is not None:
        from ..figures import has_matplotlib
        from ..wild.timeline import PLOTS_INSTALL

        check_outside(timeline, paths, "--timeline")
        if not videos:
            err.print("note: no video among the inputs; --timeline writes nothing", highlight=False)
        elif not has_matplotlib():
            err.print(f"note: the timelines' plots need matplotlib ({PLOTS_INSTALL}); without it they hold the "
                      "CSVs, timeline.json and summary.html", highlight=False, markup=False, soft_wrap=True)
    if saliency and videos:
        err.print(f"note: --saliency paints photos, not video frames; the {videos} video(s) get no overlay",
                  highlight=False)
    # the workers' processes get ready while this one loads its model
    if workers > 1 and videos < len(inputs):
        from ..models.loader import auto_backend
        from .pool import worker_context

        computes = backend if backend not in (None, "auto") else auto_backend(model, device)
        ctx = worker_context(torch=computes == "torch")
    else:
        ctx = None
    settings = dict(model=model, detector=detector, mode=mode, max_side=max_side, tta=tta, device=device,
                    backend=backend, unsure_below=unsure_below, full_decode=bool(full_decode))
    with output_lock(outputs.locked):
        rec = Recognizer(**settings)
        if saliency:
            from ..photo_maps import check_saliency_method

            check_saliency_method(saliency, rec.classifier)  # one that can explain this model, before any photo
        made_with = run_settings(model or PIPELINE_MODEL, detector=rec.detector.name if mode != "whole" else None,
                                 mode=mode, max_side=max_side, tta=tta, backend=backend, video_stride=video_stride,
                                 unsure_below=unsure_below, full_decode=full_decode)
        writer = ResultWriter(outputs.progress, outputs.csv_file, rec.labels, resume=resume,
                              report=outputs.report, inputs={str(src) for src, _ in inputs}, settings=made_with,
                              jsonl=outputs.jsonl)
        records: dict[str, dict] = dict(writer.done)
        steps = plan_steps(inputs, outputs.out, done=writer.done, batch=batch, annotate=annotate,
                           saliency=saliency, timeline=timeline)
        try:
            interrupted = _run_with_bar(rec, steps, writer, records, err=err, total=len(inputs), saliency=saliency,
                                        video_stride=video_stride, workers=workers, settings=settings, ctx=ctx,
                                        keep_frames=outputs.progress is not None)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            with no_interrupt():
                writer.close()
        with no_interrupt():
            if outputs.progress is not None:  # what the outputs hold is what the progress file holds
                records = {r["path"]: r for r in read_progress(outputs.progress)}
            report = build_report(rec, mode, inputs, missing, records, complete=not interrupted,
                                  settings=made_with)
            complete_outputs(outputs, report)
    return print_summary(err, report, outputs, inputs, len(records), show_out=annotate or bool(saliency))


def _run_with_bar(rec, steps, writer, records: dict, *, err, total: int, saliency, video_stride: int, workers: int,
                  settings: dict, ctx, keep_frames: bool = True) -> bool:
    """The steps of a run under a progress bar, each finished record written and kept in
    ``records``; True when Ctrl-C stopped the workers."""
    from rich.markup import escape

    from .pool import run_steps
    from .steps import video_record

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


def register(app: typer.Typer, panel: str) -> None:
    app.command("predict", rich_help_panel=panel)(predict)
