"""The layers of app/ (README "Layout"): imports only go down, the schema model is pure, modules stay small.

Read from the source with ``ast``: an import added inside a function counts
as much as one at the top of a module.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

APP = Path(__file__).resolve().parent.parent / "app"

# Lowest first: a module may import from its own layer and the ones before it.
LAYERS = [
    ("engine and SQL", {"sql", "errors", "config", "atomic_file", "dbapi", "dialect", "engine"}),
    ("schema model", {"schema", "schema_diff", "canonical", "warehouse", "types", "merging", "verify", "planner",
                      "autogenerate"}),
    ("operations and runtime", {
        "operations", "impl", "cluster", "cluster_rewrite", "settings", "runtime", "recorder", "step_event",
        "alembic_hook", "chain", "fastpath", "ledger", "versions", "lock", "insert_order", "losses",
        "snapshot", "schema_check", "replay", "fingerprint", "sample_data", "dependencies", "progress",
        "canonical_verdict",
        "waiting"}),
    ("operator tools", {"drill", "drill_checks", "lint", "adopt", "smoke", "users", "commands",
                        "revision_files", "revision_autogenerate", "graph"}),
    ("CLI", {"cli", "cli_errors", "cli_output", "json_output", "cli_graph", "__main__"}),
]
LAYER = {module: i for i, (_, modules) in enumerate(LAYERS) for module in modules}
PURE = LAYERS[1][1]
DATABASE_PACKAGES = {"sqlalchemy", "alembic", "chdb", "clickhouse_driver", "clickhouse_sqlalchemy", "clickhouse_connect"}
MAX_LINES = 460


def _modules() -> list[Path]:
    return sorted(p for p in APP.rglob("*.py") if p.name != "__init__.py" or p.parent != APP)


def _top(path: Path) -> str:
    return path.relative_to(APP).with_suffix("").parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every import in ``path``, relative ones resolved within app."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(("app",) + path.relative_to(APP).parts[:-node.level])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module == "app":
                found += [(node.lineno, f"app.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, module))
    return found


def test_every_module_has_a_layer():
    assert sorted({_top(p) for p in _modules()} - set(LAYER)) == []


def test_imports_only_go_down():
    upward = []
    for path in _modules():
        mine = LAYER[_top(path)]
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] == "app" and len(parts) > 1 and LAYER.get(parts[1], -1) > mine:
                upward.append(f"{path.relative_to(APP.parent)}:{line} imports {module} "
                              f"({LAYERS[LAYER[parts[1]]][0]} above {LAYERS[mine][0]})")
    assert upward == []


def test_the_schema_model_talks_to_no_database():
    impure = [f"{p.relative_to(APP.parent)}:{line} imports {module}"
              for p in _modules() if _top(p) in PURE
              for line, module in _imports(p) if module.split(".")[0] in DATABASE_PACKAGES]
    assert impure == []


def test_no_module_is_long():
    long = {str(p.relative_to(APP.parent)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
