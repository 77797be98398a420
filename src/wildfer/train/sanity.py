"""``wildfer train --sanity``: the checks to run before trusting a training setup (cs231n's
recipe, which the study followed).

1. **Initial loss.** With small initial weights the shallow net's logits are ~0, so its
   softmax is uniform and the cross-entropy is ln(7) = 1.946 for 7 classes. A different value
   means a wrong loss, wrong labels or a wrong initialisation.
2. **Overfit a tiny batch.** 50 faces (FER2013 training rows when the data is there, random
   noise with random labels otherwise) must reach 100 % training accuracy within a bounded
   number of full-batch steps, with no regularisation: if the net cannot memorise 50 images
   something between data, model, loss and optimizer is broken.
3. **Gradient check.** The analytic gradients of a tiny shallow net (loss w.r.t. the input
   and every parameter) must match central differences in float64
   (:func:`torch.autograd.gradcheck`); the table shows the largest relative error
   ``||analytic - numeric|| / (||analytic|| + ||numeric||)`` over the tensors.

``run_sanity(console) -> bool`` prints a table of the three checks with their numbers.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..labels import FER2013_CLASSES


@dataclass
class Check:
    name: str
    value: str
    target: str
    ok: bool
    note: str = ""


def _default_data() -> Path | None:
    """The training default's FER2013 path (from the working folder, else under ``$WILDFER_DATA``),
    else ``$WILDFER_SHARED_DATA/fer2013/fer2013.csv.gz`` (the test suite's variable)."""
    from ..data.paths import data_path
    from .config import TrainConfig

    cands = [data_path(TrainConfig().data)]
    if os.environ.get("WILDFER_SHARED_DATA"):
        cands.append(Path(os.environ["WILDFER_SHARED_DATA"]) / "fer2013" / "fer2013.csv.gz")
    return next((c for c in cands if c.exists()), None)


def _tiny_batch(n: int, data: str | os.PathLike | None, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` normalised faces and labels: FER2013 training rows if available, else noise."""
    from ..models.loader import DEFAULT_PREPROCESS

    path = Path(data) if data is not None else _default_data()
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
        images = torch.randint(0, 256, (n, 48, 48), generator=g).float()
        labels = torch.randint(0, len(FER2013_CLASSES), (n,), generator=g)
        source = f"{n} random images (FER2013 not found)"
    x = (images[:, None] / 255.0 - DEFAULT_PREPROCESS["mean"]) / DEFAULT_PREPROCESS["std"]
    return x, labels, source


def check_initial_loss(x: torch.Tensor, y: torch.Tensor, num_classes: int = 7, seed: int = 0,
                       tolerance: float = 0.05) -> Check:
    """Cross-entropy of a freshly initialised shallow net with weight scale 1e-3 vs ln(C)."""
    from ..models.shallow import ShallowCNN

    torch.manual_seed(seed)
    net = ShallowCNN(num_classes=num_classes, weight_scale=1e-3)
    with torch.no_grad():
        loss = float(F.cross_entropy(net(x), y))
    expect = math.log(num_classes)
    return Check("initial loss (shallow, weight scale 1e-3)", f"{loss:.4f}", f"ln {num_classes} = {expect:.4f} ± {tolerance}",
                 abs(loss - expect) <= tolerance)


def check_overfit(x: torch.Tensor, y: torch.Tensor, num_classes: int = 7, max_steps: int = 150, seed: int = 0,
                  lr: float = 1e-3, num_filters: int = 8) -> Check:
    """Full-batch Adam on the tiny batch until every training face is classified right.

    The shallow net with 8 filters (the study's architecture at its cheapest setting, 4x
    cheaper than the default 32) keeps this check to a couple of CPU seconds. Uses the
    training engine's optimizer factory and loss, so a broken engine fails here too.
    """
    from ..models.shallow import ShallowCNN
    from .config import TrainConfig
    from .engine import make_optimizer, soft_cross_entropy

    torch.manual_seed(seed)
    net = ShallowCNN(num_classes=num_classes, num_filters=num_filters)
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
    return Check(f"overfit {len(y)} faces (shallow, {num_filters} filters, Adam)", f"{acc:.0%} train acc in {step} steps, loss {loss:.3f}",
                 f"100% within {max_steps} steps", acc == 1.0, note=f"{time.time() - t0:.1f}s")


def check_gradients(seed: int = 0) -> Check:
    """gradcheck of loss(shallow net(x)) w.r.t. the input and all parameters, in float64."""
    from torch.func import functional_call

    from ..models.shallow import ShallowCNN

    torch.manual_seed(seed)
    net = ShallowCNN(num_classes=3, num_filters=2, filter_size=3, hidden=10, input_size=8).double()
    names = [n for n, _ in net.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in net.parameters())
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2])

    def loss_fn(inp, *ps):
        return F.cross_entropy(functional_call(net, dict(zip(names, ps)), (inp,)), y)

    inputs = (x, *params)
    try:
        ok = bool(torch.autograd.gradcheck(loss_fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, raise_exception=True))
        note = ""
    except RuntimeError as e:  # gradcheck's "Jacobian mismatch" report
        ok, note = False, str(e).splitlines()[0][:80]
    # relative error of each gradient against central differences, ||a - n|| / (||a|| + ||n||)
    # (cs231n's measure, per tensor so that near-zero entries do not dominate)
    analytic = torch.autograd.grad(loss_fn(*inputs), inputs)
    worst, h = 0.0, 1e-6
    with torch.no_grad():
        for t, g in zip(inputs, analytic):
            flat, num = t.view(-1), torch.zeros(t.numel(), dtype=torch.float64)
            for i in range(flat.numel()):
                old = float(flat[i])
                flat[i] = old + h
                fp = float(loss_fn(*inputs))
                flat[i] = old - h
                fm = float(loss_fn(*inputs))
                flat[i] = old
                num[i] = (fp - fm) / (2 * h)
            a = g.reshape(-1)
            worst = max(worst, float((a - num).norm() / ((a.norm() + num.norm()).clamp_min(1e-12))))
    n = sum(t.numel() for t in inputs)
    ok = ok and worst < 1e-6
    return Check("gradient check (float64, input + all params)", f"max rel. error {worst:.1e} over {n} values",
                 "gradcheck passes, < 1e-6", ok, note=note)


def run_sanity(console=None, data: str | os.PathLike | None = None, seed: int = 0, batch: int = 50) -> bool:
    """Run the three checks, print a table, return True when all pass."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=True)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    x, y, source = _tiny_batch(batch, data, seed)
    console.print(f"sanity checks on {source}")
    checks = [check_initial_loss(x, y, seed=seed), check_overfit(x, y, seed=seed), check_gradients(seed=seed)]
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
