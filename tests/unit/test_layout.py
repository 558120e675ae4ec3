"""The shape of components/ (STYLE.md): four wings whose imports run one way, release →
platform → host → settings, with names.py beside host; no import circle; no file past 400
lines (a file that long holds two concepts).

`python3 -m tests.unit.test_layout` prints every module's import level (a module sits one
level above the highest it imports), the way the closing notes count them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "components"
# A wing may import its own modules and those of the wings below it, never one above.
WING_RANK = {"settings": 0, "names": 1, "host": 1, "platform": 2, "release": 3}
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(COMPONENTS.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The components modules `path` imports, at run time or for type checking alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name in known}
    return found


def parsed_import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(path, set(found)) - {name} for name, path in found.items()}


def import_graph() -> dict[str, set[str]]:
    """The graph, parsed in a child interpreter of its own. CPython 3.11 counts the AST
    constructor's recursion per interpreter, not per thread: a parse while a thread the suite
    left running builds an AST too (Jinja compiling a template) fails with "AST constructor
    recursion depth mismatch" (python/cpython#106905, pytest-dev/pytest#10763). It did, in
    two full runs, and never alone."""
    code = ("import json; from tests.unit.test_layout import parsed_import_graph as graph; "
            "print(json.dumps({name: sorted(found) for name, found in graph().items()}))")
    child = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                           text=True, timeout=60, check=True)
    return {name: set(found) for name, found in json.loads(child.stdout).items()}


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "components"


def levels(graph: dict[str, set[str]]) -> dict[str, int]:
    """A module's level: one above the highest it imports (an import that closes a circle
    is not counted, so a tree with a circle still gets levels)."""
    found: dict[str, int] = {}

    def level(module: str, path: tuple[str, ...]) -> int:
        if module not in found:
            below = [level(imported, (*path, module)) for imported in graph[module]
                     if imported not in path and imported != module]
            found[module] = 1 + max(below, default=0)
        return found[module]

    for module in sorted(graph):
        level(module, ())
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, as the path that closes it (a depth-first search)."""
    found, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            found.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return found


def test_no_import_circle_under_components():
    assert circles(import_graph()) == []


def test_imports_run_one_way_between_the_wings():
    upward = [f"{module} imports {imported}"
              for module, imported_modules in import_graph().items()
              for imported in imported_modules
              if wing(module) in WING_RANK and wing(imported) in WING_RANK
              and WING_RANK[wing(imported)] > WING_RANK[wing(module)]]
    assert upward == [], "imports run release → platform → host → settings"


def test_every_module_is_in_a_wing():
    assert {wing(module) for module in modules()} <= {*WING_RANK, "components"}


def test_no_file_under_components_is_past_400_lines():
    long = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: lines for name, lines in long.items() if lines > MAX_LINES} == {}


if __name__ == "__main__":
    graph = import_graph()
    by_level = levels(graph)
    for module in sorted(graph, key=lambda name: (by_level[name], name)):
        print(f"{by_level[module]}  {module}")
    print(f"{len(graph)} modules, {max(by_level.values())} levels, "
          f"{sum(len(imported) for imported in graph.values())} arrows")
