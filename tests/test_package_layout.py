"""The package's shape: imports point one way (no cycle among kvt's modules) and no
module grows past MAX_LINES.

An import counts wherever it is written: at the top of a module, at its bottom, inside a
function (a deferred import runs the first time the function does, and then closes the
same loop). Only `if TYPE_CHECKING:` blocks, which never run, are left out. Importing
`kvt.a.b` counts as an import of `kvt.a.b`, not of the package `kvt.a` that Python
initialises first: a package's `__init__` may import its own modules.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "kvt"
MAX_LINES = 400
# The package's layers, top to bottom: a module imports only modules of its own layer or
# of those below it. (augment, callbacks and distribute, helpers of train, have no place
# in the list yet and are not checked.)
LAYERS = ("cli", "tune", "compare", "executors", "bench", "export", "train", "checkpoint",
          "report", "saving", "runs", "models", "layers", "data", "recipes", "config",
          "backends", "signals", "errors")
# Modules over MAX_LINES for now, each with the reason it may be.
TOO_LONG_FOR_NOW: dict[str, str] = {}


def module_names() -> dict[str, Path]:
    """Every module of the package, by dotted name (a package by its own name)."""
    names = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import and ImportFrom node of `tree`, at any depth, but those under
    `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports_in(child))
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    yield from _imports(node)


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module `name` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from a import b` imports the module a.b when there is one, else a name of a
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        found.update(t for t in targets if t in modules and t != name)
    return found


def graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walk_sees_top_bottom_and_deferred_imports(tmp_path):
    modules = {name: SRC for name in ("kvt", "kvt.a", "kvt.b", "kvt.c", "kvt.d", "kvt.e")}
    probe = tmp_path / "z.py"
    probe.write_text("from typing import TYPE_CHECKING\nfrom kvt import a\n"
                     "if TYPE_CHECKING:\n    import kvt.d\n"
                     "def f():\n    from kvt.b import x\n"
                     "import kvt.c as c\nfrom . import e\n")
    assert imported("kvt.z", probe, modules) == {"kvt.a", "kvt.b", "kvt.c", "kvt.e"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle():
    edges = graph()
    assert len(edges) > 40 and edges["kvt.layers"] >= {"kvt.layers.portable"}
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_point_down_the_layers():
    def layer(module: str) -> int | None:
        parts = module.split(".")
        return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None

    upward = [f"{a} -> {b}" for a, targets in sorted(graph().items()) for b in sorted(targets)
              if layer(a) is not None and layer(b) is not None and layer(a) > layer(b)]
    assert not upward, f"imports that point up the layers {LAYERS}: {upward}"


def test_no_module_over_max_lines():
    long = {name: len(path.read_text().splitlines()) for name, path in module_names().items()}
    long = {name: n for name, n in long.items() if n > MAX_LINES and name not in TOO_LONG_FOR_NOW}
    assert not long, f"modules over {MAX_LINES} lines (split them): {long}"
