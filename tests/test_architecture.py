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


# --- sizes: one concept per module, one step per function ------------------------------------------

MAX_FUNCTION_LINES = 80  # def line to last line; Typer command declarations (option lists) are exempt
MAX_MODULE_LINES = 500  # beyond it, the module docstring says why in a line starting "Length:"


def typer_commands() -> set[tuple[str, str]]:
    """(module, function) of every Typer command declaration, read from sgan_cli/cli.py: the
    functions registered by ``app.command(…)(module.function)`` and those decorated with an
    ``@app.command``/``@app.callback`` there. Their length is their option declarations."""
    cli = PACKAGE / "cli.py"
    found = set()
    for node in ast.walk(ast.parse(cli.read_text())):
        if isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr in ("command", "callback")
            for d in node.decorator_list
        ):
            found.add(("sgan_cli.cli", node.name))
        registers = isinstance(node, ast.Call) and isinstance(node.func, ast.Call)
        if registers and isinstance(node.func.func, ast.Attribute) and node.func.func.attr == "command":
            (target,) = node.args
            assert isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name), ast.unparse(node)
            found.add((f"sgan_cli.commands.{target.value.id}", target.attr))
    return found


def long_functions(exempt: set[tuple[str, str]], limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """'module.function' (nested names joined by dots) → lines, for every function longer than
    ``limit`` lines that is not one of ``exempt`` (module, function)."""
    found = {}

    def visit(node: ast.AST, module: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}.{child.name}" if prefix else child.name
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = child.end_lineno - child.lineno + 1
                if lines > limit and (module, name) not in exempt:
                    found[f"{module}.{name}"] = lines
            visit(child, module, name)

    for module, path in _modules().items():
        visit(ast.parse(path.read_text()), module, "")
    return found


def test_typer_command_declarations_are_read_from_the_cli():
    commands = typer_commands()
    assert {("sgan_cli.commands.train", "train"), ("sgan_cli.commands.score", "score")} <= commands
    assert ("sgan_cli.cli", "root") in commands  # the @app.callback()
    measured = long_functions(exempt=set())
    assert measured["sgan_cli.commands.train.train"] > 200  # what the exemption covers, measured
    assert not {f"{m}.{f}" for m, f in commands} & set(long_functions(exempt=commands))


def test_no_function_is_longer_than_80_lines():
    """A function does one thing; a longer one is steps waiting for names. Typer command
    declarations are exempt: their length is their options' help."""
    assert long_functions(exempt=typer_commands()) == {}


def test_every_long_module_states_its_reason():
    """A module over 500 lines holds one concept that does not split (its docstring says why,
    in a line starting with "Length:"), or it is two concepts sharing a file."""
    unexplained = {}
    for module, path in _modules().items():
        n_lines = len(path.read_text().splitlines())
        if n_lines <= MAX_MODULE_LINES:
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if not any(line.strip().startswith("Length:") for line in doc.splitlines()):
            unexplained[module] = n_lines
    assert unexplained == {}
