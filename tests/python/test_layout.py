"""The Python layout reads top-down: no import cycle, no import from a layer above, one owner per
mechanism (dbt is run by dataops/dbt/runner.py; SQL is quoted by dataops/core/sql.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from dataops.core.settings import REPO_ROOT

PACKAGES = ("dataops", "orchestration")

# Each package's layer (dataops/__init__.py explains them). A module may import its own package
# and packages of lower layers only.
LAYERS = {
    "dataops.core": 0,
    "dataops.sources": 1,
    "dataops.dbt": 1,
    "dataops.sample_data": 1,
    "dataops.ingestion": 2,
    "dataops.rules": 2,
    "dataops.observability": 2,
    "dataops.publishing": 2,
    "dataops.extract": 2,
    "dataops.cicd": 3,  # deploy publishes through dataops.publishing
    "dataops.engines": 3,
    "dataops.cli": 4,
    "dataops.__main__": 5,
    "orchestration": 4,
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Project modules imported by a file (anywhere in it: late imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            candidates = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        names.update(name for name in candidates if name in MODULES)
    return names


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "orchestration" else ".".join(parts[:2])


def test_every_package_has_a_layer():
    packages = {_package(module) for module in MODULES if module != "dataops"}
    assert packages <= set(LAYERS), f"packages without a layer: {sorted(packages - set(LAYERS))}"


def test_no_module_imports_a_layer_above_or_beside_it():
    wrong = []
    for module, path in MODULES.items():
        if module == "dataops":
            continue
        here = _package(module)
        for imported in _imports(path):
            there = _package(imported)
            if there != here and LAYERS[there] >= LAYERS[here]:
                wrong.append(f"{module} ({LAYERS[here]}) imports {imported} ({LAYERS[there]})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph = {module: _imports(path) - {module} for module, path in MODULES.items()}
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for child in graph[node]:
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


# What running dbt looks like in code: the in-process runner, or the executable built from the
# interpreter's folder. Only the runner may do either.
RUNS_DBT = re.compile(r"dbtRunner|parent\s*/\s*\"dbt\"|which\(\"dbt\"\)")
QUOTES_SQL = re.compile(r"""replace\(\s*(['"])(\\?["'])\1\s*,""")


@pytest.mark.parametrize(
    ("pattern", "owner", "what"),
    [
        (RUNS_DBT, "dataops/dbt/runner.py", "runs dbt"),
        (QUOTES_SQL, "dataops/core/sql.py", "quotes SQL identifiers or literals"),
    ],
)
def test_one_module_owns_each_mechanism(pattern: re.Pattern[str], owner: str, what: str):
    found = sorted(
        str(path.relative_to(REPO_ROOT))
        for path in MODULES.values()
        if pattern.search(path.read_text(encoding="utf-8"))
    )
    assert found == [owner], f"only {owner} {what}; found in {found}"
