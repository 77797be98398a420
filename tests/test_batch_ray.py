"""Batch inference on Ray Data gives what the local pipeline gives, photo for photo."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed (pip install 'wildfer[ray]')")

from wildfer import batch  # noqa: E402
from wildfer.wild import Recognizer  # noqa: E402


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """50 photos of one face at different scales, crops, flips and brightness, plus one file
    that is not an image."""
    import matplotlib.cbook

    src = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(50):
        w = int(rng.integers(220, 520))
        im = src.resize((w, int(w * src.height / src.width)))
        if i % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        a = np.clip(np.asarray(im, np.float32) * rng.uniform(0.6, 1.3), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(folder / f"p{i:02d}.jpg", quality=90)
    (folder / "broken.jpg").write_text("not a photo")
    return folder


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_predictions_equal_the_local_pipeline(photos, local_ray, tmp_path):
    out = batch.predict_dataset(batch.read_images(photos), model="fast", concurrency=2, num_cpus=0.5,
                                batch_size=8)
    n = batch.write_jsonl(out, tmp_path / "pred.jsonl")
    records = {r["path"].rsplit("/", 1)[-1]: r for r in map(json.loads, (tmp_path / "pred.jsonl").read_text().splitlines())}
    assert n == 51 and len(records) == 51
    assert "broken.jpg" in records["broken.jpg"]["error"] and "faces" not in records["broken.jpg"]

    rec = Recognizer(model="fast")
    found = 0
    for name, r in sorted(records.items()):
        if name == "broken.jpg":
            continue
        local = rec.predict(photos / name).to_dict()
        assert (r["width"], r["height"], r["mode"], r["truncated"]) == (local["width"], local["height"], "detect", False)
        assert [f["label"] for f in r["faces"]] == [f["label"] for f in local["faces"]], name
        for a, b in zip(r["faces"], local["faces"]):
            assert np.allclose(a["box"], b["box"])
            assert np.allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-4)
        found += len(r["faces"])
    assert found >= 45  # the face is found in (nearly) every photo


def test_rows_have_one_schema_for_parquet(photos, local_ray, tmp_path):
    ds = batch.predict_dataset(batch.read_images([photos / "p00.jpg", photos / "broken.jpg"]), model="fast",
                               concurrency=1)
    ds.write_parquet(str(tmp_path / "pq"))
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "pq")
    assert set(table.column_names) == set(batch.COLUMNS) and table.num_rows == 2
    assert sorted(e != "" for e in table.column("error").to_pylist()) == [False, True]


def test_without_ray_the_error_is_one_line(monkeypatch):
    import sys

    from wildfer.errors import WildferError

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(WildferError, match=r"pip install 'wildfer\[ray\]'"):
        batch.read_images("photos/")


def test_cli_engine_ray_writes_the_records_of_the_local_path(photos, local_ray, tmp_path, capsys):
    from wildfer.cli import main

    out = tmp_path / "ray.jsonl"
    assert main(["predict", str(photos), "--engine", "ray", "--model", "fast", "--json", str(out)]) == 0
    ray_recs = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert len(ray_recs) == 51 and "1 unreadable" in capsys.readouterr().out
    local = tmp_path / "local.jsonl"
    main(["predict", str(photos / "p03.jpg"), str(photos / "p10.jpg"), "--model", "fast", "--json", str(local)])
    for r in map(json.loads, local.read_text().splitlines()):
        mine = next(v for k, v in ray_recs.items() if k.endswith("/" + r["path"].rsplit("/", 1)[-1]))
        assert {k for k in r if k != "timings_ms"} <= set(mine) | {"path"}
        assert [f["label"] for f in mine["faces"]] == [f["label"] for f in r["faces"]]


@pytest.mark.parametrize("extra, message", [
    ([], "--engine ray writes --json FILE.jsonl only"),
    (["--json", "x.jsonl", "--annotate"], "(not --annotate)"),
    (["--json", "x.json"], "ending in .jsonl"),
    (["--engine", "spark"], "use local or ray"),
])
def test_cli_engine_ray_refuses_what_it_cannot_do_in_one_line(photos, tmp_path, capsys, monkeypatch, extra, message):
    from wildfer.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(photos), "--engine", "ray", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
