"""The layers of app/ (docs/architecture.md): a module imports only from its own layer or the ones
below it, function-local imports included; and bench/, scripts/ and harness/ never import tests/.

Together with test_import_graph.py (no cycle, no private name taken) these are the rules the
code keeps; docs/architecture.md says why each layer is where it is.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.unit.test_import_graph import ROOT, app_modules, imports

# Lowest first. A module belongs to the longest prefix listed; every app module must have one.
LAYERS = [
    ["app", "app.settings", "app.tf_runtime", "app.headers"],   # foundations: no Belka imports above
    ["app.registry", "app.assets"],                              # what is on disk: models, static files
    ["app.inference", "app.learn"],                              # running models and the lessons' maths
    ["app.convert"],                                             # making models (checks with inference)
    ["app.teach"],                                               # a taught head made into a model
    ["app.api", "app.errors", "app.files", "app.pages"],         # the web: routes, errors, files, pages
    ["app.main"],                                                # create_app: the web app assembled
    ["app.cli", "app.ray_engine", "app.site"],                   # entry points: CLI, Ray, static site
]
RANK = {prefix: rank for rank, prefixes in enumerate(LAYERS) for prefix in prefixes}


def layer_of(module: str) -> str:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in RANK:
            return prefix
    raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to docs/architecture.md)")


def test_every_import_goes_down_or_sideways():
    modules = app_modules()
    upward = []
    for name, path in modules.items():
        for target, _, line in imports(name, path, modules):
            a, b = layer_of(name), layer_of(target)
            if RANK[b] > RANK[a]:
                upward.append(f"{path.relative_to(ROOT)}:{line}: {name} ({a}) imports {target} ({b})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def imported_roots(path: Path) -> set[str]:
    """The top-level names a file imports (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("folder", ["bench", "scripts", "harness", "app"])
def test_only_tests_import_tests(folder):
    offenders = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / folder).rglob("*.py"))
                 if "tests" in imported_roots(p)]
    assert not offenders, f"these import from tests/ (move what they need into harness/): {offenders}"
