"""Reports built from the saliency studies: the saliency report of training runs
(:func:`saliency_report`, ``wildfer explain report``: saliency over epochs, the face-region
table, the runs side by side, the audit, gathered in ``report.md``), the region table as
rich tables (:func:`region_tables`), the audit's JSON with its curves plotted
(:func:`write_audit_json`) and faces balanced over classes (:func:`balanced_indices`).

Every JSON report that is a mapping carries the ``machine`` record (:func:`write_report_json`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from ..paths import write_text_whole

#: The face regions of the epochs tables, in column order.
EPOCH_REGIONS = ("eyes", "brows", "nose", "mouth", "face_other", "outside")


def write_report_json(path: Path, obj) -> None:
    """Write a JSON report; a report that is a mapping also gets the ``machine`` record."""
    from ..jsonio import write_json
    from ..machine import machine

    write_json(path, {**obj, "machine": machine()} if isinstance(obj, dict) else obj)


def balanced_indices(labels, n: int, seed: int):
    """``n`` faces balanced over the classes (fixed seed), sorted."""
    import numpy as np

    from .studies import stratified_subset

    k = max(1, math.ceil(n / max(1, len(np.unique(labels)))))
    idx = stratified_subset(labels, k, seed)
    return np.sort(np.random.default_rng(seed).permutation(idx)[:n])


def write_audit_json(json_out: Path, rep: dict) -> None:
    """The audit report as JSON, with its deletion and insertion curves plotted beside it
    (``NAME_deletion.png``, ``NAME_insertion.png``)."""
    from .plot import plot_curves

    write_report_json(json_out, rep)
    fa = rep["faithfulness"]
    for kind, title in (("deletion", "deletion (lower is better)"), ("insertion", "insertion (higher is better)")):
        curves = {m: r[f"{kind}_curve"] for m, r in fa["methods"].items()}
        curves["random"] = fa["random"][f"{kind}_curve"]
        plot_curves(curves, json_out.with_name(f"{json_out.stem}_{kind}.png"), title=title)


def region_tables(rep: dict) -> list:
    """One rich table per model and method of a region table
    (:func:`~wildfer.explain.studies.region_table`): the share of saliency per region and
    class, overall, and the area."""
    from rich.table import Table

    from .regions import REGIONS

    tables = []
    for name, entry in rep["models"].items():
        for m, e in entry["methods"].items():
            tb = Table(title=f"{name} - {m}: share of saliency per region", title_justify="left")
            tb.add_column("class")
            for r in REGIONS:
                tb.add_column(r, justify="right")
            for cls, sh in e["per_class"].items():
                tb.add_row(cls, *[f"{sh[r]:.3f}" for r in REGIONS])
            tb.add_row("[bold]all[/]", *[f"[bold]{e['all'][r]:.3f}[/]" for r in REGIONS])
            tb.add_row("[dim]area[/]", *[f"[dim]{rep['area'][r]:.3f}[/]" for r in REGIONS])
            tables.append(tb)
    return tables


def saliency_report(runs: list[Path], models: list, data: Path, out: Path, *, split: str, methods: list[str],
                    epochs_method: str, per_class: int, n_regions: int, audit_n: int = 0,
                    progress: Callable[[str], None] | None = None,
                    warn: Callable[[str], None] | None = None) -> Path:
    """Everything for the README under ``out``: per run (``runs``, loaded as ``models``:
    ``[(name, classifier)]``) the saliency-over-epochs figure, then the region table and the
    side-by-side figure of all runs (and each run's audit on ``audit_n`` faces);
    ``report.md`` gathers the tables. ``progress``: dim progress lines; ``warn``: a run
    without epoch checkpoints (rich markup). Returns the path of ``report.md``."""
    from .studies import compare_models, load_data, region_markdown, region_table

    say = progress or (lambda s: None)
    out.mkdir(parents=True, exist_ok=True)
    md = ["# Saliency report", "", f"Data: `{data}` ({split}). Runs: {', '.join(f'`{r}`' for r in runs)}.", ""]
    ds = load_data(data, split)
    md += template_section(ds, out)
    for r in runs:
        md += epochs_section(r, data, out, method=epochs_method, split=split, n_regions=n_regions, progress=say,
                             warn=warn or say)
    reg = region_table(models, data, methods=methods, split=split, per_class=per_class, progress=say)
    write_report_json(out / "regions.json", reg)
    write_text_whole(out / "regions.md", region_markdown(reg))
    md += ["## Face regions", "", region_markdown(reg)]
    cmp_rep = compare_models(models, data, out / "compare", methods=[epochs_method], split=split)
    md += ["## The same faces, side by side", "", f"![compare](compare/{cmp_rep['grid']})", ""]
    if audit_n > 0:
        md += audit_section(models, ds, audit_n, out, say)
    write_text_whole(out / "report.md", "\n".join(md) + "\n")
    return out / "report.md"


def template_section(ds, out: Path) -> list[str]:
    """The region template drawn on the data's mean face (to check it by eye): template.png
    and its report lines."""
    import numpy as np

    from .plot import region_picture, save_grid
    from .regions import template_regions

    mean_face = ds.images.astype(np.float64).mean(0)
    mean_u8 = np.clip((mean_face - mean_face.min()) / max(1e-6, np.ptp(mean_face)) * 255, 0, 255).astype(np.uint8)
    save_grid([[mean_u8, region_picture(mean_u8, template_regions(mean_u8.shape))]], out / "template.png",
              col_labels=[f"mean of {len(ds)} faces", "regions"], cell_inches=2.5)
    return ["Face-region template on the mean face: ![template](template.png)", ""]


def epochs_section(run: Path, data: Path, out: Path, *, method: str, split: str, n_regions: int,
                   progress: Callable[[str], None], warn: Callable[[str], None]) -> list[str]:
    """A run's saliency-over-epochs figure and table; nothing (and a ``warn`` line) for a run
    without epoch checkpoints."""
    from ..errors import ModelError
    from .studies import epoch_checkpoints, epochs_study

    try:
        epoch_checkpoints(run)
    except ModelError as e:  # a run without epoch checkpoints just has no figure
        warn(f"[yellow]no epochs figure for {run}[/]: {e}")
        return []
    rep = epochs_study(run, data, out / f"{run.name}_epochs", method=method, split=split, n_regions=n_regions,
                       progress=progress)
    md = [f"## {run.name}: {method} saliency over training", "",
          f"![epochs]({run.name}_epochs/{rep['grid']}) ![regions]({run.name}_epochs/{rep['plot']})", "",
          "| epoch | val acc | eyes | brows | nose | mouth | rest of face | outside | key regions |",
          "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for e in rep["epochs"]:
        sh = e["shares"]
        acc = f"{e['val_acc']:.3f}" if e["val_acc"] is not None else "-"
        md.append(f"| {e['epoch']} | {acc} | " + " | ".join(f"{sh[k]:.3f}" for k in EPOCH_REGIONS)
                  + f" | {e['key_share']:.3f} |")
    md += ["| area | | " + " | ".join(f"{rep['area_shares'][k]:.3f}" for k in EPOCH_REGIONS)
           + f" | {rep['key_area_share']:.3f} |", ""]
    return md


def audit_section(models, ds, n: int, out: Path, progress: Callable[[str], None]) -> list[str]:
    """Each model audited on ``n`` balanced faces: NAME_audit.json / .md and the report lines."""
    from .audit import audit_markdown, run_audit

    idx = balanced_indices(ds.labels, n, 0)
    md: list[str] = []
    for name, clf in models:
        rep = run_audit(clf, ds.images[idx], progress=progress)
        rep["model"] = name
        write_report_json(out / f"{name}_audit.json", rep)
        write_text_whole(out / f"{name}_audit.md", audit_markdown(rep))
        md += ["## Audit", "", audit_markdown(rep)]
    return md


__all__ = ["EPOCH_REGIONS", "write_report_json", "balanced_indices", "write_audit_json", "region_tables",
           "saliency_report", "template_section", "epochs_section", "audit_section"]
