"""The package's layers: no import circle, and no module imports a layer above its own."""

import ast
from pathlib import Path

import leukdash

PACKAGE = Path(leukdash.__file__).parent
# Floors from the bottom; a module imports its own subpackage and floors strictly beneath it.
FLOORS = {"foundation": 0, "data": 1, "models": 1, "engine": 2, "evaluation": 3, "reporting": 4,
          "service": 4, "cli": 5}
FOUNDATION = {"leukdash", "leukdash.arguments", "leukdash.errors", "leukdash.interrupts", "leukdash.paths",
              "leukdash.config", "leukdash.metrics", "leukdash.intervals", "leukdash.atomic", "leukdash.fd2"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    if module in FOUNDATION:
        return "foundation"
    if module in ("leukdash.cli", "leukdash.__main__"):
        return "cli"
    return module.split(".")[1]


def _imports() -> dict[str, set[str]]:
    """Every leukdash module and the leukdash modules it imports, at the top or inside a function."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("leukdash")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("leukdash"):
                for alias in node.names:  # `from leukdash.engine import store` names a module
                    candidate = f"{node.module}.{alias.name}"
                    found.add(candidate if candidate in modules else node.module)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_every_module_has_a_known_layer():
    assert {_layer(m) for m in _imports()} <= set(FLOORS)


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for module, imported in _imports().items():
        for target in imported:
            own, other = _layer(module), _layer(target)
            if own != other and FLOORS[other] >= FLOORS[own] and other != "foundation":
                upward.append(f"{module} -> {target}")
            if own == "foundation" and other != "foundation":
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_circle():
    graph = _imports()
    state, cycles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
