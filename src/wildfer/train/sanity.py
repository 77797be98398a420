"""``wildfer train --sanity``: the checks to run before trusting a training setup (cs231n's
recipe, which the study followed), on any registered architecture (``model=NAME`` with its
``model_kwargs``; the shallow net by default).

1. **Initial loss.** With every conv and linear weight at scale 1e-3 (biases 0) the logits
   are ~0, so the softmax is uniform and the cross-entropy is ln(7) = 1.946 for 7 classes. A
   different value means a wrong loss, wrong labels or a wrong initialisation.
2. **Overfit a tiny batch.** 50 faces (FER2013 training rows when the data is there, random
   noise with random labels otherwise) must reach 100 % training accuracy within a bounded
   number of full-batch steps, with no regularisation: if the net cannot memorise 50 images
   something between data, model, loss and optimizer is broken.
3. **Gradient check.** The analytic gradients of the net in eval mode (loss w.r.t. the input
   and every parameter) must match central differences in float64
   (:func:`torch.autograd.gradcheck`); the table shows the largest relative error
   ``||analytic - numeric|| / (||analytic|| + ||numeric||)`` over the tensors. A tensor of
   more than ``max_per_tensor`` values is checked on that many coordinates drawn at random.

Without ``model_kwargs`` each check uses the architecture's cheap setting from
:data:`CHEAP_KWARGS` (the shallow net with 8 filters, and a tiny one for the gradient check).

``run_sanity(console, model=..., model_kwargs=...) -> bool`` prints a table of the three
checks with their numbers.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..labels import FER2013_CLASSES
from ..models.classifier import DEFAULT_PREPROCESS, mean_std, normalize_input, scale_pixels

#: per check, the setting an architecture runs at when no ``model_kwargs`` are given
CHEAP_KWARGS: dict[str, dict[str, dict]] = {
    "overfit": {"shallow": {"num_filters": 8}},
    "gradients": {"shallow": {"num_filters": 2, "filter_size": 3, "hidden": 10, "input_size": 8}},
}


@dataclass
class Check:
    name: str
    value: str
    target: str
    ok: bool
    note: str = ""


def _default_data(data: str | os.PathLike | None = None) -> Path | None:
    """``data`` (default: the training default's FER2013 path) from the working folder, else
    under ``$WILDFER_DATA``; for the training default also
    ``$WILDFER_SHARED_DATA/fer2013/fer2013.csv.gz`` (the test suite's variable)."""
    from ..data.paths import data_path
    from .config import TrainConfig

    default = TrainConfig().data
    cands = [data_path(default if data is None else data)]
    if os.environ.get("WILDFER_SHARED_DATA") and (data is None or str(data) == default):
        cands.append(Path(os.environ["WILDFER_SHARED_DATA"]) / "fer2013" / "fer2013.csv.gz")
    return next((c for c in cands if c.exists()), None)


def _tiny_batch(n: int, data: str | os.PathLike | None, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` normalised faces and labels: FER2013 training rows if available, else noise."""
    path = _default_data(data)
    if path is not None and path.exists():
        from ..data.fer2013 import load_fer2013

        train = load_fer2013(path).split("Training")
        if len(train) >= n:
            rng = np.random.default_rng(seed)
            idx = np.sort(rng.choice(len(train), size=n, replace=False))
            images = torch.from_numpy(np.ascontiguousarray(train.images[idx])).float()
            labels = torch.from_numpy(train.labels[idx].astype(np.int64))
            source = f"{n} FER2013 training rows"
        else:
            path = None
    if path is None or not path.exists():
        g = torch.Generator().manual_seed(seed)
        side = DEFAULT_PREPROCESS["size"]
        images = torch.randint(0, 256, (n, side, side), generator=g).float()
        labels = torch.randint(0, len(FER2013_CLASSES), (n,), generator=g)
        source = f"{n} random images (FER2013 not found)"
    x = normalize_input(scale_pixels(images[:, None]), mean_std(None))
    return x, labels, source


def _build(model: str, model_kwargs: dict | None, check: str | None, num_classes: int) -> tuple[nn.Module, dict]:
    """The registered ``model`` with ``model_kwargs`` (``None``: the check's cheap setting)."""
    from ..models.registry import create_model

    kwargs = dict(CHEAP_KWARGS.get(check, {}).get(model, {})) if model_kwargs is None else dict(model_kwargs)
    return create_model(model, num_classes=num_classes, **kwargs), kwargs


def _describe(model: str, kwargs: dict) -> str:
    return ", ".join([model, *(f"{k}={v}" for k, v in kwargs.items())])


def _fit_input(x: torch.Tensor, net: nn.Module) -> torch.Tensor:
    """48x48 grayscale faces at the network's registered input size and channel count."""
    size, chans = getattr(net, "input_size", x.shape[-1]), getattr(net, "in_chans", x.shape[1])
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.expand(-1, chans, -1, -1).contiguous() if x.shape[1] != chans else x


def check_initial_loss(x: torch.Tensor, y: torch.Tensor, num_classes: int = 7, seed: int = 0,
                       tolerance: float = 0.05, *, model: str = "shallow", model_kwargs: dict | None = None) -> Check:
    """Cross-entropy of a freshly built net with every conv / linear weight at scale 1e-3 vs ln(C)."""
    torch.manual_seed(seed)
    net, _ = _build(model, model_kwargs, None, num_classes)
    for m in net.modules():  # the study's small Gaussian init (cs231n style)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, std=1e-3)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    with torch.no_grad():
        loss = float(F.cross_entropy(net(_fit_input(x, net)), y))
    expect = math.log(num_classes)
    return Check(f"initial loss ({model}, weight scale 1e-3)", f"{loss:.4f}", f"ln {num_classes} = {expect:.4f} ± {tolerance}",
                 abs(loss - expect) <= tolerance)


def check_overfit(x: torch.Tensor, y: torch.Tensor, num_classes: int = 7, max_steps: int = 150, seed: int = 0,
                  lr: float = 1e-3, *, model: str = "shallow", model_kwargs: dict | None = None) -> Check:
    """Full-batch Adam on the tiny batch until every training face is classified right.

    The shallow net runs with 8 filters by default (the study's architecture at its cheapest
    setting, 4x cheaper than the default 32), which keeps this check to a couple of CPU
    seconds. Uses the training engine's optimizer factory and loss, so a broken engine fails
    here too.
    """
    from .config import TrainConfig
    from .losses import soft_cross_entropy
    from .optim import make_optimizer

    torch.manual_seed(seed)
    net, kwargs = _build(model, model_kwargs, "overfit", num_classes)
    x = _fit_input(x, net)
    opt = make_optimizer(TrainConfig(optimizer="adam", lr=lr, weight_decay=0.0), net.parameters())
    target = F.one_hot(y, num_classes).float()
    t0 = time.time()
    acc, loss, step = 0.0, float("nan"), 0
    for step in range(1, max_steps + 1):
        net.train()
        logits = net(x)
        loss_t = soft_cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        opt.step()
        loss = float(loss_t.detach())
        acc = float((logits.detach().argmax(1) == y).float().mean())
        if acc == 1.0:
            # confirm with the updated weights
            with torch.no_grad():
                acc = float((net(x).argmax(1) == y).float().mean())
            if acc == 1.0:
                break
    return Check(f"overfit {len(y)} faces ({_describe(model, kwargs)}, Adam)", f"{acc:.0%} train acc in {step} steps, loss {loss:.3f}",
                 f"100% within {max_steps} steps", acc == 1.0, note=f"{time.time() - t0:.1f}s")


def _checked_coordinates(sizes: list[int], max_values: int, seed: int) -> list[torch.Tensor]:
    """Per tensor, the flat indices to compare: all of them when the tensors hold at most
    ``max_values`` values, else an equal share of ``max_values`` drawn at random."""
    if sum(sizes) <= max_values:
        return [torch.arange(n) for n in sizes]
    gen = torch.Generator().manual_seed(seed)
    share = max(1, max_values // len(sizes))
    return [torch.randperm(n, generator=gen)[:share] for n in sizes]


def _central_difference(loss_fn, inputs: tuple[torch.Tensor, ...], flat: torch.Tensor, i: int, h: float) -> float:
    old = float(flat[i])
    flat[i] = old + h
    fp = float(loss_fn(*inputs))
    flat[i] = old - h
    fm = float(loss_fn(*inputs))
    flat[i] = old
    return (fp - fm) / (2 * h)


def check_gradients(seed: int = 0, *, model: str = "shallow", model_kwargs: dict | None = None,
                    max_values: int = 600) -> Check:
    """gradcheck of loss(net(x)) w.r.t. the input and all parameters, in float64, in eval mode
    (gradcheck's fast mode and sampled coordinates beyond ``max_values`` values)."""
    from torch.func import functional_call

    torch.manual_seed(seed)
    net, kwargs = _build(model, model_kwargs, "gradients", 3)
    net = net.double().eval()
    size = int(kwargs.get("input_size", getattr(net, "input_size", DEFAULT_PREPROCESS["size"])))
    names = [n for n, _ in net.named_parameters()]
    params = tuple(p.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True) for p in net.parameters())
    x = torch.randn(2, getattr(net, "in_chans", 1), size, size, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2])

    def loss_fn(inp, *ps):
        return F.cross_entropy(functional_call(net, dict(zip(names, ps)), (inp,)), y)

    inputs = (x, *params)
    coords = _checked_coordinates([t.numel() for t in inputs], max_values, seed)
    fast = sum(len(c) for c in coords) < sum(t.numel() for t in inputs)
    try:
        ok = bool(torch.autograd.gradcheck(loss_fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, raise_exception=True,
                                           fast_mode=fast))
        note = ""
    except RuntimeError as e:  # gradcheck's "Jacobian mismatch" report
        ok, note = False, str(e).splitlines()[0][:80]
    # relative error of each gradient against central differences, ||a - n|| / (||a|| + ||n||)
    # (cs231n's measure, per tensor so that near-zero entries do not dominate). A value that
    # disagrees is measured again with a 10x smaller step (a ReLU kink within the step) and a
    # 10x larger one (rounding swamps a small gradient); a wrong backward disagrees at all three.
    analytic = torch.autograd.grad(loss_fn(*inputs), inputs)
    worst, h = 0.0, 1e-6
    with torch.no_grad():
        for t, g, idx in zip(inputs, analytic, coords):
            flat, a = t.view(-1), g.reshape(-1)[idx]
            num = torch.zeros(len(idx), dtype=torch.float64)
            for k, i in enumerate(idx.tolist()):
                num[k] = _central_difference(loss_fn, inputs, flat, i, h)
                if abs(num[k] - a[k]) > 1e-6 * (abs(num[k]) + abs(a[k])):
                    again = (_central_difference(loss_fn, inputs, flat, i, step) for step in (h / 10, h * 10))
                    num[k] = min((float(num[k]), *again), key=lambda d: abs(d - float(a[k])))
            worst = max(worst, float((a - num).norm() / ((a.norm() + num.norm()).clamp_min(1e-12))))
    n = sum(len(c) for c in coords)
    ok = ok and worst < 1e-6
    return Check(f"gradient check ({_describe(model, kwargs)}, float64, input + all params)",
                 f"max rel. error {worst:.1e} over {n} values", "gradcheck passes, < 1e-6", ok, note=note)


def run_sanity(console=None, data: str | os.PathLike | None = None, seed: int = 0, batch: int = 50, *,
               model: str = "shallow", model_kwargs: dict | None = None) -> bool:
    """Run the three checks on ``model``, print a table, return True when all pass."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=True)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    x, y, source = _tiny_batch(batch, data, seed)
    console.print(f"sanity checks of {model} on {source}", markup=False, highlight=False)
    arch = {"model": model, "model_kwargs": model_kwargs}
    checks = [check_initial_loss(x, y, seed=seed, **arch), check_overfit(x, y, seed=seed, **arch),
              check_gradients(seed=seed, **arch)]
    table = Table(title="wildfer train --sanity")
    for col in ("check", "measured", "target", "result"):
        table.add_column(col)
    for c in checks:
        res = "[green]pass[/]" if c.ok else "[bold red]FAIL[/]"
        table.add_row(c.name, c.value + (f" ({c.note})" if c.note else ""), c.target, res)
    console.print(table)
    ok = all(c.ok for c in checks)
    console.print("[green]all sanity checks passed[/]" if ok else "[bold red]some sanity checks failed[/]")
    return ok
