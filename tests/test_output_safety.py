"""A user's files are never destroyed and a run never leaves a mess: outputs that are inputs,
devices and FIFOs, concurrent runs on one output, full disks, --resume with other settings,
kills of a --workers run, and the one-line errors of hostile inputs (badinput.py) across the
commands. Each test reproduces the fault first: it fails on a wildfer without the guard."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import badinput as bad
import pytest

KDEF_FACE = "kdef_frontal/AF01HAS.JPG"


def run_cli(*args) -> tuple[int, str, str]:
    """``wildfer ARGS`` in-process: (exit code, stdout, stderr)."""
    from wildfer.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def one_line_error(result, *fragments: str, code: int = 2) -> str:
    rc, _, err = result
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


@pytest.fixture
def photos(tmp_path, wild_dir) -> Path:
    """A folder of three copies of a KDEF face."""
    src = tmp_path / "in"
    src.mkdir()
    for name in "abc":
        shutil.copy(wild_dir / KDEF_FACE, src / f"{name}.jpg")
    return src


# ----------------------------------------------------------------------------- outputs that are inputs


@pytest.mark.parametrize("option", ["--json", "--csv"])
def test_an_output_that_is_an_input_is_refused(tiny_ckpt, photos, option):
    a = photos / "a.jpg"
    before = a.read_bytes()
    one_line_error(run_cli("predict", a, "--model", tiny_ckpt, option, a), option, "is also an input")
    assert a.read_bytes() == before
    link = photos / "link.jpg"  # the same file by another name
    os.link(a, link)
    one_line_error(run_cli("predict", photos, "--model", tiny_ckpt, option, link), "is also an input")
    assert a.read_bytes() == before


@pytest.mark.parametrize("sub", ["", "annotated"])
def test_annotated_images_are_not_saved_inside_a_searched_folder(tiny_ckpt, photos, sub):
    out = photos / sub if sub else photos
    before = sorted(p.name for p in photos.rglob("*"))
    one_line_error(run_cli("predict", photos, "--model", tiny_ckpt, "--annotate", "--out", out),
                   "inside the input folder")
    assert sorted(p.name for p in photos.rglob("*")) == before


@pytest.mark.parametrize("command", ["evaluate", "evaluate-wild", "data-info", "data-pack"])
def test_other_commands_never_write_over_their_input(tmp_path, wild_dir, command):
    fer = bad.fer_csv(tmp_path, "fer.csv")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{wild_dir / KDEF_FACE},happy\n")
    args = {"evaluate": ["evaluate", fer, "--model", "fast", "--json", fer],
            "evaluate-wild": ["evaluate-wild", manifest, "--model", "fast", "--json", manifest],
            "data-info": ["data", "info", fer, "--json", fer],
            "data-pack": ["data", "pack", fer, fer]}[command]
    target = fer if command != "evaluate-wild" else manifest
    before = target.read_bytes()
    one_line_error(run_cli(*args), "is also an input")
    assert target.read_bytes() == before


# ----------------------------------------------------------------------------- devices, FIFOs, folders


@pytest.mark.parametrize("command", ["predict", "data-pack", "evaluate", "export"])
def test_a_fifo_output_is_never_replaced(tmp_path, tiny_ckpt, photos, command):
    node = bad.fifo(tmp_path, "node.out")
    fer = bad.fer_csv(tmp_path, "fer.csv")
    args = {"predict": ["predict", photos, "--model", tiny_ckpt, "--json", node],
            "data-pack": ["data", "pack", fer, tmp_path / "node.npz"],
            "evaluate": ["evaluate", fer, "--model", tiny_ckpt, "--json", node],
            "export": ["export", tiny_ckpt, "--onnx", node]}[command]
    if command == "data-pack":
        node = bad.fifo(tmp_path, "node.npz")
    one_line_error(run_cli(*args), "not a regular file")
    assert stat.S_ISFIFO(os.stat(node).st_mode)


def test_written_whole_never_replaces_a_node(tmp_path):
    from wildfer.errors import OutputError
    from wildfer.paths import partial_path, write_text_whole

    node = bad.fifo(tmp_path, "r.json")
    with pytest.raises(OutputError, match="never replaced"):
        write_text_whole(node, "{}")
    assert stat.S_ISFIFO(os.stat(node).st_mode) and not partial_path(node).exists()
    folder = tmp_path / "d.json"
    folder.mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        write_text_whole(folder, "{}")


@pytest.mark.parametrize("args", [["data", "info"], ["evaluate-wild"], ["predict"]])
def test_fifo_inputs_are_refused_not_read(tmp_path, args):
    """A FIFO given where a file is read whole would block for ever."""
    name = "m.csv" if args[0] != "predict" else "clip.mp4"
    node = bad.fifo(tmp_path, name)
    rc, _, err = run_cli(*args, node, *(["--model", "fast"] if args[0] != "data" else []))
    assert rc in (1, 2) and "not a regular file" in err and "Traceback" not in err, err


def test_a_trailing_slash_names_a_folder(tiny_ckpt, photos, tmp_path):
    out = tmp_path / "out"
    one_line_error(run_cli("predict", photos, "--model", tiny_ckpt, "--json", f"{out}/"), "ends with a slash")
    assert not out.exists()


def test_an_empty_argument_is_refused(tmp_path, monkeypatch):
    """``wildfer predict "$UNSET"`` would otherwise search the current folder."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(bad.good_jpeg(tmp_path), tmp_path / "private.jpg")
    one_line_error(run_cli("predict", "", "--json", tmp_path / "r.json"), "empty")
    assert not (tmp_path / "r.json").exists()


