"""The bad-input corpus (:mod:`badinput`) through every front door: ``wildfer predict``, the
Python API, the HTTP service, ``wildfer data info`` / ``evaluate`` / ``train``.

Every input gives a correct result or a one-line error (exit code 2, one ``error:`` line on
stderr, no traceback); batch jobs process the good items beside the bad ones and list the bad
ones with their problem. The model is the built-in ``fast``; one Recognizer and one TestClient
serve every API and HTTP test, and the CLI runs in-process.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import badinput as bad
import numpy as np
import pytest

IMAGE_CASES = {c.name: c for c in bad.IMAGE_CASES}
DECODABLE = [c for c in bad.IMAGE_CASES if c.size is not None]
REFUSED = [c for c in bad.IMAGE_CASES if c.size is None]


# ----------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module", autouse=True)
def _cache_in_tmp(tmp_path_factory):
    """Parsed CSVs are cached under a temporary folder, not the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WILDFER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def recognizer():
    from wildfer import Recognizer

    return Recognizer(model="fast")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    """Every image case, one good JPEG and two broken videos, written once into one folder."""
    folder = tmp_path_factory.mktemp("photos")
    written = {c.name: c.write(folder) for c in bad.IMAGE_CASES}
    written["good"] = bad.good_jpeg(folder)
    written["text_as_video"] = bad.text_as_video(folder)
    written["zero_byte_video"] = bad.zero_byte_video(folder)
    return written


@pytest.fixture(scope="module")
def client(recognizer):
    from fastapi.testclient import TestClient

    from wildfer.serve.app import create_app

    with TestClient(create_app(recognizer, timeout=60, threads=1), base_url="http://127.0.0.1") as c:
        yield c


def run_cli(*args) -> tuple[int, str, str]:
    """``wildfer ARGS`` in-process: (exit code, stdout, stderr)."""
    from wildfer.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(result: tuple[int, str, str], *fragments: str) -> str:
    """Exit code 2 and exactly one non-blank stderr line, ``error: ...`` holding ``fragments``."""
    code, _, err = result
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def upload(client, path: Path, url: str = "/v1/predict"):
    return client.post(url, files={"file": (path.name, path.read_bytes(), "application/octet-stream")})


# ----------------------------------------------------------------------------- images: Python API


@pytest.mark.parametrize("case", DECODABLE, ids=lambda c: c.name)
def test_api_reads_awkward_image(recognizer, photos, case):
    res = recognizer.predict(photos[case.name])
    assert (res.width, res.height) == case.size
    assert res.faces == []  # patterns and solid colours hold no face
    if case.size[0] * case.size[1] > 1_000_000:
        return
    with open(photos[case.name], "rb") as fh:  # bytes and file objects read the same
        for src in (photos[case.name].read_bytes(), fh):
            again = recognizer.predict(src)
            assert (again.width, again.height) == case.size


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.name)
def test_api_refuses_broken_image(recognizer, photos, case):
    from wildfer.errors import ImageError

    with pytest.raises(ImageError) as e:
        recognizer.predict(photos[case.name])
    assert e.value.path == str(photos[case.name])
    assert case.problem in e.value.problem
    assert "\n" not in str(e.value)
    if case.problem and case.name != "zero_byte":  # no bytes at all is its own message
        with pytest.raises(ImageError, match=case.problem):
            recognizer.predict(photos[case.name].read_bytes())


def _pixels(recognizer, path) -> np.ndarray:
    """The RGB photo the pipeline worked on (explain_photo returns it beside the heat map)."""
    from wildfer import explain_photo

    return explain_photo(recognizer, path).image.astype(int)


def test_api_pixels_of_awkward_images(recognizer, photos):
    """Not only the size: each mode is turned into the RGB a viewer shows."""
    ramp = _pixels(recognizer, photos["png16_gray"])[0, :, 0]  # 16-bit 0..65535 -> 8-bit 0..255
    assert ramp[0] == 0 and ramp[-1] == 255 and np.all(np.diff(ramp) >= 0)
    assert abs(ramp[32] - 129) <= 1
    np.testing.assert_allclose(_pixels(recognizer, photos["png16_rgb"]), bad.pattern(), atol=1)
    assert np.abs(_pixels(recognizer, photos["cmyk_jpeg"]) - [255, 0, 0]).max() <= 3
    rgba = _pixels(recognizer, photos["rgba_png"])  # transparent left half on white
    assert (rgba[:, :32] == 255).all() and (rgba[:, 32:] == [0, 0, 255]).all()
    la = _pixels(recognizer, photos["la_png"])
    assert (la[:, :32] == 255).all() and (la[:, 32:] == 40).all()
    pal = _pixels(recognizer, photos["palette_transparent_png"])
    assert (pal[:, :32] == 255).all() and (pal[:, 32:] == [200, 30, 30]).all()
    assert np.abs(_pixels(recognizer, photos["animated_gif"]) - [220, 20, 20]).max() <= 8  # first frame
    for name in ("exif_rotated_jpeg", "webp", "gif"):  # upright, and the same picture
        assert np.abs(_pixels(recognizer, photos[name]) - bad.pattern()).mean() < 12, name
    assert (_pixels(recognizer, photos["tiny_1x1"]) == [120, 80, 40]).all()


