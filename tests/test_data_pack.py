"""FER2013 packs (``wildfer data pack``): the same arrays as the CSV, smaller, read everywhere the CSV is;
and the faces a training run adds to FER2013's (``extra_train_data``)."""

from __future__ import annotations

import lzma

import numpy as np
import pytest

from wildfer.data.fer2013 import load_fer2013, read_pack, save_pack
from wildfer.errors import DataError

from test_data_cli import fer_csv, one_error_line


@pytest.fixture()
def small_csv(tmp_path):
    return fer_csv(tmp_path / "fer2013.csv", [(i % 7, u) for i, u in
                                              enumerate(["Training"] * 20 + ["PublicTest"] * 6 + ["PrivateTest"] * 4)])


@pytest.mark.parametrize("suffix", [".npz", ".npz.xz"])
def test_pack_round_trip_equals_the_csv(small_csv, tmp_path, suffix):
    csv_data = load_fer2013(small_csv, use_cache=False)
    out = save_pack(csv_data, tmp_path / f"p{suffix}")
    back = load_fer2013(out)
    assert np.array_equal(back.images, csv_data.images) and back.images.dtype == np.uint8
    assert np.array_equal(back.labels, csv_data.labels)
    assert list(back.usage) == list(csv_data.usage) and np.array_equal(back.rows, csv_data.rows)
    assert back.split("PublicTest").class_counts() == csv_data.split("PublicTest").class_counts()
    if suffix == ".npz.xz":
        assert lzma.decompress(out.read_bytes())[:2] == b"PK"  # an npz inside xz


def test_pack_cli_keeps_only_the_usages_asked(cli, small_csv, tmp_path):
    out = tmp_path / "train_public.npz.xz"
    code, text = cli(["data", "pack", small_csv, out, "--usage", "Training,PublicTest"])
    assert code == 0, text
    assert "26 faces" in text and "Training 20" in text and "PublicTest 6" in text
    data = load_fer2013(out)
    assert data.usage_counts() == {"PublicTest": 6, "Training": 20}
    # every data command takes it like the CSV
    code, text = cli(["data", "info", out])
    assert code == 0 and "26 faces" in text.replace("\n", " "), text


def test_pack_trains_like_the_csv(small_csv, tmp_path):
    from wildfer.train.config import TrainConfig
    from wildfer.train.engine import load_training_data

    pack = save_pack(load_fer2013(small_csv, use_cache=False), tmp_path / "p.npz.xz")
    a = load_training_data(TrainConfig(data=str(small_csv)))
    b = load_training_data(TrainConfig(data=str(pack)))
    for x, y in zip(a, b):
        assert np.array_equal(x.images, y.images) and np.array_equal(x.labels, y.labels)


def test_bad_packs_are_one_line_errors(cli, small_csv, tmp_path):
    torn = tmp_path / "torn.npz.xz"
    save_pack(load_fer2013(small_csv, use_cache=False), torn)
    torn.write_bytes(torn.read_bytes()[:200])
    with pytest.raises(DataError, match="corrupt or truncated"):
        read_pack(torn)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(DataError, match="missing images"):
        read_pack(other)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, images=np.zeros((2, 32, 32), np.uint8), labels=np.zeros(2, np.int64),
             usage=np.array(["Training"] * 2), rows=np.arange(2))
    with pytest.raises(DataError, match="not a FER2013 pack"):
        read_pack(wrong)
    code, text = cli(["data", "info", torn])
    assert code != 0 and "torn.npz.xz" in one_error_line(text) and "corrupt" in text
    code, text = cli(["data", "pack", small_csv, tmp_path / "out.zip"])
    assert code != 0 and "must end in .npz or .npz.xz" in one_error_line(text)


def test_med_codec_is_lossless_on_every_pixel_value():
    from wildfer.data.fer2013 import med_decode, med_encode

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (5, 48, 48), dtype=np.uint8)          # no structure, both extremes
    yy, xx = np.mgrid[:48, :48]
    smooth = np.stack([(yy * 5 + xx * 3 + k) % 256 for k in range(3)]).astype(np.uint8)  # gradients that wrap
    edges = np.where((xx > 20) ^ (yy > 30), 255, 0).astype(np.uint8)[None]
    for images in (noise, smooth, edges, np.zeros((1, 48, 48), np.uint8)):
        res = med_encode(images)
        assert res.dtype == np.uint8 and res.shape == images.shape
        assert np.array_equal(med_decode(res), images)
    # a ramp along x (and one along y) is predicted exactly away from the borders: residuals 0
    for ramp in (xx * 4, yy * 4):
        assert not med_encode(ramp.astype(np.uint8)[None])[0, 1:, 1:].any()


def test_xz_pack_holds_med_residuals_and_old_packs_still_read(small_csv, tmp_path):
    import io

    data = load_fer2013(small_csv, use_cache=False)
    new = save_pack(data, tmp_path / "new.npz.xz")
    with np.load(io.BytesIO(lzma.decompress(new.read_bytes()))) as z:
        assert "images_med" in z.files and "images" not in z.files
    # a pack written before the MED codec (plain images inside the xz) reads the same
    buf = io.BytesIO()
    np.savez(buf, images=data.images, labels=data.labels, usage=data.usage.astype("U16"), rows=data.rows)
    old = tmp_path / "old.npz.xz"
    old.write_bytes(lzma.compress(buf.getvalue()))
    assert np.array_equal(read_pack(old)["images"], data.images)
    assert np.array_equal(read_pack(new)["images"], data.images)
    # the raw .npz keeps plain pixels (read without decoding)
    with np.load(save_pack(data, tmp_path / "raw.npz")) as z:
        assert "images" in z.files and np.array_equal(z["images"], data.images)


def test_extra_training_faces_join_the_training_split(small_csv, tmp_path):
    """``extra_train_data``: a manifest's faces (any size) follow FER2013's training faces,
    resized to 48 pixels, ``extra_train_repeat`` times; validation is untouched."""
    from PIL import Image

    from wildfer.errors import WildferError
    from wildfer.train.checks import check_config
    from wildfer.train.config import TrainConfig
    from wildfer.train.engine import load_training_data

    rows = ["path,label"]
    for i, label in enumerate(["disgust", "disgust", "fear"]):
        Image.fromarray(np.full((64, 64), 40 * (i + 1), np.uint8)).save(tmp_path / f"f{i}.png")
        rows.append(f"f{i}.png,{label}")
    (tmp_path / "extra.csv").write_text("\n".join(rows) + "\n")
    base_train, base_val = load_training_data(TrainConfig(data=str(small_csv)))
    train, val = load_training_data(TrainConfig(data=str(small_csv), extra_train_data=[str(tmp_path / "extra.csv")],
                                                extra_train_repeat=2))
    assert len(base_train) == 20 and len(train) == 26 and train.images.shape[1:] == (48, 48)
    assert np.array_equal(train.images[:20], base_train.images)
    assert list(train.labels[20:]) == [1, 1, 2, 1, 1, 2]
    assert train.images[20, 0, 0] == 40 and train.images[25, 0, 0] == 120
    assert np.array_equal(val.images, base_val.images)

    (tmp_path / "other.csv").write_text("path,label\nf0.png,contempt\nf1.png,happy\n")
    with pytest.raises(WildferError, match="extra_train_data .*other.csv: classes"):
        load_training_data(TrainConfig(data=str(small_csv), extra_train_data=[str(tmp_path / "other.csv")]))
    with pytest.raises(WildferError, match="extra_train_repeat=0"):
        check_config(TrainConfig(extra_train_repeat=0))
