"""``wildfer models list``, ``wildfer models info NAME`` and ``wildfer models convert`` (kept apart
from wildfer.models.onnx so the CLI starts without importing torch). ``wildfer export``, which
reads a data set for ``--int8``, is :mod:`wildfer.train.commands`'s."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..paths import file_arg


def models_list(
    pattern: Optional[str] = typer.Argument(None, help="Only names matching this pattern, e.g. 'vgg*'."),
    json_out: Optional[Path] = typer.Option(None, "--json", parser=file_arg, help="Also write the architectures table as JSON to this file."),
    num_classes: int = typer.Option(7, "--num-classes", min=1, help="Classes of the head (7 FER2013, 8 FER+)."),
):
    """Every registered architecture with its input size, parameters and multiply-adds, then
    the built-in trained models (weights inside the package)."""
    import fnmatch

    from rich.console import Console

    from ..errors import MissingTorch, ModelError, import_torch
    from ..jsonio import write_json
    from .loader import BUILTIN, builtin_info

    try:  # the architectures are torch modules; the built-ins need no torch
        import_torch("the architectures table")
        from .complexity import complexity_table

        rows, missing = complexity_table(pattern, num_classes=num_classes), None
    except MissingTorch as e:
        rows, missing = [], e
    builtins = [builtin_info(n) for n in BUILTIN if not pattern or fnmatch.fnmatch(n, pattern)]
    builtins = [b for b in builtins if b["available"]]
    if not rows and not builtins:
        raise ModelError(f"no model matches {pattern!r}")
    con = Console(width=max(160, Console().width))
    if rows:
        con.print(_architectures_table(rows))
    if builtins:
        con.print(_builtins_table(builtins))
    if missing is not None:
        Console(stderr=True, soft_wrap=True).print(str(missing), style="dim", markup=False, highlight=False)
    if json_out is not None:
        write_json(json_out, [r.to_dict() for r in rows])


def _architectures_table(rows):
    """The registered architectures: input, parameters, multiply-adds, description."""
    from rich.table import Table

    from .complexity import human

    table = Table(title=f"wildfer models ({len(rows)})", show_lines=False)
    for col, just in (("name", "left"), ("family", "left"), ("input", "right"), ("params", "right"),
                      ("MACs", "right"), ("description", "left")):
        table.add_column(col, justify=just, no_wrap=col != "description")
    for r in rows:
        table.add_row(r.name, r.family, f"{r.input_size}x{r.input_size}x{r.in_chans}", human(r.params),
                      human(r.macs), r.description)
    return table


def _builtins_table(builtins: list[dict]):
    """The built-in trained models: architecture, classes, selection accuracy, weights size."""
    from rich.table import Table

    from .classifier import backend_label

    table = Table(title=f"built-in trained models ({len(builtins)}): load_model(NAME), --model NAME; "
                        "'wildfer models info NAME' shows the model card")
    for col, just in (("name", "left"), ("architecture", "left"), ("classes", "right"),
                      ("selection acc. (PublicTest unless noted)", "right"), ("weights", "right"),
                      ("backend", "left")):
        table.add_column(col, justify=just)
    for b in builtins:
        arch = b["arch"] + (" of " + " + ".join(b["members"]) if b["members"] else "")
        acc = f"{100 * b['val_acc']:.1f}%" if b["val_acc"] else "-"
        if b["classes"] == 8 and b["val_acc"]:
            acc += " (FER+)"
        elif b["val_set"] != "PublicTest" and b["val_acc"]:
            acc += f" ({b['val_set']})"
        table.add_row(b["name"], arch, str(b["classes"]), acc,
                      f"{b['weights_mb']:.1f} MB" if b["weights_mb"] else "(members')",
                      backend_label(b["backend"], b["member_backends"]))
    return table


def models_info(
    name: str = typer.Argument(..., help="A registered architecture or a built-in model (see 'wildfer models list')."),
    num_classes: int = typer.Option(7, "--num-classes", min=1, help="Classes of the head."),
    pretrained: Optional[Path] = typer.Option(
        None, "--pretrained", help="Check that this torchvision-format ImageNet weights file loads into NAME."),
):
    """One architecture (family, input, parameters, multiply-adds, how it is built), or a
    built-in model's card."""
    from rich.console import Console

    from .loader import BUILTIN

    if name in BUILTIN:
        _print_card(name)
        return
    con = Console()
    _print_architecture(con, name, num_classes)
    if pretrained is not None:
        _print_pretrained_check(con, name, num_classes, pretrained)