def test_api_whole_mode_on_tiny_images(recognizer, photos):
    from wildfer import Recognizer

    whole = Recognizer(model=recognizer.classifier, mode="whole")
    for name, side in (("tiny_1x1", 1), ("tiny_2x2", 2)):
        res = whole.predict(photos[name])
        assert [f.box for f in res.faces] == [(0.0, 0.0, float(side), float(side))]
        assert sum(res.faces[0].probs.values()) == pytest.approx(1.0, abs=1e-4)


# ----------------------------------------------------------------------------- images: CLI


def test_cli_predict_folder_processes_good_and_lists_bad(photos, tmp_path):
    folder = photos["good"].parent
    code, _, err = run_cli("predict", folder, "--model", "fast", "--json", tmp_path / "p.json")
    assert code == 0, err
    assert "Traceback" not in err
    report = json.loads((tmp_path / "p.json").read_text())
    sizes = {Path(r["path"]).name: (r["width"], r["height"]) for r in report["images"]}
    assert sizes == {photos[c.name].name: c.size for c in DECODABLE} | {"good.jpg": (64, 48)}
    problems = {Path(u["path"]).name: u["error"] for u in report["unreadable"]}
    videos = [photos["text_as_video"], photos["zero_byte_video"]]
    assert set(problems) == {photos[c.name].name for c in REFUSED} | {v.name for v in videos}
    for c in REFUSED:
        assert c.problem in problems[photos[c.name].name], c.name
    for v in videos:
        assert "cannot open video" in problems[v.name]
    assert report["summary"]["images"] == len(DECODABLE) + 1 and report["summary"]["videos"] == 0
    assert report["summary"]["unreadable"] == len(REFUSED) + len(videos)
    for p in [photos[c.name] for c in REFUSED] + videos:  # and the summary on stderr names each
        assert str(p) in err


@pytest.mark.parametrize("name", ["truncated_jpeg", "text_as_jpeg", "bomb_png_20000"])
def test_cli_predict_single_bad_photo(photos, name):
    code, _, err = run_cli("predict", photos[name], "--model", "fast")
    assert code == 1, err  # nothing could be processed
    assert "Traceback" not in err
    assert f"unreadable {photos[name]}: " in err and IMAGE_CASES[name].problem in err
    assert err.strip().splitlines()[-1] == "error: nothing could be processed"


# ----------------------------------------------------------------------------- images: HTTP service


@pytest.mark.parametrize("case", bad.IMAGE_CASES, ids=lambda c: c.name)
def test_http_predict_and_explain(client, photos, case):
    raw = photos[case.name].read_bytes()
    for url, r in (("/v1/predict", upload(client, photos[case.name])),
                   ("/v1/predict raw body", client.post("/v1/predict", content=raw, headers={"Content-Type": "image/png"})),
                   ("/v1/explain", upload(client, photos[case.name], "/v1/explain?format=json"))):
        assert r.status_code == case.http, (url, r.text)
        js = r.json()
        if case.http == 200:
            assert (js["width"], js["height"]) == case.size
            assert js["faces"] == []
        else:
            assert js["error"] in ("not_an_image", "empty", "too_many_pixels")
            assert "\n" not in js["detail"]
            if case.http == 413:
                assert "too large" in js["detail"]
            elif case.problem:
                assert case.problem in js["detail"], js["detail"]


def test_http_explain_png_of_rotated_and_large_photos(client, photos):
    from PIL import Image

    r = upload(client, photos["exif_rotated_jpeg"], "/v1/explain")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (64, 48)
    r = upload(client, photos["large_solid_4000"], "/v1/explain")  # overlay drawn at most 1 MP, same shape
    assert r.status_code == 200
    w, h = Image.open(io.BytesIO(r.content)).size
    assert w == h and w * h <= 1_000_000


