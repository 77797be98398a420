"""``wildfer data info`` and ``wildfer data show``: look at any supported data set."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..paths import file_arg


def info_dict(data, path: Path) -> dict:
    """Counts per usage and class (and what was skipped or dropped) as a JSON-ready dict."""
    by_usage = data.counts_by_usage()
    totals = {u: int(sum(c.values())) for u, c in by_usage.items()}
    out = {
        "path": str(path),
        "format": data.meta.get("format", "fer2013"),
        "n": len(data),
        "classes": list(data.classes),
        "usages": totals,
        "counts": by_usage,
        "class_totals": data.class_counts(),
    }
    if "fer2013" in data.meta:
        out["fer2013"] = data.meta["fer2013"]
    if "dropped" in data.meta:
        out["protocol"] = data.meta.get("protocol")
        out["dropped"] = data.meta["dropped"]
    if "skipped" in data.meta:
        out["n_skipped"] = len(data.meta["skipped"])
        out["skipped"] = [{"path": p, "problem": q} for p, q in data.meta["skipped"]]
    if "layout" in data.meta:
        out["layout"] = data.meta["layout"]
    return out


def _load(path: Path, fer2013: Optional[Path], classes: Optional[str], no_cache: bool):
    from .formats import load_dataset

    return load_dataset(path, fer2013=fer2013, classes=classes, use_cache=not no_cache)


_FER2013_OPT = typer.Option(
    None, "--fer2013", help="FER2013 CSV that holds the images of a FER+ file (default: beside it)."
)
_CLASSES_OPT = typer.Option(
    None, "--classes", help="Class set: 'ferplus' (8) or 'fer2013' (7) for FER+; for folders/manifests too."
)


def info(
    path: Path = typer.Argument(..., help="fer2013.csv(.gz), fer2013new.csv, an image folder or a manifest CSV."),
    json_out: Optional[Path] = typer.Option(None, "--json", parser=file_arg, help="Also write the counts to this JSON file."),
    fer2013: Optional[Path] = _FER2013_OPT,
    classes: Optional[str] = _CLASSES_OPT,
    no_cache: bool = typer.Option(False, "--no-cache", help="Parse the CSV again, ignoring the cache."),
):
    """Print counts per usage and class (and what was skipped or dropped)."""
    from rich.console import Console

    from ..jsonio import write_json
    from ..paths import check_output_file

    if json_out is not None:
        check_output_file(json_out, "--json", [path])  # before the data set is parsed
    data = _load(path, fer2013, classes, no_cache)
    d = info_dict(data, path)
    console = Console()
    console.print(f"{path}  ({d['format']}, {d['n']:,} faces)", soft_wrap=True, markup=False, highlight=False)
    console.print(_counts_table(d))
    if "dropped" in d:
        parts = ", ".join(f"{k} {v:,}" for k, v in d["dropped"].items())
        console.print(f"FER+ {d['protocol']} protocol; rows dropped: {parts}", highlight=False, soft_wrap=True)
    if d.get("n_skipped"):
        from .folders import skipped_summary

        console.print(f"[yellow]{d['n_skipped']} item(s) skipped:[/]")
        for line in skipped_summary(data):
            console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    if json_out is not None:
        write_json(json_out, d)
        console.print(f"wrote {json_out}", highlight=False, markup=False, soft_wrap=True)


def _counts_table(d: dict):
    """Faces per class (rows) and usage (columns) of an :func:`info_dict`, with totals."""
    from rich.table import Table

    usages = list(d["counts"])
    table = Table()
    table.add_column("class")
    for u in usages:
        table.add_column(u, justify="right")
    table.add_column("total", justify="right", style="bold")
    for c in d["classes"]:
        table.add_row(c, *[f"{d['counts'][u][c]:,}" for u in usages], f"{d['class_totals'][c]:,}")
    table.add_row("total", *[f"{d['usages'][u]:,}" for u in usages], f"{d['n']:,}", style="bold")
    return table


def pack(
    src: Path = typer.Argument(..., help="FER2013 CSV (.csv / .csv.gz) or an existing pack."),
    out: Path = typer.Argument(..., help="The pack to write: NAME.npz.xz (compact) or NAME.npz (raw, fastest)."),
    usage: Optional[str] = typer.Option(None, "--usage", help="Comma-separated usages to keep, e.g. Training,PublicTest (default: all)."),
    preset: int = typer.Option(6, "--preset", min=0, max=9, help="xz compression preset for .npz.xz."),
):
    """Write FER2013 as a compact pack (uint8 arrays, xz) that every data option reads like the CSV:
    for carrying the data to another machine, e.g. a GPU box with an upload limit."""
    from rich.console import Console

    from ..paths import check_output_file
    from .fer2013 import load_fer2013, save_pack

    usages = [u.strip() for u in usage.split(",") if u.strip()] if usage else None
    check_output_file(out, "pack", [src])  # a device, FIFO or the source itself is never replaced
    data = load_fer2013(src, usages)
    save_pack(data, out, preset=preset)
    counts = ", ".join(f"{u} {n:,}" for u, n in data.usage_counts().items())
    Console().print(f"wrote {out}: {len(data):,} faces ({counts}), {out.stat().st_size / 1e6:.1f} MB "
                    f"(source {src.stat().st_size / 1e6:.1f} MB)", highlight=False, markup=False, soft_wrap=True)


def show(
    path: Path = typer.Argument(..., help="fer2013.csv(.gz), fer2013new.csv, an image folder or a manifest CSV."),
    out: Path = typer.Option(Path("grid.png"), "--out", "-o", help="Image file to write (png, jpg, pdf, svg)."),
    per_class: int = typer.Option(8, "--per-class", "-n", min=1, max=64, help="Samples per class."),
    split: Optional[str] = typer.Option(None, "--split", help="Only this split (train, val, private; or a usage: Training ...)."),
    seed: int = typer.Option(0, "--seed", help="Which random samples to draw."),
    fer2013: Optional[Path] = _FER2013_OPT,
    classes: Optional[str] = _CLASSES_OPT,
):
    """Draw a grid of sample faces, one row per class."""
    from rich.console import Console

    from ..paths import check_output_file
    from .formats import select_split

    check_output_file(out, "--out", [path])
    data = select_split(_load(path, fer2013, classes, False), split)
    save_grid(data, out, per_class=per_class, seed=seed, title=f"{path.name}" + (f" ({split})" if split else ""))
    Console().print(
        f"wrote {out} ({len(data.classes)} classes x {per_class})", highlight=False, markup=False, soft_wrap=True
    )


def save_grid(data, out: Path, per_class: int = 8, seed: int = 0, title: str = "") -> Path:
    """A ``classes x per_class`` grid of random samples (class names as row labels)."""
    import numpy as np

    from ..errors import WildferError

    from ..figures import pyplot, save_figure

    plt = pyplot()
    rng = np.random.default_rng(seed)
    n_rows = len(data.classes)
    fig, axes = plt.subplots(
        n_rows, per_class, figsize=(per_class * 0.9 + 1.2, n_rows * 0.95 + 0.5), squeeze=False
    )
    for r, name in enumerate(data.classes):
        idx = np.flatnonzero(data.labels == r)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else []
        for c in range(per_class):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(pick):
                ax.imshow(data.images[pick[c]], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        axes[r, 0].set_ylabel(f"{name}\n({len(idx):,})", rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    try:
        return save_figure(fig, out, dpi=100)
    except ValueError as e:
        raise WildferError(f"{out}: cannot write the grid ({e})") from None


def register(app: typer.Typer, panel: str) -> None:
    sub = typer.Typer(
        help="Inspect data sets: FER2013 / FER+ CSVs, image folders (root/<class>/, root/train/<class>/), manifests.",
        no_args_is_help=True,
    )
    app.add_typer(sub, name="data", rich_help_panel=panel)
    sub.command("info")(info)
    sub.command("pack")(pack)
    sub.command("show")(show)