def test_a_name_too_long_is_one_line(tiny_ckpt, photos, tmp_path):
    rc, _, err = run_cli("predict", photos, "--model", tiny_ckpt, "--json", bad.long_name(tmp_path))
    assert rc in (1, 2) and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "too long" in err.lower()


# ----------------------------------------------------------------------------- one writer per output


def test_a_second_run_on_the_same_output_is_refused(tiny_ckpt, photos, tmp_path):
    """Another process holds the output (as a running predict does): this run refuses at once,
    and once that process is gone (even killed) the output is free again."""
    out = tmp_path / "r.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom wildfer.locks import output_lock\n"
         "with output_lock([sys.argv[1]]):\n    print('held', flush=True)\n    time.sleep(120)\n", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        one_line_error(run_cli("predict", photos, "--model", tiny_ckpt, "--json", out), "another wildfer run",
                       f"process {holder.pid}")
        assert not out.exists() and not out.with_name("r.json.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    rc, _, err = run_cli("predict", photos, "--model", tiny_ckpt, "--json", out)
    assert rc == 0, err
    assert json.loads(out.read_text())["summary"]["images"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "r.json"]  # no lock file left


def test_output_lock_is_exclusive_and_tidy(tmp_path):
    from wildfer.errors import WildferError
    from wildfer.locks import lock_path, output_lock

    out = tmp_path / "x.csv"
    with output_lock([out, None, out]):
        assert lock_path(out).exists()
        with pytest.raises(WildferError, match="another wildfer run"), output_lock([out]):
            pass
    assert not lock_path(out).exists()
    with output_lock([out]):
        pass


# ----------------------------------------------------------------------------- --resume checks settings


@pytest.mark.parametrize("output", ["--json r.json", "--csv r.csv", "--json r.jsonl"])
def test_resume_with_other_settings_is_refused(tiny_ckpt, photos, tmp_path, output):
    opt, name = output.split()
    out = tmp_path / name
    rc, _, err = run_cli("predict", photos, "--model", tiny_ckpt, opt, out)
    assert rc == 0, err
    before = out.read_bytes()
    for extra, fragment in ((["--tta"], "--tta off"), (["--max-side", "320"], "--max-side 640"),
                            (["--model", "fast"], "--model"), (["--mode", "whole"], "--mode detect"),
                            (["--unsure-below", "0.5"], "--unsure-below 0.0"),
                            (["--full-decode"], "--full-decode off")):
        args = ["predict", photos, opt, out, "--resume", *extra]
        if "--model" not in extra:
            args += ["--model", tiny_ckpt]
        line = one_line_error(run_cli(*args), "cannot resume", fragment)
        assert len(line) < 400
        assert out.read_bytes() == before
    rc, _, err = run_cli("predict", photos, "--model", tiny_ckpt, opt, out, "--resume")  # the same: fine
    assert rc == 0 and "3 photo(s)" in err, err
    if name.endswith(".jsonl"):  # one line per photo, nothing else
        assert len(out.read_text().splitlines()) == 3


def test_a_report_records_its_settings(tiny_ckpt, photos, tmp_path):
    rc, _, err = run_cli("predict", photos, "--model", tiny_ckpt, "--json", tmp_path / "r.json", "--tta")
    assert rc == 0, err
    s = json.loads((tmp_path / "r.json").read_text())["settings"]
    assert s == {"model": str(Path(tiny_ckpt).resolve()), "detector": "yunet", "mode": "detect", "max_side": 640,
                 "tta": True, "backend": "auto", "video_stride": 5, "unsure_below": 0.0, "full_decode": False}


def test_outputs_that_do_not_record_the_unsure_threshold_resume_as_made_without_it(tiny_ckpt, photos, tmp_path):
    """A report written before the ``unsure`` threshold was recorded was made without one (0):
    --resume completes it as it is, and refuses another threshold."""
    out = tmp_path / "r.json"
    rc, _, err = run_cli("predict", photos, "--model", tiny_ckpt, "--json", out)
    assert rc == 0, err
    rep = json.loads(out.read_text())
    del rep["settings"]["unsure_below"]
    out.write_text(json.dumps(rep))
    rc, _, err = run_cli("predict", photos, "--model", tiny_ckpt, "--json", out, "--resume")
    assert rc == 0 and "3 photo(s)" in err, err
    one_line_error(run_cli("predict", photos, "--model", tiny_ckpt, "--json", out, "--resume", "--unsure-below", "0.3"),
                   "cannot resume", "--unsure-below 0.0")


def test_outputs_that_do_not_record_whole_decoding_resume_with_full_decode(tiny_ckpt, photos, tmp_path):
    """A report written before large JPEGs were decoded reduced was made decoding every photo
    whole: --resume completes it with --full-decode, and says so without it."""
    out = tmp_path / "r.json"
    rc, _, err = run_cli("predict", photos, "--model", tiny_ckpt, "--json", out, "--full-decode")
    assert rc == 0, err
    rep = json.loads(out.read_text())
    assert rep["settings"]["full_decode"] is True
    del rep["settings"]["full_decode"]
    out.write_text(json.dumps(rep))
    one_line_error(run_cli("predict", photos, "--model", tiny_ckpt, "--json", out, "--resume"),
                   "cannot resume", "--full-decode on, not --full-decode off")
    rc, _, err = run_cli("predict", photos, "--model", tiny_ckpt, "--json", out, "--resume", "--full-decode")
    assert rc == 0 and "3 photo(s)" in err, err


# ----------------------------------------------------------------------------- full disks


@pytest.fixture
def small_disk(tmp_path):
    """A folder on a 16 MiB file system (tmpfs, as root); else skip."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("a small tmpfs needs root and mount")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()[:80]})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder: Path, leave: int) -> None:
    """Fill ``folder``'s file system until about ``leave`` bytes are free."""
    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


def _whole_images(folder: Path) -> list[str]:
    """The image files under ``folder``, each checked to decode completely."""
    from PIL import Image

    names = []
    for p in sorted(folder.rglob("*.jpg")):
        with Image.open(p) as im:
            im.load()
        names.append(p.name)
    return names


def test_a_full_disk_leaves_no_half_file_and_one_line(tiny_ckpt, photos, small_disk, wild_dir):
    for k in range(6):  # a larger photo: annotated copies of about 100 kB each
        shutil.copy(wild_dir / "groups" / sorted(os.listdir(wild_dir / "groups"))[0], photos / f"g{k}.jpg")
    out = small_disk / "out"
    _fill(small_disk, 150_000)
    rc, _, err = run_cli("predict", photos, "--model", tiny_ckpt, "--annotate", "--out", out)
    assert rc != 0 and "Traceback" not in err, err
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and str(small_disk) in line[0] and "No space left" in line[0], err
    assert not [p for p in small_disk.rglob("*partial*")]
    _whole_images(out)  # every image under its final name is whole
    (small_disk / "filler").unlink()
    rc, _, err = run_cli("predict", photos, "--model", tiny_ckpt, "--annotate", "--out", out, "--resume")
    assert rc == 0, err
    assert len(_whole_images(out)) == 9


@pytest.mark.parametrize("command", ["export", "evaluate", "pack"])
def test_other_writers_on_a_full_disk(tiny_ckpt, tmp_path, small_disk, command):
    fer = bad.fer_csv(tmp_path, "fer.csv", rows=bad.good_rows(200))
    target = {"export": small_disk / "m.onnx", "evaluate": small_disk / "p.npz", "pack": small_disk / "f.npz"}[command]
    args = {"export": ["export", tiny_ckpt, "--onnx", target, "--no-check"],
            "evaluate": ["evaluate", fer, "--model", tiny_ckpt, "--save-probs", target],
            "pack": ["data", "pack", fer, target]}[command]
    _fill(small_disk, 4_000)
    rc, _, err = run_cli(*args)
    assert rc != 0 and "Traceback" not in err, err
    assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1, err
    assert not target.exists()
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


@pytest.mark.parametrize("command", ["explain-maps", "evaluate-out"])
def test_folders_of_outputs_on_a_full_disk(tmp_path, small_disk, wild_dir, command):
    """Commands that write a folder of files: one line naming the file that did not fit, no
    half-written file, every file left whole."""
    from PIL import Image

    fer = bad.fer_csv(tmp_path, "fer.csv", rows=bad.good_rows(40))
    out = small_disk / "out"
    args = {"explain-maps": ["explain", "maps", wild_dir / KDEF_FACE, "--model", "fast", "--out", out],
            "evaluate-out": ["evaluate", fer, "--model", "fast", "--out", out]}[command]
    _fill(small_disk, 3_000)
    rc, _, err = run_cli(*args)
    assert rc != 0 and "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and str(small_disk) in errors[0], err
    assert not list(small_disk.rglob("*partial*"))
    for png in small_disk.rglob("*.png"):
        with Image.open(png) as im:
            im.load()


def test_too_many_unusable_rows_is_an_error():
    from wildfer.data.fer2013 import check_unreadable
    from wildfer.errors import DataError

    check_unreadable("m.csv", 10, 20)  # half: kept, the bad rows listed
    check_unreadable("m.csv", 6, 9)  # a small set: judged only by "none usable"
    with pytest.raises(DataError, match="11 of 20 rows could not be used"):
        check_unreadable("m.csv", 11, 20, "a.jpg: file not found")
    with pytest.raises(DataError, match="no row could be used"):
        check_unreadable("m.csv", 3, 3)


def test_training_on_a_full_disk_is_one_line(tmp_path, small_disk):
    fer = bad.fer_csv(tmp_path, "fer.csv", rows=bad.good_rows(60))
    run = small_disk / "run"
    _fill(small_disk, 20_000)  # room for the config and the log, not for a checkpoint
    rc, _, err = run_cli("train", f"data={fer}", f"out={run}", "model=shallow", "epochs=1", "batch_size=16",
                         "model_kwargs.num_filters=32", "model_kwargs.hidden=256", "--no-progress")
    assert rc != 0 and "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and str(run) in errors[0] and "No space left" in errors[0], err
    assert not list(run.glob("*.pt")) and not list(small_disk.rglob("*partial*"))


@pytest.fixture
def readonly_disk(small_disk):
    """The small file system, remounted read-only (so that even root cannot write to it)."""
    (small_disk / "old.json").write_text("{}")
    r = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount read-only here ({r.stderr.strip()[:80]})")
    return small_disk


@pytest.mark.parametrize("command", ["predict-json", "predict-resume", "evaluate", "export", "train"])
def test_a_read_only_disk_is_one_line(tiny_ckpt, photos, tmp_path, readonly_disk, command):
    fer = bad.fer_csv(tmp_path, "fer.csv")
    args = {"predict-json": ["predict", photos, "--model", tiny_ckpt, "--json", readonly_disk / "r.json"],
            "predict-resume": ["predict", photos, "--model", tiny_ckpt, "--json", readonly_disk / "old.json",
                               "--resume"],
            "evaluate": ["evaluate", fer, "--model", tiny_ckpt, "--json", readonly_disk / "sub" / "e.json"],
            "export": ["export", tiny_ckpt, "--onnx", readonly_disk / "m.onnx"],
            "train": ["train", f"data={fer}", f"out={readonly_disk / 'run'}", "model=shallow", "epochs=1",
                      "--no-progress"]}[command]
    one_line_error(run_cli(*args), str(readonly_disk), "not writable")
    assert sorted(p.name for p in readonly_disk.iterdir()) == ["old.json"]


def test_an_unreadable_annotated_video_is_an_error(tmp_path):
    from wildfer.errors import OutputError
    from wildfer.batch.steps import check_video_written

    junk = tmp_path / "v.mp4"
    junk.write_bytes(b"\0" * 1000)
    with pytest.raises(OutputError, match="could not be written whole"):
        check_video_written(junk, 10, tmp_path / "final.mp4")


# ----------------------------------------------------------------------------- crashes and leaks


def _marked(mark: str) -> list[int]:
    """The processes whose environment holds ``WILDFER_TEST_MARK=mark``."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                if f"WILDFER_TEST_MARK={mark}".encode() in (p / "environ").read_bytes():
                    pids.append(int(p.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find the processes")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_end_with_a_killed_run(tmp_path, wild_dir, sig):
    from wildfer.batch.outputs import read_progress

    src = tmp_path / "in"
    src.mkdir()
    for k in range(40):
        shutil.copy(wild_dir / KDEF_FACE, src / f"{k:02d}.jpg")
    mark = uuid.uuid4().hex
    env = {**os.environ, "WILDFER_TEST_MARK": mark}
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from wildfer.cli import main; sys.exit(main())",
                             "predict", str(src), "--model", "fast", "--workers", "2", "--batch", "2",
                             "--json", str(tmp_path / "r.json")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while len(read_progress(tmp_path / "r.json.jsonl")) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert len(_marked(mark)) >= 3  # the run, its workers (and the forkserver)
        proc.send_signal(sig)
        proc.wait(60)
        deadline = time.monotonic() + 15
        while _marked(mark) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _marked(mark) == []
    finally:
        for pid in _marked(mark):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
    assert len(read_progress(tmp_path / "r.json.jsonl")) >= 2  # what was finished is kept


def test_a_huge_file_named_jpg_is_refused_before_it_is_read(tmp_path):
    import resource

    from wildfer.errors import ImageError
    from wildfer.data.images import read_image

    huge = bad.sparse_file(tmp_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageError, match="MiB"):
        read_image(huge)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing read whole
    middling = bad.sparse_file(tmp_path, "mid.png", 40 * 2**20)  # under the limit, but no image's signature
    with pytest.raises(ImageError, match="begin like no image"):
        read_image(middling)


def test_a_huge_config_value_is_echoed_short(tmp_path):
    data = bad.fer_csv(tmp_path, "tiny.csv")
    cfg = bad.config(tmp_path, f"data: {data}\nout: {tmp_path / 'run'}\nmodel: shallow\nlr: ['{'x' * 400_000}']\n")
    line = one_line_error(run_cli("train", "--config", cfg, "--no-progress"), "lr")
    assert len(line) < 300


def test_alias_bomb_is_refused_in_bounded_memory(tmp_path):
    """Run apart, with 1 GiB of address space: expanding the bomb would need gigabytes."""
    _, text, _ = next(c for c in bad.CONFIG_CASES if c[0] == "yaml_alias_bomb")
    cfg = bad.config(tmp_path, text.format(data=tmp_path / "x.csv", out=tmp_path / "run"))
    code = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
            "from wildfer.cli import main\nsys.exit(main(['train', '--config', sys.argv[1], '--no-progress']))\n")
    r = subprocess.run([sys.executable, "-c", code, str(cfg)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "aliases are expanded" in r.stderr and "Traceback" not in r.stderr, r.stderr[-500:]


# ----------------------------------------------------------------------------- tracebacks: one line each


@pytest.mark.parametrize("name", ["bad.pt", "bad.npz", "bad.zip"])
def test_a_damaged_archive_as_model_is_one_line(tmp_path, name):
    one_line_error(run_cli("predict", bad.good_jpeg(tmp_path), "--model", bad.damaged_zip(tmp_path, name)), name)


@pytest.mark.parametrize("command", ["evaluate-wild", "evaluate", "data-info"])
def test_a_csv_field_over_the_parser_limit_is_one_line(tmp_path, command):
    man = bad.huge_field_manifest(tmp_path)
    args = {"evaluate-wild": ["evaluate-wild", man, "--model", "fast"],
            "evaluate": ["evaluate", man, "--model", "fast"],
            "data-info": ["data", "info", man]}[command]
    one_line_error(run_cli(*args), "field larger than field limit")


def test_explain_maps_out_on_an_existing_file(tmp_path):
    f = tmp_path / "taken"
    f.write_text("mine")
    one_line_error(run_cli("explain", "maps", bad.good_jpeg(tmp_path), "--model", "fast", "--out", f), "not a folder")
    assert f.read_text() == "mine"


@pytest.mark.parametrize("args", [["explain", "maps", "x.jpg", "--per-class", "0"],
                                  ["explain", "audit", "--data", "x.csv", "--n", "0"],
                                  ["explain", "epochs", "run", "--data", "x.csv", "--every", "0"]])
def test_non_positive_counts_are_usage_errors(args):
    rc, out, err = run_cli(*args)
    assert rc == 2 and ">=1" in (out + err).replace(" ", "").replace("greaterthanorequalto", ">=") \
        and "Traceback" not in out + err


def test_an_existing_folder_where_an_annotated_image_goes(tiny_ckpt, photos, tmp_path):
    out = tmp_path / "out"
    (out / "a.annotated.jpg").mkdir(parents=True)
    rc, _, err = run_cli("predict", photos, "--model", tiny_ckpt, "--annotate", "--out", out)
    assert rc != 0 and "Traceback" not in err and "a.annotated.jpg" in err and "is a folder" in err, err


# ----------------------------------------------------------------------------- evaluate-wild's rules


def test_evaluate_wild_refuses_a_manifest_without_a_readable_photo(tmp_path):
    man = tmp_path / "m.csv"
    man.write_text("path,label\n" + "".join(f"gone{k}.jpg,happy\n" for k in range(5)))
    one_line_error(run_cli("evaluate-wild", man, "--model", "fast", "--json", tmp_path / "r.json"),
                   "no row could be used", "gone0.jpg")
    assert not (tmp_path / "r.json").exists()


def test_evaluate_wild_leaves_out_a_box_outside_the_photo(tmp_path, wild_dir):
    from PIL import Image

    from wildfer.wild.evaluate import evaluate_wild

    w, h = Image.open(wild_dir / KDEF_FACE).size
    man = tmp_path / "m.csv"
    man.write_text("path,label,left,top,right,bottom\n"
                   f"{wild_dir / KDEF_FACE},happy,{w + 10},{h + 10},{w + 90},{h + 90}\n"
                   f"{wild_dir / KDEF_FACE},happy,,,,\n")
    r = evaluate_wild(man, model="fast")
    assert r["n"] == 1 and r["n_found"] == 1
    assert len(r["unreadable"]) == 1 and "lies outside" in r["unreadable"][0]["error"]