def test_truncated_jpeg_with_end_marker_is_flagged(recognizer, client, photos, tmp_path):
    """A JPEG cut short but given an end marker decodes (the rest grey): kept, and marked by the
    Python API, /v1/predict, /v1/explain and predict's JSON and summary."""
    cut = bad.truncated_jpeg_with_eoi(tmp_path)
    res = recognizer.predict(cut).to_dict()
    assert (res["width"], res["height"]) == (96, 96) and res["truncated"] is True
    assert not recognizer.predict(photos["good"]).to_dict().get("truncated")
    for url in ("/v1/predict", "/v1/explain?format=json"):
        r = upload(client, cut, url)
        assert r.status_code == 200 and r.json()["truncated"] is True, url
        assert upload(client, photos["good"], url).json().get("truncated") is False, url
    code, _, err = run_cli("predict", cut, photos["good"], "--model", "fast", "--json", tmp_path / "p.json")
    assert code == 0, err
    flags = {r["path"]: r.get("truncated") for r in json.loads((tmp_path / "p.json").read_text())["images"]}
    assert flags[str(cut)] is True and not flags[str(photos["good"])]
    assert f"truncated {cut}" in err


@pytest.fixture(scope="module")
def portrait(wild_dir):
    """A KDEF portrait (281 x 381, one face)."""
    p = wild_dir / "kdef_frontal" / "AF01HAS.JPG"
    if not p.exists():
        pytest.skip(f"KDEF photo missing: {p}")
    return p


def test_exif_rotated_portrait_is_detected_upright(recognizer, client, portrait, tmp_path):
    """The same face in the same place whether the photo is stored upright or on its side with
    an EXIF orientation: the box is in the upright photo's pixels."""
    from PIL import Image

    upright = recognizer.predict(portrait)
    assert (upright.width, upright.height) == (281, 381) and len(upright.faces) == 1
    rotated = bad.exif_rotated_jpeg(tmp_path, np.asarray(Image.open(portrait).convert("RGB")), "kdef_exif.jpg")
    assert Image.open(rotated).size == (381, 281)  # stored on its side
    res = recognizer.predict(rotated)
    assert (res.width, res.height) == (281, 381) and len(res.faces) == 1
    np.testing.assert_allclose(res.faces[0].box, upright.faces[0].box, atol=6)
    js = upload(client, rotated).json()
    assert (js["width"], js["height"]) == (281, 381) and len(js["faces"]) == 1
    np.testing.assert_allclose(js["faces"][0]["box"], upright.faces[0].box, atol=6)


# ----------------------------------------------------------------------------- data files


