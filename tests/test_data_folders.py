"""Image folders and manifests: both folder layouts, label normalisation, crops, bad images
(truncated, missing, not an image, a box outside the image) skipped and reported, never lost, and
a malformed manifest row refused with one line naming it."""

from __future__ import annotations

import csv
from pathlib import Path

import badinput as bad
import numpy as np
import pytest
from PIL import Image

from wildfer.data.formats import detect_format, load_dataset
from wildfer.data.folders import face_from_image, load_image_folder, load_manifest, skipped_summary
from wildfer.errors import DataError, ImageError
from wildfer.labels import FER2013_CLASSES, FERPLUS_CLASSES


def save(path: Path, value: int = 128, size=(60, 50), mode: str = "L", fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "RGB":
        img = Image.new("RGB", size, (value, value, value))
    else:
        img = Image.new(mode, size, value)
    img.save(path, format=fmt)
    return path


def truncated_jpeg(path: Path) -> Path:
    save(path, 90, size=(64, 64), mode="RGB")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture()
def class_folder(tmp_path) -> Path:
    root = tmp_path / "faces"
    save(root / "Anger" / "a1.png", 10)
    save(root / "Anger" / "sub" / "a2.jpg", 20, mode="RGB")
    save(root / "happiness" / "h1.png", 30, size=(48, 48))
    save(root / "happiness" / "h2.bmp", 40)
    truncated_jpeg(root / "happiness" / "broken.jpg")
    (root / "happiness" / "empty.png").write_bytes(b"")
    (root / "happiness" / "notes.txt").write_text("not an image")
    (root / "happiness" / ".DS_Store").write_bytes(b"\0\0")
    save(root / "Surprised" / "s1.png", 50)
    save(root / "bored" / "b1.png", 60)
    save(root / "stray.png", 70)
    return root


def test_class_folder_layout(class_folder):
    d = load_image_folder(class_folder)
    assert d.classes == FER2013_CLASSES
    assert d.images.shape == (5, 48, 48) and d.images.dtype == np.uint8
    names = [d.classes[i] for i in d.labels]
    assert names == ["angry", "angry", "happy", "happy", "surprise"]
    # uniform images keep their grey level through grayscale conversion and resizing
    assert [int(im.mean()) for im in d.images] == [10, 20, 30, 40, 50]
    assert set(d.usage) == {"Training"}
    assert [Path(p).name for p in d.paths] == ["a1.png", "a2.jpg", "h1.png", "h2.bmp", "s1.png"]
    assert d.meta["format"] == "folder" and d.meta["layout"] == "classes"
    skipped = {Path(p).name: problem for p, problem in d.meta["skipped"]}
    assert set(skipped) == {"broken.jpg", "empty.png", "notes.txt", "b1.png", "stray.png"}
    assert "truncated" in skipped["broken.jpg"] or "cannot decode" in skipped["broken.jpg"]
    assert "empty" in skipped["empty.png"]
    assert "not an image file (.txt)" in skipped["notes.txt"]
    assert "unknown label 'bored'" in skipped["b1.png"]
    assert "outside a class folder" in skipped["stray.png"]
    assert d.meta["n_skipped"] == 5
    lines = skipped_summary(d, limit=2)
    assert len(lines) == 3 and lines[-1] == "... and 3 more"
    assert load_image_folder(class_folder, usage="PublicTest").usage_counts() == {"PublicTest": 5}


def test_split_layout_like_the_fer2013_image_release(tmp_path):
    root = tmp_path / "fer2013-images"
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("angry", "happy", "neutral"):
            for i in range(n):
                save(root / split / cls / f"{i}.png", 100 + i, size=(48, 48))
    truncated_jpeg(root / "test" / "happy" / "bad.jpg")
    save(root / "extras" / "x.png")
    d = load_image_folder(root)
    assert d.meta["layout"] == "splits"
    assert d.usage_counts() == {"Training": 9, "PublicTest": 6}
    assert d.split("Training").class_counts() == {
        "angry": 3, "disgust": 0, "fear": 0, "happy": 3, "sad": 0, "surprise": 0, "neutral": 3}
    skipped = [Path(p).name for p, _ in d.meta["skipped"]]
    assert skipped == ["extras", "bad.jpg"]
    # load_dataset recognises it as a folder too
    assert detect_format(root) == "folder"
    assert len(load_dataset(root)) == 15


def test_contempt_selects_ferplus_classes(tmp_path):
    save(tmp_path / "contempt" / "c.png")
    save(tmp_path / "neutral" / "n.png")
    d = load_image_folder(tmp_path)
    assert d.classes == FERPLUS_CLASSES
    assert [d.classes[i] for i in d.labels] == ["contempt", "neutral"]
    # explicit FER2013 classes: contempt is reported, not silently lost
    d7 = load_image_folder(tmp_path, classes="fer2013")
    assert len(d7) == 1 and "unknown label 'contempt'" in d7.meta["skipped"][0][1]


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_image_folder(tmp_path / "empty")
    bad = tmp_path / "allbad" / "happy"
    bad.mkdir(parents=True)
    (bad / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"no usable images \(1 skipped; first: .*x.jpg"):
        load_image_folder(tmp_path / "allbad")


# --------------------------------------------------------------------------- manifests


def write_manifest(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def boxed_image(path: Path) -> Path:
    """100x80 black image with a white 40x30 rectangle at left=20, top=10."""
    a = np.zeros((80, 100), np.uint8)
    a[10:40, 20:60] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


def test_manifest_with_boxes_and_bad_images(tmp_path):
    boxed_image(tmp_path / "img" / "box.png")
    save(tmp_path / "img" / "plain.jpg", 200, mode="RGB")
    truncated_jpeg(tmp_path / "img" / "broken.jpg")
    absolute = save(tmp_path / "elsewhere" / "abs.png", 33)
    m = write_manifest(tmp_path / "faces.csv", ["path", "label", "left", "top", "right", "bottom", "subject"], [
        ["img/box.png", "Happiness", 20, 10, 60, 40, "s1"],
        ["img/plain.jpg", "sadness", "", "", "", "", "s2"],
        ["img/missing.jpg", "angry", "", "", "", "", "s3"],
        ["img/broken.jpg", "fear", "", "", "", "", "s4"],
        ["img/plain.jpg", "happy", 500, 500, 600, 600, "s5"],
        ["img/plain.jpg", "happy", 10, 10, 10.4, 30, "s6"],
        [str(absolute), "neutral", "", "", "", "", "s7"],
    ])
    d = load_manifest(m)
    assert [d.classes[i] for i in d.labels] == ["happy", "sad", "neutral"]
    assert d.rows.tolist() == [1, 2, 7]
    assert d.images[0].min() == 255  # cropped to the white box exactly
    assert int(d.images[1].mean()) == 200 and int(d.images[2].mean()) == 33
    problems = [problem for _, problem in d.meta["skipped"]]
    assert len(problems) == 4
    assert problems[0].startswith("row 3: file not found")
    assert problems[1].startswith("row 4: ") and ("truncated" in problems[1] or "decode" in problems[1])
    assert problems[2] == "row 5: box (500, 500, 600, 600) lies outside the 60x50 image"
    assert problems[3].startswith("row 6: box") and "less than one pixel" in problems[3]
    assert str(tmp_path / "img" / "missing.jpg") == d.meta["skipped"][0][0]
    assert detect_format(m) == "manifest"


@pytest.mark.parametrize("path,label,box,problem", bad.MANIFEST_BAD_ROWS)
def test_a_malformed_manifest_row_is_one_line_naming_it(tmp_path, path, label, box, problem):
    """A row the manifest itself gets wrong stops the load: skipping it would train on a
    manifest that says something else."""
    save(tmp_path / "img" / "a.png", 10)
    m = tmp_path / "m.csv"
    m.write_text(f"path,label,left,top,right,bottom,split\nimg/a.png,happy,,,,,train\n{path},{label},{box or ',,,'},\n")
    for load in (load_manifest, load_dataset):
        with pytest.raises(DataError) as ei:
            load(m)
        assert str(ei.value) == f"{m}, row 2: {problem}"


def test_a_label_outside_the_classes_asked_for_is_skipped(tmp_path):
    save(tmp_path / "a.png", 10)
    save(tmp_path / "b.png", 20)
    (tmp_path / "m.csv").write_text("path,label\na.png,happy\nb.png,contempt\n")
    d = load_manifest(tmp_path / "m.csv", classes="fer2013")
    assert len(d) == 1 and d.meta["skipped"] == [(str(tmp_path / "b.png"), "row 2: unknown label 'contempt' "
                                                  f"(known: {', '.join(FER2013_CLASSES)})")]
    assert load_manifest(tmp_path / "m.csv").classes == FERPLUS_CLASSES
    custom = load_manifest(tmp_path / "m.csv", classes=["happy", "contempt"])  # a list: its names are labels too
    assert custom.classes == ("happy", "contempt") and custom.labels.tolist() == [0, 1]


def test_manifest_usage_column_and_gzip(tmp_path):
    import gzip

    save(tmp_path / "a.png", 10)
    save(tmp_path / "b.png", 20)
    text = "path,label,usage\na.png,happy,train\nb.png,sad,PublicTest\n"
    (tmp_path / "m.csv.gz").write_bytes(gzip.compress(text.encode()))
    d = load_manifest(tmp_path / "m.csv.gz")
    assert d.usage.tolist() == ["Training", "PublicTest"]


@pytest.mark.parametrize(
    "content, problem",
    [
        ("", "file is empty"),
        ("file_name,emotion_name\nx.png,happy\n", "row 0: wrong header 'file_name,emotion_name': no path column"),
        ("path,subject\nx.png,s1\n", "row 0: wrong header 'path,subject': no label column"),
        ("path,label,left,top\nx.png,happy,1,2\n", "row 0: wrong header 'path,label,left,top': a box needs all four columns"),
        ("path,boxes_left_top_w_h\nx.png,\"1,2,3,4\"\n", "has no labels"),
        ("path,label,split,usage\nx.png,happy,train,train\n", "both a split and a usage column"),
        ("path,label\n", "no data rows"),
    ],
)
def test_manifest_file_errors(tmp_path, content, problem):
    m = tmp_path / "m.csv"
    m.write_text(content)
    with pytest.raises(DataError) as ei:
        load_manifest(m)
    assert problem in str(ei.value) and str(m) in str(ei.value)


def test_real_wild_manifest_rows(wild_dir, tmp_path):
    """A few real LFW frames through a manifest (absolute paths), with one missing file."""
    with open(wild_dir / "lfw.csv") as fh:
        rows = list(csv.DictReader(fh))[:12]
    m = write_manifest(
        tmp_path / "lfw12.csv", ["path", "label"],
        [[str(wild_dir / r["path"]), r["label"]] for r in rows] + [["nope.jpg", "happy"]],
    )
    d = load_manifest(m)
    assert len(d) == 12 and d.images.shape == (12, 48, 48)
    assert [d.classes[i] for i in d.labels] == [r["label"] for r in rows]
    assert d.images.std() > 20  # real photos, not blank frames
    assert d.meta["n_skipped"] == 1 and d.meta["skipped"][0][1].startswith("row 13: file not found")


def test_face_from_image_crop_and_resize(tmp_path):
    p = boxed_image(tmp_path / "b.png")
    full = face_from_image(p)
    assert full.shape == (48, 48) and 0 < full.mean() < 255
    crop = face_from_image(p, box=(20, 10, 60, 40), size=32)
    assert crop.shape == (32, 32) and crop.min() == 255
    clipped = face_from_image(p, box=(-50, -50, 20, 10))  # clipped to the black corner
    assert clipped.max() == 0
    with pytest.raises(ImageError, match="outside"):
        face_from_image(p, box=(200, 200, 300, 300))
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[..., 1] = 255  # pure green -> luma 0.587 * 255
    assert face_from_image(rgb, size=10)[0, 0] == 150
