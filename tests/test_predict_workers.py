"""``wildfer predict --workers N``: photos processed by N local processes give the outputs of
one process (records, labels, boxes, probabilities, CSV rows, annotated images), videos stay
in the main process, Ctrl-C keeps every finished photo and --resume completes the run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _grace():
    from matplotlib import cbook
    from PIL import Image

    return Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")


def _faces(folder: Path, n: int = 12) -> list[Path]:
    """``n`` one-face photos: Grace Hopper's portrait at several sizes, every other one mirrored."""
    from PIL import ImageOps

    src = _grace()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        im = src.resize((round(src.width * (0.3 + 0.05 * i)), round(src.height * (0.3 + 0.05 * i))))
        if i % 2:
            im = ImageOps.mirror(im)
        out.append(folder / f"p{i:02d}.jpg")
        im.save(out[-1], quality=85)
    return out


def _clip(path: Path, frames: int = 6) -> Path:
    """A small MJPG video of the portrait."""
    import cv2

    face = cv2.cvtColor(np.asarray(_grace().resize((150, 176))), cv2.COLOR_RGB2BGR)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (150, 176))
    for _ in range(frames):
        w.write(face)
    w.release()
    return path


def _without_timings(obj):
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k != "timings_ms"}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


def test_two_workers_write_what_one_process_writes(cli, tmp_path):
    """12 photos, a broken file and a video between them (which splits the batches): --workers 2
    gives the JSON report (photos in input order), the CSV and the annotated images of
    --workers 1, timings aside."""
    src = tmp_path / "in"
    photos = _faces(src)
    (src / "p03_broken.jpg").write_bytes(b"not a photo at all")
    _clip(src / "p07_clip.avi")
    outs = {}
    for n in (1, 2):
        o = tmp_path / f"w{n}"
        code, text = cli(["predict", src, "--json", o / "r.json", "--csv", o / "r.csv", "--out", o / "img",
                          "--annotate", "--batch", "3", "--workers", n])
        assert code == 0, text
        said = " ".join(text.split())
        assert "12 photo(s) with 12 face(s), 1 video(s)" in said and "; 1 unreadable" in said, text
        assert "Traceback" not in text
        outs[n] = o
    one, two = (json.loads((outs[n] / "r.json").read_text()) for n in (1, 2))
    assert _without_timings(two) == _without_timings(one)
    assert [r["path"] for r in two["images"]] == [str(p) for p in photos]
    assert [len(r["faces"]) for r in two["images"]] == [1] * 12
    assert [r["path"] for r in two["unreadable"]] == [str(src / "p03_broken.jpg")]
    assert [v["path"] for v in two["videos"]] == [str(src / "p07_clip.avi")]
    assert (outs[2] / "r.csv").read_bytes() == (outs[1] / "r.csv").read_bytes()
    with open(outs[2] / "r.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["path"] for r in rows if not r["frame"]] == [str(p) for p in photos]
    # the workers saved the annotated photos under the names the main process chose
    names = {n: sorted(p.name for p in (outs[n] / "img").rglob("*")) for n in (1, 2)}
    assert names[2] == names[1] == sorted([*(f"p{i:02d}.annotated.jpg" for i in range(12)), "p07_clip.annotated.mp4"])
    for name in names[1]:
        if name.endswith(".jpg"):
            assert (outs[2] / "img" / name).read_bytes() == (outs[1] / "img" / name).read_bytes(), name
    assert not (outs[2] / "r.json.jsonl").exists() and not list(outs[2].rglob(".*partial*"))


@pytest.mark.parametrize("workers", ["0", "-3"])
def test_workers_below_one_is_one_line(cli, tmp_path, workers):
    photo = _faces(tmp_path / "in", 1)[0]
    code, text = cli(["predict", photo, "--json", tmp_path / "r.json", "--workers", workers])
    assert code == 2, text
    assert text.strip().splitlines() == [f"error: --workers {workers}: give the number of processes, 1 or more"]
    assert not (tmp_path / "r.json").exists()


def test_plan_names_every_input_in_input_order(tmp_path):
    """Output names are chosen before any work, for readable and unreadable photos alike, so
    each process saves under the name a single process would, and batches never span a video."""
    from wildfer.batch.plan import OutputNames, PhotoJob, VideoJob, batch_jobs, plan_jobs

    inputs = [(tmp_path / n, Path(n)) for n in ("a.jpg", "a.png", "b.jpg", "c.mp4", "d.jpg")]
    jobs = plan_jobs(inputs, OutputNames(tmp_path / "o"), annotate=True, saliency="gradcam")
    assert [j.annotated.name for j in jobs] == ["a.annotated.jpg", "a_1.annotated.jpg", "b.annotated.jpg",
                                                "c.annotated.mp4", "d.annotated.jpg"]
    assert jobs[1].overlay.name == "a_1.gradcam.jpg" and isinstance(jobs[3], VideoJob)
    steps = batch_jobs(jobs, 2)
    assert [[j.path.name for j in s] if isinstance(s, list) else s.path.name for s in steps] == \
        [["a.jpg", "a.png"], ["b.jpg"], "c.mp4", ["d.jpg"]]
    assert all(isinstance(j, PhotoJob) for s in steps if isinstance(s, list) for j in s)
    assert not (tmp_path / "o").exists()  # naming makes no folder


def test_ctrl_c_with_workers_keeps_finished_photos_and_resume_completes_them(cli, tmp_path):
    """SIGINT to a real ``wildfer predict --workers 2``: exit 130, every photo finished is in the
    JSON report and the CSV, no worker traceback, no half-written image; --resume --workers 2
    then gives what one uninterrupted process gives."""
    from predict_helpers import interrupt_after

    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    photos = _faces(src, 4)
    from PIL import Image

    for i in range(56):  # no face: the search fallback over windows makes each of these slow (~50 ms)
        p = src / f"q{i:02d}.jpg"
        Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(p)
        photos.append(p)
    out = tmp_path / "res"
    args = ["predict", str(src), "--json", str(out / "r.json"), "--csv", str(out / "r.csv"), "--out",
            str(out / "img"), "--annotate", "--model", "fast", "--batch", "1", "--mode", "search", "--workers", "2"]
    side = out / "r.json.jsonl"
    code, stderr, _ = interrupt_after(args, side, 6, _env())
    assert code == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    rep = json.loads((out / "r.json").read_text())
    got = [r["path"] for r in rep["images"]]
    assert 6 <= len(got) < 60 and rep["complete"] is False, stderr
    assert got == [str(p) for p in photos if str(p) in got]  # in input order
    assert f"interrupted: {len(got)} of 60 photos written" in " ".join(stderr.split()), stderr
    with open(out / "r.csv") as fh:
        assert {r["path"] for r in csv.DictReader(fh)} == {r["path"] for r in rep["images"] if r["faces"]}
    assert not list(out.rglob(".*partial*"))
    annotated = {p.name for p in (out / "img").rglob("*.jpg")}
    assert annotated == {Path(g).stem + ".annotated.jpg" for g in got}

    code, text = cli([*args, "--resume"])
    assert code == 0, text
    done = json.loads((out / "r.json").read_text())
    assert done["complete"] is True and [r["path"] for r in done["images"]] == [str(p) for p in photos]
    ref = tmp_path / "ref"
    code, text = cli([*args[:2], "--json", ref / "r.json", "--csv", ref / "r.csv", *args[9:15]])
    assert code == 0, text
    assert _without_timings(done) == _without_timings(json.loads((ref / "r.json").read_text()))
    with open(out / "r.csv") as a, open(ref / "r.csv") as b:
        assert sorted(csv.reader(a)) == sorted(csv.reader(b))
    assert not side.exists() and len(list((out / "img").rglob("*.jpg"))) == 60


def _grandchildren(pid: int) -> list[int]:
    """Processes whose parent's parent is ``pid`` (Linux /proc): the workers under the forkserver."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    children = {p for p, pp in parent.items() if pp == pid}
    return [p for p, pp in parent.items() if pp in children]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through /proc")
def test_a_worker_killed_is_one_line_and_resume_completes(cli, tmp_path):
    """A worker process that dies (out of memory, killed) ends the run with one line, not a
    hang or a traceback; what was finished is kept for --resume."""
    from PIL import Image

    from wildfer.batch.outputs import read_progress

    rng = np.random.default_rng(1)
    src = tmp_path / "in"
    photos = _faces(src, 2)
    for i in range(14):
        p = src / f"q{i:02d}.jpg"
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(p)
        photos.append(p)
    out = tmp_path / "r.json"
    args = ["predict", str(src), "--json", str(out), "--model", "fast", "--batch", "1", "--mode", "search",
            "--workers", "2"]
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from wildfer.cli import main; sys.exit(main())", *args],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while len(read_progress(tmp_path / "r.json.jsonl")) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no photo finished in time"
            time.sleep(0.02)
        workers = _grandchildren(proc.pid)
        assert workers
        os.kill(workers[0], signal.SIGKILL)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2, stderr
    assert stderr.strip().splitlines() == ["error: a --workers process ended unexpectedly; what was finished is in "
                                           "the outputs, and --resume completes them"], stderr
    kept = read_progress(tmp_path / "r.json.jsonl")
    assert len(kept) >= 2
    code, text = cli([*args, "--resume"])
    assert code == 0, text
    rep = json.loads(out.read_text())
    assert [r["path"] for r in rep["images"]] == [str(p) for p in photos] and rep["complete"] is True
