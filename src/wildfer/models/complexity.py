"""Model size and cost: parameters and multiply-adds (MACs) of one forward pass at the
model's input size.

MACs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts the FLOPs of
every convolution and matrix product the forward pass actually runs (MACs = FLOPs / 2;
element-wise ops such as batch norm, ReLU and pooling are not counted, as usual). Models are
built on PyTorch's ``meta`` device, so nothing is allocated or computed: the full table,
VGG-16 at 224 pixels included, takes about a second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
import torch.nn as nn

from .registry import create_model, factory_kwargs, list_models, model_info


@dataclass(frozen=True)
class Complexity:
    name: str
    family: str
    input_size: int
    in_chans: int
    params: int
    trainable_params: int
    macs: int
    description: str

    def to_dict(self) -> dict:
        return asdict(self)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_shape: tuple[int, ...], device: str | torch.device | None = None) -> int:
    """Multiply-adds of ``model`` on one input of ``input_shape`` (``(C, H, W)`` or ``(N, C, H, W)``)."""
    from torch.utils.flop_counter import FlopCounterMode

    if len(input_shape) == 3:
        input_shape = (1, *input_shape)
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else "cpu"
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(input_shape, device=device)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2 // int(input_shape[0])


def model_complexity(name: str, num_classes: int = 7, **kw) -> Complexity:
    """Parameters and MACs of registered model ``name`` at its registered input size.

    Cached per process (the registry does not change while it runs).
    """
    frozen = tuple(sorted(factory_kwargs(kw).items()))
    return _complexity(name, num_classes, frozen)


@lru_cache(maxsize=None)
def _complexity(name: str, num_classes: int, frozen: tuple) -> Complexity:
    kw = dict(frozen)
    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, **kw)
    in_chans = int(getattr(model, "in_chans", info.in_chans))
    macs = count_macs(model, (in_chans, info.input_size, info.input_size), device="meta")
    return Complexity(name, info.family, info.input_size, in_chans, count_params(model),
                      count_params(model, trainable_only=True), macs, info.description)


def complexity_table(pattern: str | None = None, num_classes: int = 7) -> list[Complexity]:
    """:func:`model_complexity` of every registered model (optionally matching ``pattern``)."""
    return [model_complexity(n, num_classes=num_classes) for n in list_models(pattern)]


def human(n: float) -> str:
    """1234567 -> '1.23 M'."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g} {unit}"
    return str(int(n))
