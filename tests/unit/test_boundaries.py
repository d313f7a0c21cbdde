"""Who may import whom: each service alone, ``shared`` below every service, no import cycles.

``python -m services.<name>`` must start its own service only, so importing its ``__main__`` (in
a fresh interpreter) may load that service and ``shared``, nothing of another service or of the
tools that see the whole system (the CLI, the benchmark, the simulator). The static checks read
every module's imports, at the top and inside functions alike.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "mapper", "ledger")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in {"services", "shared"}}


MODULES = {
    _module_name(p): _imports(p)
    for package in ("services", "shared")
    for p in sorted((ROOT / package).rglob("*.py"))
}


def _owner(module: str) -> str:
    """``services.mapper.adapters.postgres`` -> ``services.mapper``; ``shared.db`` -> ``shared``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "services" and len(parts) > 1 else parts[0]


@pytest.mark.parametrize("service", SERVICES)
def test_python_m_service_loads_only_that_service(service: str) -> None:
    probe = (
        f"import sys, json, services.{service}.__main__ as entry\n"
        "assert callable(entry.main)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'services')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    foreign = [m for m in loaded if m != "services" and _owner(m) != f"services.{service}"]
    assert foreign == [], f"python -m services.{service} loads {foreign}"
    assert f"services.{service}.app" in loaded


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service_nor_the_tools(service: str) -> None:
    own = f"services.{service}"
    crossing = {
        module: sorted(i for i in imported if i.startswith("services") and _owner(i) != own)
        for module, imported in MODULES.items()
        if _owner(module) == own
    }
    assert {m: i for m, i in crossing.items() if i} == {}


def test_shared_imports_no_service() -> None:
    crossing = {
        module: sorted(i for i in imported if i.startswith("services"))
        for module, imported in MODULES.items()
        if module.startswith("shared")
    }
    assert {m: i for m, i in crossing.items() if i} == {}


def test_no_import_cycles() -> None:
    graph = {
        module: {i for i in imported if i in MODULES and i != module}
        for module, imported in MODULES.items()
    }
    # A package's __init__ importing its own submodules is how packages re-export: not a cycle.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not t.startswith(f"{module}.")}
    state: dict[str, int] = {}
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == []


SQL_CALLS = frozenset(
    {"execute", "executemany", "fetch", "fetchrow", "fetchval", "copy_records_to_table"}
)


def _sql_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(ROOT).as_posix()}:{node.lineno} .{node.func.attr}()"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in SQL_CALLS
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_runs_sql_only_in_its_adapters_and_operator_functions(service: str) -> None:
    """Issue 10 item 4: the use cases, the pure rules and the wiring reach the database through
    ``adapters/``; ``ops.py`` (the operator functions the service exposes) may query directly."""
    package = ROOT / "services" / service
    outside = [
        call
        for path in sorted(package.rglob("*.py"))
        if "adapters" not in path.relative_to(package).parts and path.name != "ops.py"
        for call in _sql_calls(path)
    ]
    assert outside == []
