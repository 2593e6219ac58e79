"""The package layout: the library imports nothing built on it, and the lab's imports form no cycle.

Imports are read from the source (module level, inside functions and under
`if __name__ == "__main__"` alike), so a lazy import counts as an edge too.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path):
    """Every module name `path` imports, with `from a import b` also giving `a.b`."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _graph(package):
    modules = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    return {name: sorted(_imported(path) & set(modules) - {name}) for name, path in modules.items()}


def _cycle(graph):
    """One import cycle of `graph` as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


@pytest.mark.parametrize("path", sorted((ROOT / "supernet").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_imports_nothing_built_on_it(path):
    built_on_it = ("supernet_lab", "experiments", "benchmarks")
    assert not {n for n in _imported(path) if n.split(".")[0] in built_on_it}


def test_the_lab_has_no_import_cycle():
    graph = _graph("supernet_lab")
    assert "supernet_lab.runner" in graph and graph["supernet_lab.experiments.table5_loss_statistics"]
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_a_cycle_is_found():
    assert _cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == ["a", "b", "c", "a"]
    assert _cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None
