"""The import graph of src/vaelab: no cycles, and no module imports the package root.

Every ``import`` and ``from ... import`` statement counts, wherever it is: at module level,
inside functions and methods (lazy imports), inside ``try``/``if`` blocks. The one exception
is the body of ``if TYPE_CHECKING:`` (or ``if typing.TYPE_CHECKING:``), which never runs and
so cannot close a cycle at import time; its ``else:`` branch does run and counts.

``from a.b import c`` is an edge to module ``a.b.c`` when that is a module or package of
vaelab, else to ``a.b``; ``import a.b.c`` is an edge to ``a.b.c``; relative imports are
resolved against the importing module's package. Importing ``a.b.c`` also runs the
``__init__`` of ``a`` and ``a.b``, but those implicit edges are not added: they would make
every package ``__init__`` that imports one of its own submodules look like a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "vaelab"


def _modules(src: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of ``package`` under ``src``."""
    found = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """All import statements under ``node``, skipping ``if TYPE_CHECKING:`` bodies."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        children: list[ast.AST] = list(node.orelse)
    else:
        children = list(ast.iter_child_nodes(node))
    for child in children:
        yield from _import_nodes(child)


def _targets(node: ast.Import | ast.ImportFrom, name: str, is_package: bool,
             modules: dict[str, Path]) -> Iterator[str]:
    """The vaelab modules that import statement ``node`` in module ``name`` refers to."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            parts = alias.name.split(".")
            while parts and ".".join(parts) not in modules:  # longest prefix that exists
                parts.pop()
            if parts:
                yield ".".join(parts)
        return
    if node.level:
        package = name.split(".") if is_package else name.split(".")[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module
                                                                    else []))
    else:
        base = node.module or ""
    for alias in node.names:
        if f"{base}.{alias.name}" in modules:
            yield f"{base}.{alias.name}"
        elif base in modules:
            yield base


def import_graph(src: Path, package: str = ROOT) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (self-imports dropped)."""
    modules = _modules(src, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[name] = {t for node in _import_nodes(tree)
                       for t in _targets(node, name, is_package, modules) if t != name}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def _describe(graph: dict[str, set[str]], cycles: list[list[str]]) -> str:
    lines = []
    for component in cycles:
        members = set(component)
        edges = [f"    {a} -> {b}" for a in component for b in sorted(graph[a] & members)]
        lines.append(f"  cycle among {', '.join(component)}:\n" + "\n".join(edges))
    return "\n".join(lines)


def test_no_import_cycles():
    graph = import_graph(SRC)
    assert len(graph) > 10  # the checker really did read the package
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in src/vaelab:\n" + _describe(graph, cycles)


def test_checker_finds_a_cycle(tmp_path):
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from toy.a import f\n")
    (pkg / "a.py").write_text("def f():\n    from toy.sub import b\n")  # lazy import counts
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from .. import c\n")  # relative, to module toy.c
    (pkg / "c.py").write_text("import toy.a\n"
                              "from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from toy import d\n")
    (pkg / "d.py").write_text("from toy.c import x\n")  # d -> c, but c -> d is type-only
    graph = import_graph(tmp_path, "toy")
    assert graph["toy"] == {"toy.a"}  # no implicit edge to a parent's __init__
    assert graph["toy.c"] == {"toy.a"}
    assert find_cycles(graph) == [["toy.a", "toy.c", "toy.sub.b"]]
    assert "toy.a -> toy.sub.b" in _describe(graph, find_cycles(graph))


def test_no_module_imports_the_package_root():
    """``import vaelab`` / ``from vaelab import X`` runs the whole public API (runs, training,
    plots); inside the package, the cli included, only submodules may be imported."""
    graph = import_graph(SRC)
    offenders = sorted(name for name, targets in graph.items() if ROOT in targets)
    assert not offenders, f"modules importing the package root {ROOT}: {offenders}"
