"""The ``wildfer`` command line. Each stage registers its commands from its own package
(``wildfer/<stage>/commands.py``); this file only assembles them under help panels.

User mistakes (:class:`wildfer.errors.WildferError`) print one red line and exit with 2.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.text import Text

from . import __version__
from .errors import WildferError

console = Console(stderr=True)
app = typer.Typer(
    name="wildfer",
    help="Facial expression recognition on wild photos: data, models, training, evaluation, "
    "saliency maps, detect-align-classify, and an HTTP service.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: (module, help panel) for every stage; each module has ``register(app, panel)``.
STAGES = [
    ("wildfer.data.commands", "Data"),
    ("wildfer.models.commands", "Models"),
    ("wildfer.train.commands", "Train"),
    ("wildfer.evaluate.commands", "Evaluate"),
    ("wildfer.explain.commands", "Explain"),
    ("wildfer.wild.commands", "Predict"),
    ("wildfer.serve.commands", "Serve"),
]


def _version(value: bool):
    if value:
        typer.echo(f"wildfer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    pass


@app.command("info", rich_help_panel="Setup")
def _info(as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")):
    """Versions, the face detector and classifier backends this installation uses, built-in models."""
    from .info import environment
    from .jsonio import dumps

    env = environment()
    if as_json:
        typer.echo(dumps(env, indent=2))
        return
    for key, value in env.items():
        typer.echo(f"{key + ':':<13}{_info_text(value)}")


def _info_text(value) -> str:
    """One value of the ``info`` report as text: mappings as ``key value; ...``, lists joined."""
    if isinstance(value, dict):
        return "; ".join(f"{k} {_info_text(x)}" for k, x in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


for _mod, _panel in STAGES:
    importlib.import_module(_mod).register(app, _panel)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    try:
        rv = app(args=argv, standalone_mode=False)  # a command's typer.Exit(code) comes back as rv
    except WildferError as e:
        # the message is literal text: a path such as ``a[/]b.csv`` or a class ``[happy]`` is no markup
        console.print(Text.assemble(("error:", "bold red"), " ", str(e)), highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        console.print("aborted")
        return 130
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 1
    except Exception as e:  # usage errors (unknown option, missing argument, bad value)
        if isinstance(e, _usage_error_types()):
            e.show()
            return e.exit_code
        raise
    return rv if isinstance(rv, int) else 0


def _usage_error_types() -> tuple[type, ...]:
    """click's ``ClickException`` and, for typer >= 0.2x, which vendors click as
    ``typer._click``, typer's own copy of it: usage errors may come from either."""
    import click

    types: list[type] = [click.exceptions.ClickException]
    try:
        from typer._click.exceptions import ClickException as TyperClickException
    except ImportError:  # a typer that uses click itself
        pass
    else:
        types.append(TyperClickException)
    return tuple(types)


if __name__ == "__main__":
    sys.exit(main())
