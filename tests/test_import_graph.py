"""The package's import graph, read with ``ast`` (function-level imports included): no cycle,
the lower floors never import the application wing, and no module is over 800 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "langevin_md"
LOWER = ("analysis", "integrators", "systems", "forcefield")
UPPER = ("run", "io", "cli", "executors")
MAX_LINES = 800



def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the ``langevin_md`` modules it imports anywhere in its body."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                # ``from pkg import sub`` imports the submodule when there is one.
                found = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in found:
                while target and target not in modules:  # ``import a.b.c`` with a.b.c a function
                    target = target.rpartition(".")[0]
                if target.startswith("langevin_md") and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def _floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycle(graph: dict[str, set[str]]):
    """One cycle as a list of modules, or None. The package root only resolves names lazily
    (PEP 562), so edges into ``langevin_md`` itself are not followed."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == "langevin_md":
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_is_read():
    graph = _imports(_modules())
    assert "langevin_md.run.config" in graph["langevin_md.run.build"]
    assert "langevin_md.run.folder" in graph["langevin_md.run.session"]
    # function-level imports count: cli imports the wing only inside its commands
    assert "langevin_md.run.session" in graph["langevin_md.cli"]


def test_no_import_cycle():
    assert _cycle(_imports(_modules())) is None


def test_the_cycle_finder_rejects_a_known_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def _upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((m, t) for m, targets in graph.items() if _floor(m) in LOWER
                  for t in targets if _floor(t) in UPPER)


def test_lower_floors_do_not_import_the_application_wing():
    assert _upward(_imports(_modules())) == []


def test_an_upward_import_is_caught():
    graph = {"langevin_md.analysis.report": {"langevin_md.run.folder", "langevin_md.units"}}
    assert _upward(graph) == [("langevin_md.analysis.report", "langevin_md.run.folder")]


def test_no_module_is_over_800_lines():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
