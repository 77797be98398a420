"""Inference threads in front of the :class:`~wildfer.wild.Recognizer`.

``threads`` threads take jobs from one bounded queue. The detector (libfacedetection through
ctypes), onnxruntime and torch all release the GIL while they compute, so on a small CPU one
process with one inference thread per core uses every core with one copy of the model in
memory. Detectors that are not known to be thread-safe (``thread_safe`` not set on the
detector, e.g. OpenCV's Haar cascade) get one thread. Requests that wait together are
*micro-batched*: up to ``max_batch`` decoded photos go through ``Recognizer.predict_batch``
in one call, so the classifier sees all their faces as one batch. Explanations (gradients,
:func:`wildfer.photo_maps.explain_photo`) run one at a time per thread.

Every job carries a deadline. A job whose client already gave up (timeout -> 504, or the
connection closed) is dropped before it starts, and an explanation already running stops at
the network's next forward pass (:meth:`Job.abandon`; saliency methods run the network many
times, so that is soon); the queue is bounded so an overloaded server answers 503 at once
instead of piling up work.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelError

log = logging.getLogger("wildfer.serve")


class Busy(Exception):
    """The queue is full: the server is overloaded (HTTP 503)."""


class Expired(Exception):
    """The job's deadline passed while it waited in the queue (HTTP 504)."""


class Abandoned(Exception):
    """The job's request went away while the job ran; its work stopped part way."""


_running = threading.local()  # .job: the Job this inference thread is explaining, if any


def check_abandoned() -> None:
    """Raise :class:`Abandoned` when the job running on this thread has been abandoned."""
    job = getattr(_running, "job", None)
    if job is not None and job.abandoned.is_set():
        raise Abandoned("the request went away")


@dataclass
class Job:
    kind: str  # "predict" or "explain"
    image: Any  # H x W x 3 uint8 RGB array (already decoded and checked)
    deadline: float  # time.monotonic() after which nobody waits for the answer
    options: dict = field(default_factory=dict)
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float = 0.0
    abandoned: threading.Event = field(default_factory=threading.Event)

    def abandon(self) -> None:
        """Nobody waits for the answer: drop the job if it has not started, stop it if it runs."""
        self.abandoned.set()
        self.future.cancel()


_STOP = object()


