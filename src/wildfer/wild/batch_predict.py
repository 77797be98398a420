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
under its final name is ever half written.

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
import csv
import json
import os
import signal
import threading
import time
from collections import deque
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from ..data.images import IMAGE_EXTENSIONS
from ..errors import OutputError, WildferError
from ..jsonio import dumps
from ..paths import partial_path, write_text_whole, written_whole
from .recognizer import top_labels
from .video import VIDEO_EXTENSIONS, is_video_file

#: The CSV's first columns; the classes' probabilities, ``flags`` and ``truncated`` follow. ``label2``
#: and ``probability2`` are the second likeliest label and its probability.
CSV_COLUMNS = ["path", "frame", "face", "track", "left", "top", "right", "bottom", "score", "label", "confidence",
               "label2", "probability2"]


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


# ----------------------------------------------------------------------------- records


def record_kind(rec: dict[str, Any]) -> str:
    """``"image"``, ``"video"`` or ``"unreadable"`` for one line of the progress file."""
    if "error" in rec:
        return "unreadable"
    return "video" if rec.get("type") == "video" else "image"


def read_progress(path: Path) -> list[dict[str, Any]]:
    """The records of a progress file; a line cut off by a killed run (and anything after it)
    is left out, so its input is done again."""
    records = []
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return records
    except (OSError, UnicodeDecodeError) as e:
        raise WildferError(f"{path}: cannot read the results to resume ({e})") from None
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break
        if isinstance(rec, dict) and "path" in rec:
            records.append(rec)
    return records


def read_settings(path: Path) -> dict[str, Any] | None:
    """The settings line a progress file begins with (:class:`ResultWriter`), or None."""
    try:
        with open(path) as fh:
            first = fh.readline()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        head = json.loads(first)
    except json.JSONDecodeError:
        return None
    return head.get("settings") if isinstance(head, dict) and isinstance(head.get("settings"), dict) else None


def settings_path(output: Path) -> Path:
    """Where a run without a JSON report (``--csv`` alone, ``--json x.jsonl``) keeps the
    settings its results were made with (hidden, beside the output), so that ``--resume`` can
    check them."""
    return output.with_name(f".{output.name}.settings.json")


def _read_settings_file(path: Path) -> dict[str, Any] | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return d if isinstance(d, dict) else None


