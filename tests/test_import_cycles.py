"""wildfer's modules import each other without cycles.

The graph holds every import a module makes: its top-level statements (also inside ``try`` /
``if`` / class bodies) and the imports inside functions, which are lazy (torch, optional
dependencies, heavy stages) but still tie the two modules into one: a cycle through a lazy
import is a cycle. Only ``if TYPE_CHECKING:`` blocks (annotations) are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` under ``root``."""
    files = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(body: list[ast.stmt]):
    """Every import statement of a module, in function bodies too, but not under
    ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _imports(node.body)
            yield from _imports(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, None) or []:
                    if isinstance(child, ast.match_case):
                        yield from _imports(child.body)
                    elif isinstance(child, ast.stmt) or isinstance(child, ast.excepthandler):
                        yield from _imports([child] if isinstance(child, ast.stmt) else child.body)


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``module`` imports (anywhere but under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in _imports(tree.body):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
            continue
        base = node.module or ""
        if node.level:
            anchor = _package_of(module, path).split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != module}


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    files = module_files(root, package)
    known = set(files)
    return {m: imported_modules(m, p, known) for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None`` when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_wildfer_has_no_import_cycle():
    graph = import_graph(SRC, "wildfer")
    assert graph.get("wildfer.models.loader")  # the parser sees imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_detector_finds_a_cycle_in_a_synthetic_package(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from . import b\n",
        "pkg/b.py": "from .sub.c import thing\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "import pkg.a\nthing = 1\n",
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]


def test_detector_sees_lazy_imports_and_skips_type_checking(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import C\n"
                    "def f():\n    from . import b\n",
        "pkg/b.py": "from . import a\ntry:\n    from .c import x\nexcept ImportError:\n    x = None\n",
        "pkg/c.py": "x = 1\nclass K:\n    def g(self):\n        if True:\n            import pkg.d\n",
        "pkg/d.py": "",
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a", "pkg.c"} and graph["pkg.c"] == {"pkg.d"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_wild_and_explain_do_not_import_each_other_or_the_top_layer():
    """wild imports neither explain nor the top layer (batch, photo_maps, serve); explain does
    not import wild: what composes them (saliency maps on photos, batch prediction) is above both."""
    graph = import_graph(SRC, "wildfer")
    above_wild = ("wildfer.explain", "wildfer.batch", "wildfer.photo_maps", "wildfer.serve", "wildfer.cli")
    wrong = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                   if (_under(m, "wildfer.wild") and any(_under(d, p) for p in above_wild))
                   or (_under(m, "wildfer.explain") and _under(d, "wildfer.wild")))
    assert not wrong, "imports against the layers: " + ", ".join(wrong)
