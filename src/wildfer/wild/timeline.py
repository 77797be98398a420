"""Expressions over time: per-track timelines of a video, streamed to disk as it is processed.

:class:`TimelineWriter` takes each processed frame of :func:`wildfer.wild.video.process_video`
(its record and its pixels) and writes, in a folder of its own:

- ``track_<id>.csv`` per kept track: ``time_s, frame, left, top, right, bottom, label`` and
  the smoothed probability of each class;
- ``track_<id>.png``: the smoothed probabilities over time, the face's thumbnail, and the
  track's share of time in each expression;
- ``scene.csv`` / ``scene.png``: per second of video, the share of the faces seen in each
  expression (a group's mood over time);
- ``summary.html``: every kept track's plot and numbers and the scene plot on one page, and
  ``timeline.json``: the same numbers for programs.

The plots need matplotlib (the ``[plots]`` extra; ``[eval]`` and ``[train]`` have it too).
Without it the folder holds the same CSVs, ``timeline.json`` and ``summary.html`` (its tables,
and a line saying how to add the plots), and no PNG: ``timeline.json`` has ``"plots": false``.

Rows go to a file as the frames come, and memory stays flat however long the video: per
track only a bounded number of points is kept for its plot (:data:`MAX_PLOT_POINTS`, thinned
by halving), and a track not seen for :data:`END_AFTER` processed frames has ended: its plot
is drawn then and only its numbers stay. The per-track CSVs appear when the video is done,
each written whole.

**Short tracks.** A detector's false alarm or a face that crosses the picture makes a track
of a few frames. A track is kept when it spans at least ``min_frames`` processed frames and
``min_seconds`` of video (defaults: 3 frames and 0.5 s); the others are listed in
``timeline.json`` and the summary as dropped, their rows left out of every per-track file (the
scene view still counts their faces: it describes every face seen).
"""

from __future__ import annotations

import contextlib
import csv
import html
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import EXTRAS, WildferError
from ..jsonio import write_json
from ..figures import has_matplotlib, pyplot, save_figure
from ..paths import write_text_whole, written_whole

#: Points kept per track for its plot; beyond, every other point is dropped (the CSV keeps all).
MAX_PLOT_POINTS = 2000
#: Side of the thumbnail kept per track (pixels).
THUMB_SIDE = 96
#: Processed frames after which a track not seen is over (more than the video tracker's
#: ``max_age``, after which it never continues): its plot is drawn and its data let go.
END_AFTER = 30
#: How to add the plots to an installation without matplotlib.
PLOTS_INSTALL = f"pip install 'wildfer[{EXTRAS['matplotlib']}]'"
#: The CSV columns before the classes' probabilities.
TRACK_COLUMNS = ["time_s", "frame", "left", "top", "right", "bottom", "label"]


@dataclass
class TrackStats:
    """What a timeline keeps of one track while the video plays: counts, time span, label
    shares, the face's thumbnail and a thinned series of its probabilities."""

    id: int
    first_s: float
    last_s: float = 0.0
    n: int = 0
    labels: Counter = field(default_factory=Counter)
    thumb: np.ndarray | None = None
    thumb_area: float = 0.0
    times: list[float] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)
    step: int = 1  # every ``step``-th row goes to the plot series
    last_index: int = 0  # the processed frame it was last seen in

    @property
    def seconds(self) -> float:
        return self.last_s - self.first_s

    def add(self, t: float, label: str, p: np.ndarray) -> None:
        if self.n % self.step == 0:
            self.times.append(t)
            self.probs.append(p)
            if len(self.times) > MAX_PLOT_POINTS:  # thin by half: memory stays bounded
                self.times, self.probs, self.step = self.times[::2], self.probs[::2], self.step * 2
        self.n += 1
        self.last_s = t
        self.labels[label] += 1

    def shares(self, labels) -> dict[str, float]:
        """The share of the track's processed frames in each (smoothed) expression."""
        return {c: self.labels[c] / self.n if self.n else 0.0 for c in labels}

    def to_dict(self, labels) -> dict[str, Any]:
        top = self.labels.most_common(1)
        return {"track": self.id, "start_s": round(self.first_s, 3), "end_s": round(self.last_s, 3),
                "seconds": round(self.seconds, 3), "frames": self.n, "label": top[0][0] if top else None,
                "shares": {c: round(v, 4) for c, v in self.shares(labels).items()}}


def _thumb(frame_bgr: np.ndarray, box) -> tuple[np.ndarray | None, float]:
    """The face's crop (RGB, :data:`THUMB_SIDE` on its longer side) and its area."""
    import cv2

    h, w = frame_bgr.shape[:2]
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None, 0.0
    crop = frame_bgr[y0:y1, x0:x1, ::-1]
    s = THUMB_SIDE / max(crop.shape[:2])
    crop = cv2.resize(np.ascontiguousarray(crop), (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))),
                      interpolation=cv2.INTER_AREA)
    return crop, float((x1 - x0) * (y1 - y0))


