"""The work behind ``wildfer predict``: collect inputs, run the recognizer in batches, write
JSON / CSV / annotated images / saliency overlays / videos, and report what could not be read.

Bad inputs never stop the run: each is listed in the summary, and the exit code is 1 only
when nothing at all could be processed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ..data.images import IMAGE_EXTENSIONS
from ..errors import WildferError
from .video import VIDEO_EXTENSIONS, is_video_file


def collect_inputs(paths: list[Path]) -> tuple[list[tuple[Path, Path]], list[dict[str, str]]]:
    """``([(file, name relative to its argument)], [not found])``; folders are searched
    recursively for image and video files, sorted."""
    found: list[tuple[Path, Path]] = []
    missing: list[dict[str, str]] = []
    exts = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
            found.extend((f, f.relative_to(p)) for f in files)
        elif p.exists():
            found.append((p, Path(p.name)))
        else:
            missing.append({"path": str(p), "error": f"{p}: not found"})
    return found, missing


def _face_rows(record: dict[str, Any], labels, frame=None) -> list[list[Any]]:
    rows = []
    for i, f in enumerate(record["faces"]):
        probs = f["probabilities"]
        rows.append([record["path"], "" if frame is None else frame, i, f.get("track", ""), *f["box"], f["score"],
                     f["label"], probs.get(f["label"], 0.0), *[probs.get(c, 0.0) for c in labels], ";".join(f["flags"])])
    return rows


class _Names:
    """Output names under --out that never collide within one run."""

    def __init__(self, root: Path):
        self.root = root
        self.used: set[Path] = set()

    def __call__(self, rel: Path, suffix: str) -> Path:
        base = self.root / rel.parent / (rel.stem + suffix)
        p, k = base, 1
        while p in self.used:
            p = base.with_name(f"{rel.stem}_{k}{suffix}")
            k += 1
        self.used.add(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def run_predict(paths, *, model=None, detector="yunet", mode="detect", out=None, json_file=None, csv_file=None,
                annotate=False, saliency=None, video_stride=5, max_side=640, batch=16, tta=False) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from .annotate import annotate as draw
    from .recognizer import Recognizer, _saliency_methods
    from .video import process_video

    err = Console(stderr=True)
    if saliency:
        _saliency_methods()(saliency)  # fail early on an unknown method
    if (annotate or saliency) and out is None:
        out = Path("predictions")
    inputs, unreadable = collect_inputs(paths)
    rec = Recognizer(model=model, detector=detector, mode=mode, max_side=max_side, tta=tta)
    labels = list(rec.labels)
    names = _Names(Path(out)) if out else None
    images: list[dict[str, Any]] = []
    videos: list[dict[str, Any]] = []

    def save_image_outputs(res, work, rel: Path, src: Path):
        if annotate and names is not None:
            draw(work.rgb, res).save(names(rel, ".annotated.jpg"), quality=90)
        if saliency and names is not None:
            ex = rec.explain(src, method=saliency)
            ex.overlay().save(names(rel, f".{saliency}.jpg"), quality=90)

    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("predict", total=len(inputs))
        pending: list[tuple[Path, Path]] = []

        def flush():
            works, metas = [], []
            for src, rel in pending:
                try:
                    works.append(rec._prepare(src, keep_rgb=bool(annotate)))  # noqa: SLF001
                    metas.append((src, rel))
                except WildferError as e:
                    unreadable.append({"path": str(src), "error": str(e)})
                    bar.advance(task)
            for (src, rel), work, res in zip(metas, works, rec._classify(works)):  # noqa: SLF001
                save_image_outputs(res, work, rel, src)
                images.append(res.to_dict())
                bar.advance(task)
            pending.clear()

        for src, rel in inputs:
            if is_video_file(src):
                flush()
                bar.update(task, description=f"video {src.name}")
                try:
                    target = names(rel, ".annotated.mp4") if (annotate and names is not None) else None
                    videos.append(process_video(rec, src, stride=video_stride, annotate_to=target))
                except WildferError as e:
                    unreadable.append({"path": str(src), "error": str(e)})
                bar.update(task, description="predict")
                bar.advance(task)
                continue
            pending.append((src, rel))
            if len(pending) >= batch:
                flush()
        flush()

    n_faces = sum(len(r["faces"]) for r in images)
    n_vfaces = sum(len(f["faces"]) for v in videos for f in v["frames"])
    report = {
        "model": rec.classifier.name or rec.classifier.arch, "detector": None if mode == "whole" else rec.detector.name,
        "mode": mode, "labels": labels, "images": images, "videos": videos, "unreadable": unreadable,
        "summary": {"images": len(images), "videos": len(videos), "faces": n_faces, "video_faces": n_vfaces,
                    "unreadable": len(unreadable)},
    }
    if json_file is None and csv_file is None and out is not None:
        json_file = Path(out) / "predictions.json"
    if json_file is not None:
        Path(json_file).parent.mkdir(parents=True, exist_ok=True)
        Path(json_file).write_text(json.dumps(report, indent=1))
    if csv_file is not None:
        Path(csv_file).parent.mkdir(parents=True, exist_ok=True)
        with open(csv_file, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "frame", "face", "track", "left", "top", "right", "bottom", "score", "label",
                        "confidence", *labels, "flags"])
            for r in images:
                w.writerows(_face_rows(r, labels))
            for v in videos:
                for fr in v["frames"]:
                    w.writerows(_face_rows({"path": v["path"], "faces": fr["faces"]}, labels, frame=fr["frame"]))
    if json_file is None and csv_file is None and (images or videos):
        table = Table(show_edge=False)
        for c in ("path", "faces", "labels"):
            table.add_column(c)
        for r in images[:200]:
            table.add_row(r.get("path", ""), str(len(r["faces"])), ", ".join(f["label"] for f in r["faces"][:12])
                          + (" ..." if len(r["faces"]) > 12 else ""))
        for v in videos:
            table.add_row(v["path"], f"{len(v['tracks'])} tracks", ", ".join(str(t["label"]) for t in v["tracks"][:12]))
        Console().print(table)
        if len(images) > 200:
            Console().print(f"... {len(images) - 200} more photos (use --json or --csv for all)")
    msg = f"{len(images)} photo(s) with {n_faces} face(s)"
    if videos:
        msg += f", {len(videos)} video(s) with {n_vfaces} face detections"
    err.print(f"[bold]done:[/] {msg}; {len(unreadable)} unreadable", highlight=False)
    for u in unreadable:
        err.print(f"  [yellow]unreadable[/] {u['error']}", highlight=False, soft_wrap=True)
    if out is not None and (annotate or saliency):
        err.print(f"outputs in {out}", highlight=False)
    if json_file is not None:
        err.print(f"results written to {json_file}", highlight=False)
    if not images and not videos:
        err.print("[bold red]error:[/] nothing could be processed", highlight=False)
        return 1
    return 0


__all__ = ["run_predict", "collect_inputs"]
