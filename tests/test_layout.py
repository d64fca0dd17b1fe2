"""The package's layout: no import cycle between its modules (deferred imports counted too), and
the lower layers never import the study layer (a worker that trains imports no seaborn)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lthutils"
STUDY_LAYER = {"study", "analysis", "plots", "report", "runner", "__main__"}


def imports() -> dict[str, set[str]]:
    """Each module of the package -> the package modules it imports anywhere in its code."""
    found = {}
    for path in PACKAGE.glob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lthutils":
                parts = node.module.split(".")
                names |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
            elif isinstance(node, ast.Import):
                names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lthutils.")}
        found[path.stem] = names - {path.stem}
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for name in graph.get(todo.pop(), ()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def test_no_module_imports_itself_through_others():
    graph = imports()
    assert len(graph) > 20 and "config" in graph["pruning"]  # the graph is read, not empty
    cycles = [name for name in graph if name != "__init__" and name in reachable(graph, name) - {"__init__"}]
    assert cycles == []


def test_the_cluster_and_the_jobs_it_runs_never_import_the_study_layer():
    graph = imports()
    for module in ("cluster", "jobs", "experiments", "lottery", "training", "tracking", "cost"):
        assert reachable(graph, module) & STUDY_LAYER == set(), module