class TimelineWriter:
    """Stream a video's processed frames into its timeline folder (see the module docstring).

    ``add(frame_record, frame_bgr)`` for each processed frame, then ``close()``; or use it as
    a context manager (the folder's files are written when the block ends normally; an
    interrupted or failed video leaves no per-track file).
    """

    def __init__(self, folder: str | os.PathLike, labels, *, video: str = "", min_frames: int = 3,
                 min_seconds: float = 0.5, end_after: int = END_AFTER, plots: bool | None = None):
        if int(min_frames) < 1:
            raise WildferError(f"timeline: min_frames {min_frames}: must be 1 or more")
        if not math.isfinite(float(min_seconds)) or float(min_seconds) < 0:
            raise WildferError(f"timeline: min_seconds {min_seconds}: must be 0 or more")
        self.folder = Path(folder)
        self.labels = tuple(labels)
        self.video = str(video)
        self.min_frames, self.min_seconds = int(min_frames), float(min_seconds)
        self.end_after = int(end_after)
        self.plots = has_matplotlib() if plots is None else bool(plots)
        self.tracks: dict[int, TrackStats] = {}  # the tracks still going
        self.ended: dict[int, tuple[dict[str, Any], bool]] = {}  # track -> (its numbers, kept)
        self.scene: dict[int, Counter] = {}  # second -> label counts over the faces seen in it
        self.folder.mkdir(parents=True, exist_ok=True)
        self._rows_path = self.folder / ".rows.partial.csv"
        self._fh = open(self._rows_path, "w", newline="")
        self._rows = csv.writer(self._fh)
        self.n_frames = 0
        self.summary: dict[str, Any] | None = None  # set by close()

    # -- streaming

    def add(self, frame: dict[str, Any], frame_bgr: np.ndarray | None = None) -> None:
        """One processed frame: ``frame`` as :func:`process_video` records it (``frame``,
        ``time_s``, ``faces`` with ``track``, ``box``, ``smoothed_label`` and
        ``smoothed_probabilities``)."""
        t = float(frame["time_s"])
        self.n_frames += 1
        second = self.scene.setdefault(int(t), Counter())
        for f in frame["faces"]:
            tid = int(f["track"])
            if tid in self.ended:
                raise WildferError(f"timeline: track {tid} seen again after it ended; end_after must exceed the "
                                   "tracker's max_age")
            sp = f["smoothed_probabilities"]
            p = np.array([sp[c] for c in self.labels], dtype=np.float32)
            label = f["smoothed_label"]
            st = self.tracks.setdefault(tid, TrackStats(tid, first_s=t))
            st.add(t, label, p)
            st.last_index = self.n_frames
            second[label] += 1
            if frame_bgr is not None:
                area = (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1])
                if area > st.thumb_area:  # the face at its largest
                    thumb, a = _thumb(frame_bgr, f["box"])
                    if thumb is not None:
                        st.thumb, st.thumb_area = thumb, a
            self._rows.writerow([tid, t, frame["frame"], *(round(float(v), 1) for v in f["box"]), label,
                                 *(round(float(v), 5) for v in p)])
        for tid in [k for k, st in self.tracks.items() if self.n_frames - st.last_index > self.end_after]:
            self._finish(tid)

    def _finish(self, tid: int) -> None:
        """A track that has ended: its plot is drawn now (when it is kept), and only its numbers
        stay in memory, so memory follows the tracks on screen, not the length of the video."""
        st = self.tracks.pop(tid)
        kept = self.kept(st)
        if kept and self.plots:
            save_figure(plot_track(st, self.labels), self.folder / f"track_{tid}.png", dpi=100, tight=False)
        self.ended[tid] = (st.to_dict(self.labels), kept)

    # -- the rule for short tracks

    def kept(self, st: TrackStats) -> bool:
        """Whether a track is long enough to keep (see the module docstring)."""
        return st.n >= self.min_frames and st.seconds >= self.min_seconds - 1e-9

    # -- finishing

    def close(self) -> dict[str, Any]:
        """Write every file of the folder; the timeline's summary (also ``timeline.json``)."""
        self._fh.close()
        try:
            for tid in list(self.tracks):
                self._finish(tid)
            keep = sorted(t for t, (_, kept) in self.ended.items() if kept)
            self._split_rows(keep)
            scene = self.scene_rows()
            _write_csv(self.folder / "scene.csv", ["second", "faces", *self.labels],
                       ([r["second"], r["faces"], *(r["shares"][c] for c in self.labels)] for r in scene))
            if self.plots:
                save_figure(plot_scene(scene, self.labels), self.folder / "scene.png", dpi=100, tight=False)
            summary = {
                "video": self.video, "labels": list(self.labels), "frames_processed": self.n_frames,
                "rule": {"min_frames": self.min_frames, "min_seconds": self.min_seconds}, "plots": self.plots,
                "tracks": [self.ended[t][0] | {"csv": f"track_{t}.csv",
                                               "plot": f"track_{t}.png" if self.plots else None} for t in keep],
                "dropped": [d for t, (d, kept) in sorted(self.ended.items()) if not kept],
                "scene": {"csv": "scene.csv", "plot": "scene.png" if self.plots else None},
            }
            write_json(self.folder / "timeline.json", summary)
            write_text_whole(self.folder / "summary.html", summary_html(summary))
            self._remove_stale(keep)
            self.summary = summary
            return summary
        finally:
            self._rows_path.unlink(missing_ok=True)

    def _remove_stale(self, keep: list[int]) -> None:
        """Remove the per-track files an earlier timeline left in this folder for tracks this
        one does not have, and its plots where this one draws none (only files named as this class
        names them)."""
        kept = {f"track_{t}.{ext}" for t in keep for ext in (("csv", "png") if self.plots else ("csv",))}
        if not self.plots:
            (self.folder / "scene.png").unlink(missing_ok=True)
        for p in self.folder.glob("track_*.*"):
            stem = p.stem.removeprefix("track_")
            if p.name not in kept and stem.isdigit() and p.suffix in (".csv", ".png"):
                p.unlink(missing_ok=True)

    def abort(self) -> None:
        """Give up: close and remove the streamed rows (no per-track file is written), and
        the folder when nothing else is in it."""
        self._fh.close()
        self._rows_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.folder.rmdir()

    def __enter__(self) -> "TimelineWriter":
        return self

    def __exit__(self, exc_type, *_) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def _split_rows(self, keep: list[int]) -> None:
        """The streamed rows, one CSV per kept track (a pass per batch of 200 tracks, so the
        number of files open at once stays bounded)."""
        header = [*TRACK_COLUMNS, *self.labels]
        for start in range(0, len(keep), 200):
            batch = set(keep[start:start + 200])
            with contextlib.ExitStack() as stack:
                writers = {}
                for tid in batch:
                    tmp = stack.enter_context(written_whole(self.folder / f"track_{tid}.csv"))
                    fh = stack.enter_context(open(tmp, "w", newline=""))
                    writers[tid] = csv.writer(fh)
                    writers[tid].writerow(header)
                with open(self._rows_path, newline="") as fh:
                    for row in csv.reader(fh):
                        w = writers.get(int(row[0]))
                        if w is not None:
                            w.writerow(row[1:])

    def scene_rows(self) -> list[dict[str, Any]]:
        """Per second of video: how many faces were seen and the share in each expression."""
        out = []
        for s in range(max(self.scene) + 1 if self.scene else 0):
            c = self.scene.get(s, Counter())
            n = sum(c.values())
            out.append({"second": s, "faces": n, "shares": {k: round(c[k] / n, 4) if n else 0.0 for k in self.labels}})
        return out