@pytest.mark.parametrize("case", bad.FER_CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("command", ["data info", "evaluate", "train"])
def test_broken_fer2013_csv(tmp_path, case, command):
    path = case.write(tmp_path)
    if command == "train":  # the data is read after the config is checked, before the run folder exists
        cfg = bad.config(tmp_path, f"data: {path}\nout: {tmp_path / 'run'}\nepochs: 1\nmodel: shallow\n")
        line = assert_one_line_error(run_cli("train", "--config", cfg, "--no-progress"), str(path))
        assert not (tmp_path / "run").exists()
    else:
        args = ["data", "info", path] if command == "data info" else ["evaluate", path, "--model", "fast"]
        line = assert_one_line_error(run_cli(*args), str(path), case.problem)
    if case.row is not None:
        assert f"row {case.row}: " in line


def test_gz_name_on_plain_csv_loads(tmp_path):
    path = bad.fer_gz_plain_text(tmp_path)
    code, _, err = run_cli("data", "info", path, "--json", tmp_path / "info.json")
    assert code == 0, err
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["n"] == 14 and info["usages"] == {"Training": 7, "PublicTest": 7}
    assert info["class_totals"] == {"angry": 2, "disgust": 2, "fear": 2, "happy": 2, "sad": 2, "surprise": 2,
                                    "neutral": 2}
    code, _, err = run_cli("evaluate", path, "--model", "fast", "--json", tmp_path / "eval.json")
    assert code == 0, err
    assert json.loads((tmp_path / "eval.json").read_text())["n"] == 7  # PublicTest


@pytest.mark.parametrize("target", ["DIR.npz", "FILE/x.npz"])
def test_pack_to_unwritable_path(tmp_path, target):
    (tmp_path / "DIR.npz").mkdir()
    (tmp_path / "FILE").write_text("already here")
    data = bad.fer_csv(tmp_path, "tiny.csv")
    assert_one_line_error(run_cli("data", "pack", data, tmp_path / target), str(tmp_path / target))
    assert (tmp_path / "FILE").read_text() == "already here"


@pytest.mark.parametrize("case", bad.FERPLUS_CASES, ids=lambda c: c.name)
def test_broken_ferplus_votes(tmp_path, case):
    votes = case.write(tmp_path)
    fer = votes.parent / "fer2013.csv"
    for args in (["data", "info", votes], ["evaluate", fer, "--ferplus-labels", votes, "--model", "fast"]):
        line = assert_one_line_error(run_cli(*args), str(votes), case.problem)
        if case.row is not None:
            assert f"row {case.row}: " in line


def test_good_ferplus_votes_load(tmp_path):
    votes = bad.ferplus_pair(tmp_path, bad.ferplus_rows())
    code, _, err = run_cli("data", "info", votes, "--json", tmp_path / "info.json")
    assert code == 0, err
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["n"] == 14 and info["class_totals"]["neutral"] == 14 and len(info["classes"]) == 8
    for spelling in ("fer2013", "FER2013"):  # class set names in any case, as for folders and manifests
        code, _, err = run_cli("data", "info", votes, "--classes", spelling, "--json", tmp_path / "info7.json")
        assert code == 0, err
        assert len(json.loads((tmp_path / "info7.json").read_text())["classes"]) == 7
    assert_one_line_error(run_cli("data", "info", votes, "--classes", "bogus"), "unknown classes 'bogus'")


def test_csv_with_ustar_where_tar_keeps_it_is_read(tmp_path):
    """``ustar`` at byte 257 alone does not make a CSV a tar archive (the header checksum must
    add up too): a manifest naming ``mustard.png`` there loads."""
    head = "path,label\n"
    folder = "d" * 120 + "/"  # file names are at most 255 bytes
    name = folder + "m" * (257 - len(head) - len(folder) - 1) + "mustard.png"  # "ustar" at byte 257
    at = 148 - len(head)  # octal digits where a tar header keeps its checksum
    name = name[:at] + "01234567" + name[at + 8:]
    bad.face_png(tmp_path / name)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"{head}{name},happy\n{name},sad\n")  # over 512 bytes: a whole tar block
    data = manifest.read_bytes()
    assert data[257:262] == b"ustar" and data[148:156] == b"01234567" and len(data) > 512
    code, _, err = run_cli("data", "info", manifest, "--json", tmp_path / "info.json")
    assert code == 0, err
    assert json.loads((tmp_path / "info.json").read_text())["n"] == 2


def _manifest_expectations(path: Path) -> list[tuple[str, int, str]]:
    """(file, row, problem fragment) for every bad row of :data:`badinput.MANIFEST_ROWS`."""
    out = []
    for row, (rel, _, _, problem) in enumerate(bad.MANIFEST_ROWS, start=1):
        if problem is not None:
            out.append((str(path.parent / rel) if rel else str(path), row, problem))
    return out


def test_manifest_good_rows_beside_bad(tmp_path):
    path = bad.manifest(tmp_path)
    expected = _manifest_expectations(path)
    code, _, err = run_cli("data", "info", path, "--json", tmp_path / "info.json")
    assert code == 0, err
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["n"] == 3 and info["class_totals"]["happy"] == info["class_totals"]["sad"] == 1
    assert info["class_totals"]["surprise"] == 1
    assert len(info["skipped"]) == len(expected)
    for item, (file, row, problem) in zip(info["skipped"], expected):
        assert item["path"] == file and item["problem"].startswith(f"row {row}: ") and problem in item["problem"]
    code, _, err = run_cli("evaluate", path, "--model", "fast", "--json", tmp_path / "eval.json")
    assert code == 0, err
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["n"] == 3
    assert [s[0] for s in report["skipped"]] == [e[0] for e in expected]


@pytest.mark.parametrize("bad_row", bad.MANIFEST_BAD_ROWS, ids=[r[3].split(":")[0] for r in bad.MANIFEST_BAD_ROWS])
def test_manifest_malformed_row_is_one_line(tmp_path, bad_row):
    path = bad.manifest(tmp_path, bad_row)
    where = f"{path}, row {len(bad.MANIFEST_ROWS) + 1}: {bad_row[3]}"
    assert_one_line_error(run_cli("data", "info", path), where)
    assert_one_line_error(run_cli("evaluate", path, "--model", "fast"), where)


