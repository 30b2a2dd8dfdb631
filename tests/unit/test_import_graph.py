"""The import graph of app/: no cycles, and no module reaching into another's private names.

Every ``import`` and ``from ... import`` of every .py under app/ counts, those inside functions
included: a function-local import hides a circle from Python's start-up, not from the design.
An import of ``app.x`` is an edge to app/x.py (or app/x/__init__.py); ``from app.x import y``
is an edge to app/x/y.py when ``y`` is a module, else to app/x. A private name is one with a
single leading underscore (``_x``, not ``__version__``), imported from another app module or
read as an attribute of one (``graph_cut._imported``).

Run ``python tests/unit/test_import_graph.py`` to print the graph's cycles and private uses.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def app_modules(app: Path = APP) -> dict[str, Path]:
    return {module_name(path, app.parent): path for path in sorted(app.rglob("*.py"))}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def imports(name: str, path: Path, modules: dict[str, Path]):
    """(imported app module, private name or None, line) for every import in the file, and every
    ``alias._x`` read of a module bound by an import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    bound: dict[str, str] = {}  # local name -> app module it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.append((alias.name, None, node.lineno))
                    if alias.asname:
                        bound[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            if origin not in modules:
                continue
            for alias in node.names:
                submodule = f"{origin}.{alias.name}"
                if submodule in modules:
                    found.append((submodule, None, node.lineno))
                    bound[alias.asname or alias.name] = submodule
                else:
                    found.append((origin, alias.name if is_private(alias.name) else None, node.lineno))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id in bound and is_private(node.attr):
            found.append((bound[node.value.id], node.attr, node.lineno))
    return found


def import_graph(app: Path = APP):
    """({module: {imported modules}}, [(module, line, other module, private name)])."""
    modules = app_modules(app)
    graph, private = {}, []
    for name, path in modules.items():
        graph[name] = set()
        for target, hidden, line in imports(name, path, modules):
            if target != name:
                graph[name].add(target)
                if hidden:
                    private.append((name, line, target, hidden))
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_in_app():
    graph, _ = import_graph()
    assert cycles(graph) == []


def test_no_private_name_from_another_app_module():
    _, private = import_graph()
    assert [f"{name}:{line} uses {target}.{hidden}" for name, line, target, hidden in private] == []


def test_the_checker_sees_function_local_imports_and_private_names(tmp_path):
    """The checker itself, on a package made for it: a circle closed by an import inside a
    function, and private names reached both ways."""
    app = tmp_path / "app"
    (app / "convert").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "convert" / "__init__.py").write_text("")
    (app / "convert" / "a.py").write_text("from app.convert import b\n\ndef f():\n    return b._hidden\n")
    (app / "convert" / "b.py").write_text("def g():\n    from .a import _x, __doc__\n    return _x\n")
    (app / "c.py").write_text("import app.convert.a\nfrom app import __init__\n")
    graph, private = import_graph(app)
    assert cycles(graph) == [["app.convert.a", "app.convert.b"]]
    assert sorted((name, target, hidden) for name, _, target, hidden in private) == [
        ("app.convert.a", "app.convert.b", "_hidden"), ("app.convert.b", "app.convert.a", "_x")]


if __name__ == "__main__":
    graph, private = import_graph()
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports")
    for component in cycles(graph):
        print("cycle:", " <-> ".join(component))
    for name, line, target, hidden in private:
        print(f"private: {name}:{line} uses {target}.{hidden}")
