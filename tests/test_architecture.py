"""The package's import structure: no circle between modules, every dependency visible.

The graph is read from the source of the imported ``sgan_cli`` package (ast, nothing run):
an edge for every ``import``/``from … import`` of a project module, at the top of a module or
inside a function. A circle would make import order matter; ``importlib`` imports of project
modules would hide edges from readers and tools.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sgan_cli

PACKAGE = Path(sgan_cli.__file__).parent
# modules that may import project modules inside functions: the CLI layer keeps `sgan --help` from
# importing torch, and the package's lazy public names load on first use
LAZY_ALLOWED = ("sgan_cli", "sgan_cli.cli", "sgan_cli.__main__")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom, mods: dict[str, Path]) -> list[str]:
    """The project modules one import statement loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
        target = ".".join(base + ([node.module] if node.module else []))
        names = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]
    return [n for n in names if n in mods and n != module]


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """module → the project modules it imports (all), and → those it imports inside functions."""
    mods = _modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    lazy: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets = _targets(module, path, node, mods)
                edges[module].update(targets)
                if id(node) not in top:
                    lazy[module].update(targets)
    return edges, lazy


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph (a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        path.append(u)
        for v in sorted(edges[u]):
            if state.get(v) == 1:
                return path[path.index(v) :] + [v]
            if v not in state and (found := visit(v)) is not None:
                return found
        path.pop()
        state[u] = 2
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)) is not None:
            return found
    return None


def test_find_cycle_finds_a_circle_and_nothing_else():
    """The checker itself, on graphs whose answer is known."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": set(), "c": {"c2"}, "c2": {"c"}}) == ["c", "c2", "c"]


def test_the_package_has_no_import_circle():
    edges, _ = import_graph()
    assert len(edges) > 30 and "sgan_cli.training" in edges["sgan_cli.commands.train"]  # the graph was read
    assert find_cycle(edges) is None


def test_library_modules_import_project_modules_at_the_top():
    """A function-level import of a project module is how a circle hides; only the CLI layer
    (fast --help) and the package's lazy public names import inside functions."""
    _, lazy = import_graph()
    hidden = {
        m: sorted(t) for m, t in lazy.items() if t and m not in LAZY_ALLOWED and not m.startswith("sgan_cli.commands")
    }
    assert hidden == {}


def test_no_project_module_is_imported_by_name_at_run_time():
    """importlib.import_module / __import__ of sgan_cli modules would be invisible edges."""
    found = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name in ("importlib.import_module", "import_module", "__import__"):
                arg = node.args[0] if node.args else None
                literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                if not literal or arg.value.startswith(("sgan_cli", ".")):
                    found.append(f"{module}: {ast.unparse(node)}")
    assert found == []