def test_image_folder_good_images_beside_bad(tmp_path):
    root, n_good, bad_names = bad.image_folder(tmp_path)
    code, out, err = run_cli("data", "info", root, "--json", tmp_path / "info.json")
    assert code == 0, err
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["n"] == n_good and info["class_totals"]["happy"] == 2 and info["class_totals"]["sad"] == 1
    assert sorted(Path(s["path"]).name for s in info["skipped"]) == sorted(bad_names)
    assert f"{len(bad_names)} item(s) skipped" in out
    code, _, err = run_cli("evaluate", root, "--model", "fast", "--json", tmp_path / "eval.json")
    assert code == 0, err
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["n"] == n_good and len(report["skipped"]) == len(bad_names)


# ----------------------------------------------------------------------------- training configs


@pytest.mark.parametrize("name,text,problem", bad.CONFIG_CASES, ids=[c[0] for c in bad.CONFIG_CASES])
def test_broken_config(tmp_path, name, text, problem):
    data = bad.fer_csv(tmp_path, "tiny.csv")
    out = tmp_path / "run"
    path = bad.config(tmp_path, text.format(data=data, out=out) if isinstance(text, str) else text)
    assert_one_line_error(run_cli("train", "--config", path, "--no-progress"), problem)
    assert not out.exists()


@pytest.mark.parametrize("override", ["epochs=[1", "lr=: :"])
def test_unparsable_override_is_refused(override):
    assert_one_line_error(run_cli("train", override, "--no-progress"), override.split("=")[0])


@pytest.mark.parametrize("kind", ["folder", "json_list"])
def test_config_that_is_no_mapping_file(tmp_path, kind):
    if kind == "folder":
        path = tmp_path / "config.yaml"
        path.mkdir()
    else:
        path = bad.config(tmp_path, "[1, 2]", "config.json")
    assert_one_line_error(run_cli("train", "--config", path, "--no-progress"), str(path))


@pytest.mark.parametrize("name,line,key", bad.CONFIG_RANGE_CASES, ids=[c[0] for c in bad.CONFIG_RANGE_CASES])
def test_out_of_range_config_is_refused_before_work(tmp_path, name, line, key):
    data = bad.fer_csv(tmp_path, "tiny.csv")
    run = tmp_path / "run"
    base = f"data: {data}\nout: {run}\nmodel: shallow\n" + ("" if name == "epochs_0" else "epochs: 1\n")
    cfg = bad.config(tmp_path, base + line + "\n")
    assert_one_line_error(run_cli("train", "--config", cfg, "--no-progress"), key)
    assert not run.exists()



# ----------------------------------------------------------------------------- hostile checkpoints


def test_hostile_checkpoint_would_run_code(tmp_path):
    """The corpus's hostile pickle is live: an unguarded load creates the marker."""
    import pickle

    marker = tmp_path / "code_ran"
    pickle.loads(bad.hostile_checkpoint(tmp_path / "evil.pt", marker, zip_format=False).read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("zip_format", [True, False], ids=["torch_save", "bare_pickle"])
def test_hostile_checkpoint_as_model_is_refused(photos, tmp_path, zip_format):
    marker = tmp_path / "code_ran"
    evil = bad.hostile_checkpoint(tmp_path / "evil.pt", marker, zip_format=zip_format)
    data = bad.fer_csv(tmp_path, "tiny.csv")
    assert_one_line_error(run_cli("predict", photos["good"], "--model", evil), str(evil))
    assert_one_line_error(run_cli("evaluate", data, "--model", evil), str(evil))
    assert not marker.exists()


def _resume_config(tmp_path, run):
    data = bad.fer_csv(tmp_path, "tiny.csv")
    return bad.config(tmp_path, f"data: {data}\nout: {run}\nepochs: 1\nmodel: shallow\nsubset: 8\n", "resume.yaml")


@pytest.mark.parametrize("zip_format", [True, False], ids=["torch_save", "bare_pickle"])
def test_resume_from_hostile_last_pt_is_refused(tmp_path, zip_format):
    marker = tmp_path / "code_ran"
    run = tmp_path / "run"
    last = bad.hostile_checkpoint(run / "last.pt", marker, zip_format=zip_format)
    cfg = _resume_config(tmp_path, run)
    assert_one_line_error(run_cli("train", "--config", cfg, "--resume", "--no-progress"), str(last))
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["list", "text"])
def test_resume_from_non_checkpoint_is_refused(tmp_path, kind):
    run = tmp_path / "run"
    if kind == "list":
        last = bad.not_a_checkpoint(run / "last.pt")
    else:
        run.mkdir()
        last = run / "last.pt"
        last.write_text("not a checkpoint")
    cfg = _resume_config(tmp_path, run)
    assert_one_line_error(run_cli("train", "--config", cfg, "--resume", "--no-progress"), str(last))


