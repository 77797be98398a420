"""FER+ (Barsoum et al. 2016, ``fer2013new.csv``): ten annotators' votes per FER2013 image.

>>> ds = load_ferplus("fer2013.csv.gz", "fer2013new.csv")          # doctest: +SKIP
>>> ds.classes                                                     # doctest: +SKIP
('neutral', 'happy', 'surprise', 'sad', 'angry', 'disgust', 'fear', 'contempt')
>>> ds.split("Training").soft.shape                                # doctest: +SKIP
(25060, 8)

Alignment
    ``fer2013new.csv`` has one row per row of the *full* original ``fer2013.csv`` (Training,
    PublicTest and PrivateTest, in the original order). A copy of FER2013 may lack a usage
    (our shared copy has no PrivateTest rows), so rows are matched on ``Usage`` + order within
    that usage, and each usage's row counts must agree (else :class:`DataError`).

Labels: the FER+ repository's ``majority`` mode (``FERPlus/src/ferplus.py``, ``_process_data``)
    1. rows with an empty ``Image name`` are not faces: dropped;
    2. outlier removal: an emotion with a single vote gets 0 votes;
    3. the label is the class with the most remaining votes when it holds *more than half* of
       the remaining votes (unknown and NF included in the total); otherwise the row has no
       majority and is dropped. A strict majority cannot tie, so no tie-breaking is needed;
    4. rows whose majority is ``unknown`` or ``NF`` (not a face) are dropped.

Soft labels
    ``soft`` is each kept row's raw vote distribution over the 8 emotions (unknown and NF left
    out, no outlier removal, renormalised to sum to 1), for cross-entropy training on votes.

``classes="fer2013"`` maps the 8 FER+ classes to FER2013's 7 (in FER2013's index order);
rows whose majority is contempt are dropped and the contempt column leaves the soft labels
(renormalised). Every drop is counted in ``meta["dropped"]``; nothing is dropped silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..labels import FER2013_CLASSES, FERPLUS_CLASSES, class_alignment
from .csvfiles import csv_rows, require_file
from .fer2013 import FaceArrays, load_fer2013

#: Vote columns of ``fer2013new.csv``, in file order (the 8 emotions are FERPLUS_CLASSES' order).
VOTE_COLUMNS = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)
N_EMOTIONS = 8
UNKNOWN, NOT_FACE = 8, 9


def parse_ferplus_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read ``fer2013new.csv`` into ``usage`` (N,), ``image_name`` (N,), ``votes`` (N x 10 int).

    Every malformed row raises :class:`DataError` naming the file and row (header = row 0).
    """
    path = require_file(path)
    usage: list[str] = []
    names: list[str] = []
    votes: list[list[int]] = []
    with csv_rows(path) as (header, rows):
        cols = [h.strip() for h in header]
        lower = [c.lower() for c in cols]
        need = ["usage", "image name", *[v.lower() for v in VOTE_COLUMNS]]
        missing = [n for n in need if n not in lower]
        if missing:
            raise DataError(
                path,
                f"wrong header {','.join(cols)[:80]!r}; expected FER+ columns "
                f"'Usage,Image name,{','.join(VOTE_COLUMNS)}' (missing {missing})",
                row=0,
            )
        iu, iname = lower.index("usage"), lower.index("image name")
        ivotes = [lower.index(v.lower()) for v in VOTE_COLUMNS]
        ncol = len(cols)
        for row_no, row in rows:
            if len(row) < ncol:
                raise DataError(path, f"expected {ncol} columns, got {len(row)}", row=row_no)
            try:
                v = [int(row[i]) for i in ivotes]
            except ValueError:
                bad = next(row[i] for i in ivotes if not row[i].strip().lstrip("-").isdigit())
                raise DataError(path, f"vote count {bad[:20]!r} is not an integer", row=row_no) from None
            if min(v) < 0:
                raise DataError(path, f"negative vote count {min(v)}", row=row_no)
            u = row[iu].strip()
            if not u:
                raise DataError(path, "empty Usage", row=row_no)
            usage.append(u)
            names.append(row[iname].strip())
            votes.append(v)
    if not votes:
        raise DataError(path, "no data rows after the header")
    return {
        "usage": np.asarray(usage, dtype="U16"),
        "image_name": np.asarray(names),
        "votes": np.asarray(votes, dtype=np.int64),
    }


