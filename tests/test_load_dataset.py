"""``load_dataset``: one entry point and one split rule for FER2013, FER+, manifests and folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wildfer.data import load_dataset
from wildfer.data.formats import select_split
from wildfer.data.ferplus import VOTE_COLUMNS
from wildfer.errors import DataError
from wildfer.labels import FER2013_CLASSES

#: (label, grey level, FER2013 usage, manifest split, split folder): one face per row.
FACES = [
    (3, 10, "Training", "train", "train"),
    (4, 20, "Training", "Train", "training"),
    (3, 30, "PublicTest", "val", "val"),
    (6, 40, "PublicTest", "test", "test"),
    (0, 50, "PrivateTest", "private", "private"),
]


@pytest.fixture()
def three_copies(tmp_path) -> dict[str, Path]:
    """The same faces as a FER2013 CSV, a manifest with a split column and a split folder."""
    fer = tmp_path / "fer2013.csv"
    fer.write_text("emotion,pixels,Usage\n" + "".join(
        f"{label},{' '.join([str(grey)] * 48 * 48)},{usage}\n" for label, grey, usage, _, _ in FACES))
    manifest = tmp_path / "faces.csv"
    lines = ["path,label,split"]
    for i, (label, grey, _, split, folder) in enumerate(FACES):
        name = FER2013_CLASSES[label]
        Image.new("L", (48, 48), grey).save(tmp_path / f"m{i}.png")
        lines.append(f"m{i}.png,{name},{split}")
        (tmp_path / "split" / folder / name).mkdir(parents=True, exist_ok=True)
        Image.new("L", (48, 48), grey).save(tmp_path / "split" / folder / name / f"f{i}.png")
    manifest.write_text("\n".join(lines) + "\n")
    return {"fer2013": fer, "manifest": manifest, "folder": tmp_path / "split"}


def faces(data) -> list[tuple[int, int]]:
    """``(label, grey level)`` of each row, sorted: the rows whatever order a loader reads them in."""
    return sorted((int(lab), int(img.mean())) for lab, img in zip(data.labels, data.images))


@pytest.mark.parametrize("split, usage", [("Training", "Training"), ("train", "Training"), ("TRAINING", "Training"),
                                          ("PublicTest", "PublicTest"), ("val", "PublicTest"), ("test", "PublicTest"),
                                          ("private", "PrivateTest"), ("privatetest", "PrivateTest")])
def test_same_split_same_rows_in_every_format(three_copies, split, usage):
    expected = sorted((label, grey) for label, grey, u, _, _ in FACES if u == usage)
    for fmt, path in three_copies.items():
        data = load_dataset(path, split)
        assert data.meta["format"] == fmt
        assert faces(data) == expected, fmt
        assert set(data.usage.astype(str)) == {usage}


@pytest.mark.parametrize("split", [None, "all", "ALL"])
def test_no_split_or_all_is_every_row(three_copies, split):
    for path in three_copies.values():
        assert len(load_dataset(path, split)) == len(FACES)


def test_several_splits(three_copies):
    for path in three_copies.values():
        assert len(load_dataset(path, ["train", "val"])) == 4


@pytest.mark.parametrize("split", ["holdout", "Validation2"])
def test_unknown_split_is_one_line_listing_the_splits(three_copies, split):
    for path in three_copies.values():
        with pytest.raises(DataError) as e:
            load_dataset(path, split)
        text = str(e.value)
        assert f"no {split!r} rows" in text and "\n" not in text
        assert "splits present: Training, PublicTest, PrivateTest" in text


def test_split_absent_from_this_copy_is_an_error(three_copies):
    train_only = select_split(load_dataset(three_copies["fer2013"]), "train")
    with pytest.raises(DataError, match="no rows with usage 'PublicTest'.*splits present: Training"):
        select_split(train_only, "val")


def test_dataset_forces_the_format(three_copies):
    with pytest.raises(DataError, match="wrong header"):
        load_dataset(three_copies["manifest"], dataset="fer2013")
    with pytest.raises(DataError, match="is a folder, not a manifest"):
        load_dataset(three_copies["folder"], dataset="manifest")
    with pytest.raises(DataError, match="wrong header"):
        load_dataset(three_copies["fer2013"], dataset="manifest")
    with pytest.raises(DataError, match="unknown dataset 'csv'"):
        load_dataset(three_copies["fer2013"], dataset="csv")
    assert load_dataset(three_copies["manifest"], "val", dataset="manifest").meta["format"] == "manifest"


def write_votes(path: Path) -> Path:
    """A ``fer2013new.csv`` for :data:`FACES`: every annotator votes the FER2013 label (as FER+'s class)."""
    plus_column = {0: "anger", 3: "happiness", 4: "sadness", 6: "neutral"}
    lines = ["Usage,Image name," + ",".join(VOTE_COLUMNS)]
    for i, (label, _, usage, _, _) in enumerate(FACES):
        votes = [10 if c == plus_column[label] else 0 for c in VOTE_COLUMNS]
        lines.append(f"{usage},fer{i:07d}.png," + ",".join(map(str, votes)))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ferplus_from_labels_or_from_its_own_file(three_copies):
    fer = three_copies["fer2013"]
    votes = write_votes(fer.parent / "fer2013new.csv")
    by_labels = load_dataset(fer, "val", labels=votes)
    by_file = load_dataset(votes, "val")
    beside = load_dataset(fer, "val", dataset="ferplus")
    for data in (by_labels, by_file, beside):
        assert data.meta["format"] == "ferplus" and len(data.classes) == 8
        assert [data.classes[i] for i in data.labels] == ["happy", "neutral"]
    np.testing.assert_array_equal(by_labels.images, by_file.images)


def test_ferplus_without_votes_and_labels_for_a_folder(three_copies):
    with pytest.raises(DataError, match="fer2013new.csv"):
        load_dataset(three_copies["fer2013"], dataset="ferplus")
    with pytest.raises(DataError, match="FER\\+ labels go with FER2013 images"):
        load_dataset(three_copies["folder"], labels=three_copies["fer2013"])


def test_face_arrays_split_takes_usage_names_strictly(three_copies):
    data = load_dataset(three_copies["fer2013"])
    assert len(data.split("publictest")) == 2 and len(data.split("Training", "PrivateTest")) == 3
    with pytest.raises(ValueError, match=r"unknown split \['train'\]; available: Training, PublicTest, "
                                         r"PrivateTest \('train' stands for 'Training'\)$"):
        data.split("train")
    with pytest.raises(DataError, match="available: Training, PublicTest, PrivateTest$"):
        data.split("fold1")


def test_split_rows_is_the_rule_select_split_applies():
    from wildfer.data.formats import split_rows

    usage = np.array(["Training", "PublicTest", "Training", "fold1"])
    assert split_rows(usage, None) is None and split_rows(usage, "all") is None
    assert split_rows(usage, "TRAIN").tolist() == [True, False, True, False]
    assert split_rows(usage, ["val", "fold1"]).tolist() == [False, True, False, True]
    with pytest.raises(DataError, match="no 'private' rows .*splits present: Training, PublicTest, fold1, or 'all'"):
        split_rows(usage, "private", "m.csv")
