"""Do the maps deserve trust? Two tests with numbers instead of impressions.

1. **Cascading model-parameter randomization** (Adebayo et al. 2018, "Sanity Checks for
   Saliency Maps"): re-initialise the network's layers one after the other from the top
   (the logits) down, cumulatively, and after each step compare every method's maps with
   the trained model's maps by Spearman rank correlation (of ``|map|``, per image, then
   averaged). A map that explains the *model* must change when the model is destroyed; a
   method whose correlation stays above ``threshold`` once every layer is random behaves
   like an edge detector of the input and is flagged.

2. **Faithfulness by deletion and insertion** (Petsiuk et al. 2018, RISE): remove pixels
   from the image in order of saliency (most salient first, replaced by a ``deletion``
   baseline: each image's mean grey by default), or insert them into a blurred copy, and
   track the probability of the explained class. A faithful map makes the deletion curve
   fall fast (low area under the curve) and the insertion curve rise fast (high AUC). Each
   method is compared with random maps (several seeds), the floor any method must beat.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..errors import WildferError
from . import SALIENCY_METHODS
from .methods import (
    MethodError,
    as_module,
    canonical_name,
    create_method,
    eval_mode,
    make_baseline,
    prepare_input,
    resolve_target,
)

#: Cheaper settings used by the audit (it computes every map once per randomized layer).
AUDIT_PARAMS: dict[str, dict[str, Any]] = {
    "smoothgrad": {"n_samples": 16},
    "ig": {"steps": 16},
    "occlusion": {"window": 12, "stride": 6},
}


def _with_net(model: Any, net: nn.Module) -> Any:
    """The same kind of object as ``model`` (Classifier or module) around ``net``."""
    if dataclasses.is_dataclass(model) and hasattr(model, "net"):
        return dataclasses.replace(model, module=net)
    return net


def _method_specs(methods: Sequence[str] | Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """``["vanilla", "ig"]`` or ``{"ig": {"steps": 8}}`` -> ``{canonical name: params}``."""
    if methods is None:
        methods = SALIENCY_METHODS
    if isinstance(methods, str):
        methods = [m for m in methods.split(",") if m.strip()]
    out: dict[str, dict[str, Any]] = {}
    items = methods.items() if isinstance(methods, Mapping) else ((m, None) for m in methods)
    for name, params in items:
        key = canonical_name(name)
        if key == "random":
            continue
        out[key] = dict(AUDIT_PARAMS.get(key, {}) if params is None else params)
    if not out:
        raise MethodError("no saliency method to audit")
    return out


# ----------------------------------------------------------------------------- ranks


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each row of ``a`` with the same row of ``b`` (average
    ranks for ties). A row that is constant in either input has no ranking to share: 0."""
    from scipy.stats import rankdata

    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    num = (ra * rb).sum(1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _abs_maps(m: torch.Tensor) -> np.ndarray:
    """``|map|`` summed over channels, ``N x H x W`` numpy."""
    return m.detach().abs().sum(1).cpu().numpy()


# ----------------------------------------------------------------------------- randomization


def parameter_layers(net: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the layers that own weights (a parameter of 2+ dimensions: convolutions,
    linear layers), in the order the forward pass reaches them.

    Found from the modules' parameters, not from which modules get called: a fused eval path
    (``fastfer``'s convolution with its batch norm folded in, run through ``F.conv2d``) reads a
    layer's weights without calling the layer. Such a layer takes the place of its closest
    ancestor that does run; layers at one place keep their definition order.
    """
    entered: dict[str, int] = {}

    def hook(name: str):
        def enter(module, args) -> None:  # a pre-hook that returns something would replace the input
            entered.setdefault(name, len(entered))
        return enter

    handles = [m.register_forward_pre_hook(hook(name)) for name, m in net.named_modules()]
    try:
        with torch.no_grad(), eval_mode(net):
            net(example)
    finally:
        for h in handles:
            h.remove()
    defined = {name: i for i, (name, _) in enumerate(net.named_modules())}

    def place(name: str) -> int:
        parts = name.split(".")
        while parts and ".".join(parts) not in entered:
            parts.pop()
        return entered.get(".".join(parts), 0)

    layers = [name for name, m in net.named_modules() if any(p.dim() >= 2 for p in m.parameters(recurse=False))]
    return sorted(layers, key=lambda n: (place(n), defined[n]))


def _check_all_randomized(trained: dict[str, torch.Tensor], randomized: nn.Module, layers: list[str]) -> None:
    """Stop when a weight tensor of 2+ dimensions came through the cascade unchanged (``trained``:
    the trained net's parameters by name): its "all layers random" row would be a lie."""
    kept = [n for n, p in randomized.named_parameters() if p.dim() >= 2 and torch.equal(p, trained[n])]
    if kept:
        raise WildferError(f"cascading randomization left {len(kept)} weight tensor(s) untouched "
                           f"({', '.join(kept[:4])}); randomized layers: {', '.join(layers) or 'none'}")


def randomize_layer(module: nn.Module, seed: int) -> None:
    """Re-initialise a layer's weights and bias with PyTorch's default init, seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:  # pragma: no cover - Conv2d and Linear both have it
            for p in module.parameters(recurse=False):
                nn.init.normal_(p, std=0.02)


def randomization_test(
    model: Any,
    x: Any,
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
    *,
    target: Any = None,
    threshold: float = 0.5,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    return_maps: bool = False,
):
    """Cascading randomization from the logits down. ``model`` is left untouched (a copy is
    randomized). Targets are the trained model's predictions (or ``target``) throughout.

    Returns ``{"layers": [top-down names], "methods": {name: {"spearman": [mean per step],
    "spearman_std": [...], "final": last mean, "flagged": bool}}, "threshold", "n"}`` (and the
    trained model's maps ``{name: tensor}`` with ``return_maps=True``).
    """
    specs = _method_specs(methods)
    net = as_module(model)
    xt = prepare_input(model, x)
    with torch.no_grad(), eval_mode(net):
        logits = net(xt)
    t = resolve_target(logits, target)
    trained = {m: create_method(m, model, **p).attribute(xt, t) for m, p in specs.items()}
    original = {m: _abs_maps(a) for m, a in trained.items()}
    if progress:
        progress(f"maps of the trained model: {', '.join(specs)}")
    layers = list(reversed(parameter_layers(net, xt[:1])))
    rand_net = copy.deepcopy(net)
    rand_modules = dict(rand_net.named_modules())
    rand_model = _with_net(model, rand_net)
    res = {m: {"spearman": [], "spearman_std": []} for m in specs}
    steps: list[list[str]] = []
    trained_params = dict(net.named_parameters())
    for k, name in enumerate(layers):
        module = rand_modules[name]
        for attempt in range(3):
            randomize_layer(module, seed + k + 7919 * attempt)
            # a seed can re-draw the very init an untrained layer still holds: draw again
            if not any(torch.equal(p, trained_params[f"{name}.{n}" if name else n])
                       for n, p in module.named_parameters(recurse=False) if p.dim() >= 2):
                break
        steps.append(layers[: k + 1])
        for m, p in specs.items():
            r = _abs_maps(create_method(m, rand_model, **p).attribute(xt, t))
            rho = spearman_rows(original[m], r)
            res[m]["spearman"].append(float(rho.mean()))
            res[m]["spearman_std"].append(float(rho.std()))
        if progress:
            progress(f"randomized {k + 1}/{len(layers)} ({name})")
    _check_all_randomized(trained_params, rand_net, layers)
    for m in specs:
        final = res[m]["spearman"][-1] if res[m]["spearman"] else float("nan")
        res[m]["final"] = final
        res[m]["flagged"] = bool(final > threshold)
        res[m]["params"] = specs[m]
    rep = {"layers": layers, "randomized": steps, "methods": res, "threshold": threshold, "n": int(xt.shape[0]),
           "seed": seed}
    return (rep, trained) if return_maps else rep


# ----------------------------------------------------------------------------- faithfulness


def _ranks(maps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per image, each pixel's position in descending-saliency order (random tie-breaking)."""
    n = maps.shape[0]
    flat = maps.reshape(n, -1)
    jitter = rng.random(flat.shape) * 1e-12 * (np.abs(flat).max(1, keepdims=True) + 1e-30)
    order = np.argsort(-(flat + jitter), axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None].repeat(n, 0), axis=1)
    return ranks


def perturbation_curves(
    model: Any,
    x: Any,
    maps: Any,
    target: Any = None,
    *,
    mode: str = "deletion",
    steps: int = 24,
    baseline: Any = "mean",
    blur_sigma: float = 4.0,
    batch_size: int = 256,
    seed: int = 0,
) -> np.ndarray:
    """Probability of the target class as pixels are deleted from (``mode="deletion"``) or
    inserted into (``"insertion"``) the image in order of ``|map|``; ``N x (steps + 1)``,
    column ``k`` after ``k / steps`` of the pixels."""
    if mode not in ("deletion", "insertion"):
        raise MethodError(f"mode must be deletion or insertion, not {mode!r}")
    net = as_module(model)
    xt = prepare_input(model, x)
    n, c, h, w = xt.shape
    m = maps.detach().cpu().numpy() if hasattr(maps, "detach") else np.asarray(maps)
    m = np.abs(m.astype(np.float64))
    if m.ndim == 4:
        m = m.sum(1)
    if m.shape != (n, h, w):
        raise MethodError(f"maps of shape {m.shape} do not fit inputs {tuple(xt.shape)}")
    ranks = torch.as_tensor(_ranks(m, np.random.default_rng(seed)))  # n x hw
    counts = torch.as_tensor(np.round(np.linspace(0, h * w, steps + 1)).astype(np.int64))
    b = make_baseline(xt, baseline, model=model, blur_sigma=blur_sigma)
    with torch.no_grad(), eval_mode(net):
        t = resolve_target(net(xt), target)
        out = np.zeros((n, steps + 1))
        per = max(1, batch_size // (steps + 1))
        for i in range(0, n, per):
            r = ranks[i : i + per]  # k x hw
            mask = (r[:, None, :] < counts[None, :, None]).to(xt.dtype).view(len(r), steps + 1, 1, h, w)
            xi, bi = xt[i : i + per, None], b[i : i + per, None]
            if mode == "deletion":
                batch = xi * (1 - mask) + bi * mask
            else:
                batch = bi * (1 - mask) + xi * mask
            p = torch.softmax(net(batch.reshape(-1, c, h, w)), dim=1).view(len(r), steps + 1, -1)
            out[i : i + per] = p.gather(2, t[i : i + per, None, None].expand(-1, steps + 1, 1))[..., 0].numpy()
    return out


def auc(curves: np.ndarray) -> np.ndarray:
    """Area under each curve over the pixel fraction [0, 1] (trapezoid rule)."""
    c = np.asarray(curves, dtype=np.float64)
    return np.trapezoid(c, dx=1.0 / (c.shape[-1] - 1), axis=-1)


def faithfulness(
    model: Any,
    x: Any,
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
    *,
    target: Any = None,
    steps: int = 24,
    n_random: int = 3,
    deletion_baseline: Any = "mean",
    insertion_baseline: Any = "blur",
    seed: int = 0,
    maps: Mapping[str, torch.Tensor] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Deletion and insertion AUC per method and for random maps (mean of ``n_random`` seeds).

    ``beats_random`` says, per method, whether its mean deletion AUC is below random's and
    its insertion AUC above; ``deletion_win_rate`` is the share of images where the method's
    deletion AUC is below the random maps' mean for that image.
    """
    specs = _method_specs(methods)
    net = as_module(model)
    xt = prepare_input(model, x)
    with torch.no_grad(), eval_mode(net):
        t = resolve_target(net(xt), target)

    def curves(mp: torch.Tensor, s: int) -> tuple[np.ndarray, np.ndarray]:
        d = perturbation_curves(model, xt, mp, t, mode="deletion", steps=steps, baseline=deletion_baseline, seed=s)
        i = perturbation_curves(model, xt, mp, t, mode="insertion", steps=steps, baseline=insertion_baseline, seed=s)
        return d, i

    rand_d, rand_i = [], []
    for s in range(n_random):
        g = torch.Generator().manual_seed(seed + 1000 + s)
        rm = torch.rand(xt.shape[0], 1, xt.shape[2], xt.shape[3], generator=g)
        d, i = curves(rm, seed + s)
        rand_d.append(d)
        rand_i.append(i)
    rand_d_auc = np.mean([auc(d) for d in rand_d], axis=0)  # per image
    rand_i_auc = np.mean([auc(i) for i in rand_i], axis=0)
    report: dict[str, Any] = {
        "random": {
            "deletion_auc": float(rand_d_auc.mean()),
            "insertion_auc": float(rand_i_auc.mean()),
            "deletion_curve": np.mean([d.mean(0) for d in rand_d], axis=0).round(5).tolist(),
            "insertion_curve": np.mean([i.mean(0) for i in rand_i], axis=0).round(5).tolist(),
            "seeds": n_random,
        },
        "methods": {},
        "steps": steps,
        "deletion_baseline": str(deletion_baseline),
        "insertion_baseline": str(insertion_baseline),
        "n": int(xt.shape[0]),
    }
    for name, params in specs.items():
        mp = maps[name] if maps is not None and name in maps else create_method(name, model, **params).attribute(xt, t)
        d, i = curves(mp, seed)
        da, ia = auc(d), auc(i)
        report["methods"][name] = {
            "deletion_auc": float(da.mean()),
            "deletion_auc_std": float(da.std()),
            "insertion_auc": float(ia.mean()),
            "insertion_auc_std": float(ia.std()),
            "deletion_curve": d.mean(0).round(5).tolist(),
            "insertion_curve": i.mean(0).round(5).tolist(),
            "deletion_win_rate": float((da < rand_d_auc).mean()),
            "insertion_win_rate": float((ia > rand_i_auc).mean()),
            "beats_random_deletion": bool(da.mean() < rand_d_auc.mean()),
            "beats_random_insertion": bool(ia.mean() > rand_i_auc.mean()),
            "params": params,
        }
        if progress:
            progress(f"faithfulness: {name}")
    return report


# ----------------------------------------------------------------------------- the audit


def run_audit(
    model: Any,
    x: Any,
    methods: Sequence[str] | Mapping[str, Mapping[str, Any]] | None = None,
    *,
    threshold: float = 0.5,
    steps: int = 24,
    n_random: int = 3,
    seed: int = 0,
    randomization: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Both tests on the same inputs; one JSON-ready dict (see :func:`audit_markdown`)."""
    specs = _method_specs(methods)
    t0 = time.perf_counter()
    rep: dict[str, Any] = {"model": str(getattr(model, "name", "") or type(as_module(model)).__name__),
                           "methods": list(specs)}
    maps = None
    if randomization:
        rep["randomization"], maps = randomization_test(model, x, specs, threshold=threshold, seed=seed,
                                                        progress=progress, return_maps=True)
    rep["faithfulness"] = faithfulness(model, x, specs, steps=steps, n_random=n_random, seed=seed, maps=maps,
                                       progress=progress)
    rep["seconds"] = round(time.perf_counter() - t0, 1)
    return rep


def audit_markdown(rep: Mapping[str, Any]) -> str:
    """Markdown tables: randomization (Spearman after the top layer, half the layers and all
    layers; flagged) and faithfulness (AUCs against random maps)."""
    lines = [f"### Saliency audit: {rep.get('model', '')}", ""]
    ra = rep.get("randomization")
    if ra:
        layers = ra["layers"]
        half = max(0, len(layers) // 2 - 1)
        lines += [
            f"Cascading randomization (Adebayo et al. 2018), {ra['n']} faces, {len(layers)} layers from "
            f"`{layers[0]}` down to `{layers[-1]}`; mean Spearman rank correlation of |map| with the "
            f"trained model's maps (1 = unchanged, 0 = unrelated); flagged if > {ra['threshold']} with every layer "
            "random.",
            "",
            f"| method | top layer random | {half + 1} layers random | all {len(layers)} random | passes |",
            "| --- | ---: | ---: | ---: | :---: |",
        ]
        for m, r in ra["methods"].items():
            s = r["spearman"]
            lines.append(f"| {m} | {s[0]:.3f} | {s[half]:.3f} | {s[-1]:.3f} | {'no (flagged)' if r['flagged'] else 'yes'} |")
        lines.append("")
    fa = rep["faithfulness"]
    rnd = fa["random"]
    lines += [
        f"Faithfulness, {fa['n']} faces, {fa['steps']} steps; deletion baseline {fa['deletion_baseline']}, insertion "
        f"baseline {fa['insertion_baseline']}; probability of the predicted class. Deletion AUC: lower is better; "
        f"insertion AUC: higher is better. Random maps ({rnd['seeds']} seeds): deletion {rnd['deletion_auc']:.3f}, "
        f"insertion {rnd['insertion_auc']:.3f}.",
        "",
        "| method | deletion AUC | beats random | images better than random | insertion AUC | beats random |",
        "| --- | ---: | :---: | ---: | ---: | :---: |",
    ]
    for m, r in fa["methods"].items():
        lines.append(
            f"| {m} | {r['deletion_auc']:.3f} | {'yes' if r['beats_random_deletion'] else 'no'} | "
            f"{100 * r['deletion_win_rate']:.0f}% | {r['insertion_auc']:.3f} | "
            f"{'yes' if r['beats_random_insertion'] else 'no'} |"
        )
    lines.append(f"| random | {rnd['deletion_auc']:.3f} | - | - | {rnd['insertion_auc']:.3f} | - |")
    return "\n".join(lines) + "\n"


def audit_tables(rep: Mapping[str, Any]):
    """Rich tables for the terminal (randomization, faithfulness)."""
    from rich.table import Table

    tables = []
    ra = rep.get("randomization")
    if ra:
        tb = Table(title=f"Cascading randomization: Spearman vs trained maps ({ra['n']} faces)")
        tb.add_column("layers random", justify="right")
        tb.add_column("layer")
        for m in ra["methods"]:
            tb.add_column(m, justify="right")
        for k, name in enumerate(ra["layers"]):
            tb.add_row(str(k + 1), name, *[f"{ra['methods'][m]['spearman'][k]:.3f}" for m in ra["methods"]])
        tb.add_row("", "passes", *["[red]no[/]" if ra["methods"][m]["flagged"] else "[green]yes[/]" for m in ra["methods"]])
        tables.append(tb)
    fa = rep["faithfulness"]
    tb = Table(title=f"Faithfulness ({fa['n']} faces; deletion: lower is better, insertion: higher)")
    for col in ("method", "deletion AUC", "vs random", "insertion AUC", "vs random"):
        tb.add_column(col, justify="left" if col == "method" else "right")
    for m, r in fa["methods"].items():
        tb.add_row(m, f"{r['deletion_auc']:.3f}", "[green]better[/]" if r["beats_random_deletion"] else "[red]worse[/]",
                   f"{r['insertion_auc']:.3f}", "[green]better[/]" if r["beats_random_insertion"] else "[red]worse[/]")
    tb.add_row("random", f"{fa['random']['deletion_auc']:.3f}", "", f"{fa['random']['insertion_auc']:.3f}", "")
    tables.append(tb)
    return tables