def ferplus_majority(votes: np.ndarray, image_name: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """FER+ ``majority`` labels for ``votes`` (N x 10, file column order).

    Returns ``(label, reason)``: ``label`` is the FERPLUS_CLASSES index, or -1 for a dropped
    row; ``reason`` is "" for kept rows, else ``not_a_face`` (empty image name), ``no_majority``,
    ``unknown`` or ``nf`` (the majority is unknown / not a face).
    """
    v = np.asarray(votes, dtype=np.int64).copy()
    v[v <= 1] = 0  # outlier removal: a single vote does not count
    total = v.sum(axis=1)
    top = v.argmax(axis=1)
    peak = v.max(axis=1)
    has_major = 2 * peak > total  # strictly more than half; false when total == 0
    label = np.where(has_major, top, -1)
    reason = np.full(len(v), "", dtype="U12")
    reason[~has_major] = "no_majority"
    reason[has_major & (top == UNKNOWN)] = "unknown"
    reason[has_major & (top == NOT_FACE)] = "nf"
    if image_name is not None:
        empty = np.char.str_len(np.asarray(image_name, dtype=str)) == 0
        reason[empty] = "not_a_face"
    label[reason != ""] = -1
    return label, reason


def load_ferplus(
    fer2013_csv: str | os.PathLike,
    ferplus_csv: str | os.PathLike,
    usages: str | list[str] | tuple[str, ...] | None = None,
    *,
    classes: str = "ferplus",
    use_cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> FaceArrays:
    """FER2013 images with FER+ majority labels and vote distributions (see module docstring).

    ``classes``: ``"ferplus"`` (8 classes, FERPLUS_CLASSES order) or ``"fer2013"`` (7 classes,
    FER2013 order, contempt rows dropped). ``use_cache`` / ``cache_dir`` apply to the FER2013
    images. ``meta["dropped"]`` counts the rows left out, by reason.
    """
    if str(classes).lower() not in ("ferplus", "fer2013"):
        raise DataError(ferplus_csv, f"unknown classes {classes!r}; use 'ferplus' or 'fer2013'")
    classes = str(classes).lower()  # as folders and manifests take them: FER2013 == fer2013
    plus_path = Path(ferplus_csv)
    fer = load_fer2013(fer2013_csv, use_cache=use_cache, cache_dir=cache_dir)
    plus = parse_ferplus_csv(plus_path)
    fi, pi = _align_rows(fer, plus["usage"].astype(str), plus_path, fer2013_csv)

    votes = plus["votes"][pi]
    label, reason = ferplus_majority(votes, plus["image_name"][pi])
    emo = votes[:, :N_EMOTIONS].astype(np.float64)
    dropped = {r: int((reason == r).sum()) for r in ("not_a_face", "nf", "unknown", "no_majority")}
    class_names = FERPLUS_CLASSES
    if classes == "fer2013":
        label, emo, dropped["contempt"] = _to_fer2013_classes(label, emo)
        class_names = FER2013_CLASSES
    keep = label >= 0
    emo = emo[keep]
    data = FaceArrays(
        images=fer.images[fi[keep]],
        labels=label[keep].astype(np.int64),
        usage=fer.usage[fi[keep]],
        classes=tuple(class_names),
        soft=(emo / emo.sum(axis=1, keepdims=True)).astype(np.float32),
        rows=None if fer.rows is None else fer.rows[fi[keep]],
        source=str(plus_path),
        meta={
            "format": "ferplus",
            "fer2013": str(fer2013_csv),
            "protocol": "majority",
            "dropped": dropped,
            "unmatched_usages": sorted(set(np.unique(plus["usage"].astype(str))) - set(fer.usages())),
            "votes_rows": int(len(fi)),
        },
    )
    if usages:
        data = data.split(*([usages] if isinstance(usages, str) else usages))
    return data


def _align_rows(fer: FaceArrays, plus_usage: np.ndarray, plus_path: Path,
                fer2013_csv: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(FER2013 rows, FER+ rows)`` that hold the same faces, in FER2013's row order: matched on
    usage and order within it, for every usage of the FER2013 file (whose row counts must agree)."""
    fer_usage = fer.usage.astype(str)
    fer_idx: list[np.ndarray] = []
    plus_idx: list[np.ndarray] = []
    for u in fer.usages():
        fi = np.flatnonzero(fer_usage == u)
        pi = np.flatnonzero(plus_usage == u)
        if len(fi) != len(pi):
            raise DataError(
                plus_path,
                f"does not line up with {fer2013_csv}: usage {u!r} has {len(pi)} FER+ rows but "
                f"{len(fi)} FER2013 rows (FER+ rows must match FER2013 row for row)",
            )
        fer_idx.append(fi)
        plus_idx.append(pi)
    fi = np.concatenate(fer_idx)
    pi = np.concatenate(plus_idx)
    order = np.argsort(fi, kind="stable")  # keep FER2013's row order
    return fi[order], pi[order]


def _to_fer2013_classes(label: np.ndarray, emo: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """``(label, votes, contempt rows)`` on FER2013's 7 classes: FERPLUS indices become FER2013
    ones, a contempt majority -1 (dropped), and the contempt votes leave the vote columns
    (:func:`wildfer.labels.class_alignment`)."""
    to7 = np.array([FER2013_CLASSES.index(c) if c in FER2013_CLASSES else -1 for c in FERPLUS_CLASSES])
    contempt = (label >= 0) & (to7[np.maximum(label, 0)] < 0)
    label = np.where(label >= 0, to7[np.maximum(label, 0)], -1)
    return label, emo @ class_alignment(FERPLUS_CLASSES, FER2013_CLASSES).T, int(contempt.sum())


__all__ = ["load_ferplus", "parse_ferplus_csv", "ferplus_majority", "VOTE_COLUMNS"]
