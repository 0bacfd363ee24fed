"""The package's import graph, checked mechanically: folders follow the data's path and a lower
layer never imports a higher one (audio -> data -> model/vocoder -> training/inference ->
serving/evaluation), folders of one layer do not import each other, and no import cycle exists.

Every import counts: at the top of a module, inside a function (a lazy import is still a
dependency) and under `if TYPE_CHECKING:` (a type is one too)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "flowomni"

# rank of each top-level module or folder of src/flowomni; an import must go to a lower rank
# (or stay inside its own folder). The base modules import nothing of flowomni.
LAYERS = {
    "config": 0,
    "hardware": 0,
    "paths": 0,
    "checkpoint": 0,
    "audio": 1,
    "data": 2,
    "model": 3,
    "vocoder": 3,
    "training": 4,
    "inference": 4,
    "serving": 5,
    "evaluation": 5,
    "cli": 6,
    "bench_cli": 6,  # the `flowomni` command: dispatches to every layer's CLI
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the flowomni modules it imports (anywhere in its source)."""
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1 folders
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files:  # a name inside a module -> the module
                    t = t.rpartition(".")[0]
                if t.startswith("flowomni.") and t != mod:
                    graph[mod].add(t)
        graph.setdefault(mod, set())
    return dict(graph)


def layer_of(mod: str) -> str:
    return mod.split(".")[1] if mod.count(".") else "__init__"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, targets in sorted(graph.items()):
        a = layer_of(mod)
        for t in sorted(targets):
            b = layer_of(t)
            if a != b and not LAYERS[b] < LAYERS[a]:
                out.append(f"{mod} ({a}, layer {LAYERS[a]}) imports {t} ({b}, layer {LAYERS[b]})")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_folder_has_a_layer():
    graph = import_graph()
    assert {layer_of(m) for m in graph} - {"__init__"} == set(LAYERS), "place new folders in LAYERS"
    # the parse sees the real graph (a checker that reads nothing would pass everything)
    assert len(graph) > 100 and sum(map(len, graph.values())) > 300
    assert "flowomni.model.flowomni" in graph["flowomni.inference.engine"]


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    assert layer_violations(import_graph()) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_checks_catch_what_they_are_for():
    graph = {
        "flowomni.model.a": {"flowomni.inference.b"},
        "flowomni.inference.b": {"flowomni.model.c"},
        "flowomni.model.c": {"flowomni.model.a"},
        "flowomni.training.d": {"flowomni.inference.b"},
    }
    assert layer_violations(graph) == [
        "flowomni.model.a (model, layer 3) imports flowomni.inference.b (inference, layer 4)",
        "flowomni.training.d (training, layer 4) imports flowomni.inference.b (inference, layer 4)",
    ]
    assert cycles(graph) == [["flowomni.inference.b", "flowomni.model.a", "flowomni.model.c"]]
