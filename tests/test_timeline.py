"""Video timelines: per-track CSVs and plots, the scene view, the summary page, the rule for
short tracks, bounded memory, bad videos; through the CLI and the Python API, on a clip made
from a real group photo."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

GROUP = "groups/deepface_selfie-many-people.jpg"


@pytest.fixture(scope="module")
def clip(tmp_path_factory, wild_dir) -> Path:
    """3 s at 10 fps of a group photo with a slow zoom: each face a track of 30 frames."""
    from wildfer.wild.video import slideshow

    return slideshow([wild_dir / GROUP], tmp_path_factory.mktemp("clip") / "group.mp4", fps=10, seconds=3,
                     size=(640, 480))


@pytest.fixture(scope="module")
def rec():
    from wildfer.wild import Recognizer

    return Recognizer(model="fast")


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_writes_a_timeline_per_track(cli, clip, tmp_path, rec):
    out = tmp_path / "tl"
    code, text = cli(["predict", clip, "--model", "fast", "--video-stride", "1", "--timeline", out,
                      "--json", tmp_path / "r.json"])
    assert code == 0, text
    folder = out / "group"
    summary = json.loads((folder / "timeline.json").read_text())
    report = json.loads((tmp_path / "r.json").read_text())
    video = report["videos"][0]
    assert summary["frames_processed"] == video["frames_processed"] == 30
    kept = summary["tracks"]
    assert len(kept) >= 3, summary  # several faces, each followed through the clip
    labels = summary["labels"]
    for t in kept:
        rows = _csv(folder / t["csv"])
        assert list(rows[0]) == ["time_s", "frame", "left", "top", "right", "bottom", "label", *labels]
        assert len(rows) == t["frames"] >= 3
        # the numbers are the JSON record's smoothed probabilities for this track, frame by frame
        faces = [(fr["frame"], f) for fr in video["frames"] for f in fr["faces"] if f["track"] == t["track"]]
        assert [int(r["frame"]) for r in rows] == [k for k, _ in faces]
        for r, (_, f) in zip(rows, faces):
            assert r["label"] == f["smoothed_label"]
            for c in labels:
                assert float(r[c]) == pytest.approx(f["smoothed_probabilities"][c], abs=1e-5)
        assert (folder / t["plot"]).stat().st_size > 5000
        shares = {c: sum(r["label"] == c for r in rows) / len(rows) for c in labels}
        assert t["shares"] == pytest.approx(shares, abs=1e-4)
    page = (folder / "summary.html").read_text()
    assert all(f'src="{t["plot"]}"' in page for t in kept) and 'src="scene.png"' in page
    scene = _csv(folder / "scene.csv")
    assert [int(r["second"]) for r in scene] == [0, 1, 2]
    for r in scene:
        assert sum(float(r[c]) for c in labels) == pytest.approx(1.0, abs=1e-3)
    assert not list(out.rglob("*partial*"))


def test_saliency_says_videos_get_no_overlay(cli, clip, tmp_path):
    out = tmp_path / "o"
    code, text = cli(["predict", clip, "--model", "fast", "--saliency", "vanilla", "--out", out])
    assert code == 0, text
    assert "--saliency paints photos, not video frames; the 1 video(s) get no overlay" in " ".join(text.split())
    assert not [p for p in out.iterdir() if p.name != "predictions.json"]


def test_the_plot_has_seven_series_that_match_the_csv(clip, tmp_path, rec):
    from wildfer.wild.timeline import TrackStats, plot_track, read_track_csv

    res = rec.predict_video(clip, stride=2, timeline=tmp_path / "tl")
    t = res.timeline_summary["tracks"][0]
    rows = read_track_csv(tmp_path / "tl" / t["csv"])
    st = TrackStats(t["track"], first_s=rows[0]["time_s"])
    for r in rows:
        st.add(r["time_s"], r["label"], np.array([r[c] for c in rec.labels], np.float32))
    fig = plot_track(st, rec.labels)
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == list(rec.labels) and len(lines) == 7
    for ln, c in zip(lines, rec.labels):
        np.testing.assert_allclose(ln.get_xdata(), [r["time_s"] for r in rows])
        np.testing.assert_allclose(ln.get_ydata(), [r[c] for r in rows], atol=1e-5)
    # the API's rows: every face of every processed frame
    assert len(res.timeline()) == sum(len(fr["faces"]) for fr in res.record["frames"])
    assert {"time_s", "frame", "track", "box", "label", "probabilities"} <= set(res.timeline()[0])


def _frame(k: int, faces: list[tuple[int, str]], labels) -> dict:
    return {"frame": k, "time_s": k / 10, "faces": [
        {"track": tid, "box": [10.0, 10.0, 50.0, 50.0], "smoothed_label": lab,
         "smoothed_probabilities": {c: float(c == lab) for c in labels}} for tid, lab in faces]}


def test_short_tracks_are_dropped_by_the_rule(tmp_path):
    from wildfer.labels import FER2013_CLASSES as labels
    from wildfer.wild.timeline import TimelineWriter

    with TimelineWriter(tmp_path / "tl", labels, min_frames=3, min_seconds=0.5) as tl:
        for k in range(12):  # track 0: 12 frames over 1.1 s; track 1: 2 frames; track 2: 4 frames in 0.3 s
            faces = [(0, "happy" if k < 9 else "sad")]
            faces += [(1, "angry")] if k in (3, 4) else []
            faces += [(2, "fear")] if 5 <= k <= 8 else []
            tl.add(_frame(k, faces, labels))
    s = tl.summary
    assert [t["track"] for t in s["tracks"]] == [0] and [d["track"] for d in s["dropped"]] == [1, 2]
    assert s["tracks"][0]["shares"]["happy"] == pytest.approx(0.75) and s["tracks"][0]["label"] == "happy"
    assert sorted(os.listdir(tmp_path / "tl")) == ["scene.csv", "scene.png", "summary.html", "timeline.json",
                                                   "track_0.csv", "track_0.png"]
    assert "2 short track(s) dropped" in (tmp_path / "tl" / "summary.html").read_text()
    # the scene still counts every face seen
    scene = _csv(tmp_path / "tl" / "scene.csv")
    assert int(scene[0]["faces"]) == 10 + 2 + 4 and float(scene[0]["angry"]) == pytest.approx(2 / 16, abs=1e-4)


def test_without_plots_the_folder_keeps_its_numbers_and_drops_earlier_plots(tmp_path):
    """Where matplotlib is not installed (``plots=False``, the light install's default): the same
    CSVs, timeline.json and summary.html, no PNG, and the plots an earlier timeline drew in the
    folder are removed rather than left beside numbers they no longer show."""
    from wildfer.labels import FER2013_CLASSES as labels
    from wildfer.wild.timeline import TimelineWriter

    def write(plots):
        with TimelineWriter(tmp_path / "tl", labels, plots=plots) as tl:
            for k in range(12):
                tl.add(_frame(k, [(0, "happy" if k < 9 else "sad")], labels))
        return tl.summary

    drawn = write(True)
    assert drawn["plots"] is True and drawn["tracks"][0]["plot"] == "track_0.png"
    bare = write(False)
    assert sorted(os.listdir(tmp_path / "tl")) == ["scene.csv", "summary.html", "timeline.json", "track_0.csv"]
    assert bare["plots"] is False and bare["tracks"][0]["plot"] is None and bare["scene"]["plot"] is None
    assert {k: v for k, v in bare["tracks"][0].items() if k != "plot"} == \
        {k: v for k, v in drawn["tracks"][0].items() if k != "plot"}
    assert json.loads((tmp_path / "tl" / "timeline.json").read_text())["plots"] is False
    page = (tmp_path / "tl" / "summary.html").read_text()
    assert "<img" not in page and "wildfer[plots]" in page and 'href="track_0.csv"' in page


def test_memory_stays_bounded_on_long_videos(tmp_path):
    from wildfer.labels import FER2013_CLASSES as labels
    from wildfer.wild.timeline import MAX_PLOT_POINTS, TimelineWriter

    tl = TimelineWriter(tmp_path / "tl", labels)
    for k in range(30_000):  # 50 minutes at 10 processed frames per second
        tl.add(_frame(k, [(0, "happy")], labels))
    st = tl.tracks[0]
    assert st.n == 30_000 and MAX_PLOT_POINTS // 2 <= len(st.times) <= MAX_PLOT_POINTS
    assert st.times == sorted(st.times) and st.times[0] == 0.0
    s = tl.close()
    assert len(_csv(tmp_path / "tl" / "track_0.csv")) == 30_000 and s["tracks"][0]["frames"] == 30_000


def test_keep_frames_false_keeps_no_frames(clip, rec, tmp_path):
    res = rec.predict_video(clip, stride=3, timeline=tmp_path / "tl", keep_frames=False)
    assert res.record["frames"] == [] and res.record["frames_processed"] == 10
    assert res.record["faces_total"] > 0 and res.timeline_summary["tracks"]


@pytest.mark.parametrize("kind", ["empty", "truncated", "text"])
def test_bad_videos_leave_no_timeline(cli, clip, tmp_path, kind):
    bad = tmp_path / "bad.mp4"
    data = clip.read_bytes()
    bad.write_bytes({"empty": b"", "truncated": data[: len(data) // 3], "text": b"not a video"}[kind])
    out = tmp_path / "tl"
    code, text = cli(["predict", bad, "--model", "fast", "--timeline", out, "--json", tmp_path / "r.json"])
    assert "Traceback" not in text
    report = json.loads((tmp_path / "r.json").read_text())
    if report["unreadable"]:
        assert code == 1 and not (out / "bad").exists()
    else:  # a cut mp4 that still yields frames: its timeline covers them
        assert code == 0 and (out / "bad" / "summary.html").exists()
    assert not list(tmp_path.rglob("*partial*"))


def test_timeline_inside_an_input_folder_is_refused(cli, clip, tmp_path):
    code, text = cli(["predict", clip.parent, "--model", "fast", "--timeline", clip.parent / "tl"])
    assert code == 2 and "inside the input folder" in text


def test_slideshow_writes_a_whole_clip(tmp_path, wild_dir):
    import cv2

    from wildfer.wild.video import slideshow

    p = slideshow([wild_dir / GROUP, wild_dir / "kdef_frontal" / "AF01HAS.JPG"], tmp_path / "s.mp4", fps=5,
                  seconds=1, size=(320, 240))
    cap = cv2.VideoCapture(str(p))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = cap.read()
    cap.release()
    assert n == 10 and ok and frame.shape == (240, 320, 3)


def test_slideshow_writes_a_y4m_camera_clip(tmp_path, wild_dir):
    from wildfer.errors import ImageError
    from wildfer.wild.video import slideshow

    p = slideshow([wild_dir / "kdef_frontal" / "AF01HAS.JPG"], tmp_path / "c.y4m", fps=15, seconds=1, size=(320, 240))
    data = p.read_bytes()
    assert data.startswith(b"YUV4MPEG2 W320 H240 F15:1") and data.count(b"FRAME\n") == 15
    assert len(data) == len(data.split(b"\n", 1)[0]) + 1 + 15 * (6 + 320 * 240 * 3 // 2)
    with pytest.raises(ImageError, match="even"):
        slideshow([wild_dir / "kdef_frontal" / "AF01HAS.JPG"], tmp_path / "odd.y4m", size=(321, 240))


def test_a_timeline_written_again_leaves_no_stale_track(tmp_path):
    from wildfer.labels import FER2013_CLASSES as labels
    from wildfer.wild.timeline import TimelineWriter

    (tmp_path / "tl").mkdir()
    for name in ("track_7.csv", "track_7.png", "notes.txt"):
        (tmp_path / "tl" / name).write_text("old")
    with TimelineWriter(tmp_path / "tl", labels) as tl:
        for k in range(6):
            tl.add(_frame(k, [(0, "happy")], labels))
    names = sorted(os.listdir(tmp_path / "tl"))
    assert "track_7.csv" not in names and "track_7.png" not in names and "notes.txt" in names
    assert "track_0.csv" in names


def test_ended_tracks_are_drawn_and_let_go(tmp_path):
    """Memory follows the tracks on screen: a track not seen for end_after frames is plotted at
    once and only its numbers stay."""
    from wildfer.errors import WildferError
    from wildfer.labels import FER2013_CLASSES as labels
    from wildfer.wild.timeline import TimelineWriter

    tl = TimelineWriter(tmp_path / "tl", labels, end_after=3)
    for k in range(20):
        tl.add(_frame(k, [(0, "happy")] if k < 8 else [(1, "sad")], labels))
        if k == 13:
            assert list(tl.tracks) == [1] and tl.ended[0][1] is True
            assert (tmp_path / "tl" / "track_0.png").exists()
    with pytest.raises(WildferError, match="seen again"):
        tl.add(_frame(20, [(0, "happy")], labels))
    s = tl.close()
    assert [t["track"] for t in s["tracks"]] == [0, 1] and s["tracks"][0]["frames"] == 8
    assert len(_csv(tmp_path / "tl" / "track_1.csv")) == 12