def _option_text(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"--{key.replace('_', '-')} {'on' if value else 'off'}"
    return f"--{key.replace('_', '-')} {value}"


def check_same_settings(where: Path, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """Raise unless an output's results were made with ``new``'s settings (everything that
    changes a result: model, detector, mode, detection size, TTA, backend, video stride)."""
    if old is None:
        raise WildferError(f"{where}: cannot resume, it does not record the settings its results were made with; "
                           "write a new output")
    diff = [k for k in new if old.get(k) != new[k]]
    if diff:
        was = ", ".join(_option_text(k, old.get(k)) for k in diff)
        now = ", ".join(_option_text(k, new[k]) for k in diff)
        raise WildferError(f"{where}: cannot resume, its results were made with {was}, not {now}; give the same "
                           "options or a new output")


def _read_report(path: Path, labels) -> list[dict[str, Any]]:
    try:
        rep = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WildferError(f"{path}: cannot resume, not a predict JSON report ({str(e)[:80]})") from None
    if not isinstance(rep, dict) or not all(isinstance(rep.get(k, []), list) for k in ("images", "videos", "unreadable")):
        raise WildferError(f"{path}: cannot resume, not a predict JSON report")
    if rep.get("labels", list(labels)) != list(labels):
        raise WildferError(f"{path}: cannot resume, it was made by a model with the classes {', '.join(rep['labels'])}, "
                           f"not {', '.join(labels)}")
    return [r for k in ("images", "videos", "unreadable") for r in rep.get(k, []) if isinstance(r, dict) and "path" in r]


def _csv_rows(path: Path, labels) -> tuple[list[str], list[list[str]]] | None:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise WildferError(f"{path}: cannot resume, not a readable CSV ({str(e)[:80]})") from None
    if not rows or not rows[0] or rows[0][0] != "path":
        raise WildferError(f"{path}: cannot resume, not a predict CSV (no 'path' column first)")
    header = rows[0]
    if header[:len(CSV_COLUMNS)] != CSV_COLUMNS:
        raise WildferError(f"{path}: cannot resume, its columns do not begin {', '.join(CSV_COLUMNS)} as "
                           "predict writes them; write a new CSV")
    classes = header[len(CSV_COLUMNS):header.index("flags")] if "flags" in header else None
    if classes != list(labels):
        raise WildferError(f"{path}: cannot resume, its columns are not those of a model with the classes "
                           f"{', '.join(labels)}")
    return header, rows[1:]


def _runner_up(face: dict[str, Any]) -> tuple[str, Any]:
    """A face's second likeliest label and its probability, from its ``top2`` (a record written
    before there was one: from its probabilities, ranked as ``top2`` is); empty for a one-class
    model."""
    top = face.get("top2") or [{"label": k, "probability": v} for k, v in top_labels(face["probabilities"], 2)]
    return (top[1]["label"], top[1]["probability"]) if len(top) > 1 else ("", "")


def _face_rows(record: dict[str, Any], labels, frame=None, truncated=False) -> list[list[Any]]:
    rows = []
    for i, f in enumerate(record["faces"]):
        probs = f["probabilities"]
        rows.append([record["path"], "" if frame is None else frame, i, f.get("track", ""), *f["box"], f["score"],
                     f["label"], probs.get(f["label"], 0.0), *_runner_up(f), *[probs.get(c, 0.0) for c in labels],
                     ";".join(f["flags"]), int(bool(truncated))])
    return rows


def record_rows(rec: dict[str, Any], labels) -> list[list[Any]]:
    """The CSV rows of one record (a photo's faces, or every face of every processed frame)."""
    kind = record_kind(rec)
    if kind == "image":
        return _face_rows(rec, labels, truncated=rec.get("truncated", False))
    if kind == "video":
        return [row for fr in rec["frames"] for row in _face_rows({"path": rec["path"], "faces": fr["faces"]}, labels,
                                                                  frame=fr["frame"])]
    return []


def _records_from_csv(header: list[str], rows: list[list[str]]) -> list[dict[str, Any]]:
    """Records rebuilt from a finished CSV (no progress file beside it): enough to count and
    list its photos' faces. Photos without faces have no rows there and are done again."""
    by_path: dict[str, dict[str, Any]] = {}
    classes = header[len(CSV_COLUMNS):header.index("flags")]
    for row in rows:
        d = dict(zip(header, row))
        if not d.get("path"):
            continue
        try:
            face = {"box": [float(d[k]) for k in ("left", "top", "right", "bottom")], "score": float(d["score"]),
                    "label": d["label"], "probabilities": {c: float(d[c]) for c in classes},
                    "flags": [f for f in d.get("flags", "").split(";") if f]}
        except (KeyError, ValueError):
            raise WildferError(f"cannot resume: a row for {d['path']} in the CSV is damaged") from None
        if d.get("frame", ""):
            rec = by_path.setdefault(d["path"], {"path": d["path"], "type": "video", "frames": [], "tracks": []})
            if not rec["frames"] or rec["frames"][-1]["frame"] != int(d["frame"]):
                rec["frames"].append({"frame": int(d["frame"]), "faces": []})
            rec["frames"][-1]["faces"].append(face)
        else:
            rec = by_path.setdefault(d["path"], {"path": d["path"], "faces": [], "truncated": d.get("truncated") == "1"})
            rec["faces"].append(face)
    return list(by_path.values())


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
    import torch

    from .detectors import create_detector
    from .recognizer import Recognizer

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # only settable before any inter-op work
        torch.set_num_interop_threads(1)
    cv2.setNumThreads(1)
    detector = create_detector(settings["detector"], max_side=settings.get("max_side", 640), threads=1)
    _WORKER.update(recognizer=Recognizer(**{**settings, "detector": detector}), saliency=saliency, stop=stop)


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


def worker_context():
    """The multiprocessing context of the workers. Where there is a forkserver, it is started
    now and imports torch and the pipeline while this process loads its own model, and each
    worker is a fork of it: N workers start in about the time of one import, not N imports on
    the same cores. It is started with Ctrl-C ignored, which it and its workers inherit."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "wildfer.wild.recognizer", __name__])
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


class ResultWriter:
    """Everything ``predict`` writes per finished input, flushed as it goes: the progress file
    (one JSON line per input) and the CSV rows. ``done`` maps each input already in the
    outputs (from an earlier run, with ``resume``) to its record."""

    def __init__(self, progress: Path | None, csv_file: Path | None, labels, *, resume: bool,
                 report: Path | None = None, inputs: set[str] = frozenset(), settings: dict[str, Any] | None = None,
                 jsonl: Path | None = None):
        self.progress, self.csv_file, self.labels, self.jsonl = progress, csv_file, list(labels), jsonl
        self.settings = dict(settings or {})
        records: list[dict[str, Any]] = []
        if resume:
            records, old, where = self._earlier(report)
            if records and settings is not None:
                check_same_settings(where, old, self.settings)
        self.done = {r["path"]: r for r in records if r["path"] in inputs}
        self._log = self._csv = self._csv_fh = None
        # the settings: a first line of the progress file when it is ours, else (no report to hold
        # them) a hidden file beside each output
        head = [dumps({"settings": self.settings}) + "\n"] if settings is not None and jsonl is None else []
        if settings is not None and report is None:
            for out in (jsonl, csv_file):
                if out is not None:
                    write_text_whole(settings_path(out), dumps(self.settings, indent=1) + "\n")
        if progress is not None:
            progress.parent.mkdir(parents=True, exist_ok=True)
            with written_whole(progress) as tmp:
                tmp.write_text("".join(head + [dumps(r) + "\n" for r in self.done.values()]))
            self._log = open(progress, "a")
        if csv_file is not None:
            kept: list[list[str]] = []
            if resume:
                old_rows = _csv_rows(csv_file, self.labels)
                kept = [r for r in old_rows[1] if r and r[0] in self.done] if old_rows else []
            csv_file.parent.mkdir(parents=True, exist_ok=True)
            with written_whole(csv_file) as tmp, open(tmp, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow([*CSV_COLUMNS, *self.labels, "flags", "truncated"])
                w.writerows(kept)
            self._csv_fh = open(csv_file, "a", newline="")
            self._csv = csv.writer(self._csv_fh)

    def _earlier(self, report: Path | None) -> tuple[list[dict[str, Any]], dict[str, Any] | None, Path]:
        """What the outputs already hold: ``(records, the settings they were made with, the
        file that says so)``, from the progress file, else the report, else the CSV."""
        progress, csv_file = self.progress, self.csv_file
        sidecar = _read_settings_file(settings_path(csv_file)) if csv_file is not None else None
        if progress is not None and progress.exists():
            old = _read_settings_file(settings_path(progress)) if progress == self.jsonl else read_settings(progress)
            return read_progress(progress), old or sidecar, progress
        if report is not None:
            records = _read_report(report, self.labels)
            old = None
            if records:
                rep = json.loads(Path(report).read_text())
                old = rep.get("settings") if isinstance(rep.get("settings"), dict) else None
            return records, old, report
        if csv_file is not None:
            rows = _csv_rows(csv_file, self.labels)
            return (_records_from_csv(*rows) if rows else []), sidecar, csv_file
        return [], None, Path()

    def add(self, rec: dict[str, Any]) -> None:
        """Write one finished input: its CSV rows first, then its progress line (an input
        counts as done only once its line is there)."""
        if self._csv is not None:
            self._csv.writerows(record_rows(rec, self.labels))
        if self._log is not None:
            self._log.write(dumps(rec) + "\n")

    def flush(self) -> None:
        for fh in (self._csv_fh, self._log):
            if fh is not None:
                fh.flush()

    def close(self) -> None:
        for fh in (self._csv_fh, self._log):
            if fh is not None:
                fh.close()
        self._csv_fh = self._log = self._csv = None


class PredictOutputs(NamedTuple):
    """Where a run writes: ``report`` the JSON report (a ``--json`` name not ending in
    ``.jsonl``), ``progress`` the progress file, ``jsonl`` the progress file when it is itself
    the output (``--json x.jsonl``)."""

    out: Path | None
    json_file: Path | None
    csv_file: Path | None
    report: Path | None
    progress: Path | None
    jsonl: Path | None
    images: bool = False  # annotated images or saliency overlays are saved under ``out``

    @property
    def written(self) -> list[Path]:
        """The result files a finished run leaves (annotated images aside)."""
        return [p for p in (self.report, self.jsonl, self.csv_file) if p is not None]

    def check(self) -> None:
        """Every output path can be written, before any work (model loading included)."""
        from ..paths import check_output_dir, check_output_file

        if self.out is not None:
            check_output_dir(self.out, "--out")
        if self.json_file is not None:
            check_output_file(self.json_file, "--json")
        if self.csv_file is not None:
            check_output_file(self.csv_file, "--csv")
            if self.json_file is not None and Path(self.csv_file).resolve() == Path(self.json_file).resolve():
                raise WildferError(f"--csv {self.csv_file}: is also the --json file; give two names")
        if self.progress is not None and self.progress != self.json_file:
            check_output_file(self.progress, "progress file")

    def check_inputs(self, arguments: list[Path], files: list[Path]) -> None:
        """No output is one of the input ``files``, and annotated images and overlays are not
        saved inside a folder among the ``arguments`` (a later run would read them as photos)."""
        from ..paths import check_not_input, check_outside

        for path, what in ((self.json_file, "--json"), (self.csv_file, "--csv"), (self.progress, "progress file")):
            if path is not None:
                check_not_input(path, files, what)
        if self.out is not None and self.images:
            check_outside(self.out, arguments, "--out")

    @property
    def locked(self) -> list[Path]:
        """The files one run writes alone (a second run on any of them is refused)."""
        return [p for p in (self.report, self.progress, self.csv_file) if p is not None]


def predict_outputs(out=None, json_file=None, csv_file=None, *, annotate=False, saliency=None) -> PredictOutputs:
    """The outputs of a run: images and overlays need a folder (``predictions`` by default),
    and a folder alone gets ``predictions.json`` in it; the progress file is beside the JSON
    (or the CSV) output."""
    out = Path(out) if out is not None else None
    json_file = Path(json_file) if json_file is not None else None
    csv_file = Path(csv_file) if csv_file is not None else None
    if (annotate or saliency) and out is None:
        out = Path("predictions")
    if json_file is None and csv_file is None and out is not None:
        json_file = out / "predictions.json"
    report = json_file if json_file is not None and json_file.suffix.lower() != ".jsonl" else None
    if json_file is not None:
        progress = json_file if report is None else json_file.with_name(json_file.name + ".jsonl")
    else:
        progress = csv_file.with_name(csv_file.name + ".jsonl") if csv_file is not None else None
    jsonl = json_file if report is None else None  # --json x.jsonl: the progress file is the output
    return PredictOutputs(out, json_file, csv_file, report, progress, jsonl, bool(annotate or saliency))


def build_report(rec, mode: str, inputs: list[tuple[Path, Path]], missing: list[dict[str, str]],
                 records: dict[str, dict[str, Any]], *, complete: bool,
                 settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON report of a run: its records in input order, by kind, and their counts, and
    the ``settings`` they were made with (:func:`run_settings`)."""
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


def run_settings(model, *, detector: str, mode: str, max_side: int, tta: bool, backend: str | None,
                 video_stride: int) -> dict[str, Any]:
    """Everything that changes a run's results, as its outputs record it for ``--resume``: the
    model (a file by its absolute path), the detector, mode, detection size, TTA, backend and
    video stride."""
    model = str(model)
    if Path(model).exists():
        model = str(Path(model).resolve())
    return {"model": model, "detector": detector, "mode": mode, "max_side": int(max_side), "tta": bool(tta),
            "backend": backend or "torch", "video_stride": int(video_stride)}


def complete_outputs(outputs: PredictOutputs, report: dict[str, Any]) -> None:
    """Write the JSON report; once the run is complete, the progress file beside it goes."""
    if outputs.report is not None:
        write_text_whole(outputs.report, dumps(report, indent=1))
    if outputs.progress is not None and outputs.progress != outputs.jsonl and report["complete"]:
        outputs.progress.unlink(missing_ok=True)


__all__ = ["PredictOutputs", "predict_outputs", "collect_inputs", "plan_steps", "run_steps", "build_report",
           "complete_outputs", "read_progress", "read_settings", "run_settings", "check_same_settings", "partial_path", "written_whole", "record_rows"]
