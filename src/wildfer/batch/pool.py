"""The local engine of ``wildfer predict``: every step of a run here, or, with ``workers`` > 1
(``--workers N``), the batches of photos on N local processes (forks of a forkserver where
there is one, else spawned; each with one Recognizer, one torch thread and a one-thread
detector), which also save their photos' annotated images and overlays under the names
:mod:`wildfer.batch.plan` chose beforehand. Videos stay in the main process, which remains
the only writer of the progress file, the CSV and the report. Records are handed on in input
order (a batch finished early waits for those before it), so every output is the one a single
process writes. Ctrl-C stops the workers after the photo each is on and writes everything
finished; a second Ctrl-C stops them at once.
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
from typing import Any, Callable

from ..errors import WildferError
from ..paths import partial_path
from .outputs import ctrl_c_after, no_interrupt
from .plan import PhotoJob, VideoJob
from .steps import photo_records


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

    from ..wild.detectors import create_detector
    from ..wild.recognizer import Recognizer

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

    def _hand_on(self, results: list[dict[str, Any]], hold=ctrl_c_after) -> None:
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
    starting = no_interrupt if ctx.get_start_method() == "spawn" else ctrl_c_after
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


__all__ = ["run_steps", "run_in_workers", "worker_context"]
