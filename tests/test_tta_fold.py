"""The one definition of TTA views and of class folding, for numpy faces and torch batches."""

import numpy as np
import pytest
import torch

from wildfer.errors import ModelError
from wildfer.labels import FER2013_CLASSES, FERPLUS_CLASSES, class_alignment
from wildfer.models.classifier import fold_classes, mirror, mirror_index, tta_mode, tta_views


def _torch_flip(a):
    return a.index_select(-1, torch.from_numpy(mirror_index(a.shape[-1])))


@pytest.mark.parametrize("tta", [None, "flip", "tencrop"])
def test_torch_views_with_the_gather_equal_the_numpy_views(tta):
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48)).astype(np.uint8)
    want = tta_views(faces, tta, crop=40)
    got = tta_views(torch.from_numpy(faces), tta, crop=40, flip=_torch_flip)
    assert len(got) == len(want) == {None: 1, "flip": 2, "tencrop": 10}[tta]
    for g, w in zip(got, want):
        assert np.array_equal(g.numpy(), w)


def test_mirror_is_a_contiguous_left_right_flip():
    a = np.arange(24).reshape(2, 3, 4)
    assert np.array_equal(mirror(a), a[..., ::-1]) and mirror(a).flags.c_contiguous


def test_tencrop_resize_applies_to_the_crops_before_mirroring():
    x = np.zeros((1, 8, 8))
    views = tta_views(x, "tencrop", crop=6, resize=lambda v: np.pad(v, ((0, 0), (1, 1), (1, 1))))
    assert all(v.shape == (1, 8, 8) for v in views)


def test_tta_mode_names_the_setting_it_rejects():
    assert tta_mode("none") is None and tta_mode("") is None and tta_mode("flip") == "flip"
    with pytest.raises(ModelError, match="ensemble tta must be none, flip or tencrop, not 'rotate'"):
        tta_mode("rotate", "ensemble tta")
    with pytest.raises(ModelError):
        tta_views(np.zeros((1, 4, 4)), "rotate")


def test_fold_classes_drops_contempt_and_renormalises_in_numpy_and_torch():
    m = class_alignment(FERPLUS_CLASSES, FER2013_CLASSES)
    p = np.random.default_rng(1).dirichlet(np.ones(len(FERPLUS_CLASSES)), size=5)
    folded = fold_classes(p, m)
    assert folded.shape == (5, len(FER2013_CLASSES))
    assert np.allclose(folded.sum(1), 1.0)
    keep = [FERPLUS_CLASSES.index(c) for c in FER2013_CLASSES]
    assert np.allclose(folded, p[:, keep] / p[:, keep].sum(1, keepdims=True))
    t = fold_classes(torch.from_numpy(p).float(), torch.from_numpy(m).float())
    assert np.allclose(t.numpy(), folded, atol=1e-6)
    assert fold_classes(p, None) is p
