"""What a batch run does: the inputs (photos and videos, folders searched), the names of
every output each gets, and the steps left to do (photos in batches, each video on its own),
leaving out what a resumed run's outputs already hold.

Names are chosen here, before any work, for every input (readable or not, done or not), so
every process gives the same ones and a resumed run gives each input the names the first run
gave it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..data.images import IMAGE_EXTENSIONS
from ..wild.video import VIDEO_EXTENSIONS, is_video_file


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
        elif p.is_file():
            found.append((p, Path(p.name)))
        elif p.exists():  # a FIFO or device would block or never end
            missing.append({"path": str(p), "error": f"{p}: not a regular file (a FIFO, device or socket is not read)"})
        else:
            missing.append({"path": str(p), "error": f"{p}: not found"})
    return found, missing


class OutputNames:
    """Output names under a folder that never collide within one run."""

    def __init__(self, root: Path):
        self.root = root
        self.used: set[Path] = set()

    def __call__(self, rel: Path, suffix: str, make: bool = True) -> Path:
        base = self.root / rel.parent / (rel.stem + suffix)
        p, k = base, 1
        while p in self.used:
            p = base.with_name(f"{rel.stem}_{k}{suffix}")
            k += 1
        self.used.add(p)
        if make:
            p.parent.mkdir(parents=True, exist_ok=True)
        return p


class PhotoJob(NamedTuple):
    """One photo and the names its annotated image and saliency overlay are saved to
    (``None``: not wanted), chosen before any work so every process gives the same ones."""

    path: Path
    annotated: Path | None = None
    overlay: Path | None = None


class VideoJob(NamedTuple):
    """One video (always processed in the main process), the name of its annotated copy and
    the folder of its timeline (:mod:`wildfer.wild.timeline`)."""

    path: Path
    annotated: Path | None = None
    timeline: Path | None = None


def plan_jobs(inputs: list[tuple[Path, Path]], names: OutputNames | None, *, annotate: bool,
              saliency: str | None, timelines: OutputNames | None = None) -> list[PhotoJob | VideoJob]:
    """A job per input, in input order. Every input takes its output names, readable or not
    and done or not, so a run resumed gives each input the names the first run gave it."""
    jobs: list[PhotoJob | VideoJob] = []
    for src, rel in inputs:
        if is_video_file(src):
            jobs.append(VideoJob(src, names(rel, ".annotated.mp4", make=False) if annotate and names else None,
                                 timelines(rel, "", make=False) if timelines else None))
        else:
            jobs.append(PhotoJob(src, names(rel, ".annotated.jpg", make=False) if annotate and names else None,
                                 names(rel, f".{saliency}.jpg", make=False) if saliency and names else None))
    return jobs


def batch_jobs(jobs: list[PhotoJob | VideoJob], size: int) -> list[list[PhotoJob] | VideoJob]:
    """Consecutive photos in batches of at most ``size``, each video on its own, in input order
    (the classifier sees the same batches whichever process runs them)."""
    steps: list[list[PhotoJob] | VideoJob] = []
    photos: list[PhotoJob] = []
    for job in jobs:
        if isinstance(job, VideoJob):
            if photos:
                steps.append(photos)
                photos = []
            steps.append(job)
            continue
        photos.append(job)
        if len(photos) >= size:
            steps.append(photos)
            photos = []
    if photos:
        steps.append(photos)
    return steps


def plan_steps(inputs: list[tuple[Path, Path]], out: Path | None, *, done, batch: int, annotate: bool,
               saliency: str | None, timeline: Path | None = None) -> list[list[PhotoJob] | VideoJob]:
    """What a run does: every input named under ``out`` (:func:`plan_jobs`), each video's
    timeline folder under ``timeline``, those not ``done`` in batches (:func:`batch_jobs`)."""
    jobs = plan_jobs(inputs, OutputNames(out) if out else None, annotate=annotate, saliency=saliency,
                     timelines=OutputNames(timeline) if timeline else None)
    return batch_jobs([j for j in jobs if str(j.path) not in done], batch)


__all__ = ["collect_inputs", "OutputNames", "PhotoJob", "VideoJob", "plan_jobs", "batch_jobs", "plan_steps"]
