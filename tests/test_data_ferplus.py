"""FER+ majority labels and vote distributions: exact counts on the real files, the protocol's
rules on hand-made votes, alignment by usage, and validation errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wildfer.data.fer2013 import load_fer2013
from wildfer.data.ferplus import ferplus_majority, load_ferplus, parse_ferplus_csv
from wildfer.errors import DataError
from wildfer.labels import FER2013_CLASSES, FERPLUS_CLASSES

# Counts computed by wildfer's FER+ majority protocol on the shared files (see ferplus.py).
FERPLUS_TRAIN = {"neutral": 8740, "happy": 7287, "surprise": 3149, "sad": 3014, "angry": 2100,
                 "disgust": 119, "fear": 532, "contempt": 119}
FERPLUS_PUBLIC = {"neutral": 1182, "happy": 865, "surprise": 415, "sad": 351, "angry": 287,
                  "disgust": 24, "fear": 62, "contempt": 13}
FERPLUS_DROPPED = {"not_a_face": 158, "nf": 2, "unknown": 89, "no_majority": 3790}

HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


@pytest.fixture(scope="session")
def real_cache_dir(tmp_path_factory):
    """Shared with test_data_fer2013.py: one parse of the real FER2013 per session."""
    return tmp_path_factory.getbasetemp() / "wildfer-data-cache"


@pytest.fixture(scope="module")
def real_plus(fer2013_csv, ferplus_csv, real_cache_dir):
    return load_ferplus(fer2013_csv, ferplus_csv, cache_dir=real_cache_dir)


def test_real_ferplus_majority_counts(real_plus):
    d = real_plus
    assert d.classes == FERPLUS_CLASSES
    assert d.usage_counts() == {"Training": 25060, "PublicTest": 3199}
    assert d.split("Training").class_counts() == FERPLUS_TRAIN
    assert d.split("PublicTest").class_counts() == FERPLUS_PUBLIC
    assert d.meta["dropped"] == FERPLUS_DROPPED
    # every FER2013 row is either kept or counted as dropped
    assert len(d) + sum(FERPLUS_DROPPED.values()) == 28709 + 3589
    assert d.meta["unmatched_usages"] == ["PrivateTest"]


def test_real_ferplus_soft_labels_and_alignment(real_plus, fer2013_csv, real_cache_dir):
    d = real_plus
    assert d.soft.shape == (len(d), 8) and d.soft.dtype == np.float32
    np.testing.assert_allclose(d.soft.sum(axis=1), 1.0, atol=1e-6)
    assert np.array_equal(d.soft.argmax(axis=1), d.labels)  # a strict majority is also the raw top vote
    # images are FER2013's rows, in order; fer0000001 (data row 2: 6 neutral, 1 surprise,
    # 1 sadness, 2 unknown) is the first kept row, and fer0000000 (4/1/3/2 votes) has no majority
    fer = load_fer2013(fer2013_csv, cache_dir=real_cache_dir)
    assert d.rows[:3].tolist() == [2, 3, 5]
    assert np.array_equal(d.images[:50], fer.images[d.rows[:50] - 1])
    np.testing.assert_allclose(d.soft[0], [0.75, 0, 0.125, 0.125, 0, 0, 0, 0])
    assert np.all(np.diff(d.rows) > 0)


def test_real_ferplus_fer2013_classes(fer2013_csv, ferplus_csv, real_cache_dir):
    d7 = load_ferplus(fer2013_csv, ferplus_csv, classes="fer2013", cache_dir=real_cache_dir)
    assert d7.classes == FER2013_CLASSES
    want = {k: v for k, v in FERPLUS_TRAIN.items() if k != "contempt"}
    assert d7.split("Training").class_counts() == {c: want[c] for c in FER2013_CLASSES}
    assert d7.meta["dropped"]["contempt"] == 119 + 13
    assert d7.soft.shape == (len(d7), 7)
    np.testing.assert_allclose(d7.soft.sum(axis=1), 1.0, atol=1e-6)
    # the engine's call: load_ferplus(cfg.data, cfg.ferplus_labels) then .split(...)
    assert len(d7.split("PublicTest")) == 3199 - 13


# --------------------------------------------------------------------------- the protocol


@pytest.mark.parametrize(
    "votes, label, reason",
    [
        ([6, 0, 1, 1, 0, 0, 0, 0, 2, 0], 0, ""),            # single votes removed: 6 of 8
        ([4, 0, 0, 1, 3, 2, 0, 0, 0, 0], -1, "no_majority"),  # 4 of 9 after removal
        ([5, 5, 0, 0, 0, 0, 0, 0, 0, 0], -1, "no_majority"),  # a tie is not a majority
        ([0, 6, 0, 0, 0, 0, 0, 4, 0, 0], 1, ""),
        ([0, 0, 0, 0, 0, 0, 0, 7, 3, 0], 7, ""),             # contempt
        ([2, 0, 0, 0, 0, 0, 0, 0, 8, 0], -1, "unknown"),
        ([0, 0, 0, 0, 0, 0, 0, 0, 0, 10], -1, "nf"),
        ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], -1, "no_majority"),  # nothing left after removal
        ([0, 0, 3, 0, 0, 0, 0, 0, 1, 1], 2, ""),            # 3 of 3 after removal
    ],
)
def test_majority_protocol(votes, label, reason):
    lab, why = ferplus_majority(np.array([votes]))
    assert lab.tolist() == [label] and why.tolist() == [reason]


def test_empty_image_name_is_not_a_face():
    lab, why = ferplus_majority(np.array([[10, 0, 0, 0, 0, 0, 0, 0, 0, 0]] * 2), np.array(["a.png", ""]))
    assert lab.tolist() == [0, -1] and why.tolist() == ["", "not_a_face"]


# --------------------------------------------------------------------------- small files


def _fer_csv(path: Path, usages: list[str]) -> Path:
    rng = np.random.default_rng(0)
    lines = ["emotion,pixels,Usage"]
    for i, u in enumerate(usages):
        lines.append(f"{i % 7},{' '.join(map(str, rng.integers(0, 256, 2304)))},{u}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _plus_csv(path: Path, rows: list[tuple[str, str, list[int]]], header: str = HEADER) -> Path:
    lines = [header] + [f"{u},{name},{','.join(map(str, v))}" for u, name, v in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


HAPPY = [0, 8, 0, 0, 2, 0, 0, 0, 0, 0]
NEUTRAL = [9, 0, 0, 0, 0, 0, 0, 0, 1, 0]
CONTEMPT = [2, 0, 0, 0, 0, 0, 0, 8, 0, 0]
SPLIT = [4, 4, 0, 0, 0, 0, 0, 0, 2, 0]


def test_alignment_by_usage_and_order(tmp_path):
    # FER2013 copy without PrivateTest; FER+ covers the full file (PrivateTest in between)
    fer = _fer_csv(tmp_path / "fer2013.csv", ["Training", "Training", "Training", "PublicTest", "PublicTest"])
    plus = _plus_csv(tmp_path / "fer2013new.csv", [
        ("Training", "fer0.png", HAPPY), ("Training", "fer1.png", SPLIT), ("Training", "fer2.png", NEUTRAL),
        ("PrivateTest", "fer5.png", HAPPY), ("PrivateTest", "fer6.png", HAPPY),
        ("PublicTest", "fer3.png", CONTEMPT), ("PublicTest", "", NEUTRAL),
    ])
    d = load_ferplus(fer, plus, use_cache=False)
    base = load_fer2013(fer, use_cache=False)
    assert d.rows.tolist() == [1, 3, 4]
    assert [d.classes[i] for i in d.labels] == ["happy", "neutral", "contempt"]
    assert d.usage.tolist() == ["Training", "Training", "PublicTest"]
    assert np.array_equal(d.images, base.images[[0, 2, 3]])
    np.testing.assert_allclose(d.soft[0], [0, 0.8, 0, 0, 0.2, 0, 0, 0])
    np.testing.assert_allclose(d.soft[1], [1, 0, 0, 0, 0, 0, 0, 0])  # unknown left out, renormalised
    assert d.meta["dropped"] == {"not_a_face": 1, "nf": 0, "unknown": 0, "no_majority": 1}

    d7 = load_ferplus(fer, plus, classes="fer2013", use_cache=False)
    assert [d7.classes[i] for i in d7.labels] == ["happy", "neutral"]
    assert d7.meta["dropped"]["contempt"] == 1
    # FER2013 order: angry 0 ... happy 3 ... neutral 6
    np.testing.assert_allclose(d7.soft[0], [0.2, 0, 0, 0.8, 0, 0, 0])
    assert len(load_ferplus(fer, plus, "PublicTest", use_cache=False)) == 1


def test_count_mismatch_is_an_error(tmp_path):
    fer = _fer_csv(tmp_path / "fer2013.csv", ["Training", "Training", "PublicTest"])
    plus = _plus_csv(tmp_path / "fer2013new.csv", [("Training", "a", HAPPY), ("PublicTest", "b", HAPPY)])
    with pytest.raises(DataError, match=r"usage 'Training' has 1 FER\+ rows but 2 FER2013 rows") as ei:
        load_ferplus(fer, plus, use_cache=False)
    assert str(plus) in str(ei.value)


@pytest.mark.parametrize(
    "header, row, problem, row_no",
    [
        ("Usage,Image name,neutral,happiness", None, "wrong header", 0),
        (HEADER, "Training,a.png,1,2,x,0,0,0,0,0,0,0", "vote count 'x' is not an integer", 2),
        (HEADER, "Training,a.png,1,2,3", "expected 12 columns, got 5", 2),
        (HEADER, "Training,a.png,1,2,-3,0,0,0,0,0,0,0", "negative vote count -3", 2),
        (HEADER, ",a.png,9,0,0,0,0,0,0,0,0,1", "empty Usage", 2),
    ],
)
def test_ferplus_file_errors(tmp_path, header, row, problem, row_no):
    f = tmp_path / "fer2013new.csv"
    lines = [header, "Training,ok.png," + ",".join(map(str, HAPPY))] + ([row] if row else [])
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as ei:
        parse_ferplus_csv(f)
    assert problem in str(ei.value) and ei.value.row == row_no and str(f) in str(ei.value)


def test_ferplus_empty_and_unknown_classes(tmp_path):
    f = tmp_path / "fer2013new.csv"
    f.write_text("")
    with pytest.raises(DataError, match="empty"):
        parse_ferplus_csv(f)
    f.write_text(HEADER + "\n")
    with pytest.raises(DataError, match="no data rows"):
        parse_ferplus_csv(f)
    fer = _fer_csv(tmp_path / "fer2013.csv", ["Training"])
    with pytest.raises(DataError, match="unknown classes"):
        load_ferplus(fer, f, classes="rafdb")
