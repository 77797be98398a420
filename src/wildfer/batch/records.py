"""The record format of batch prediction, shared by every engine: one JSON record per input
(a photo's :meth:`~wildfer.wild.recognizer.ImageResult.to_dict`, a video's
:func:`~wildfer.wild.video.process_video` record, or ``{"path", "error"}`` for an input that
could not be read), its CSV rows (one per face), and the flat row a table holds
(:data:`COLUMNS`: Ray Data datasets, Parquet).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import WildferError
from ..jsonio import dumps
from ..wild.recognizer import top_labels

#: The CSV's first columns; the classes' probabilities, ``flags`` and ``truncated`` follow. ``label2``
#: and ``probability2`` are the second likeliest label and its probability.
CSV_COLUMNS = ["path", "frame", "face", "track", "left", "top", "right", "bottom", "score", "label", "confidence",
               "label2", "probability2"]

#: Columns of a photo's record as a table row (:func:`photo_row`): ``faces`` is JSON text, so
#: that every row has one schema, and ``error`` is empty unless the photo could not be read.
COLUMNS = ("path", "width", "height", "mode", "truncated", "faces", "error")


def error_record(path, error) -> dict[str, str]:
    """The record of an input that could not be read: its path and the one-line reason."""
    return {"path": str(path), "error": str(error)}


def record_kind(rec: dict[str, Any]) -> str:
    """``"image"``, ``"video"`` or ``"unreadable"`` for one record."""
    if "error" in rec:
        return "unreadable"
    return "video" if rec.get("type") == "video" else "image"


def photo_row(rec: dict[str, Any], mode: str) -> dict[str, Any]:
    """A photo's record as a table row of :data:`COLUMNS` (an unreadable photo: no faces, its
    ``error``; ``mode``: the recognizer's, which an error record does not carry)."""
    if "error" in rec:
        return {"path": rec["path"], "width": 0, "height": 0, "mode": mode, "truncated": False, "faces": "[]",
                "error": rec["error"]}
    return {"path": rec["path"], "width": rec["width"], "height": rec["height"], "mode": rec["mode"],
            "truncated": rec["truncated"], "faces": dumps(rec["faces"]), "error": ""}


def row_record(row: dict[str, Any]) -> dict[str, Any]:
    """A table row as ``wildfer predict`` writes a photo: ``faces`` as objects, and an
    unreadable photo as ``{"path", "error"}``."""
    if row.get("error"):
        return error_record(row["path"], row["error"])
    rec = {c: row[c] for c in COLUMNS if c != "error"}
    rec["width"], rec["height"], rec["truncated"] = int(rec["width"]), int(rec["height"]), bool(rec["truncated"])
    rec["faces"] = json.loads(row["faces"])
    return rec


def _runner_up(face: dict[str, Any]) -> tuple[str, Any]:
    """A face's second likeliest label and its probability, from its ``top2`` (a record without
    one: from its probabilities, ranked as ``top2`` is); empty for a one-class model."""
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


def records_from_csv(header: list[str], rows: list[list[str]]) -> list[dict[str, Any]]:
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


__all__ = ["CSV_COLUMNS", "COLUMNS", "error_record", "record_kind", "photo_row", "row_record", "record_rows",
           "records_from_csv"]
