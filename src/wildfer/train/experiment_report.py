"""What the study's experiments (:mod:`wildfer.train.experiments`) report: runs' metrics read
back, the curves and comparison figures, and the tables (Markdown, JSON and the console's)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..figures import pyplot, save_figure
from ..jsonio import write_json
from ..paths import write_text_whole


def read_metrics(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """(iteration records, epoch records) from ``<run>/metrics.jsonl``."""
    iters, epochs = [], []
    f = Path(run_dir) / "metrics.jsonl"
    if f.exists():
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            (iters if rec.get("type") == "iter" else epochs if rec.get("type") == "epoch" else []).append(rec)
    return iters, epochs


def _optimizer_columns():
    return [
        ("rule", "rule", str),
        ("lr", "lr", lambda v: f"{v:g}"),
        ("initial loss", "initial_loss", _f3),
        ("final train loss", "final_train_loss", _f3),
        ("final train acc", "final_train_acc", _pct),
        ("final val acc", "final_val_acc", _pct),
        ("best val acc", "best_val_acc", _pct),
        ("time (s)", "seconds", lambda v: f"{v:.0f}"),
    ]


def _plot_optimizers(out: Path, names: list[str]) -> dict[str, Path]:
    plt = pyplot()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    for k, name in enumerate(names):
        iters, _ = read_metrics(out / name)
        if not iters:
            continue
        xs = [r["iter"] for r in iters]
        ys = [r["loss"] for r in iters]
        c = colors[k % len(colors)]
        ax.plot(xs, ys, color=c, alpha=0.25, lw=0.8)
        ax.plot(xs, _smooth(ys, max(1, len(ys) // 50)), color=c, lw=1.8, label=name)
    ax.axhline(math.log(7), color="gray", ls=":", lw=1, label="ln 7 (chance)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss per iteration (faint: raw, bold: moving average)")
    ax.legend()
    loss_png = save_figure(fig, out / "loss.png")

    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    for k, name in enumerate(names):
        _, epochs = read_metrics(out / name)
        if not epochs:
            continue
        xs = [e["epoch"] + 1 for e in epochs]
        c = colors[k % len(colors)]
        ax.plot(xs, [e["train_acc"] for e in epochs], color=c, ls="--", marker="o", ms=3, label=f"{name} train")
        ax.plot(xs, [e["val_acc"] for e in epochs], color=c, ls="-", marker="s", ms=3, label=f"{name} validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title("Train (dashed) and validation (solid) accuracy per epoch")
    ax.legend(fontsize=8, ncol=2)
    acc_png = save_figure(fig, out / "accuracy.png")
    return {"loss": loss_png, "accuracy": acc_png}


def _smooth(ys: list[float], k: int) -> list[float]:
    if k <= 1:
        return list(ys)
    out, s = [], 0.0
    for i, y in enumerate(ys):
        s += y
        if i >= k:
            s -= ys[i - k]
        out.append(s / min(i + 1, k))
    return out


def _arch_columns():
    return [
        ("model", "model", str),
        ("study", "study", lambda v: "yes" if v else ""),
        ("params (M)", "params", lambda v: f"{v / 1e6:.2f}"),
        ("MACs (M)", "macs", lambda v: f"{v / 1e6:.1f}"),
        ("best val acc", "best_val_acc", _pct),
        ("final val acc", "final_val_acc", _pct),
        ("train time (s)", "train_seconds", lambda v: f"{v:.0f}"),
        ("img/s", "images_per_s", lambda v: f"{v:.0f}"),
    ]


def _plot_architectures(out: Path, rows: list[dict]) -> dict[str, Path]:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    for r in rows:
        _, epochs = read_metrics(r["run"])
        ax.plot([e["epoch"] + 1 for e in epochs], [e["val_acc"] for e in epochs], marker="o", ms=3,
                ls="-" if r["study"] else "--", label=r["model"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Validation accuracy per epoch (solid: the study's architectures, dashed: ours)")
    ax.legend(fontsize=8)
    acc_png = save_figure(fig, out / "accuracy.png")

    fig, ax = plt.subplots(figsize=(7, 4.8), dpi=110)
    for r in rows:
        ax.scatter(r["macs"] / 1e6, r["best_val_acc"], s=30 + 40 * math.log10(1 + r["params"] / 1e5),
                   marker="o" if r["study"] else "s")
        ax.annotate(r["model"], (r["macs"] / 1e6, r["best_val_acc"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("multiply-adds per face (M, log scale)")
    ax.set_ylabel("best validation accuracy")
    ax.set_title("Accuracy against compute (marker size ~ parameters)")
    macs_png = save_figure(fig, out / "acc_vs_macs.png")

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.barh([r["model"] for r in rows], [r["train_seconds"] for r in rows],
            color=["tab:blue" if r["study"] else "tab:orange" for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("training time (s, this machine)")
    ax.set_title("Training time under one budget")
    time_png = save_figure(fig, out / "time.png")
    return {"accuracy": acc_png, "acc_vs_macs": macs_png, "time": time_png}


# ----------------------------------------------------------------------------- tables


def _pct(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def _f3(v) -> str:
    return "" if v is None else f"{v:.3f}"


def _cell(fmt, v) -> str:
    if v is None:
        return ""
    try:
        return fmt(v)
    except (TypeError, ValueError):
        return str(v)


def _write_tables(out: Path, result: dict, columns, title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", result)
    lines = [f"# {title}", "", "| " + " | ".join(c[0] for c in columns) + " |",
             "|" + "|".join(" --- " if i == 0 else " ---: " for i in range(len(columns))) + "|"]
    for r in result["rows"]:
        lines.append("| " + " | ".join(_cell(fmt, r.get(key)) for _, key, fmt in columns) + " |")
    for s in result.get("skipped", []):
        lines.append(f"\nSkipped {s['model']}: {s['reason']}.")
    shrunk = [f"{r['model']} {r['model_kwargs']}" for r in result["rows"] if r.get("model_kwargs")]
    if shrunk:
        lines += ["", "Model arguments: " + "; ".join(shrunk) + "."]
    lines += ["", f"Training rows: {result['train_rows']}, validation rows ({result['val_split']}): {result['val_rows']}, "
                  f"epochs: {result['epochs']}, batch size: {result['batch_size']}" + (" (--quick)" if result["quick"] else "") + "."]
    if result.get("figures"):
        lines += [""] + [f"![{k}]({Path(v).name})" for k, v in result["figures"].items()]
    write_text_whole(out / "results.md", "\n".join(lines) + "\n")


def _print_table(console, result: dict, columns, title: str) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for i, (head, _, _) in enumerate(columns):
        t.add_column(head, justify="left" if i == 0 else "right")
    for r in result["rows"]:
        t.add_row(*[_cell(fmt, r.get(key)) for _, key, fmt in columns])
    console.print(t)
    console.print(f"figures and tables in {result['out']}", highlight=False)
