"""One inference thread in front of the :class:`~wildfer.wild.Recognizer`.

Why one thread: the face detector (OpenCV / YuNet) keeps per-input-size state and is not
safe to call from several threads at once, and torch already spreads one forward pass over
the cores. Requests that wait together are *micro-batched*: up to ``max_batch`` decoded
photos go through ``Recognizer.predict_batch`` in one call, so the classifier sees all their
faces as one batch. Explanations (gradients) run one at a time on the same thread.

Every job carries a deadline. A job whose client already gave up (timeout -> 504) is dropped
before it starts; the queue is bounded so an overloaded server answers 503 at once instead
of piling up work.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("wildfer.serve")


class Busy(Exception):
    """The queue is full: the server is overloaded (HTTP 503)."""


class Expired(Exception):
    """The job's deadline passed while it waited in the queue (HTTP 504)."""


@dataclass
class Job:
    kind: str  # "predict" or "explain"
    image: Any  # H x W x 3 uint8 RGB array (already decoded and checked)
    deadline: float  # time.monotonic() after which nobody waits for the answer
    options: dict = field(default_factory=dict)
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float = 0.0


_STOP = object()


class InferenceWorker:
    """Runs recognizer calls on one daemon thread, batching concurrent predictions.

    Parameters
    ----------
    recognizer:
        An object with ``predict_batch(images)`` and ``explain(image, method=...)``.
    max_batch:
        Most photos passed to one ``predict_batch`` call.
    max_queue:
        Most jobs waiting; :meth:`submit` raises :class:`Busy` beyond that.
    """

    def __init__(self, recognizer, *, max_batch: int = 8, max_queue: int = 64):
        self.recognizer = recognizer
        self.max_batch = max(1, int(max_batch))
        self.max_queue = max(1, int(max_queue))
        self._q: queue.Queue = queue.Queue(maxsize=self.max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.completed = 0
        self.dropped = 0
        self.batches = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "InferenceWorker":
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="wildfer-inference", daemon=True)
                self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        t = self._thread
        if t is None:
            return
        try:
            self._q.put(_STOP, timeout=timeout)
        except queue.Full:
            pass
        t.join(timeout)
        self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

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

    def _live(self, job: Job) -> bool:
        """Start ``job`` unless its request gave up (cancelled) or its deadline passed."""
        if not job.future.set_running_or_notify_cancel():
            self.dropped += 1
            return False
        if time.monotonic() > job.deadline:
            self.dropped += 1
            job.future.set_exception(Expired("the time limit passed before the model was free"))
            return False
        return True

    def _run(self) -> None:
        carry: list = []
        while True:
            item = carry.pop(0) if carry else self._q.get()
            if item is _STOP:
                return
            if item.kind == "predict":
                batch, rest = self._take_batch(item)
                carry.extend(rest)
                self._do_predict([j for j in batch if self._live(j)])
            else:
                if self._live(item):
                    self._do_explain(item)

    def _do_predict(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        now = time.monotonic()
        for j in jobs:
            j.started_at = now
        self.batches += 1
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
            self.completed += 1

    def _do_explain(self, job: Job) -> None:
        job.started_at = time.monotonic()
        self._finish(job, lambda: self.recognizer.explain(job.image, **job.options))

    def _finish(self, job: Job, fn) -> None:
        try:
            job.future.set_result(fn())
            self.completed += 1
        except BaseException as e:  # noqa: BLE001 - handed to the waiting request
            job.future.set_exception(e)
