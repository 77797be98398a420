"""Batch prediction, the engine of ``wildfer predict``: collect inputs, plan their outputs,
run the recognizer over them in batches (here or on worker processes), stream each finished
record to the progress file and the CSV, resume what an interrupted run left, and assemble
the JSON report. The command itself (options, progress bar, summary) is in
:mod:`wildfer.wild.commands`.

Bad inputs never stop the run: each is listed in the summary, and the exit code is 1 only
when nothing at all could be processed. Photos whose file ended early (see
:mod:`wildfer.data.images`) are processed, marked ``"truncated": true`` and counted.

Output paths are checked before the model is loaded. Results are written as they are made:
every finished input (photo, video or unreadable file) is one line of a progress file beside
the JSON output (``out.json`` -> ``out.json.jsonl``; a ``--json`` name ending in ``.jsonl``
is that file itself, and stays the output) and its CSV rows are appended, both flushed as
each input is finished. The JSON report is assembled from the progress file at the end, and
also when the run is interrupted (Ctrl-C: exit code 130 and a line saying how many photos the
output holds); the progress file is removed once the outputs are complete. ``--resume`` keeps what an output
already holds, skips those inputs and completes it. Annotated images, overlays, videos and the
report are written under a temporary name in their folder and renamed when whole, so no file
under its final name is ever half written. What is written (the progress file, the CSV, the
report, the settings ``--resume`` checks) is :mod:`wildfer.wild.outputs`'.

With ``workers`` > 1 (``--workers N``), batches of photos are processed by N local processes
(forks of a forkserver where there is one, else spawned; each with one Recognizer, one torch
thread and a one-thread detector), which also save their photos' annotated images and
overlays under names chosen here beforehand; videos stay in the main process, which remains
the only writer of the progress file, the CSV and the report. Records are written in input order (a batch finished early waits for those before
it), so every output is the one a single process writes. Ctrl-C stops the workers after the
photo each is on and writes everything finished; a second Ctrl-C stops them at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from ..data.images import IMAGE_EXTENSIONS
from ..errors import OutputError, WildferError
from ..paths import partial_path, written_whole
from .outputs import (  # noqa: F401 - re-exported: where callers have found them
    CSV_COLUMNS,
    PredictOutputs,
    ResultWriter,
    build_report,
    check_same_settings,
    complete_outputs,
    predict_outputs,
    read_progress,
    read_settings,
    record_kind,
    record_rows,
    run_settings,
    settings_path,
)
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
        elif p.is_file():
            found.append((p, Path(p.name)))
        elif p.exists():  # a FIFO or device would block or never end
            missing.append({"path": str(p), "error": f"{p}: not a regular file (a FIFO, device or socket is not read)"})
        else:
            missing.append({"path": str(p), "error": f"{p}: not found"})
    return found, missing


# ----------------------------------------------------------------------------- writing safely


@contextlib.contextmanager
def no_interrupt() -> Iterator[None]:
    """Hold Ctrl-C off while the outputs are completed (a second Ctrl-C must not cut the
    report it is waiting for)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def _ctrl_c_after() -> Iterator[None]:
    """Hold a Ctrl-C until the block ends, then raise it (the records of one batch are
    written all or none, so none is written twice after an interruption)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list[int] = []
    old = signal.signal(signal.SIGINT, lambda *_: pressed.append(1))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if pressed:
        raise KeyboardInterrupt


class _Names:
    """Output names under --out that never collide within one run."""

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


# ----------------------------------------------------------------------------- what to do


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


def plan_jobs(inputs: list[tuple[Path, Path]], names: _Names | None, *, annotate: bool,
              saliency: str | None, timelines: _Names | None = None) -> list[PhotoJob | VideoJob]:
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


def photo_records(rec, jobs: list[PhotoJob], *, saliency: str | None = None, stop=None) -> Iterator[dict[str, Any]]:
    """Detect and classify one batch of photos and save their images, yielding each photo's
    record when it is finished: unreadable ones as they are found, then the others in input
    order. ``stop`` (an Event): once set, no further photo is started."""
    from .annotate import annotate as draw

    kept, works = [], []
    for job in jobs:
        if stop is not None and stop.is_set():
            break
        try:
            works.append(rec._prepare(job.path, keep_rgb=job.annotated is not None))  # noqa: SLF001
            kept.append(job)
        except WildferError as e:
            yield {"path": str(job.path), "error": str(e)}
    for job, work, res in zip(kept, works, rec._classify(works)):  # noqa: SLF001
        if job.annotated is not None or job.overlay is not None:
            if stop is not None and stop.is_set():
                return
            if job.annotated is not None:
                with written_whole(job.annotated) as tmp:
                    draw(work.rgb, res).save(tmp, quality=90)
            if job.overlay is not None:
                ex = rec.explain(job.path, method=saliency)
                with written_whole(job.overlay) as tmp:
                    ex.overlay().save(tmp, quality=90)
        yield res.to_dict()


def plan_steps(inputs: list[tuple[Path, Path]], out: Path | None, *, done, batch: int, annotate: bool,
               saliency: str | None, timeline: Path | None = None) -> list[list[PhotoJob] | VideoJob]:
    """What a run does: every input named under ``out`` (:func:`plan_jobs`), each video's
    timeline folder under ``timeline``, those not ``done`` in batches (:func:`batch_jobs`)."""
    jobs = plan_jobs(inputs, _Names(out) if out else None, annotate=annotate, saliency=saliency,
                     timelines=_Names(timeline) if timeline else None)
    return batch_jobs([j for j in jobs if str(j.path) not in done], batch)


def video_record(rec, job: VideoJob, *, stride: int, progress=None, keep_frames: bool = True) -> dict[str, Any]:
    """One video's record (an error record when it cannot be read), its annotated copy
    written whole, its timeline written as it plays (with ``job.timeline``; its folder's
    files when the video is done). ``progress(done, total)`` after each frame."""
    from .timeline import TimelineWriter
    from .video import process_video

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
        return {"path": str(job.path), "error": str(e)}


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


def run_steps(rec, steps: list[list[PhotoJob] | VideoJob], *, saliency: str | None,
              finished: Callable[[dict[str, Any]], None], video: Callable[[VideoJob], None], workers: int = 1,
              settings: dict[str, Any] | None = None, err=None, ctx=None) -> bool:
    """Every step, each record handed to ``finished`` in input order: here, or the photos on
    ``workers`` processes (:func:`run_in_workers`, built with ``settings``, the Recognizer's
    keywords). True when Ctrl-C stopped the workers."""
    if workers > 1 and any(isinstance(step, list) for step in steps):
        # the workers build their own detector (on one thread): name the one ``rec`` became
        settings = {**(settings or {}), "detector": rec.detector.name}
        return run_in_workers(steps, workers, settings, saliency=saliency, finished=finished, video=video,
                              err=err, ctx=ctx)
    for step in steps:
        if isinstance(step, VideoJob):
            video(step)
        else:
            for r in photo_records(rec, step, saliency=saliency):
                finished(r)
    return False


# ----------------------------------------------------------------------------- worker processes

_WORKER: dict[str, Any] = {}


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet collected, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _end_with(pid: int, every_s: float = 0.5) -> None:
    """End this process as soon as process ``pid`` (the run's main process) has ended, however
    it ended (SIGKILL included), from a daemon thread: a worker never outlives its run."""

    def watch() -> None:
        while _alive(pid):
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="wildfer-end-with-parent", daemon=True).start()


def _start_worker(settings: dict[str, Any], saliency: str | None, stop, parent: int | None = None) -> None:
    """Pool initializer: this process's Recognizer, built once, on one thread (N processes of
    one thread use N cores better than threads inside one). Ctrl-C is for the main process; the
    process ends with the ``parent`` process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent is not None:
        _end_with(parent)
    import cv2

    from .detectors import create_detector
    from .recognizer import Recognizer

    torch = sys.modules.get("torch")  # preloaded by the forkserver where a model needs it
    if torch is not None:
        torch.set_num_threads(1)
        with contextlib.suppress(RuntimeError):  # only settable before any inter-op work
            torch.set_num_interop_threads(1)
    cv2.setNumThreads(1)
    detector = create_detector(settings["detector"], max_side=settings.get("max_side", 640), threads=1)
    _WORKER.update(recognizer=Recognizer(**{**settings, "detector": detector, "threads": 1}), saliency=saliency,
                   stop=stop)


