"""What ``wildfer predict`` writes as it goes, and reads back to resume: the progress file (one
JSON line per finished input, after a line of settings), the CSV (one row per face), the JSON
report and the settings the results were made with (:func:`run_settings`), checked by
``--resume`` (:func:`check_same_settings`); and the guards that keep Ctrl-C from cutting them
(:func:`no_interrupt`, :func:`ctrl_c_after`). What a record holds is
:mod:`wildfer.batch.records`'.

Results are written as they are made: every finished input is one line of a progress file
beside the JSON output (``out.json`` -> ``out.json.jsonl``; a ``--json`` name ending in
``.jsonl`` is that file itself, and stays the output) and its CSV rows are appended, both
flushed as each input is finished. The JSON report is assembled from the progress file at the
end, and also when the run is interrupted; the progress file is removed once the outputs are
complete.
"""

from __future__ import annotations

import contextlib
import csv
import json
import signal
import threading
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from ..errors import WildferError
from ..jsonio import dumps
from ..paths import write_text_whole, written_whole
from .records import CSV_COLUMNS, record_rows, records_from_csv


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
def ctrl_c_after() -> Iterator[None]:
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


#: settings that outputs written before they existed do not record, and the value those were made with
#: (photos were decoded whole before large JPEGs were decoded reduced)
UNRECORDED = {"unsure_below": 0.0, "full_decode": True}


def check_same_settings(where: Path, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """Raise unless an output's results were made with ``new``'s settings (everything that
    changes a result: model, detector, mode, detection size, TTA, backend, video stride, the
    ``unsure`` threshold, whole decoding)."""
    if old is None:
        raise WildferError(f"{where}: cannot resume, it does not record the settings its results were made with; "
                           "write a new output")
    old = {**UNRECORDED, **old}
    diff = [k for k in new if old.get(k) != new[k]]
    if diff:
        was = ", ".join(_option_text(k, old.get(k)) for k in diff)
        now = ", ".join(_option_text(k, new[k]) for k in diff)
        raise WildferError(f"{where}: cannot resume, its results were made with {was}, not {now}; give the same "
                           "options or a new output")


def _read_report(path: Path, labels) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """A report's records and the settings it recorded (None when it has none)."""
    try:
        rep = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return [], None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WildferError(f"{path}: cannot resume, not a predict JSON report ({str(e)[:80]})") from None
    if not isinstance(rep, dict) or not all(isinstance(rep.get(k, []), list) for k in ("images", "videos", "unreadable")):
        raise WildferError(f"{path}: cannot resume, not a predict JSON report")
    if rep.get("labels", list(labels)) != list(labels):
        raise WildferError(f"{path}: cannot resume, it was made by a model with the classes {', '.join(rep['labels'])}, "
                           f"not {', '.join(labels)}")
    records = [r for k in ("images", "videos", "unreadable") for r in rep.get(k, []) if isinstance(r, dict) and "path" in r]
    return records, rep.get("settings") if isinstance(rep.get("settings"), dict) else None


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
            records, old = _read_report(report, self.labels)
            return records, old, report
        if csv_file is not None:
            rows = _csv_rows(csv_file, self.labels)
            return (records_from_csv(*rows) if rows else []), sidecar, csv_file
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


def run_settings(model, *, detector: str, mode: str, max_side: int, tta: bool, backend: str | None,
                 video_stride: int, unsure_below: float = 0.0, full_decode: bool = False) -> dict[str, Any]:
    """Everything that changes a run's results, as its outputs record it for ``--resume``: the
    model (a file by its absolute path), the detector, mode, detection size, TTA, backend, video
    stride, the ``unsure`` threshold and whether photos are decoded whole."""
    model = str(model)
    if Path(model).exists():
        model = str(Path(model).resolve())
    return {"model": model, "detector": detector, "mode": mode, "max_side": int(max_side), "tta": bool(tta),
            "backend": backend or "auto", "video_stride": int(video_stride), "unsure_below": float(unsure_below),
            "full_decode": bool(full_decode)}


def complete_outputs(outputs: PredictOutputs, report: dict[str, Any]) -> None:
    """Write the JSON report; once the run is complete, the progress file beside it goes."""
    if outputs.report is not None:
        write_text_whole(outputs.report, dumps(report, indent=1))
    if outputs.progress is not None and outputs.progress != outputs.jsonl and report["complete"]:
        outputs.progress.unlink(missing_ok=True)


__all__ = ["PredictOutputs", "ResultWriter", "check_same_settings", "complete_outputs", "ctrl_c_after",
           "no_interrupt", "predict_outputs", "read_progress", "read_settings", "run_settings", "settings_path"]