def test_ensemble_specs_in_a_ring_are_refused(photos, tmp_path):
    a, selfish = bad.ensemble_cycle(tmp_path)
    data = bad.fer_csv(tmp_path, "tiny.csv")
    for spec, ring in ((a, f"{a} -> {tmp_path / 'b.json'} -> {a}"), (selfish, f"{selfish} -> {selfish}")):
        assert_one_line_error(run_cli("predict", photos["good"], "--model", spec), ring)
        assert_one_line_error(run_cli("evaluate", data, "--model", spec), ring)


# ----------------------------------------------------------------------------- output paths


@pytest.fixture()
def no_work(monkeypatch):
    """Fails the test if a photo is prepared or a model evaluated."""
    from wildfer.evaluate import core
    from wildfer.wild.recognizer import Recognizer

    def refuse(*a, **k):
        raise AssertionError("work started before the output paths were checked")

    monkeypatch.setattr(Recognizer, "prepare", refuse)
    monkeypatch.setattr(core, "evaluate", refuse)


#: (command, options) whose output path is a folder where a file goes, a file where a folder goes,
#: or lies under a file
OUTPUT_CASES = [
    ("predict", ["--json", "DIR"]), ("predict", ["--csv", "DIR"]), ("predict", ["--csv", "FILE/x.csv"]),
    ("predict", ["--out", "FILE", "--annotate"]), ("evaluate", ["--json", "DIR"]), ("evaluate", ["--out", "FILE"]),
    ("evaluate", ["--save-probs", "DIR.npz"]),
]


@pytest.mark.parametrize("command,options", OUTPUT_CASES, ids=[" ".join([c, *o]) for c, o in OUTPUT_CASES])
def test_bad_output_path_is_refused_before_work(photos, tmp_path, no_work, command, options):
    (tmp_path / "DIR").mkdir()
    (tmp_path / "DIR.npz").mkdir()
    (tmp_path / "FILE").write_text("already here")
    source = photos["good"] if command == "predict" else bad.fer_csv(tmp_path, "tiny.csv")
    opts = [str(tmp_path / o) if o[0].isupper() else o for o in options]
    named = str(tmp_path / options[1].split("/")[0])
    assert_one_line_error(run_cli(command, source, *opts, "--model", "fast"), named)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_good_output_path_reaches_the_work(photos, tmp_path, no_work, command):
    """The control for the test above: with a usable output path the work starts (and trips no_work)."""
    source = photos["good"] if command == "predict" else bad.fer_csv(tmp_path, "tiny.csv")
    with pytest.raises(AssertionError, match="work started"):
        run_cli(command, source, "--json", tmp_path / "out.json", "--model", "fast")


def test_data_info_json_folder_is_refused(tmp_path):
    (tmp_path / "DIR").mkdir()
    data = bad.fer_csv(tmp_path, "tiny.csv")
    assert_one_line_error(run_cli("data", "info", data, "--json", tmp_path / "DIR"), str(tmp_path / "DIR"))


# ----------------------------------------------------------------------------- paths that look like markup


@pytest.mark.parametrize("name", ["[happy]", "[/]", "[bold red]x"])
def test_paths_with_brackets_are_printed_as_they_are(tmp_path, name):
    folder = tmp_path / name  # "[/]" is a folder "[" holding a folder "]"
    folder.mkdir(parents=True)
    missing = folder / "fer.csv"
    assert_one_line_error(run_cli("data", "info", missing), str(missing))
    empty = bad.fer_empty(folder)
    assert_one_line_error(run_cli("data", "info", empty), str(empty))
    cut = bad.truncated_jpeg(folder)
    code, _, err = run_cli("predict", cut, "--model", "fast")
    assert code == 1 and f"unreadable {cut}: " in err, err
    root, _, _ = bad.image_folder(folder)
    code, out, err = run_cli("evaluate", root, "--model", "fast")
    assert code == 0 and str(root / "sad" / "empty.jpg") in out, out
