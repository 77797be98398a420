"""torch ``Dataset`` / ``DataLoader`` adapters for :class:`FaceArrays` (no torchvision).

>>> ds = FaceDataset(train, augment=Augment(), seed=0)        # doctest: +SKIP
>>> loader = make_loader(train, 64, shuffle=True, augment=Augment(), seed=0)   # doctest: +SKIP
>>> for epoch in range(3):                                     # doctest: +SKIP
...     loader.set_epoch(epoch)
...     for x, y in loader: ...

Determinism: sample ``i`` in epoch ``e`` is augmented with a generator seeded from
``(seed, e, i)`` only, so the same seed gives the same tensors whatever the number of
workers, the batch size or the order of access; the shuffle order depends on
``(seed, e)`` only.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..models.classifier import DEFAULT_PREPROCESS, normalize_input, scale_pixels
from .fer2013 import FaceArrays

AugmentFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence mixes them well)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class FaceDataset(Dataset):
    """Samples ``(x, y)``: ``x`` a ``1 x H x W`` float32 tensor normalised ``(x / 255 - mean) / std``
    (by default the models' :data:`~wildfer.models.classifier.DEFAULT_PREPROCESS`), ``y`` the
    label (int64 scalar), or the soft label (float32 ``C``) when ``soft=True``.

    ``augment`` is any callable ``(x_float01_CHW_or_NCHW, generator) -> same shape``, such as
    :class:`wildfer.data.augment.Augment`; it is applied per sample, before normalisation.
    Call :meth:`set_epoch` at the start of each epoch to draw new augmentations.
    """

    def __init__(
        self,
        arrays: FaceArrays,
        augment: AugmentFn | None = None,
        seed: int = 0,
        *,
        soft: bool = False,
        mean: float = DEFAULT_PREPROCESS["mean"],
        std: float = DEFAULT_PREPROCESS["std"],
    ) -> None:
        if soft and arrays.soft is None:
            from ..errors import DataError

            raise DataError(arrays.source or "data", "soft=True needs soft labels (e.g. FER+ votes); this data set has none")
        self.arrays = arrays
        self.augment = augment
        self.seed = int(seed)
        self.soft = soft
        self.mean = float(mean)
        self.std = float(std)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations :meth:`__getitem__` draws."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.arrays)

    def sample_generator(self, index: int) -> torch.Generator:
        """The generator that augments sample ``index`` in the current epoch."""
        return torch.Generator().manual_seed(_mix_seed(self.seed, self.epoch, index))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index < 0:
            index += len(self)
        img = self.arrays.images[index]
        x = scale_pixels(torch.from_numpy(np.ascontiguousarray(img)).to(torch.float32)).unsqueeze(0)
        if self.augment is not None:
            x = self.augment(x, self.sample_generator(index))
        x = normalize_input(x, (self.mean, self.std))
        if self.soft:
            y = torch.from_numpy(np.asarray(self.arrays.soft[index], dtype=np.float32))
        else:
            y = torch.tensor(int(self.arrays.labels[index]), dtype=torch.int64)
        return x, y


class EpochShuffleSampler(Sampler[int]):
    """A permutation drawn from ``(seed, epoch)`` (or identity order when ``shuffle=False``)."""

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0) -> None:
        self.n, self.shuffle, self.seed, self.epoch = int(n), shuffle, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(_mix_seed(self.seed, self.epoch, -1))
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class MixedEpochSampler(Sampler[int]):
    """Each epoch, indices into two data sets laid end to end (``n_a`` faces, then ``n_b``) so
    that a share ``ratio`` of the epoch comes from the second.

    An epoch holds every face of the second set once and ``n_b * (1 - ratio) / ratio`` faces
    of the first, a fresh draw without replacement each epoch; when the first set is too
    small for that, all of it is taken with a fresh draw of as many of the second as keep the ratio.
    The order depends on ``(seed, epoch)`` only.
    """

    def __init__(self, n_a: int, n_b: int, ratio: float = 0.5, seed: int = 0) -> None:
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"ratio must be in (0, 1), got {ratio}")
        if n_a <= 0 or n_b <= 0:
            raise ValueError(f"both data sets need faces (got {n_a} and {n_b})")
        self.n_a, self.n_b, self.ratio, self.seed, self.epoch = int(n_a), int(n_b), float(ratio), int(seed), 0
        self.take_b = self.n_b
        self.take_a = round(self.n_b * (1 - ratio) / ratio)
        if self.take_a > self.n_a:
            self.take_a, self.take_b = self.n_a, max(1, round(self.n_a * ratio / (1 - ratio)))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(_mix_seed(self.seed, self.epoch, -2))
        a = torch.randperm(self.n_a, generator=g)[: self.take_a]
        b = torch.randperm(self.n_b, generator=g)[: self.take_b] + self.n_a
        both = torch.cat([a, b])
        return iter(both[torch.randperm(len(both), generator=g)].tolist())

    def __len__(self) -> int:
        return self.take_a + self.take_b


class ShardedSampler(Sampler[int]):
    """One rank's share of another sampler's epoch order, as ``DistributedSampler`` shares its
    shuffle: the order (the same on every rank) padded with its own first indices to a multiple
    of ``world``, then every ``world``-th index from ``rank``. :meth:`set_epoch` reaches the
    wrapped sampler (such as :class:`MixedEpochSampler`)."""

    def __init__(self, sampler: Sampler[int], rank: int, world: int) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}")
        self.sampler, self.rank, self.world = sampler, int(rank), int(world)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        order, total = list(self.sampler), len(self) * self.world
        if order:
            order = (order * math.ceil(total / len(order)))[:total]
        return iter(order[self.rank :: self.world])

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.world)


class FaceLoader(DataLoader):
    """A ``DataLoader`` with :meth:`set_epoch` that reaches both the sampler and the dataset."""

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)


def dist_info() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` of this process: the initialised process group's rank
    and size, else torchrun's ``RANK`` / ``WORLD_SIZE``; ``LOCAL_RANK`` from the environment
    (``0, 0, 1`` outside a distributed launch)."""
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), local_rank, dist.get_world_size()
    return int(os.environ.get("RANK", 0)), local_rank, int(os.environ.get("WORLD_SIZE", 1))


def make_loader(
    arrays: FaceArrays,
    batch_size: int = 64,
    shuffle: bool = True,
    augment: AugmentFn | None = None,
    seed: int = 0,
    distributed: bool = False,
    *,
    num_workers: int = 0,
    drop_last: bool = False,
    soft: bool = False,
    pin_memory: bool = False,
) -> FaceLoader:
    """A :class:`FaceLoader` over ``arrays`` (see the module docstring for determinism).

    ``distributed=True`` shards the data with ``DistributedSampler`` (rank and world size
    from the initialised process group, else ``RANK`` / ``WORLD_SIZE``). Call
    ``loader.set_epoch(epoch)`` every epoch.
    """
    dataset = FaceDataset(arrays, augment=augment, seed=seed, soft=soft)
    if distributed:
        from torch.utils.data.distributed import DistributedSampler

        rank, _, world = dist_info()
        sampler: Sampler[int] = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
    else:
        sampler = EpochShuffleSampler(len(dataset), shuffle=shuffle, seed=seed)
    return FaceLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
    )


__all__ = ["FaceDataset", "FaceLoader", "EpochShuffleSampler", "MixedEpochSampler", "ShardedSampler", "make_loader",
           "dist_info"]
