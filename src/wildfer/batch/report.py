"""The end of a batch run: the JSON report assembled from its records (:func:`build_report`)
and the summary printed for the user (:func:`print_summary`): a results table when no file
holds them, the counts, the unreadable and truncated inputs, where the outputs are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .records import record_kind


def build_report(rec, mode: str, inputs: list[tuple[Path, Path]], missing: list[dict[str, str]],
                 records: dict[str, dict[str, Any]], *, complete: bool,
                 settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON report of a run: its records in input order, by kind, and their counts, and
    the ``settings`` they were made with (:func:`~wildfer.batch.outputs.run_settings`)."""
    order = {str(src): i for i, (src, _) in enumerate(inputs)}
    ordered = sorted(records.values(), key=lambda r: order.get(r["path"], len(order)))
    images = [r for r in ordered if record_kind(r) == "image"]
    videos = [r for r in ordered if record_kind(r) == "video"]
    unreadable = missing + [r for r in ordered if record_kind(r) == "unreadable"]
    return {
        "model": rec.classifier.name or rec.classifier.arch, "detector": None if mode == "whole" else rec.detector.name,
        "mode": mode, "labels": list(rec.labels), "complete": complete, **({"settings": settings} if settings else {}),
        "images": images, "videos": videos,
        "unreadable": unreadable,
        "summary": {"images": len(images), "videos": len(videos), "faces": sum(len(r["faces"]) for r in images),
                    "video_faces": sum(v.get("faces_total", sum(len(f["faces"]) for f in v["frames"])) for v in videos),
                    "unreadable": len(unreadable), "truncated": sum(bool(r.get("truncated")) for r in images)},
    }


def print_summary(err, report: dict, outputs, inputs, n_done: int, *, show_out: bool) -> int:
    """The results table (when no file holds them), what was done, unreadable and truncated,
    where the outputs are; the exit code."""
    from rich.markup import escape

    from ..wild.video import is_video_file

    images, videos, unreadable = report["images"], report["videos"], report["unreadable"]
    truncated = [r["path"] for r in images if r.get("truncated")]
    interrupted, written = not report["complete"], outputs.written
    if not written and (images or videos):
        print_results_table(images, videos)
    err.print(f"[bold]{'so far' if interrupted else 'done'}:[/] {summary_line(report['summary'])}", highlight=False)
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


def summary_line(summary: dict) -> str:
    """``N photo(s) with F face(s)[, V video(s) ...]; U unreadable[; T truncated]``."""
    msg = f"{summary['images']} photo(s) with {summary['faces']} face(s)"
    if summary["videos"]:
        msg += f", {summary['videos']} video(s) with {summary['video_faces']} face detections"
    msg += f"; {summary['unreadable']} unreadable"
    if summary["truncated"]:
        msg += f"; {summary['truncated']} truncated"
    return msg


def print_results_table(images: list[dict], videos: list[dict]) -> None:
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


__all__ = ["build_report", "print_summary", "summary_line", "print_results_table"]
