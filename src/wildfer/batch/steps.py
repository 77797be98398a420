"""One step of a batch run, in whichever process runs it: a batch of photos detected and
classified together, their annotated images and saliency overlays saved (:func:`photo_records`),
or one video with its annotated copy and timeline (:func:`video_record`).

Bad inputs never stop the run: each becomes an error record (:func:`~wildfer.batch.records.error_record`).
Photos whose file ended early (see :mod:`wildfer.data.images`) are processed and marked
``"truncated": true``. Annotated images, overlays and videos are written under a temporary
name in their folder and renamed when whole, so no file under its final name is ever half
written.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from ..errors import OutputError, WildferError
from ..paths import written_whole
from .plan import PhotoJob, VideoJob
from .records import error_record


def photo_records(rec, jobs: list[PhotoJob], *, saliency: str | None = None, stop=None) -> Iterator[dict[str, Any]]:
    """Detect and classify one batch of photos and save their images, yielding each photo's
    record when it is finished: unreadable ones as they are found, then the others in input
    order. ``stop`` (an Event): once set, no further photo is started."""
    from ..wild.annotate import annotate as draw

    kept, works = [], []
    for job in jobs:
        if stop is not None and stop.is_set():
            break
        try:
            works.append(rec.prepare(job.path, keep_rgb=job.annotated is not None or job.overlay is not None))
            kept.append(job)
        except WildferError as e:
            yield error_record(job.path, e)
    for job, work, res in zip(kept, works, rec.classify_prepared(works)):
        if job.annotated is not None or job.overlay is not None:
            if stop is not None and stop.is_set():
                return
            if job.annotated is not None:
                with written_whole(job.annotated) as tmp:
                    draw(work.rgb, res).save(tmp, quality=90)
            if job.overlay is not None:
                from ..photo_maps import explain_prepared

                ex = explain_prepared(rec, work, res, method=saliency)  # the photo as detected above
                with written_whole(job.overlay) as tmp:
                    ex.overlay().save(tmp, quality=90)
        yield res.to_dict()


def video_record(rec, job: VideoJob, *, stride: int, progress=None, keep_frames: bool = True) -> dict[str, Any]:
    """One video's record (an error record when it cannot be read), its annotated copy
    written whole, its timeline written as it plays (with ``job.timeline``; its folder's
    files when the video is done). ``progress(done, total)`` after each frame."""
    from ..wild.timeline import TimelineWriter
    from ..wild.video import process_video

    try:
        with contextlib.ExitStack() as stack:
            kw: dict[str, Any] = {"stride": stride, "progress": progress, "keep_frames": keep_frames}
            if job.timeline is not None:
                kw["on_frame"] = stack.enter_context(TimelineWriter(job.timeline, rec.labels, video=str(job.path))).add
            if job.annotated is None:
                return process_video(rec, job.path, **kw)
            tmp = stack.enter_context(written_whole(job.annotated))
            record = process_video(rec, job.path, annotate_to=tmp, **kw)
            check_video_written(tmp, record["frames_total"], job.annotated)
            return record
    except OutputError:
        raise
    except WildferError as e:
        return error_record(job.path, e)


def check_video_written(path: Path, frames: int, final: Path) -> None:
    """Raise :class:`OutputError` unless the video at ``path`` reads back with ``frames``
    frames (a video writer fails silently on a full disk)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        ok = cap.isOpened() and cap.read()[0]
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if ok else 0
    finally:
        cap.release()
    if not ok or n < frames:
        raise OutputError(f"{final}: the annotated video could not be written whole ({n} of {frames} frames read "
                          "back; a full disk?)")


__all__ = ["photo_records", "video_record", "check_video_written"]
