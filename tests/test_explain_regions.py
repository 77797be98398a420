"""Face-region template, landmark masks, region shares, pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wildfer.explain.regions import (
    REGIONS,
    TEMPLATE_LANDMARKS_48,
    key_share,
    landmark_regions,
    region_areas,
    region_label_image,
    region_shares,
    similarity_transform,
    template_regions,
)


def test_template_partitions_the_image():
    r = template_regions(48)
    assert list(r) == list(REGIONS)
    stack = np.stack([r[k] for k in REGIONS]).astype(int)
    assert (stack.sum(0) == 1).all()  # every pixel in exactly one region
    areas = region_areas(r)
    assert sum(areas.values()) == pytest.approx(1.0)
    # sizes that make sense for a 48x48 crop
    assert 0.04 < areas["eyes"] < 0.12 and 0.05 < areas["mouth"] < 0.15 and 0.35 < areas["outside"] < 0.5
    # left/right symmetric around x = 23.5
    for k in REGIONS:
        assert np.array_equal(r[k], r[k][:, ::-1]), k
    # known points
    assert r["eyes"][17, 15] and r["eyes"][17, 31] and r["mouth"][39, 23] and r["nose"][26, 23]
    assert r["brows"][12, 15] and r["outside"][0, 0] and r["face_other"][30, 12]
    lab = region_label_image(r)
    assert lab[17, 15] == REGIONS.index("eyes") and lab.min() >= 0


def test_template_scales_to_other_sizes():
    r96 = template_regions(96)
    r48 = template_regions(48)
    down = {k: v.reshape(48, 2, 48, 2).mean((1, 3)) for k, v in r96.items()}
    for k in REGIONS:  # same layout at twice the resolution (up to edge pixels)
        assert np.abs(down[k] - r48[k]).mean() < 0.03, k


def test_template_matches_the_real_mean_face(fer2013):
    """The template was measured on PublicTest's mean face; check it still holds: the darkest
    points of the high-pass mean face are inside the eyes, the mouth band inside the mouth."""
    from scipy.ndimage import gaussian_filter

    pt = fer2013.split("PublicTest")
    m = pt.images.astype(np.float64).mean(0)
    hp = m - gaussian_filter(m, 4)
    r = template_regions(48)
    left, right = hp[:, :24], hp[:, 24:]
    ly, lx = np.unravel_index(left[8:30].argmin(), left[8:30].shape)
    ry, rx = np.unravel_index(right[8:30].argmin(), right[8:30].shape)
    assert r["eyes"][ly + 8, lx] and r["eyes"][ry + 8, rx + 24]
    my, mx = np.unravel_index(hp[33:46, 12:36].argmin(), (13, 24))
    assert r["mouth"][my + 33, mx + 12]
    # the eyes are dark and the nose bright relative to their surroundings
    assert hp[r["eyes"]].mean() < -5 and hp[r["nose"]].mean() > 3


def test_landmark_regions_follow_the_face():
    # the template's own landmarks on a 48x48 image give back the template
    same = landmark_regions(TEMPLATE_LANDMARKS_48, (48, 48))
    tmpl = template_regions(48)
    for k in REGIONS:
        assert np.array_equal(same[k], tmpl[k]), k
    # a face twice as big, shifted by (10, 20) and rotated 90 degrees
    theta = np.pi / 2
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    lm = (2.0 * TEMPLATE_LANDMARKS_48 - 48) @ rot.T + np.array([60.0, 70.0])
    m = similarity_transform(TEMPLATE_LANDMARKS_48, lm)
    np.testing.assert_allclose(m[:, :2], 2.0 * rot, atol=1e-9)
    r = landmark_regions(lm, (140, 140))
    for (x, y) in lm[:2]:  # both eyes
        assert r["eyes"][int(round(y)), int(round(x))]
    assert sum(v.sum() for v in r.values()) == 140 * 140
    assert r["eyes"].sum() == pytest.approx(4 * tmpl["eyes"].sum(), rel=0.1)
    with pytest.raises(ValueError, match="5"):
        landmark_regions(np.zeros((4, 2)), (10, 10))


def test_region_shares_counts_mass():
    r = template_regions(48)
    m = np.zeros((3, 1, 48, 48))
    m[0, 0][r["mouth"]] = 1.0  # all mass on the mouth
    m[1, 0] = -1.0  # uniform (negative: |map| is used)
    # m[2] has no mass: left out of the mean
    per = region_shares(m, r, reduce=False)
    assert per["mouth"][0] == 1.0 and np.isnan(per["mouth"][2])
    assert per["eyes"][1] == pytest.approx(r["eyes"].mean())
    mean = region_shares(torch.as_tensor(m), r)
    assert mean["mouth"] == pytest.approx((1.0 + r["mouth"].mean()) / 2)
    assert sum(mean.values()) == pytest.approx(1.0)
    assert key_share(mean) == pytest.approx(sum(mean[k] for k in ("eyes", "brows", "nose", "mouth")))
    # per-image masks (landmarks of each face)
    masks = {k: np.stack([v, v, v]) for k, v in r.items()}
    assert region_shares(m, masks)["mouth"] == pytest.approx(mean["mouth"])
    with pytest.raises(ValueError, match="does not match"):
        region_shares(np.ones((1, 40, 40)), r)


def test_overlay_and_grid(tmp_path):
    from PIL import Image

    from wildfer.explain.plot import normalize_map, overlay, region_picture, save_grid

    face = np.full((48, 48), 128, np.uint8)
    heat = np.zeros((48, 48))
    heat[10:20, 10:20] = 1.0
    heat[0, 0] = 100.0  # one outlier must not wash out the rest (percentile scaling)
    n = normalize_map(heat)
    assert n[15, 15] == 1.0 and n.max() <= 1.0
    ov = overlay(face, heat)
    assert ov.shape == (48, 48, 3) and ov.dtype == np.uint8
    assert (ov[40, 40] == 128).all()  # no saliency: the face unchanged
    assert not (ov[15, 15] == 128).all()  # saliency: coloured
    assert normalize_map(np.zeros((4, 4))).max() == 0
    peak = np.random.default_rng(0).random((12, 12)).astype(np.float32)  # percentile 100: by the maximum
    by_max = peak / peak.max()
    assert np.array_equal(normalize_map(peak, 100.0).astype(np.float32), by_max)
    p = save_grid([[face, ov], [None, region_picture(face, template_regions(48))]], tmp_path / "g.png",
                  row_labels=["a", "b"], col_labels=["face", "map"], title="t")
    im = Image.open(p)
    assert im.size[0] > 100 and im.size[1] > 100
