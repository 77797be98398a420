"""``wildfer explain``: saliency pictures, saliency over epochs, model comparison, the trust
audit and the face-region table.

``wildfer explain INPUT ...`` is short for ``wildfer explain maps INPUT ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional

import typer

from ..paths import check_output_dir, file_arg, write_text_whole
from . import SALIENCY_METHODS
from typer.core import TyperGroup


class _DefaultToMaps(TyperGroup):
    """A group whose first argument, when it is not a sub-command, goes to ``maps``."""

    default_command = "maps"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _load(spec: str):
    from ..models.loader import load_model

    return load_model(spec)


def _write_markdown(path: Path, text: str, console) -> None:
    """Write a ``--md`` report (making its folder) and say where."""
    write_text_whole(path, text)
    console.print(f"wrote {path}", highlight=False)


_MODEL_OPT = typer.Option("default", "--model", "-m", help="Built-in model name, checkpoint (.pt), weights "
                          "(.safetensors) or run folder.")
_SPLIT_OPT = typer.Option("PublicTest", "--split", help="Rows of a data set to use (FER2013 usage).")


def _say(console):
    """A ``progress`` callback printing dim lines on ``console``."""
    return lambda s: console.print(f"[dim]{s}[/]", highlight=False)


def usable_methods(methods: list[str], why: Callable[[str], str | None], model: str, console) -> list[str]:
    """``methods`` less those ``why(method)`` gives a reason against (Grad-CAM for an ensemble),
    each dropped with a note naming the reason; when none is left, the first one's reason as a
    one-line error, before any map is made."""
    from .methods import MethodError

    reasons = {m: why(m) for m in methods}
    kept = [m for m in methods if not reasons[m]]
    if not kept:
        raise MethodError(f"saliency method {methods[0]!r}: {reasons[methods[0]]}")
    for m in methods:
        if reasons[m]:
            console.print(f"[yellow]note[/] {m} cannot explain {model}: {reasons[m]}; the maps use {', '.join(kept)}",
                          highlight=False)
    return kept


def maps_command(whole_photos: Callable | None = None):
    """The ``maps`` command. ``--detect`` runs ``whole_photos(input, model, methods, out,
    console)``: finding faces in whole photos is the wild stage's, which explain does not
    import, so the command line lends it (:func:`wildfer.photo_maps.maps_on_photos`); without
    it ``--detect`` is refused."""

    def maps(
        input: Path = typer.Argument(..., help="A face image, a folder of face images, or a data set "  # noqa: A002
                                     "(fer2013.csv[.gz], FER+ CSV, manifest)."),
        model: str = _MODEL_OPT,
        method: str = typer.Option("vanilla,smoothgrad,gradcam", "--method", help="Comma-separated: vanilla, "
                                   "smoothgrad, ig, gradcam, gradcam++, occlusion."),
        out: Path = typer.Option(Path("explain_out"), "--out", "-o", help="Output folder."),
        per_class: int = typer.Option(2, "--per-class", min=1, help="For a data set: typical faces per class."),
        split: str = _SPLIT_OPT,
        target: str = typer.Option("pred", "--target", help="Class to explain: pred (predicted), true "
                                   "(data set label) or a class name."),
        detect: bool = typer.Option(False, "--detect", help="Whole photos: detect and align faces first "
                                    "(wildfer.wild.Recognizer) and paint the maps back on the photo."),
        no_overlays: bool = typer.Option(False, "--no-overlays", help="Only the grid, maps.npz and index.json."),
    ):
        """Saliency maps for an image, a folder or N faces per class of a data set: a grid (rows = faces, columns = methods), one overlay per face and method, maps.npz, index.json."""
        from .studies import explain_images, faces_from_input, parse_methods

        check_output_dir(out, "--out")
        console = _console()
        methods = parse_methods(method)
        if detect:
            if whole_photos is None:
                from ..errors import WildferError

                raise WildferError("--detect: this command line has no face detector to lend explain")
            whole_photos(input, model, methods, out, console)
            return
        from .methods import as_module

        clf = _load(model)
        cam_unsupported = getattr(as_module(clf), "cam_unsupported", None)
        methods = usable_methods(methods, lambda m: cam_unsupported if m.startswith("gradcam") else None, model,
                                 console)
        faces = faces_from_input(input, size=clf.size, split=split, per_class=per_class)
        for p, problem in faces.skipped:
            console.print(f"[yellow]skipped[/] {p}: {problem}", highlight=False)
        idx = explain_images(clf, faces, methods, out, target=target, overlays=not no_overlays)
        console.print(f"{idx['n']} faces x {len(methods)} methods -> {out}/{idx['grids'][0]}"
                      + (f" (+{len(idx['grids']) - 1} pages)" if len(idx["grids"]) > 1 else ""), highlight=False)

    return maps


def epochs(
    run_dir: Path = typer.Argument(..., help="A training run folder with epoch_NNN.pt checkpoints."),
    data: Path = typer.Option(..., "--data", help="fer2013.csv[.gz] (or another data set) for the faces."),
    out: Path = typer.Option(Path("explain_epochs"), "--out", "-o", help="Output folder."),
    method: str = typer.Option("vanilla", "--method", help="Saliency method (the study used vanilla)."),
    split: str = _SPLIT_OPT,
    n_regions: int = typer.Option(50, "--n-regions", min=1, help="Faces per class for the region shares."),
    every: int = typer.Option(1, "--every", min=1, help="Use every k-th epoch checkpoint."),
):
    """Saliency over training (the study's Fig. 5): rows = epochs, columns = one typical face per class; per epoch the share of saliency in each face region (JSON + line plot)."""
    from .studies import epochs_study

    check_output_dir(out, "--out")
    console = _console()
    rep = epochs_study(run_dir, data, out, method=method, split=split, n_regions=n_regions, every=every,
                       progress=_say(console))
    last = rep["epochs"][-1]
    console.print(f"{len(rep['epochs'])} epochs -> {out}/{rep['grid']}, {out}/{rep['plot']}; last epoch key-region "
                  f"share {last['key_share']:.3f} (area {rep['key_area_share']:.3f})", highlight=False)


def compare(
    model: List[str] = typer.Option(..., "--model", "-m", help="A model; repeat for each model to compare."),
    data: Path = typer.Option(..., "--data", help="fer2013.csv[.gz] (or another data set) for the faces."),
    out: Path = typer.Option(Path("explain_compare"), "--out", "-o", help="Output folder."),
    method: str = typer.Option("vanilla", "--method", help="Comma-separated saliency methods."),
    per_class: int = typer.Option(1, "--per-class", min=1, help="Typical faces per class."),
    split: str = _SPLIT_OPT,
    target: str = typer.Option("true", "--target", help="true, pred or a class name."),
):
    """The same faces through several models, side by side (the study's Fig. 6; rows = models)."""
    from .studies import compare_models, model_label, parse_methods

    check_output_dir(out, "--out")
    console = _console()
    methods = parse_methods(method)
    models = [(model_label(None, m), _load(m)) for m in model]
    rep = compare_models(models, data, out, methods=methods, split=split, per_class=per_class, target=target)
    for name, r in rep["models"].items():
        console.print(f"{name}: {r['correct']}/{len(rep['faces'])} faces right", highlight=False)
    console.print(f"-> {out}/{rep['grid']}", highlight=False)


def audit(
    model: str = _MODEL_OPT,
    data: Path = typer.Option(..., "--data", help="fer2013.csv[.gz] (or another data set) for the faces."),
    split: str = _SPLIT_OPT,
    n: int = typer.Option(64, "--n", min=1, help="Faces (balanced over classes, fixed seed)."),
    methods: str = typer.Option(",".join(SALIENCY_METHODS), "--methods", help="Comma-separated."),
    threshold: float = typer.Option(0.5, "--threshold", help="Flag a method whose Spearman stays above this "
                                    "with every layer randomized."),
    steps: int = typer.Option(24, "--steps", min=1, help="Deletion / insertion steps."),
    random_seeds: int = typer.Option(3, "--random-seeds", min=1, help="Random-map baselines to average."),
    seed: int = typer.Option(0, "--seed"),
    no_randomization: bool = typer.Option(False, "--no-randomization", help="Only the faithfulness test."),
    json_out: Optional[Path] = typer.Option(None, "--json", parser=file_arg, help="Write the full report (curves too) here."),
    md_out: Optional[Path] = typer.Option(None, "--md", parser=file_arg, help="Write markdown tables here."),
):
    """Can the maps be trusted? Cascading parameter randomization (Adebayo et al. 2018) and deletion / insertion faithfulness against random maps."""
    from .audit import audit_markdown, run_audit
    from .reports import balanced_indices, write_audit_json
    from .studies import load_data, parse_methods

    console = _console()
    names = parse_methods(methods)
    clf = _load(model)
    ds = load_data(data, split)
    idx = balanced_indices(ds.labels, n, seed)
    rep = run_audit(clf, ds.images[idx], names, threshold=threshold, steps=steps, n_random=random_seeds, seed=seed,
                    randomization=not no_randomization, progress=_say(console))
    rep["model"] = model
    rep["data"] = {"path": str(data), "split": split, "n": int(len(idx)), "seed": seed}
    _print_audit(rep, console)
    if json_out:
        write_audit_json(json_out, rep)
        console.print(f"wrote {json_out}", highlight=False)
    if md_out:
        _write_markdown(md_out, audit_markdown(rep), console)


def _print_audit(rep: dict, console) -> None:
    """The audit's tables on stdout, and on ``console`` which methods failed a test."""
    from rich.console import Console

    from .audit import audit_tables

    out_console = Console()
    for tb in audit_tables(rep):
        out_console.print(tb)
    ra = rep.get("randomization")
    if ra:
        flagged = [m for m, r in ra["methods"].items() if r["flagged"]]
        console.print("randomization: " + ("every method's maps change" if not flagged else
                      f"[red]flagged[/] {', '.join(flagged)} (maps barely change when the model is destroyed)"))
    fa = rep["faithfulness"]
    worse = [m for m, r in fa["methods"].items() if not r["beats_random_deletion"]]
    console.print("deletion: " + ("every method beats random maps" if not worse else
                  f"[red]not better than random[/]: {', '.join(worse)}"))


def regions(
    model: List[str] = typer.Option(["default"], "--model", "-m", help="A model; repeat for several."),
    data: Path = typer.Option(..., "--data", help="fer2013.csv[.gz] (or another data set)."),
    split: str = _SPLIT_OPT,
    per_class: int = typer.Option(100, "--per-class", min=1, help="Faces per class (fixed seed)."),
    method: str = typer.Option("vanilla", "--method", help="Comma-separated saliency methods."),
    target: str = typer.Option("true", "--target", help="true (label) or pred (prediction)."),
    json_out: Optional[Path] = typer.Option(None, "--json", parser=file_arg, help="Write the table as JSON here."),
    md_out: Optional[Path] = typer.Option(None, "--md", parser=file_arg, help="Write the table as markdown here."),
):
    """Share of saliency on brows, eyes, nose, mouth, the rest of the face and outside it, per class and per model, against each region's share of the area."""
    from rich.console import Console

    from .reports import region_tables, write_report_json
    from .studies import model_label, parse_methods, region_markdown, region_table

    console = _console()
    if target not in ("true", "pred"):
        from .methods import MethodError

        raise MethodError(f"--target must be true or pred, not {target!r}")
    methods = parse_methods(method)
    models = [(model_label(None, m), _load(m)) for m in model]
    rep = region_table(models, data, methods=methods, split=split, per_class=per_class, target=target,
                       progress=_say(console))
    out_console = Console()
    for tb in region_tables(rep):
        out_console.print(tb)
    if json_out:
        write_report_json(json_out, rep)
        console.print(f"wrote {json_out}", highlight=False)
    if md_out:
        _write_markdown(md_out, region_markdown(rep), console)


def report(
    runs: List[Path] = typer.Argument(..., help="Training run folders (best.pt; epoch_NNN.pt for the epochs figure)."),
    data: Path = typer.Option(..., "--data", help="fer2013.csv[.gz] (or another data set)."),
    out: Path = typer.Option(Path("runs/explain"), "--out", "-o", help="Output folder."),
    split: str = _SPLIT_OPT,
    method: str = typer.Option("vanilla,smoothgrad,gradcam", "--method", help="Methods for the region table."),
    epochs_method: str = typer.Option("vanilla", "--epochs-method", help="Method for the epochs figure."),
    per_class: int = typer.Option(100, "--per-class", min=1, help="Faces per class for the region table."),
    n_regions: int = typer.Option(50, "--n-regions", min=1, help="Faces per class for region shares over epochs."),
    audit_n: int = typer.Option(0, "--audit", min=0, help="Also audit each run's best.pt on this many faces (0: no)."),
):
    """Everything for the README in one command: per run the saliency-over-epochs figure, then the region table and the side-by-side figure of all runs (and the audit with --audit N); report.md gathers the tables."""
    from .reports import saliency_report
    from .studies import parse_methods

    check_output_dir(out, "--out")
    console = _console()
    methods = parse_methods(method)
    models = [(r.name, _load(str(r))) for r in runs]
    path = saliency_report(runs, models, data, out, split=split, methods=methods, epochs_method=epochs_method,
                           per_class=per_class, n_regions=n_regions, audit_n=audit_n, progress=_say(console),
                           warn=lambda s: console.print(s, highlight=False))
    console.print(f"wrote {path}", highlight=False)


def register(app: typer.Typer, panel: str, *, whole_photos: Callable | None = None) -> None:
    """``wildfer explain`` and its sub-commands; ``whole_photos`` does ``maps --detect``
    (:func:`maps_command`)."""
    sub = typer.Typer(
        cls=_DefaultToMaps,
        help="Saliency maps (vanilla gradient, SmoothGrad, Integrated Gradients, Grad-CAM, occlusion) and tests "
        "of whether to trust them. 'wildfer explain INPUT' = 'wildfer explain maps INPUT'.",
        no_args_is_help=True,
    )
    app.add_typer(sub, name="explain", rich_help_panel=panel)
    for name, command in (("maps", maps_command(whole_photos)), ("epochs", epochs), ("compare", compare), ("audit", audit),
                          ("regions", regions), ("report", report)):
        sub.command(name)(command)
