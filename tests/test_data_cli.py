"""``wildfer data info`` / ``data show`` in-process: counts and JSON for every format, one-line
errors with exit code 2, and sample grids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


@pytest.fixture(scope="session")
def real_cache_dir(tmp_path_factory):
    """Shared with test_data_fer2013.py: one parse of the real FER2013 per session."""
    return tmp_path_factory.getbasetemp() / "wildfer-data-cache"


@pytest.fixture()
def cache_env(monkeypatch, real_cache_dir):
    monkeypatch.setenv("WILDFER_CACHE_DIR", str(real_cache_dir))


def fer_csv(path: Path, labels_usages, bad_row: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    lines = ["emotion,pixels,Usage"]
    for i, (lab, u) in enumerate(labels_usages, start=1):
        n = 2303 if i == bad_row else 2304
        lines.append(f"{lab},{' '.join(map(str, rng.integers(0, 256, n)))},{u}")
    path.write_text("\n".join(lines) + "\n")
    return path


def one_error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def test_info_real_fer2013_json(cli, fer2013_csv, tmp_path, cache_env):
    out = tmp_path / "out.json"
    code, text = cli(["data", "info", fer2013_csv, "--json", out])
    assert code == 0, text
    assert "28,709" in text and "3,589" in text and "32,298" in text
    d = json.loads(out.read_text())
    assert d["format"] == "fer2013" and d["n"] == 32298
    assert d["usages"] == {"Training": 28709, "PublicTest": 3589}
    assert d["counts"]["Training"] == {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215,
                                       "sad": 4830, "surprise": 3171, "neutral": 4965}
    assert d["counts"]["PublicTest"] == {"angry": 467, "disgust": 56, "fear": 496, "happy": 895,
                                         "sad": 653, "surprise": 415, "neutral": 607}


def test_info_real_ferplus_json(cli, fer2013_csv, ferplus_csv, tmp_path, cache_env):
    out = tmp_path / "plus.json"
    # fer2013.csv.gz lies beside fer2013new.csv in the shared folder: found without --fer2013
    code, text = cli(["data", "info", ferplus_csv, "--json", out])
    assert code == 0, text
    d = json.loads(out.read_text())
    assert d["format"] == "ferplus" and d["protocol"] == "majority"
    assert d["usages"] == {"Training": 25060, "PublicTest": 3199}
    assert d["counts"]["Training"]["contempt"] == 119 and d["counts"]["PublicTest"]["neutral"] == 1182
    assert d["dropped"] == {"not_a_face": 158, "nf": 2, "unknown": 89, "no_majority": 3790}
    assert "no_majority 3,790" in text
    code, text = cli(["data", "info", ferplus_csv, "--fer2013", fer2013_csv, "--classes", "fer2013",
                      "--json", out])
    assert code == 0, text
    d7 = json.loads(out.read_text())
    assert "contempt" not in d7["classes"] and d7["n"] == 28259 - 132


def test_row5_with_2303_pixels_fails_with_one_line(cli, tmp_path):
    f = fer_csv(tmp_path / "bad.csv", [(i % 7, "Training") for i in range(8)], bad_row=5)
    code, text = cli(["data", "info", f])
    assert code == 2
    line = one_error_line(text)
    assert str(f) in line.replace("\n", "") and "row 5" in line and "2303 pixels, expected 2304" in line


@pytest.mark.parametrize(
    "content, problem",
    [(b"", "file is empty"), (b"a,b,c\n1,2,3\n", "unrecognised data file"), (b"\x89PNG\r\n\x1a\n\xff\xfe\x00", "not a text CSV")],
)
def test_bad_files_fail_with_one_line(cli, tmp_path, content, problem):
    f = tmp_path / "x.csv"
    f.write_bytes(content)
    code, text = cli(["data", "info", f])
    assert code == 2 and problem in one_error_line(text)
    code, text = cli(["data", "info", tmp_path / "missing.csv"])
    assert code == 2 and "not found" in one_error_line(text)


def test_info_small_fer2013_and_ferplus_beside(cli, tmp_path):
    d = tmp_path / "set"
    d.mkdir()
    fer_csv(d / "fer2013.csv", [(3, "Training"), (3, "Training"), (0, "PublicTest")])
    votes = {"happy": "0,9,0,0,0,0,0,0,1,0", "none": "0,0,0,0,0,0,0,0,0,10"}
    (d / "fer2013new.csv").write_text("\n".join([
        HEADER, f"Training,a.png,{votes['happy']}", f"Training,,{votes['none']}", f"PublicTest,c.png,{votes['happy']}",
    ]) + "\n")
    code, text = cli(["data", "info", d / "fer2013.csv", "--json", tmp_path / "a.json", "--no-cache"])
    assert code == 0, text
    assert json.loads((tmp_path / "a.json").read_text())["counts"]["Training"]["happy"] == 2
    code, text = cli(["data", "info", d / "fer2013new.csv", "--json", tmp_path / "b.json", "--no-cache"])
    assert code == 0, text
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["usages"] == {"Training": 1, "PublicTest": 1} and b["dropped"]["not_a_face"] == 1
    # FER+ alone, with no FER2013 beside it and no --fer2013
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "fer2013new.csv").write_text((d / "fer2013new.csv").read_text())
    code, text = cli(["data", "info", lone / "fer2013new.csv"])
    assert code == 2 and "--fer2013" in one_error_line(text)


def test_info_folder_reports_skipped(cli, tmp_path):
    root = tmp_path / "faces"
    for cls, n in (("happy", 3), ("Sadness", 2)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (64, 64), 40 * i).save(root / cls / f"{i}.png")
    (root / "happy" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    out = tmp_path / "f.json"
    code, text = cli(["data", "info", root, "--json", out])
    assert code == 0, text
    assert "1 item(s) skipped" in text and "bad.jpg" in text
    d = json.loads(out.read_text())
    assert d["format"] == "folder" and d["n"] == 5 and d["n_skipped"] == 1
    assert d["class_totals"]["happy"] == 3 and d["class_totals"]["sad"] == 2
    assert d["skipped"][0]["path"].endswith("bad.jpg")


def test_show_draws_a_grid(cli, tmp_path):
    f = fer_csv(tmp_path / "s.csv", [(i % 7, "Training" if i < 20 else "PublicTest") for i in range(25)])
    out = tmp_path / "grid.png"
    code, text = cli(["data", "show", f, "--out", out, "--per-class", "3", "--split", "Training"])
    assert code == 0, text
    img = Image.open(out)
    assert img.width > 200 and img.height > 400  # 7 rows x 3 columns of faces
    a = np.asarray(img.convert("L"))
    assert a.std() > 10  # faces were drawn
    code, text = cli(["data", "show", f, "--out", out, "--split", "holdout"])
    assert code == 2 and "unknown split" in one_error_line(text)


def test_show_takes_split_names(cli, tmp_path, monkeypatch):
    """``--split train`` is ``--split Training`` (the one split rule); an absent split says which are present."""
    from wildfer.data import commands

    f = fer_csv(tmp_path / "s.csv", [(i % 7, "Training" if i < 20 else "PublicTest") for i in range(25)])
    drawn = {}
    monkeypatch.setattr(commands, "save_grid", lambda data, out, **kw: drawn.setdefault(kw["title"], data))
    for split in ("Training", "train", "val"):
        code, text = cli(["data", "show", f, "--out", tmp_path / "g.png", "--split", split])
        assert code == 0, text
    usages = {title: set(data.usage) for title, data in drawn.items()}
    assert usages == {"s.csv (Training)": {"Training"}, "s.csv (train)": {"Training"}, "s.csv (val)": {"PublicTest"}}
    assert len(drawn["s.csv (train)"]) == 20
    code, text = cli(["data", "show", f, "--out", tmp_path / "p.png", "--split", "private"])
    line = one_error_line(text)
    assert code == 2 and "no 'private' rows" in line and "splits present: Training, PublicTest" in line
