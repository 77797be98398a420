"""Every name a wildfer package resolves lazily (PEP 562) points at a module that exists and,
for a re-exported name, a module that defines it.

Checked from the source (module specs and top-level assignments), so no heavy library is
imported: a stale entry such as a moved module fails here rather than at a user's first use.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util

import pytest

#: package -> its attribute mapping a public name to the module (relative or absolute) defining it.
EXPORT_MAPS = {
    "wildfer": "_EXPORTS",
    "wildfer.models": "_EXPORTS",
    "wildfer.explain": "_EXPORTS",
    "wildfer.train": "_EXPORTS",
    "wildfer.data": "_LAZY",
    "wildfer.evaluate": "_WHERE",
    "wildfer.serve": "_HOMES",
    "wildfer.batch": "_EXPORTS",
}

#: package -> its attribute listing the submodules reachable as attributes.
SUBMODULE_LISTS = {"wildfer": "SUBPACKAGES", "wildfer.models": "_SUBMODULES"}


def _absolute(package: str, module: str) -> str:
    return module if module.startswith("wildfer") else f"{package}.{module}"


def defined_names(module: str) -> set[str]:
    """The names ``module``'s body binds at its top level (defs, classes, assignments, imports);
    for a package, its ``__all__`` too (whose lazy names its own case checks)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} does not exist"
    if spec.submodule_search_locations:
        return set(importlib.import_module(module).__all__)
    with open(spec.origin, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), filename=spec.origin)
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


@pytest.mark.parametrize("package", sorted(SUBMODULE_LISTS))
def test_lazy_submodules_exist(package):
    names = getattr(importlib.import_module(package), SUBMODULE_LISTS[package])
    missing = [n for n in sorted(names) if importlib.util.find_spec(f"{package}.{n}") is None]
    assert not missing, f"{package} lists submodules that do not exist: {missing}"


@pytest.mark.parametrize("package", sorted(EXPORT_MAPS))
def test_lazy_exports_are_defined(package):
    exports = getattr(importlib.import_module(package), EXPORT_MAPS[package])
    undefined = [f"{name} ({module})" for name, module in sorted(exports.items())
                 if name not in defined_names(_absolute(package, module))]
    assert not undefined, f"{package} re-exports names their modules do not define: {undefined}"


@pytest.mark.parametrize("package", sorted(EXPORT_MAPS))
def test_all_names_resolve_lazily(package):
    mod = importlib.import_module(package)
    lazy = set(getattr(mod, EXPORT_MAPS[package])) | set(getattr(mod, SUBMODULE_LISTS.get(package, ""), ()))
    unknown = [n for n in mod.__all__ if n not in lazy and n not in vars(mod)]
    assert not unknown, f"{package}.__all__ names nothing: {unknown}"