def _print_card(name: str) -> None:
    """A built-in model's card."""
    from rich.console import Console
    from rich.markdown import Markdown

    from ..errors import ModelError
    from .loader import builtin_info

    b = builtin_info(name)
    if not b["available"]:
        raise ModelError(f"built-in model {name!r} is not in this installation (weights missing)")
    con = Console()
    con.print(Markdown(b["card_text"]) if b["card_text"] else f"{name}: no model card")
    if b["card"]:
        con.print(f"\n(card: {b['card']})", highlight=False, soft_wrap=True)


def _print_architecture(con, name: str, num_classes: int) -> None:
    """An architecture's family, input, size and cost, and its module's docstring."""
    import sys

    from .complexity import human, model_complexity
    from .registry import model_info

    info = model_info(name)
    c = model_complexity(name, num_classes=num_classes)
    doc = (sys.modules[info.factory.__module__].__doc__ or "").strip()
    con.print(f"[bold]{name}[/]  ({info.family})  {info.description}", soft_wrap=True)
    con.print(f"input {c.input_size}x{c.input_size}x{c.in_chans}, {human(c.params)} parameters "
              f"({c.params:,}), {human(c.macs)} multiply-adds ({c.macs:,}) per face", soft_wrap=True)
    if doc:
        con.print()
        con.print(doc, highlight=False, markup=False, soft_wrap=True)


def _print_pretrained_check(con, name: str, num_classes: int, pretrained: Path) -> None:
    """Load a torchvision-format weights file into the architecture and say what it held."""
    from .pretrained import load_torchvision_weights, resolve_weights_path
    from .registry import create_model

    path = resolve_weights_path(name, pretrained)
    report = load_torchvision_weights(create_model(name, num_classes=num_classes), path)
    con.print()
    con.print(f"{path}: loaded {len(report['loaded'])} tensors"
              + (f", summed RGB -> gray: {', '.join(report['adapted'])}" if report["adapted"] else "")
              + (f"; new (not in the file or another shape): {', '.join(report['reinitialised'])}"
                 if report["reinitialised"] else "")
              + (f"; unused from the file: {len(report['ignored'])}" if report["ignored"] else ""),
              soft_wrap=True, highlight=False)


def models_convert(
    source: Path = typer.Argument(..., help="The OpenCV model zoo's int8 expression graph "
                                  "(facial_expression_recognition_mobilefacenet_2022july_int8.onnx)."),
    out: Path = typer.Option(..., "--out", help="Where to write the float weights (W.safetensors, with W.json)."),
):
    """Dequantise the zoo's int8 MobileFaceNet into float PyTorch weights that load_model, init=
    (fine-tuning) and every command read."""
    from rich.console import Console

    from ..paths import check_output_file
    from .classifier import Classifier
    from .convert import ZOO_PREPROCESS, mobilefacenet_from_onnx
    from .loader import export_weights

    out = out if out.suffix == ".safetensors" else out.with_name(out.name + ".safetensors")
    check_output_file(out, "--out", [source])
    check_output_file(out.with_suffix(".json"), "--out", [source])
    net, classes = mobilefacenet_from_onnx(source)
    clf = Classifier(net, classes, dict(ZOO_PREPROCESS), name=str(out), arch="mobilefacenet")
    card = {"source": source.name, "converted_from": "int8 ONNX (OpenCV model zoo), dequantised",
            "data": "RAF-DB (non-commercial research use)", "licence": "Apache-2.0 (weights); see the zoo's LICENSE"}
    path = export_weights(clf, out, half=False, card=card)
    Console().print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; mobilefacenet, classes {', '.join(classes)})",
                    soft_wrap=True, highlight=False, markup=False)


def register(app: typer.Typer, panel: str) -> None:
    sub = typer.Typer(help="The model zoo: architectures, their size and cost; the built-in trained models.",
                      no_args_is_help=True)
    sub.command("list")(models_list)
    sub.command("info")(models_info)
    sub.command("convert")(models_convert)
    app.add_typer(sub, name="models", rich_help_panel=panel)
