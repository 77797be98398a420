"""The ``wildfer`` command line. Each stage registers its commands from its own package
(``wildfer/<stage>/commands.py``); this file only assembles them under help panels.

User mistakes (:class:`wildfer.errors.WildferError`) print one red line and exit with 2; a
write that fails (a full disk, a name too long: :class:`wildfer.errors.OutputError` or any
``OSError``) prints one line naming the path and exits with 1. An error line is cut to :data:`MAX_ERROR_CHARS` characters.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.text import Text

from . import __version__
from .errors import EXTRAS, OutputError, WildferError, missing_module, one_line

console = Console(stderr=True)

#: The longest error line printed: an echoed value (a huge config entry, a binary field) is cut.
MAX_ERROR_CHARS = 500
app = typer.Typer(
    name="wildfer",
    help="Facial expression recognition on wild photos: data, models, training, evaluation, "
    "saliency maps, detect-align-classify, and an HTTP service.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)

#: (module, help panel) for every stage; each module has ``register(app, panel)`` (and takes
#: what :data:`LENT` gives it).
STAGES = [
    ("wildfer.data.commands", "Data"),
    ("wildfer.models.commands", "Models"),
    ("wildfer.train.commands", "Train"),
    ("wildfer.evaluate.commands", "Evaluate"),
    ("wildfer.explain.commands", "Explain"),
    ("wildfer.batch.commands", "Predict"),
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


def _whole_photo_maps(*args, **kwargs):
    """``wildfer explain maps --detect``: :func:`wildfer.photo_maps.maps_on_photos`, imported when used."""
    from .photo_maps import maps_on_photos

    return maps_on_photos(*args, **kwargs)


#: What the command line lends a stage's ``register`` (keyword arguments by module): work that
#: composes stages which do not import each other (explain's ``maps --detect`` finds faces with
#: the wild pipeline).
LENT = {"wildfer.explain.commands": {"whole_photos": _whole_photo_maps}}

for _mod, _panel in STAGES:
    importlib.import_module(_mod).register(app, _panel, **LENT.get(_mod, {}))


def _error(message: str) -> None:
    """Print one error line, cut to :data:`MAX_ERROR_CHARS` (the message is literal text: a
    path such as ``a[/]b.csv`` or a class ``[happy]`` is no markup)."""
    line = one_line(message)
    if len(line) > MAX_ERROR_CHARS:
        line = line[:MAX_ERROR_CHARS - 20] + f" ... ({len(line):,} characters)"
    console.print(Text.assemble(("error:", "bold red"), " ", line), highlight=False, soft_wrap=True)


def _empty_argument(args: list[str]) -> int | None:
    """The position of an empty argument (an unset shell variable: ``wildfer predict ""``
    would otherwise read the current folder), or None."""
    return next((i for i, a in enumerate(args) if a == ""), None)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    i = _empty_argument(args)
    if i is not None:
        after = f" (after {args[i - 1][:40]})" if i else ""
        _error(f"argument {i + 1} is empty{after}: an unset shell variable? Give a path or value")
        return 2
    try:
        rv = app(args=args, standalone_mode=False)  # a command's typer.Exit(code) comes back as rv
    except OutputError as e:  # a write that failed: the environment, not the user's input
        _error(str(e))
        return 1
    except WildferError as e:
        _error(str(e))
        return 2
    except ImportError as e:  # a module of an extra the light install leaves out
        module = (e.name or "").partition(".")[0]
        if module not in EXTRAS:
            raise
        _error(missing_module(f"wildfer {args[0]}" if args else "this command", module))
        return 2
    except RecursionError:
        _error("an input is nested too deeply to read (a config or JSON file thousands of levels deep?)")
        return 2
    except OSError as e:
        # a file system failure outside the checked writers: one line naming the path
        where = e.filename if e.filename is not None else "a file"
        _error(f"{where}: {e.strerror or e}")
        return 1
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
