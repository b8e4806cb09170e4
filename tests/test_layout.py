"""The package layout: one folder per stage, and folders depend on each other in one direction
only (data <- detection <- measurement <- compression <- config <- stages)."""

from __future__ import annotations

import ast
from pathlib import Path

import edgeprune

PACKAGE = Path(edgeprune.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _run_time_imports(path: Path) -> set[str]:
    """edgeprune modules a file imports at module level (imports under ``if TYPE_CHECKING`` and
    inside functions are not run at import time)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{a.name}" for a in node.names)
            found.add(node.module)
    return {name for name in found if name.startswith("edgeprune.")}


def _folder(module: str) -> str:
    """The top-level unit a module belongs to: ``edgeprune.<folder or module>``."""
    return ".".join(module.split(".")[:2])


def folder_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        src = _folder(_module_name(path))
        for target in _run_time_imports(path):
            dst = _folder(target)
            if dst != src and dst != "edgeprune.":
                graph.setdefault(src, set()).add(dst)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_stage_folders_exist() -> None:
    for folder in ("data", "detection", "compression", "measurement", "reporting", "stages"):
        assert (PACKAGE / folder / "__init__.py").is_file(), folder


def test_no_import_cycles_between_folders() -> None:
    graph = folder_graph()
    assert graph, "no imports found: the scan is broken"
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


def test_lower_layers_do_not_import_the_workflow_layer() -> None:
    graph = folder_graph()
    for low in ("edgeprune.data", "edgeprune.detection", "edgeprune.measurement"):
        assert not graph.get(low, set()) & {"edgeprune.stages", "edgeprune.config"}, low


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