def read_track_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``track_<id>.csv`` with numbers as numbers."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: (v if k == "label" else float(v)) for k, v in r.items()} for r in rows]


def iter_timeline_rows(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One row per face per processed frame of a video record (:func:`process_video`):
    ``time_s, frame, track, box, label`` and the smoothed probabilities."""
    for fr in record.get("frames", []):
        for f in fr["faces"]:
            yield {"time_s": fr["time_s"], "frame": fr["frame"], "track": f.get("track"), "box": f["box"],
                   "label": f.get("smoothed_label", f["label"]),
                   "probabilities": f.get("smoothed_probabilities", f["probabilities"])}


# ----------------------------------------------------------------------------- pictures

#: One colour per expression, the same in every plot.
COLOURS = {"angry": "#d62728", "disgust": "#8c564b", "fear": "#9467bd", "happy": "#ff7f0e", "sad": "#1f77b4",
           "surprise": "#2ca02c", "neutral": "#7f7f7f", "contempt": "#e377c2"}


def plot_track(st: TrackStats, labels) -> Any:
    """A track's figure: one line per class (smoothed probability over time), the face's
    thumbnail, and a bar per class of the share of time the track spent in it."""
    plt = pyplot()
    fig = plt.figure(figsize=(9, 3.2))
    ax = fig.add_axes((0.07, 0.16, 0.58, 0.64))
    t = np.asarray(st.times)
    p = np.asarray(st.probs).reshape(len(t), len(labels))
    for k, c in enumerate(labels):
        ax.plot(t, p[:, k], label=c, color=COLOURS.get(c), lw=1.4)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability (smoothed)")
    ax.set_ylim(0, 1)
    if len(t) and t[-1] > t[0]:
        ax.set_xlim(t[0], t[-1])
    ax.legend(fontsize=7, ncol=len(labels), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False,
              handlelength=1.2, columnspacing=0.8)
    top = st.labels.most_common(1)
    fig.suptitle(f"track {st.id}: {st.first_s:.1f}-{st.last_s:.1f} s"
                 + (f", mostly {top[0][0]} ({top[0][1] / st.n:.0%})" if top else ""), fontsize=9, x=0.36, y=0.97)
    if st.thumb is not None:
        ia = fig.add_axes((0.68, 0.55, 0.12, 0.36))
        ia.imshow(st.thumb)
        ia.set_axis_off()
    ba = fig.add_axes((0.86, 0.16, 0.12, 0.72))
    shares = st.shares(labels)
    ba.barh(range(len(labels)), [shares[c] for c in labels], color=[COLOURS.get(c) for c in labels])
    ba.set_yticks(range(len(labels)), labels, fontsize=7)
    ba.invert_yaxis()
    ba.set_xlim(0, 1)
    ba.set_xlabel("share of time", fontsize=7)
    ba.tick_params(axis="x", labelsize=7)
    return fig


def plot_scene(rows: list[dict[str, Any]], labels) -> Any:
    """The share of the faces seen in each expression, per second (stacked areas)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 2.6))
    if rows:
        # each second's shares hold until the next second ("post" steps): the last one too
        x = [r["second"] for r in rows] + [rows[-1]["second"] + 1]
        ys = [[r["shares"][c] for r in rows] + [rows[-1]["shares"][c]] for c in labels]
        ax.stackplot(x, ys, labels=list(labels), colors=[COLOURS.get(c) for c in labels], step="post")
        ax.set_xlim(x[0], x[-1])
    ax.set_ylim(0, 1)
    ax.set_xlabel("second of video")
    ax.set_ylabel("share of faces")
    ax.legend(fontsize=7, ncol=len(labels), loc="upper center", bbox_to_anchor=(0.5, 1.25), frameon=False)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.2, top=0.8)
    return fig


