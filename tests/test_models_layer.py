"""models/ sits below every stage but the leaves: it imports no data set reader, no pipeline,
no training or evaluation. What needs both a model and a data set (``wildfer export --int8``,
calibrated on a data set's faces) lives in a stage above data."""

from __future__ import annotations

from test_import_cycles import SRC, import_graph

ABOVE_MODELS = ("data", "wild", "train", "evaluate", "explain", "batch", "photo_maps", "serve", "cli")


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_models_import_no_stage_above_them():
    graph = import_graph(SRC, "wildfer")
    assert graph.get("wildfer.models.loader")  # the parser sees imports
    wrong = sorted(f"{m} -> {d}" for m, deps in graph.items() if _under(m, "wildfer.models") for d in deps
                   if any(_under(d, f"wildfer.{p}") for p in ABOVE_MODELS))
    assert not wrong, "models/ imports a stage above it: " + ", ".join(wrong)


def test_export_is_registered_by_the_training_stage():
    """``wildfer export`` keeps its place in the help, beside ``wildfer models``."""
    from wildfer.cli import app

    commands = {c.name or c.callback.__name__: c for c in app.registered_commands}
    export = commands["export"]
    assert export.callback.__module__ == "wildfer.train.commands" and export.rich_help_panel == "Models"