def _predict_batch(jobs: list[PhotoJob]) -> list[dict[str, Any]]:
    """One batch in a worker: the records of the photos it finished."""
    w = _WORKER
    return list(photo_records(w["recognizer"], jobs, saliency=w["saliency"], stop=w["stop"]))


def _stop_processes(pool) -> None:
    """End the pool's processes now (their batches are dropped)."""
    stop_now = getattr(pool, "terminate_workers", None)  # Python 3.14
    if stop_now is not None:
        stop_now()
        return
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


def worker_context(torch: bool = False):
    """The multiprocessing context of the workers. Where there is a forkserver, it is started
    now and imports the pipeline (and torch, where the model computes with it) while this
    process loads its own model, and each worker is a fork of it: N workers start in about the
    time of one import, not N imports on the same cores. It is started with Ctrl-C ignored,
    which it and its workers inherit."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload((["torch"] if torch else []) + ["wildfer.wild.recognizer", __name__])
    with no_interrupt():
        forkserver.ensure_running()
    return ctx


class _PoolRun:
    """Photo batches queued on a process pool, at most two per process ahead, and the videos
    between them, handed on in input order."""

    def __init__(self, pool, steps: list[list[PhotoJob] | VideoJob], workers: int, *,
                 finished: Callable[[dict[str, Any]], None], video: Callable[[VideoJob], None], starting):
        self.pool, self.steps, self.workers = pool, steps, workers
        self.finished, self.video, self.starting = finished, video, starting
        self.ahead: deque = deque()  # (step, future; None for a video), in input order
        self.queued = self.next = 0
        self.killed: list[list[PhotoJob]] = []  # batches whose process was ended in the middle

    def _hand_on(self, results: list[dict[str, Any]], hold=_ctrl_c_after) -> None:
        with hold():
            for r in results:
                self.finished(r)
            self.ahead.popleft()

    def _fill(self) -> None:
        while self.next < len(self.steps) and self.queued < 2 * self.workers:
            step = self.steps[self.next]
            self.next += 1
            if isinstance(step, VideoJob):
                self.ahead.append((step, None))
                continue
            with self.starting():
                self.ahead.append((step, self.pool.submit(_predict_batch, step)))
            self.queued += 1

    def run(self) -> None:
        """Every step, each record handed on as soon as those before it are."""
        while self.next < len(self.steps) or self.ahead:
            self._fill()
            step, fut = self.ahead[0]
            if fut is None:
                self.video(step)
                self.ahead.popleft()
            else:
                results = fut.result()
                self.queued -= 1
                self._hand_on(results)

    def drain(self, err) -> None:
        """After a Ctrl-C: nothing new is started, the records of the photos the workers finish
        are handed on; a second Ctrl-C ends the processes at once."""
        for _, fut in self.ahead:
            if fut is not None:
                fut.cancel()
        err.print("stopping: the workers finish the photo each is on (Ctrl-C again to drop it)", highlight=False)
        wait = True
        while self.ahead:
            step, fut = self.ahead[0]
            results = []
            if fut is not None and (wait or fut.done()):
                try:
                    results = fut.result()
                except KeyboardInterrupt:
                    wait = False
                    self.killed = [s for s, _ in self.ahead if isinstance(s, list)]
                    _stop_processes(self.pool)
                    continue
                except (CancelledError, BrokenProcessPool):
                    results = []
            self._hand_on(results, hold=no_interrupt)

    def close(self) -> None:
        """Wait for the processes to end; remove what an ended process left half saved."""
        with no_interrupt():
            self.pool.shutdown(wait=True, cancel_futures=True)
            for step in self.killed:
                for job in step:
                    for name in (job.annotated, job.overlay):
                        if name is not None:
                            partial_path(name).unlink(missing_ok=True)


def run_in_workers(steps: list[list[PhotoJob] | VideoJob], workers: int, settings: dict[str, Any], *,
                   saliency: str | None, finished: Callable[[dict[str, Any]], None],
                   video: Callable[[VideoJob], None], err, ctx=None) -> bool:
    """Photo batches on ``workers`` processes (see :func:`worker_context`), videos here, records handed to
    ``finished`` in input order, at most two batches per process queued ahead. True when
    Ctrl-C stopped it: no photo is started after it, the workers finish the one they are on
    and every finished record is handed on; a second Ctrl-C ends the workers at once."""
    ctx = ctx or worker_context()
    # spawned workers start from here and must inherit Ctrl-C ignored (a Ctrl-C meanwhile is
    # lost); forked ones inherit it from the forkserver, and a Ctrl-C here is only held
    starting = no_interrupt if ctx.get_start_method() == "spawn" else _ctrl_c_after
    stop = ctx.Event()
    n_batches = sum(isinstance(s, list) for s in steps)
    pool = ProcessPoolExecutor(max(1, min(workers, n_batches)), mp_context=ctx, initializer=_start_worker,
                               initargs=(settings, saliency, stop, os.getpid()))
    run = _PoolRun(pool, steps, workers, finished=finished, video=video, starting=starting)
    try:
        try:
            run.run()
        except KeyboardInterrupt:
            stop.set()
            run.drain(err)
            return True
    except BrokenProcessPool:
        raise WildferError("a --workers process ended unexpectedly; what was finished is in the outputs, and "
                           "--resume completes them") from None
    finally:
        stop.set()
        run.close()
    return False


__all__ = ["PredictOutputs", "predict_outputs", "collect_inputs", "plan_steps", "run_steps", "build_report",
           "complete_outputs", "read_progress", "read_settings", "run_settings", "check_same_settings", "partial_path", "written_whole", "record_rows"]
