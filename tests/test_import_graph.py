"""No import cycles among ie_ray's modules, not even ones held together by imports inside functions.

The graph is read from the source with `ast`, so an import inside a function or a method counts as much as one at
the top of the file: a function-level import only hides a cycle from Python at import time, the two modules still
run each other's code and cannot be understood (or moved) one without the other. What to do on a red test: move
the piece both modules need one floor down, into a module that imports neither.

Imports under `if TYPE_CHECKING:` are not edges: they never run, and they name a type for an annotation, not
code (the `Reading` protocol annotates `from_config(config: SweepConfig)` while the config checks reading names
against the registry; neither executes the other's module).

An edge goes to the module an import names: `from ie_ray.a import b` is an edge to `ie_ray.a.b` when that is a
module, else to `ie_ray.a` (its `__init__.py` for a package); relative imports are resolved the same way. The
parent packages Python also initialises on the way are not edges: a package whose `__init__` re-exports its
submodules would otherwise "cycle" with each of them.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "ie_ray"

#: (importing module, imported module) -> "path:line" of the first import statement making that edge.
Graph = dict[str, dict[str, str]]


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package (`pkg/__init__.py` is `pkg`)."""
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _from_base(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a `from X import ...` reads from, relative forms resolved against `module`."""
    if node.level == 0:
        return node.module or ""
    anchor = module.split(".") if is_package else module.split(".")[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """`name` if it is a module of the package, else its longest prefix that is (None outside the package)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _is_type_checking(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`."""
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node of the tree, at any depth (function bodies included), except the bodies of
    `if TYPE_CHECKING:` blocks (their `else:` branches run, so they are kept)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if _is_type_checking(node):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def import_graph(root: Path, package: str) -> Graph:
    """Every module -> the package modules it imports anywhere in its source (with where)."""
    modules = module_names(root, package)
    graph: Graph = {name: {} for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in sorted(_runtime_nodes(tree), key=lambda n: getattr(n, "lineno", 0)):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _from_base(node, name, path.name == "__init__.py")
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                resolved = _known(target, modules)
                if resolved is not None:
                    graph[name].setdefault(resolved, f"{path.relative_to(root)}:{node.lineno}")
    return graph


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle (a, b, ..., a) per strongly connected component that has one, found with Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
            if len(component) > 1 or v in graph[v]:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_through(graph, component) for component in components]


def _cycle_through(graph: Graph, component: list[str]) -> list[str]:
    """A shortest cycle from the component's first module back to itself, inside the component."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    return paths[v] + [start]
                if w in members and w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {component}")


def describe(graph: Graph, cycle: list[str]) -> str:
    return " -> ".join(cycle) + "\n" + "\n".join(
        f"    {a} imports {b} at {graph[a][b]}" for a, b in zip(cycle, cycle[1:]))


def test_ie_ray_has_no_import_cycles():
    graph = import_graph(REPO, PACKAGE)
    assert len(graph) > 50 and "ie_ray.estimators" in graph and "ie_ray.models" in graph
    cycles = find_cycles(graph)
    assert not cycles, ("import cycles among ie_ray modules (imports inside functions count; move what both "
                        "need into a module that imports neither):\n" +
                        "\n".join(describe(graph, c) for c in cycles))


@pytest.fixture
def toy_package(tmp_path: Path) -> Path:
    """pkg/{__init__, a, b, d, e, f, sub/__init__, sub/c}: a -> b at top level, b -> a inside a function (the
    one cycle), sub.c -> a via a relative import, d -> sub and sub.c in two absolute forms, e -> f for types only
    (no edge) while f -> e in a method."""
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import helper\n",
        "pkg/b.py": "def helper():\n    from pkg import a\n    return a\n",
        "pkg/sub/__init__.py": "from .c import thing\n",
        "pkg/sub/c.py": "from .. import a\nthing = 1\n",
        "pkg/d.py": "import os\nimport pkg.sub.c as c\nfrom pkg.sub import thing\n",
        "pkg/e.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.f import F\n"
                     "else:\n    from pkg import b\n"),
        "pkg/f.py": "class F:\n    def make(self):\n        from pkg.e import thing\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_the_graph_resolves_every_import_form(toy_package: Path):
    graph = import_graph(toy_package, "pkg")
    assert set(graph) == {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "pkg.d", "pkg.e", "pkg.f"}
    assert set(graph["pkg.a"]) == {"pkg.b"}
    assert set(graph["pkg.b"]) == {"pkg.a"}  # function-level, `from pkg import <module>`
    assert set(graph["pkg.sub"]) == {"pkg.sub.c"}  # relative, from a package's __init__
    assert set(graph["pkg.sub.c"]) == {"pkg.a"}  # `from .. import a`
    assert set(graph["pkg.d"]) == {"pkg.sub.c", "pkg.sub"}  # `import pkg.sub.c`; a name from a package: its
    # __init__; os is outside the package
    assert set(graph["pkg.e"]) == {"pkg.b"}  # the `else:` of `if TYPE_CHECKING:` runs, its body does not
    assert set(graph["pkg.f"]) == {"pkg.e"}
    assert graph["pkg.b"]["pkg.a"] == "pkg/b.py:2"


def test_a_cycle_hidden_in_a_function_is_found_and_named(toy_package: Path):
    graph = import_graph(toy_package, "pkg")
    cycles = find_cycles(graph)
    assert cycles == [["pkg.a", "pkg.b", "pkg.a"]]
    assert "pkg.b imports pkg.a at pkg/b.py:2" in describe(graph, cycles[0])
