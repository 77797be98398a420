"""Hostile and unlucky inputs to ``wildfer predict`` and its parts: output paths, interrupted
runs and resuming them, truncated and corrupt images, degenerate data-set images, and the
files onnxruntime would write on its own."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"), **extra)
    return env


# ----------------------------------------------------------------------------- onnxruntime


def test_onnxruntime_session_writes_no_telemetry_store(tmp_path):
    """onnxruntime's official builds write a device id and an event database under
    ~/.cache/Microsoft/DeveloperTools/.onnxruntime when the library loads; through wildfer
    nothing may appear in the user's home or cache."""
    pytest.importorskip("onnxruntime")
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    cache.mkdir()
    script = textwrap.dedent("""
        import numpy as np
        from onnx import TensorProto, helper

        from wildfer.models.onnx import OnnxRunner

        node = helper.make_node("Relu", ["x"], ["y"])
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        y = OnnxRunner(model.SerializeToString(), threads=1)(np.array([[-1.0, 0.0, 2.0]], np.float32))
        print(y.tolist())
    """)
    r = subprocess.run([sys.executable, "-c", script], env=_clean_env(HOME=str(home), XDG_CACHE_HOME=str(cache)),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "[[0.0, 0.0, 2.0]]" in r.stdout
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [], written


def test_onnxruntime_imported_after_wildfer_writes_no_telemetry_store(tmp_path):
    """Modules that import onnxruntime themselves (the CenterFace detector, ``wildfer info``)
    are covered by ``import wildfer``, which comes first."""
    pytest.importorskip("onnxruntime")
    r = subprocess.run([sys.executable, "-c", "import wildfer, onnxruntime; print(onnxruntime.__version__)"],
                       env=_clean_env(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache")),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# ----------------------------------------------------------------------------- damaged images


def _photo(h: int = 240, w: int = 320, seed: int = 0):
    """A smooth colour gradient with noise: every JPEG block differs from flat grey."""
    import numpy as np

    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([(x * 0.6) % 256, (y * 0.8) % 256, ((x + y) * 0.3) % 256], -1)
    a = a + np.random.default_rng(seed).normal(0, 8, a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


def _jpeg(a, **kw) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def _cut_with_end_marker(data: bytes, keep: float = 0.4) -> bytes:
    return data[: int(len(data) * keep)] + b"\xff\xd9"


@pytest.fixture(scope="module")
def tiny_rec():
    import torch

    from wildfer.models import create_model
    from wildfer.models.loader import Classifier
    from wildfer.wild import Recognizer

    torch.manual_seed(0)
    clf = Classifier(create_model("shallow", num_filters=8, hidden=32), name="tiny-random", arch="shallow")
    return Recognizer(model=clf, detector="yunet")


@pytest.mark.parametrize("kw", [{}, {"subsampling": 2}, {"progressive": True}], ids=["444", "420", "progressive"])
def test_jpeg_cut_short_with_an_end_marker_is_flagged_truncated(kw):
    """Decoders accept such a file without a word and fill the rest with grey (60% here)."""
    import numpy as np

    from wildfer.data.images import is_truncated, open_image, read_image

    full = _jpeg(_photo(), **kw)
    cut = _cut_with_end_marker(full)
    a = read_image(cut)
    assert a.shape == (240, 320, 3) and a.dtype == np.uint8
    assert is_truncated(a) and is_truncated(open_image(cut))
    assert not is_truncated(read_image(full)) and not is_truncated(open_image(full))
    # so is one that lacks only its last blocks
    assert is_truncated(read_image(_cut_with_end_marker(full, 0.99)))


def test_jpeg_cut_short_also_found_after_another_decoder():
    """The service decodes complete-looking JPEGs with OpenCV, which fills the same grey."""
    import cv2
    import numpy as np

    from wildfer.data.images import jpeg_cut_short

    def decode(data):
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]

    for kw in ({}, {"progressive": True}):
        full = _jpeg(_photo(), **kw)
        cut = _cut_with_end_marker(full)
        assert jpeg_cut_short(cut, decode(cut))
        assert not jpeg_cut_short(full, decode(full))
    grey = _jpeg(np.full((64, 80, 3), 128, np.uint8))
    assert not jpeg_cut_short(grey, decode(grey))


def test_flat_grey_photos_are_not_called_truncated():
    import numpy as np

    from wildfer.data.images import is_truncated, read_image

    grey = np.full((64, 80, 3), 128, np.uint8)
    assert not is_truncated(read_image(_jpeg(grey)))
    assert not is_truncated(read_image(_jpeg(grey[:, :, 0])))
    half = _photo(64, 80)
    half[32:] = 128  # a real photo whose lower half is exactly the decoder's filler grey
    assert not is_truncated(read_image(_jpeg(half)))


def test_recognizer_result_says_truncated(tiny_rec, tmp_path):
    import json

    from wildfer.data.images import read_image

    cut = _cut_with_end_marker(_jpeg(_photo()))
    p = tmp_path / "cut.jpg"
    p.write_bytes(cut)
    for src in (p, cut, read_image(cut)):  # a path, bytes, or the array the service decodes
        res = tiny_rec.predict(src)
        assert res.truncated is True
        assert json.loads(json.dumps(res.to_dict()))["truncated"] is True
    whole = tiny_rec.predict(_jpeg(_photo()))
    assert whole.truncated is False and whole.to_dict()["truncated"] is False


def test_service_answers_truncated_for_a_cut_jpeg(tiny_rec):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from wildfer.serve.app import create_app

    full = _jpeg(_photo())
    with TestClient(create_app(tiny_rec, timeout=60, threads=1), base_url="http://127.0.0.1") as client:
        for data, expected in ((_cut_with_end_marker(full), True), (full, False)):
            r = client.post("/v1/predict", content=data, headers={"content-type": "image/jpeg"})
            assert r.status_code == 200, r.text
            assert r.json()["truncated"] is expected


def _png(a) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("damage", ["bad_crc", "cut_in_data", "signature_only"])
def test_corrupt_png_is_called_corrupt_not_unsupported(damage):
    from wildfer.data.images import read_image
    from wildfer.errors import ImageError

    d = _png(_photo(20, 20))
    bad = {"bad_crc": d[:29] + b"\0\0\0\0" + d[33:], "cut_in_data": d[: len(d) // 2], "signature_only": d[:8]}[damage]
    with pytest.raises(ImageError) as e:
        read_image(bad, name="photo.png")
    msg = str(e.value)
    assert msg.startswith("photo.png: ") and ("corrupt" in msg or "truncated" in msg), msg
    assert "unsupported" not in msg


# ----------------------------------------------------------------------------- wildfer predict


def _noise_photos(folder: Path, n: int, size=(240, 320)) -> list[Path]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        p = folder / f"p{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


@pytest.mark.parametrize("case", ["json_is_folder", "csv_is_folder", "out_is_file", "json_parent_is_file",
                                  "same_json_and_csv"])
def test_predict_checks_output_paths_before_any_work(cli, tmp_path, case):
    """The model named does not exist: an output error that comes first proves no work began."""
    photo = _noise_photos(tmp_path / "in", 1)[0]
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    opts = {"json_is_folder": ["--json", tmp_path / "adir"], "csv_is_folder": ["--csv", tmp_path / "adir"],
            "out_is_file": ["--out", tmp_path / "afile", "--annotate"],
            "json_parent_is_file": ["--json", tmp_path / "afile" / "r.json"],
            "same_json_and_csv": ["--json", tmp_path / "r.out", "--csv", tmp_path / "r.out"]}[case]
    code, text = cli(["predict", photo, "--model", tmp_path / "missing.pt", *opts])
    assert code == 2, text
    assert "Traceback" not in text and "missing.pt" not in text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    assert str(opts[1]) in lines[0] or (case == "json_parent_is_file" and str(tmp_path / "afile") in lines[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile", "in"]  # nothing written


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_predict_refuses_an_unwritable_output_folder(cli, tmp_path):
    photo = _noise_photos(tmp_path / "in", 1)[0]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, text = cli(["predict", photo, "--model", tmp_path / "missing.pt", "--json", locked / "sub" / "r.json"])
    finally:
        locked.chmod(0o700)
    assert code == 2 and "not writable" in text and str(locked) in text and "Traceback" not in text


def test_predict_resume_needs_an_output(cli, tiny_ckpt, tmp_path):
    photo = _noise_photos(tmp_path, 1)[0]
    code, text = cli(["predict", photo, "--model", tiny_ckpt, "--resume"])
    assert code == 2 and "--resume needs" in text and "Traceback" not in text


def test_ctrl_c_keeps_finished_photos_and_resume_completes_them(cli, tiny_ckpt, tmp_path):
    """SIGINT to a real ``wildfer predict`` process: the JSON holds every photo finished by
    then, the message says how many, and --resume adds the rest, each photo exactly once."""
    import json

    from predict_helpers import interrupt_after

    # 60 photos of some 50 ms each: the signal lands while most are still to do, even on a busy CPU
    photos = _noise_photos(tmp_path / "in", 60, size=(150, 200))
    out = tmp_path / "res" / "out.json"
    side = out.with_name("out.json.jsonl")
    # search mode: the search fallback over windows of photos without faces makes each photo slow
    args = ["predict", str(tmp_path / "in"), "--json", str(out), "--model", str(tiny_ckpt), "--batch", "1",
            "--mode", "search"]
    code, stderr, seen = interrupt_after(args, side, 3, _clean_env())
    assert code == 130, stderr
    rep = json.loads(out.read_text())
    got = [r["path"] for r in rep["images"]]
    n = len(got)
    assert 3 <= n < 60, stderr
    assert rep["complete"] is False and rep["summary"]["images"] == n
    assert set(seen) <= set(got) and got == [str(p) for p in photos[:n]]
    assert f"interrupted: {n} of 60 photos written to {out}" in " ".join(stderr.split()), stderr
    assert "Traceback" not in stderr
    assert side.exists() and not list(out.parent.glob(".*partial*"))
    before = {r["path"]: r for r in rep["images"]}

    code, text = cli([*args, "--resume"])
    assert code == 0, text
    rep = json.loads(out.read_text())
    assert rep["complete"] is True and rep["summary"]["images"] == 60
    assert [r["path"] for r in rep["images"]] == [str(p) for p in photos]  # each once, in order
    for r in rep["images"]:
        if r["path"] in before:  # kept, not done again (timings differ between two runs)
            assert r == before[r["path"]]
    assert not side.exists()


def test_csv_resume_drops_rows_of_unfinished_photos(cli, tiny_ckpt, wild_dir, tmp_path):
    """A run killed between a photo's CSV rows and its progress line: that photo is done again
    and its rows appear once."""
    import csv
    import json
    import shutil

    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(wild_dir / "kdef_frontal" / "AF01HAS.JPG", src / f"{name}.jpg")
    out_csv = tmp_path / "faces.csv"
    code, text = cli(["predict", src, "--model", tiny_ckpt, "--csv", out_csv])
    assert code == 0, text
    with open(out_csv) as fh:
        full = list(csv.DictReader(fh))
    assert [r["path"] for r in full] == [str(src / f"{n}.jpg") for n in "abc"]
    # as a killed run leaves it: c's rows written, c's progress line not; b's line cut off
    side = out_csv.with_name("faces.csv.jsonl")
    code, text = cli(["predict", src, "--model", tiny_ckpt, "--json", tmp_path / "all.jsonl"])
    lines = (tmp_path / "all.jsonl").read_text().splitlines(keepends=True)
    side.write_text(lines[0] + lines[1][: len(lines[1]) // 2])
    code, text = cli(["predict", src, "--model", tiny_ckpt, "--csv", out_csv, "--resume"])
    assert code == 0, text
    with open(out_csv) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["path"] for r in rows] == [str(src / f"{n}.jpg") for n in "abc"]
    assert rows[0] == full[0] and not side.exists()
    # a finished CSV resumed again: nothing to do, nothing doubled
    code, text = cli(["predict", src, "--model", tiny_ckpt, "--csv", out_csv, "--resume"])
    assert code == 0 and "3 photo(s) with 3 face(s)" in text, text
    with open(out_csv) as fh:
        assert len(list(csv.DictReader(fh))) == 3
    assert json.loads(lines[2])["path"] == str(src / "c.jpg")
    # the outputs of a model with other classes are not completed with this one's
    from wildfer.labels import FERPLUS_CLASSES
    from wildfer.models import create_model
    from wildfer.models.loader import save_checkpoint

    other = tmp_path / "ferplus.pt"
    save_checkpoint(other, create_model("shallow", num_classes=8, num_filters=4, hidden=8), arch="shallow",
                    model_kwargs={"num_filters": 4, "hidden": 8}, classes=FERPLUS_CLASSES)
    code, text = cli(["predict", src, "--model", other, "--csv", out_csv, "--resume"])
    assert code == 2 and "cannot resume" in text and "Traceback" not in text
    with open(out_csv) as fh:
        assert len(list(csv.DictReader(fh))) == 3
    # a CSV without the label2 / probability2 columns is not completed in another layout
    with open(out_csv) as fh:
        rows = [[v for k, v in enumerate(r) if k not in (11, 12)] for r in csv.reader(fh)]
    assert rows[0][9:12] == ["label", "confidence", "angry"]
    old_csv = tmp_path / "old.csv"
    with open(old_csv, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    before = old_csv.read_bytes()
    code, text = cli(["predict", src, "--model", tiny_ckpt, "--csv", old_csv, "--resume"])
    assert code == 2 and "cannot resume" in text and "label2, probability2" in text and "Traceback" not in text
    assert old_csv.read_bytes() == before


def test_interrupted_video_leaves_no_file_under_its_final_name(tmp_path, tiny_ckpt, monkeypatch):
    import cv2
    import numpy as np

    from wildfer.wild import recognizer
    from wildfer.batch.commands import run_predict

    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for k in range(10):
        w.write(np.full((120, 160, 3), 20 * k, np.uint8))
    w.release()
    calls = {"n": 0}
    real = recognizer.Recognizer.classify_prepared  # each frame's faces are classified on the caller's thread

    def classify_prepared(self, works):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, works)

    monkeypatch.setattr(recognizer.Recognizer, "classify_prepared", classify_prepared)
    out = tmp_path / "o"
    code = run_predict([video], model=str(tiny_ckpt), out=out, annotate=True, video_stride=1)
    assert code == 130 and calls["n"] == 4
    # no video, whole or partial: the report and the progress file that --resume reads
    assert sorted(p.name for p in out.rglob("*")) == ["predictions.json", "predictions.json.jsonl"]
    monkeypatch.setattr(recognizer.Recognizer, "classify_prepared", real)
    assert run_predict([video], model=str(tiny_ckpt), out=out, annotate=True, video_stride=1, resume=True) == 0
    cap = cv2.VideoCapture(str(out / "clip.annotated.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    cap.release()
    assert sorted(p.name for p in out.rglob("*")) == ["clip.annotated.mp4", "predictions.json"]


def test_predict_counts_and_marks_truncated_photos(cli, tiny_ckpt, tmp_path):
    import csv
    import json

    src = tmp_path / "in"
    src.mkdir()
    full = _jpeg(_photo())
    (src / "cut.jpg").write_bytes(_cut_with_end_marker(full))
    (src / "whole.jpg").write_bytes(full)
    code, text = cli(["predict", src, "--model", tiny_ckpt, "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv"])
    assert code == 0, text
    rep = json.loads((tmp_path / "r.json").read_text())
    assert [(Path(r["path"]).name, r["truncated"]) for r in rep["images"]] == [("cut.jpg", True), ("whole.jpg", False)]
    assert rep["summary"]["truncated"] == 1 and rep["summary"]["images"] == 2
    assert "1 truncated" in text and "cut.jpg" in text
    with open(tmp_path / "r.csv") as fh:
        header = next(csv.reader(fh))
    assert header[9:13] == ["label", "confidence", "label2", "probability2"] and header[-1] == "truncated"


# ----------------------------------------------------------------------------- wildfer data info


def test_data_info_skips_images_too_small_to_be_faces(cli, tmp_path):
    import json

    from PIL import Image

    root = tmp_path / "faces"
    for cls in ("happy", "sad"):
        (root / cls).mkdir(parents=True)
        Image.new("L", (48, 48), 90).save(root / cls / "face.png")
    Image.new("RGB", (1, 1), (120, 80, 40)).save(root / "happy" / "dot.png")
    Image.new("L", (40, 5), 90).save(root / "sad" / "strip.png")
    code, text = cli(["data", "info", root, "--json", tmp_path / "info.json"])
    assert code == 0, text
    d = json.loads((tmp_path / "info.json").read_text())
    assert d["n"] == 2 and d["class_totals"] == {**{c: 0 for c in d["classes"]}, "happy": 1, "sad": 1}
    problems = {Path(s["path"]).name: s["problem"] for s in d["skipped"]}
    assert set(problems) == {"dot.png", "strip.png"}
    assert "too small" in problems["dot.png"] and "1x1" in problems["dot.png"]
    assert "40x5" in problems["strip.png"]
    assert "2 item(s) skipped" in text and "dot.png" in text


# ----------------------------------------------------------------------------- odd Python inputs


@pytest.mark.parametrize("src, problem", [
    (None, "a NoneType is not an image"),
    (5, "a int is not an image"),
    ("__array_nan__", "NaN or infinite pixel values"),
    ("__array_object__", "dtype object is not an image"),
])
def test_inputs_that_are_not_images_are_one_image_error(src, problem):
    import numpy as np

    from wildfer.data.images import read_image
    from wildfer.errors import ImageError

    if src == "__array_nan__":
        src = np.full((4, 4, 3), 0.8, np.float32)
        src[0, 0, 0] = np.nan
    elif src == "__array_object__":
        src = np.array([[None]], dtype=object)
    with pytest.raises(ImageError, match=problem):
        read_image(src)


def test_bool_arrays_read_true_as_white():
    import numpy as np

    from wildfer.data.images import read_image

    a = np.zeros((4, 4), bool)
    a[1, 1] = True
    rgb = read_image(a)
    assert rgb[1, 1].tolist() == [255, 255, 255] and rgb[0, 0].tolist() == [0, 0, 0]


def test_json_nested_too_deep_as_model_is_one_line(tmp_path, capsys):
    from wildfer.cli import main

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    photo = tmp_path / "p.png"
    from PIL import Image

    Image.new("RGB", (64, 64)).save(photo)
    assert main(["predict", str(photo), "--model", str(deep)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "deep.json" in err[0]


def test_service_names_a_corrupt_png_as_the_library_does():
    sys.path.insert(0, str(Path(__file__).parent))
    import badinput

    from wildfer.serve.uploads import UploadError, decode_image

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        data = badinput.corrupt_ihdr_png(Path(d)).read_bytes()
    with pytest.raises(UploadError) as e:
        decode_image(data, 40_000_000)
    assert e.value.status == 422 and "corrupt or truncated PNG" in str(e.value)