class InferenceWorker:
    """Runs recognizer calls on one daemon thread, batching concurrent predictions.

    Parameters
    ----------
    recognizer:
        An object with ``predict(image)`` and ``predict_batch(images)``.
    explain:
        What an explanation job runs, ``explain(recognizer, image, method=...)``; ``None``:
        :func:`wildfer.photo_maps.explain_photo` (saliency maps painted on the photo).
    max_batch:
        Most photos passed to one ``predict_batch`` call.
    max_queue:
        Most jobs waiting; :meth:`submit` raises :class:`Busy` beyond that.
    threads:
        Inference threads (photos processed at once); 1 when the recognizer's detector is not
        marked ``thread_safe``.
    """

    def __init__(self, recognizer, *, explain=None, max_batch: int = 8, max_queue: int = 64, threads: int = 1):
        if explain is None:
            from ..photo_maps import explain_photo as explain
        self.recognizer = recognizer
        self.explain = explain
        self.max_batch = max(1, int(max_batch))
        self.max_queue = max(1, int(max_queue))
        threads = max(1, int(threads))
        det = getattr(recognizer, "detector", None)
        if threads > 1 and det is not None and not getattr(det, "thread_safe", False):
            log.info("detector %s is not thread-safe: one inference thread", getattr(det, "name", det))
            threads = 1
        self.threads = threads
        self._q: queue.Queue = queue.Queue(maxsize=self.max_queue)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._hook = None
        self.completed = 0
        self.dropped = 0
        self.abandoned = 0  # jobs stopped part way because their request went away
        self.batches = 0
        self.cpu_s = 0.0  # CPU time the inference threads spent on jobs (thread CPU clock)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "InferenceWorker":
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            while len(self._threads) < self.threads:
                t = threading.Thread(target=self._run, name=f"wildfer-inference-{len(self._threads)}", daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        threads, self._threads = self._threads, []
        for _ in threads:
            try:
                self._q.put(_STOP, timeout=timeout)
            except queue.Full:
                break
        t_end = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, t_end - time.monotonic()))
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    @property
    def alive(self) -> bool:
        return len(self._threads) > 0 and all(t.is_alive() for t in self._threads)

    def pending(self) -> int:
        return self._q.qsize()

    # ------------------------------------------------------------------ submit
    def submit(self, kind: str, image, deadline: float, **options) -> Job:
        """Queue a job; its ``future`` resolves to the recognizer's result (or its exception)."""
        if not self.alive:
            self.start()
        job = Job(kind=kind, image=image, deadline=deadline, options=options)
        try:
            self._q.put_nowait(job)
        except queue.Full:
            raise Busy(f"server busy: {self.max_queue} requests already waiting") from None
        return job

    # ------------------------------------------------------------------ thread
    def _take_batch(self, first: Job) -> tuple[list[Job], list]:
        """``first`` plus further waiting predict jobs (up to max_batch); other jobs come back."""
        batch, rest = [first], []
        while len(batch) < self.max_batch:
            try:
                j = self._q.get_nowait()
            except queue.Empty:
                break
            if j is not _STOP and j.kind == "predict":
                batch.append(j)
            else:
                rest.append(j)
                break
        return batch, rest

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def _live(self, job: Job) -> bool:
        """Start ``job`` unless its request gave up (cancelled) or its deadline passed."""
        if not job.future.set_running_or_notify_cancel():
            self._count("dropped")
            return False
        if time.monotonic() > job.deadline:
            self._count("dropped")
            job.future.set_exception(Expired("the time limit passed before the model was free"))
            return False
        return True

    def _run(self) -> None:
        carry: list = []
        while True:
            item = carry.pop(0) if carry else self._q.get()
            if item is _STOP:
                return
            t0 = time.thread_time()
            if item.kind == "predict":
                batch, rest = self._take_batch(item)
                carry.extend(rest)
                self._do_predict([j for j in batch if self._live(j)])
            else:
                if self._live(item):
                    self._do_explain(item)
            with self._lock:
                self.cpu_s += time.thread_time() - t0

    def _do_predict(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        now = time.monotonic()
        for j in jobs:
            j.started_at = now
        self._count("batches")
        if len(jobs) == 1:
            self._finish(jobs[0], lambda: self.recognizer.predict(jobs[0].image))
            return
        try:
            results = self.recognizer.predict_batch([j.image for j in jobs])
        except Exception:  # noqa: BLE001 - isolate the photo that failed, keep the others
            log.debug("batch of %d failed; retrying one by one", len(jobs), exc_info=True)
            for j in jobs:
                self._finish(j, lambda j=j: self.recognizer.predict(j.image))
            return
        for j, r in zip(jobs, results):
            j.future.set_result(r)
        self._count("completed", len(jobs))

    def _do_explain(self, job: Job) -> None:
        job.started_at = time.monotonic()
        _running.job = job
        if self._hook is None:  # the torch network is made for the first explanation, not at start
            hook = _watch_forward_passes(self.recognizer)
            with self._lock:
                if self._hook is None:
                    self._hook = hook
                elif hook is not None:
                    hook.remove()
        try:
            self._finish(job, lambda: self.explain(self.recognizer, job.image, **job.options))
        finally:
            _running.job = None

    def _finish(self, job: Job, fn) -> None:
        try:
            job.future.set_result(fn())
            self._count("completed")
        except Abandoned as e:
            self._count("abandoned")
            job.future.set_exception(e)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting request
            job.future.set_exception(e)


def _watch_forward_passes(recognizer):
    """A forward pre-hook on the recognizer's torch network that stops an abandoned
    explanation (:func:`check_abandoned`) at its next forward pass; None without a network
    (or without torch: the explanation then fails with its own message)."""
    try:
        net = getattr(getattr(recognizer, "classifier", None), "net", None)
    except ModelError:
        return None
    if net is None or not hasattr(net, "register_forward_pre_hook"):
        return None
    return net.register_forward_pre_hook(lambda module, args: check_abandoned())