def summary_html(summary: dict[str, Any]) -> str:
    """The timeline's page: the scene plot, then each kept track's plot and numbers."""
    e = html.escape
    labels = summary["labels"]
    rows = "".join(
        f"<tr><td>{t['track']}</td><td>{t['start_s']:.1f}</td><td>{t['end_s']:.1f}</td><td>{t['frames']}</td>"
        f"<td>{e(str(t['label']))}</td>" + "".join(f"<td>{t['shares'][c]:.0%}</td>" for c in labels) + "</tr>"
        for t in summary["tracks"])
    drawn = summary.get("plots", True)
    if drawn:
        plots = "".join(f'<figure><img src="{e(t["plot"])}" alt="track {t["track"]}"><figcaption>track {t["track"]}: '
                        f'<a href="{e(t["csv"])}">{e(t["csv"])}</a></figcaption></figure>' for t in summary["tracks"])
    else:
        links = ", ".join(f'<a href="{e(t["csv"])}">{e(t["csv"])}</a>' for t in summary["tracks"])
        plots = f"<p>Per track: {links}.</p>" if links else ""
    scene = ('<img src="scene.png" alt="share of faces in each expression per second">' if drawn else
             f'<p>The plots need matplotlib: {e(PLOTS_INSTALL)}. The numbers are in '
             '<a href="scene.csv">scene.csv</a> and each track\'s CSV.</p>')
    rule = summary["rule"]
    dropped = summary["dropped"]
    note = (f"<p>{len(dropped)} short track(s) dropped (fewer than {rule['min_frames']} processed frames or "
            f"{rule['min_seconds']:g} s): {', '.join(str(d['track']) for d in dropped)}.</p>" if dropped else "")
    head = "".join(f"<th>{e(c)}</th>" for c in labels)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>wildfer timeline: {e(Path(summary['video']).name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}}img{{max-width:100%}}
table{{border-collapse:collapse}}td,th{{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}}</style>
</head><body>
<h1>Expressions over time: {e(Path(summary['video']).name)}</h1>
<p>{summary['frames_processed']} processed frames, {len(summary['tracks'])} track(s).</p>
<h2>The scene</h2>{scene}
<h2>Tracks</h2>
<table><tr><th>track</th><th>start s</th><th>end s</th><th>frames</th><th>mostly</th>{head}</tr>{rows}</table>
{note}{plots}
</body></html>
"""


def _write_csv(path: Path, header: list[str], rows) -> None:
    with written_whole(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


__all__ = ["TimelineWriter", "TrackStats", "plot_track", "plot_scene", "summary_html", "read_track_csv",
           "iter_timeline_rows", "MAX_PLOT_POINTS"]
