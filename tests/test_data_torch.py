"""torch adapters: normalisation shared with the models, augmentation deterministic under
(seed, epoch, index), deterministic shuffling, distributed sharding, soft labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wildfer.data.augment import Augment
from wildfer.data.fer2013 import FaceArrays
from wildfer.data.torchdata import FaceDataset, MixedEpochSampler, ShardedSampler, make_loader
from wildfer.errors import DataError


def arrays(n: int = 20, soft: bool = False) -> FaceArrays:
    rng = np.random.default_rng(0)
    s = rng.random((n, 7)).astype(np.float32) if soft else None
    if s is not None:
        s /= s.sum(1, keepdims=True)
    return FaceArrays(
        images=rng.integers(0, 256, (n, 48, 48)).astype(np.uint8),
        labels=np.arange(n, dtype=np.int64) % 7,
        usage=np.array(["Training"] * n),
        soft=s,
    )


def test_normalisation_matches_the_model_preprocess():
    from wildfer.models.loader import DEFAULT_PREPROCESS

    a = arrays(3)
    a.images[0] = 255
    a.images[1] = 0
    ds = FaceDataset(a)
    x0, y0 = ds[0]
    assert x0.shape == (1, 48, 48) and x0.dtype == torch.float32
    assert y0.dtype == torch.int64 and int(y0) == 0
    m, s = DEFAULT_PREPROCESS["mean"], DEFAULT_PREPROCESS["std"]
    assert torch.allclose(x0, torch.full_like(x0, (1 - m) / s))
    assert torch.allclose(ds[1][0], torch.full_like(x0, (0 - m) / s))
    want = (torch.from_numpy(a.images[2]).float() / 255 - m) / s
    assert torch.allclose(ds[2][0][0], want)
    assert torch.allclose(ds[-1][0], ds[2][0])


def test_augmentation_is_deterministic_per_seed_epoch_index():
    a = arrays(10)
    aug = Augment()
    ds = FaceDataset(a, augment=aug, seed=7)
    first = ds[3][0]
    _ = ds[5]  # access order does not matter
    assert torch.equal(ds[3][0], first)
    assert torch.equal(FaceDataset(a, augment=aug, seed=7)[3][0], first)
    assert not torch.equal(FaceDataset(a, augment=aug, seed=8)[3][0], first)
    assert not torch.equal(ds[4][0], FaceDataset(arrays(10), augment=aug, seed=7)[3][0])
    ds.set_epoch(1)
    assert not torch.equal(ds[3][0], first)
    ds.set_epoch(0)
    assert torch.equal(ds[3][0], first)
    # augmentation really changes the image, and keeps it in the normalised [0, 1] range
    plain = FaceDataset(a)[3][0]
    assert not torch.equal(first, plain)
    assert first.min() >= -2.0 - 1e-6 and first.max() <= 2.0 + 1e-6


def test_loader_batches_are_reproducible_and_independent_of_batch_size():
    a = arrays(20)
    aug = Augment(erase=0.5)

    def epoch_samples(batch_size, epoch):
        loader = make_loader(a, batch_size=batch_size, shuffle=True, augment=aug, seed=3)
        loader.set_epoch(epoch)
        xs, ys = zip(*[(x, y) for x, y in loader])
        return torch.cat(xs), torch.cat(ys)

    x1, y1 = epoch_samples(4, 0)
    x2, y2 = epoch_samples(7, 0)
    assert x1.shape == (20, 1, 48, 48)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    x3, y3 = epoch_samples(4, 1)
    assert not torch.equal(y1, y3) or not torch.equal(x1, x3)


def test_shuffle_order():
    a = arrays(30)
    loader = make_loader(a, batch_size=30, shuffle=True, seed=1)
    loader.set_epoch(0)
    order0 = list(loader.sampler)
    assert sorted(order0) == list(range(30)) and order0 != list(range(30))
    assert list(loader.sampler) == order0  # the same epoch gives the same order
    loader.set_epoch(1)
    assert list(loader.sampler) != order0
    assert list(make_loader(a, 8, shuffle=False).sampler) == list(range(30))
    # labels come with their images
    x, y = next(iter(make_loader(a, batch_size=30, shuffle=True, seed=1)))
    assert y.tolist() == [int(a.labels[i]) for i in order0]


def test_distributed_shards_cover_the_data_once(monkeypatch):
    a = arrays(21)
    seen = []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        loader = make_loader(a, batch_size=4, shuffle=True, seed=5, distributed=True)
        loader.set_epoch(2)
        seen.append(list(loader.sampler))
    assert len(seen[0]) == len(seen[1]) == 11  # DistributedSampler pads to equal shards
    assert set(seen[0]) | set(seen[1]) == set(range(21))


def _shards(world: int, seed: int, epoch: int) -> list[list[int]]:
    shards = []
    for rank in range(world):
        sampler = ShardedSampler(MixedEpochSampler(30, 10, ratio=0.5, seed=seed), rank, world)
        sampler.set_epoch(epoch)
        shards.append(list(sampler))
    return shards


@pytest.mark.parametrize("world", [1, 2, 3])
def test_sharded_sampler_gives_every_row_once_per_epoch(world):
    whole = MixedEpochSampler(30, 10, ratio=0.5, seed=7)
    whole.set_epoch(4)
    order = list(whole)
    shards = _shards(world, seed=7, epoch=4)
    assert [len(s) for s in shards] == [-(-len(order) // world)] * world  # equal shards, as DistributedSampler
    interleaved = [s[i] for i in range(len(shards[0])) for s in shards]
    assert interleaved[: len(order)] == order  # every row of the epoch once, in the epoch's order
    assert interleaved[len(order):] == order[: len(interleaved) - len(order)]  # padding from the front


def test_sharded_sampler_order_depends_on_seed_and_epoch():
    assert _shards(2, seed=3, epoch=1) == _shards(2, seed=3, epoch=1)
    assert _shards(2, seed=3, epoch=1) != _shards(2, seed=3, epoch=2)
    assert _shards(2, seed=3, epoch=1) != _shards(2, seed=4, epoch=1)


def test_sharded_sampler_rank_must_be_in_the_world():
    with pytest.raises(ValueError, match="rank must be in"):
        ShardedSampler(MixedEpochSampler(4, 4), 2, 2)


def test_soft_targets():
    a = arrays(5, soft=True)
    x, y = FaceDataset(a, soft=True)[2]
    assert y.shape == (7,) and torch.allclose(y, torch.from_numpy(a.soft[2]))
    with pytest.raises(DataError, match="soft labels"):
        FaceDataset(arrays(5), soft=True)


def test_workers_give_the_same_tensors():
    a = arrays(12)
    aug = Augment()
    single = torch.cat([x for x, _ in make_loader(a, 4, shuffle=False, augment=aug, seed=2)])
    multi = torch.cat([x for x, _ in make_loader(a, 4, shuffle=False, augment=aug, seed=2, num_workers=2)])
    assert torch.equal(single, multi)
