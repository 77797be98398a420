"""FER2013 CSV loading: the real shared file's exact counts, every validation error on small
generated files, and the parse cache (hit, invalidation, location)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from wildfer.data import cache as data_cache
from wildfer.data import fer2013 as fer_mod
from wildfer.data.fer2013 import FaceArrays, load_fer2013, parse_fer2013_csv
from wildfer.errors import DataError, WildferError
from wildfer.labels import FER2013_CLASSES

TRAIN_COUNTS = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "sad": 4830, "surprise": 3171, "neutral": 4965}
PUBLIC_COUNTS = {"angry": 467, "disgust": 56, "fear": 496, "happy": 895, "sad": 653, "surprise": 415, "neutral": 607}


def pixels(seed: int, n: int = 2304) -> list[int]:
    return np.random.default_rng(seed).integers(0, 256, n).tolist()


def write_csv(path: Path, rows, header: str = "emotion,pixels,Usage", gz: bool = False) -> Path:
    """rows: (emotion, pixel list or raw string, usage) tuples, or raw line strings."""
    lines = [header]
    for r in rows:
        if isinstance(r, str):
            lines.append(r)
        else:
            e, px, u = r
            px = px if isinstance(px, str) else " ".join(map(str, px))
            lines.append(f"{e},{px},{u}")
    data = ("\n".join(lines) + "\n").encode()
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def good_rows(n: int = 6) -> list:
    usages = ["Training", "Training", "PublicTest"]
    return [(i % 7, pixels(i), usages[i % 3]) for i in range(n)]


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real(fer2013_csv, real_cache_dir):
    return load_fer2013(fer2013_csv, cache_dir=real_cache_dir)


@pytest.fixture(scope="session")
def real_cache_dir(tmp_path_factory):
    """One parse of the real file per test session, cached under a temporary folder."""
    return tmp_path_factory.getbasetemp() / "wildfer-data-cache"


def test_real_fer2013_exact_counts(real):
    assert real.images.shape == (32298, 48, 48) and real.images.dtype == np.uint8
    assert real.labels.dtype == np.int64
    assert real.classes == FER2013_CLASSES
    assert real.usage_counts() == {"Training": 28709, "PublicTest": 3589}
    assert real.split("Training").class_counts() == TRAIN_COUNTS
    assert real.split("PublicTest").class_counts() == PUBLIC_COUNTS
    assert real.counts_by_usage() == {"Training": TRAIN_COUNTS, "PublicTest": PUBLIC_COUNTS}
    assert real.usages() == ["Training", "PublicTest"]


def test_real_fer2013_rows_and_missing_private_split(real, fer2013_csv, real_cache_dir):
    # data rows are numbered from 1 in file order; Training comes first in the original file
    assert real.rows[0] == 1 and real.rows[-1] == 32298
    assert np.all(np.diff(real.rows) == 1)
    assert set(real.usage[:28709]) == {"Training"}
    # the shared copy has no PrivateTest rows: asking for it gives an empty set, not an error
    assert len(real.split("PrivateTest")) == 0
    pub = load_fer2013(fer2013_csv, usages="PublicTest", cache_dir=real_cache_dir)
    assert len(pub) == 3589 and np.array_equal(pub.images, real.images[28709:])
    # the first training face in Kaggle's file starts "70 80 82 72 58"
    assert real.images[0, 0, :5].tolist() == [70, 80, 82, 72, 58] and real.labels[0] == 0


def test_unknown_split_is_an_error(real):
    with pytest.raises(DataError, match="unknown split"):
        real.split("Validation")


# --------------------------------------------------------------------------- valid small files


def test_parse_round_trip_plain_and_gzip(tmp_path):
    rows = good_rows(6)
    plain = load_fer2013(write_csv(tmp_path / "a.csv", rows), use_cache=False)
    gz = load_fer2013(write_csv(tmp_path / "a.csv.gz", rows, gz=True), use_cache=False)
    # the gzip is sniffed by content, not by name
    sneaky = load_fer2013(write_csv(tmp_path / "b.csv", rows, gz=True), use_cache=False)
    for d in (plain, gz, sneaky):
        assert len(d) == 6
        assert d.labels.tolist() == [r[0] for r in rows]
        assert d.usage.tolist() == [r[2] for r in rows]
        for i, r in enumerate(rows):
            assert d.images[i].ravel().tolist() == r[1]


def test_quoted_fields_blank_lines_and_no_usage_column(tmp_path):
    px = pixels(1)
    f = write_csv(
        tmp_path / "q.csv",
        [f'3,"{" ".join(map(str, px))}",PublicTest', "", f"4,{' '.join(map(str, px[::-1]))},Training"],
    )
    d = parse_fer2013_csv(f)
    assert d["labels"].tolist() == [3, 4]
    assert d["usage"].tolist() == ["PublicTest", "Training"]
    assert d["rows"].tolist() == [1, 3]  # the blank line keeps its row number
    assert d["images"][0].ravel().tolist() == px
    f2 = write_csv(tmp_path / "nousage.csv", [f"5,{' '.join(map(str, px))}"], header="emotion,pixels")
    assert parse_fer2013_csv(f2)["usage"].tolist() == ["Training"]


# --------------------------------------------------------------------------- validation errors


def _error(path: Path) -> DataError:
    with pytest.raises(DataError) as ei:
        load_fer2013(path, use_cache=False)
    msg = str(ei.value)
    assert "\n" not in msg
    assert str(path) in msg
    return ei.value


def test_wrong_pixel_count_names_file_and_row(tmp_path):
    rows = good_rows(6)
    rows[4] = (1, pixels(9, 2303), "Training")
    e = _error(write_csv(tmp_path / "short.csv", rows))
    assert e.row == 5
    assert "row 5: 2303 pixels, expected 2304" in str(e)
    rows[4] = (1, pixels(9, 2305), "Training")
    assert "2305 pixels" in str(_error(write_csv(tmp_path / "long.csv", rows)))


@pytest.mark.parametrize(
    "line, problem",
    [
        ("1,12 abc 13,Training", "non-numeric value 'abc'"),
        ("1,1.5 2 3,Training", "non-numeric value '1.5'"),
        ("7,{px},Training", "emotion 7 out of range 0-6"),
        ("-1,{px},Training", "emotion -1 out of range"),
        ("happy,{px},Training", "emotion 'happy' is not an integer"),
        ("2,{big},Training", "pixel value 256 outside 0-255"),
        ("2,{neg},Training", "pixel value -3 outside 0-255"),
        ("2,,Training", "0 pixels, expected 2304"),
        ("2,{px}", "expected 3 columns"),
        ("2,{px},", "empty Usage"),
    ],
)
def test_bad_row_errors(tmp_path, line, problem):
    px = " ".join(map(str, pixels(2)))
    big = " ".join(["256"] + ["1"] * 2303)
    neg = " ".join(["-3"] + ["1"] * 2303)
    rows = good_rows(2) + [line.format(px=px, big=big, neg=neg)]
    e = _error(write_csv(tmp_path / "bad.csv", rows))
    assert e.row == 3
    assert problem in str(e)


@pytest.mark.parametrize(
    "header",
    ["label,pixels,Usage", "emotion,pixel,Usage", "path,label", "70 80 82 72 58"],
)
def test_wrong_header(tmp_path, header):
    e = _error(write_csv(tmp_path / "h.csv", good_rows(2), header=header))
    assert e.row == 0
    assert "wrong header" in str(e) and "emotion,pixels,Usage" in str(e)


def test_empty_and_header_only_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert "file is empty" in str(_error(empty))
    blank = tmp_path / "blank.csv"
    blank.write_text("\n\n")
    assert "empty" in str(_error(blank))
    header_only = write_csv(tmp_path / "header.csv", [])
    assert "no data rows" in str(_error(header_only))
    empty_gz = tmp_path / "empty.csv.gz"
    empty_gz.write_bytes(gzip.compress(b""))
    assert "empty" in str(_error(empty_gz))


def test_truncated_and_corrupt_gzip(tmp_path):
    full = gzip.compress(("emotion,pixels,Usage\n" + "\n".join(
        f"{i % 7},{' '.join(map(str, pixels(i)))},Training" for i in range(40)) + "\n").encode())
    trunc = tmp_path / "trunc.csv.gz"
    trunc.write_bytes(full[: len(full) // 2])
    e = _error(trunc)
    assert "truncated" in str(e) and e.row is not None and 1 <= e.row <= 40
    corrupt = tmp_path / "corrupt.csv.gz"
    corrupt.write_bytes(full[:20] + bytes(200) + full[220:])
    assert "corrupt or truncated" in str(_error(corrupt))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_fer2013(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="folder"):
        parse_fer2013_csv(tmp_path)


def test_errors_are_user_errors(tmp_path):
    assert issubclass(DataError, WildferError)


# --------------------------------------------------------------------------- cache


def test_second_load_hits_the_cache(tmp_path, monkeypatch):
    f = write_csv(tmp_path / "c.csv", good_rows(5))
    cdir = tmp_path / "cache"
    first = load_fer2013(f, cache_dir=cdir)
    assert len(list(cdir.glob("*.npz"))) == 1

    def boom(path):
        raise AssertionError("the parser ran although the cache holds this file")

    monkeypatch.setattr(fer_mod, "parse_fer2013_csv", boom)
    second = load_fer2013(f, cache_dir=cdir)
    for name in ("images", "labels", "usage", "rows"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    # use_cache=False always parses
    with pytest.raises(AssertionError, match="parser ran"):
        load_fer2013(f, cache_dir=cdir, use_cache=False)


def test_cache_key_follows_size_and_mtime(tmp_path, monkeypatch):
    f = write_csv(tmp_path / "c.csv", good_rows(4))
    cdir = tmp_path / "cache"
    assert len(load_fer2013(f, cache_dir=cdir)) == 4
    write_csv(f, good_rows(3))  # the file changed: a stale cache must not be used
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    calls = []
    real_parse = fer_mod.parse_fer2013_csv
    monkeypatch.setattr(fer_mod, "parse_fer2013_csv", lambda p: calls.append(p) or real_parse(p))
    assert len(load_fer2013(f, cache_dir=cdir)) == 3
    assert len(calls) == 1


def test_torn_cache_file_is_rebuilt(tmp_path):
    f = write_csv(tmp_path / "c.csv", good_rows(4))
    cdir = tmp_path / "cache"
    load_fer2013(f, cache_dir=cdir)
    (npz,) = cdir.glob("*.npz")
    npz.write_bytes(b"not a zip")
    assert load_fer2013(f, cache_dir=cdir).labels.tolist() == [r[0] for r in good_rows(4)]
    with np.load(npz) as z:  # rewritten whole
        assert z["labels"].shape == (4,)


def test_cache_dir_env_and_default_location(tmp_path, monkeypatch):
    f = write_csv(tmp_path / "c.csv", good_rows(3))
    env_dir = tmp_path / "env-cache"
    monkeypatch.setenv("WILDFER_CACHE_DIR", str(env_dir))
    assert data_cache.cache_dir() == env_dir
    load_fer2013(f)
    assert len(list(env_dir.glob("*.npz"))) == 1
    # default location: the user cache dir (XDG_CACHE_HOME on Linux) under "wildfer"
    monkeypatch.delenv("WILDFER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_cache.cache_dir() == tmp_path / "xdg" / "wildfer"
    load_fer2013(f)
    assert len(list((tmp_path / "xdg" / "wildfer").glob("*.npz"))) == 1


def test_unwritable_cache_dir_is_not_an_error(tmp_path):
    f = write_csv(tmp_path / "c.csv", good_rows(3))
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    assert len(load_fer2013(f, cache_dir=blocker / "sub")) == 3


def test_face_arrays_subset_keeps_paths_and_meta():
    d = FaceArrays(
        images=np.zeros((3, 48, 48), np.uint8), labels=np.array([0, 1, 2]), usage=np.array(["Training"] * 3),
        paths=np.array(["a", "b", "c"]), meta={"x": 1},
    )
    s = d.subset(np.array([2, 0]))
    assert s.paths.tolist() == ["c", "a"] and s.labels.tolist() == [2, 0] and s.meta == {"x": 1}
