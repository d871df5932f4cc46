"""No import cycle between the project's modules, function-level and ``TYPE_CHECKING`` imports included.

import-linter's contracts (pyproject.toml) check layers and forbidden arrows; a cycle between two
modules of one layer, or one hidden in a function body, slips through them. grimp (installed with
import-linter) reads every import statement of every module, wherever it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

import grimp
import pytest

PACKAGES = ("consent", "gateway", "adapters", "observability")


def cycles(graph: grimp.ImportGraph, modules: Iterable[str]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def cycle_path(graph: grimp.ImportGraph, component: list[str]) -> list[str]:
    """One cycle through the component's first module, as ``a -> b -> ... -> a`` steps with line numbers."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph.find_modules_directly_imported_by(node) & members):
            if child == start:
                chain = [*paths[node], start]
                return [_step(graph, a, b) for a, b in pairwise(chain)]
            if child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    return component   # pragma: no cover (a strongly connected component always has a cycle)


def _step(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    details = graph.get_import_details(importer=importer, imported=imported)
    lines = ", ".join(str(d["line_number"]) for d in details)
    return f"{importer} -> {imported} (line {lines})"


def test_the_finder_reports_a_cycle_hidden_in_a_function_body() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")]:
        graph.add_import(importer=importer, imported=imported, line_number=1, line_contents="import")
    assert cycles(graph, graph.modules) == [["p.a", "p.b", "p.c"]]
    assert cycle_path(graph, ["p.a", "p.b", "p.c"]) == [
        "p.a -> p.b (line 1)", "p.b -> p.c (line 1)", "p.c -> p.a (line 1)",
    ]


def test_no_import_cycle_between_project_modules() -> None:
    try:
        graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    except ModuleNotFoundError as exc:  # pragma: no cover - generated code missing
        pytest.skip(f"a package is not importable: {exc} (run `make gen`)")
    found = cycles(graph, graph.modules)
    report = "\n\n".join("\n".join(cycle_path(graph, c)) for c in found)
    assert not found, f"{len(found)} import cycle(s):\n{report}"
