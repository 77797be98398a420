"""``wildfer models list`` and ``wildfer models info NAME``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, panel: str) -> None:
    sub = typer.Typer(help="The model zoo: architectures, their size and cost; the built-in trained models.",
                      no_args_is_help=True)

    @sub.command("list")
    def list_cmd(
        pattern: Optional[str] = typer.Argument(None, help="Only names matching this pattern, e.g. 'vgg*'."),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the architectures table as JSON to this file."),
        num_classes: int = typer.Option(7, "--num-classes", help="Classes of the head (7 FER2013, 8 FER+)."),
    ):
        """Every registered architecture with its input size, parameters and multiply-adds, then
        the built-in trained models (weights inside the package)."""
        import fnmatch

        from rich.console import Console
        from rich.table import Table

        from ..errors import ModelError
        from .complexity import complexity_table, human
        from .loader import BUILTIN, builtin_info

        rows = complexity_table(pattern, num_classes=num_classes)
        builtins = [builtin_info(n) for n in BUILTIN if not pattern or fnmatch.fnmatch(n, pattern)]
        builtins = [b for b in builtins if b["available"]]
        if not rows and not builtins:
            raise ModelError(f"no model matches {pattern!r}")
        table = Table(title=f"wildfer models ({len(rows)})", show_lines=False)
        for col, just in (("name", "left"), ("family", "left"), ("input", "right"), ("params", "right"),
                          ("MACs", "right"), ("description", "left")):
            table.add_column(col, justify=just, no_wrap=col != "description")
        for r in rows:
            table.add_row(r.name, r.family, f"{r.input_size}x{r.input_size}x{r.in_chans}", human(r.params),
                          human(r.macs), r.description)
        con = Console(width=max(160, Console().width))
        if rows:
            con.print(table)
        if builtins:
            bt = Table(title=f"built-in trained models ({len(builtins)}): load_model(NAME), --model NAME; "
                             "'wildfer models info NAME' shows the model card")
            for col, just in (("name", "left"), ("architecture", "left"), ("classes", "right"),
                              ("selection acc. (PublicTest unless noted)", "right"), ("weights", "right")):
                bt.add_column(col, justify=just)
            for b in builtins:
                arch = b["arch"] + (" of " + " + ".join(b["members"]) if b["members"] else "")
                acc = f"{100 * b['val_acc']:.1f}%" if b["val_acc"] else "-"
                if b["classes"] == 8 and b["val_acc"]:
                    acc += " (FER+)"
                elif b["val_set"] != "PublicTest" and b["val_acc"]:
                    acc += f" ({b['val_set']})"
                bt.add_row(b["name"], arch, str(b["classes"]), acc,
                           f"{b['weights_mb']:.1f} MB" if b["weights_mb"] else "(members')")
            con.print(bt)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps([r.to_dict() for r in rows], indent=2))

    @sub.command("info")
    def info_cmd(
        name: str = typer.Argument(..., help="A registered architecture or a built-in model (see 'wildfer models list')."),
        num_classes: int = typer.Option(7, "--num-classes", help="Classes of the head."),
        pretrained: Optional[Path] = typer.Option(
            None, "--pretrained", help="Check that this torchvision-format ImageNet weights file loads into NAME."),
    ):
        """One architecture (family, input, parameters, multiply-adds, how it is built), or a
        built-in model's card."""
        from rich.console import Console

        from .complexity import human, model_complexity
        from .loader import BUILTIN, builtin_info
        from .registry import model_info

        if name in BUILTIN:
            from rich.markdown import Markdown

            from ..errors import ModelError

            b = builtin_info(name)
            if not b["available"]:
                raise ModelError(f"built-in model {name!r} is not in this installation (weights missing)")
            con = Console()
            con.print(Markdown(b["card_text"]) if b["card_text"] else f"{name}: no model card")
            if b["card"]:
                con.print(f"\n(card: {b['card']})", highlight=False, soft_wrap=True)
            return

        info = model_info(name)
        c = model_complexity(name, num_classes=num_classes)
        import sys

        doc = (sys.modules[info.factory.__module__].__doc__ or "").strip()
        con = Console()
        con.print(f"[bold]{name}[/]  ({info.family})  {info.description}", soft_wrap=True)
        con.print(f"input {c.input_size}x{c.input_size}x{c.in_chans}, {human(c.params)} parameters "
                  f"({c.params:,}), {human(c.macs)} multiply-adds ({c.macs:,}) per face", soft_wrap=True)
        if doc:
            con.print()
            con.print(doc, highlight=False, markup=False, soft_wrap=True)
        if pretrained is not None:
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

    app.add_typer(sub, name="models", rich_help_panel=panel)
