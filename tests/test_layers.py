"""The layers import one way only: entry points > tracing > scheduling > execution > graph spec
> services/context > foundation. A lower layer importing a higher one fails this test."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aethergraph"

LAYERS = [
    ("foundation", ["errors", "settings", "registry", "runtime_loop", "keys", "redis_server"]),
    ("services", ["services", "codec"]),
    ("graph", ["graph"]),
    ("execution", ["execution"]),
    ("scheduling", ["scheduling"]),
    ("tracing", ["tracing"]),
    ("entry", ["runner", "cli", "demo", "__init__", "worker_cli", "cluster"]),
]
RANK = {prefix: rank for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes}


def _layer(module: str) -> int:
    first = module.split(".")[0]
    if first not in RANK:
        raise AssertionError(f"module aethergraph.{module} is not assigned to a layer")
    return RANK[first]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "aethergraph":
            found += [f"aethergraph.{a.name}" for a in node.names]  # from aethergraph import x
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aethergraph"):
            found.append(str(node.module))
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("aethergraph")]
    return [name.removeprefix("aethergraph").lstrip(".") or "__init__" for name in found]


def test_imports_go_one_way() -> None:
    violations = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        own = _layer(module)
        for imported in _imports(path):
            if _layer(imported) > own:
                violations.append(f"aethergraph.{module} imports aethergraph.{imported}")
    assert not violations, "\n".join(violations)


def test_modules_stay_small() -> None:
    big = [
        f"{p.relative_to(PACKAGE)}: {n} lines"
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    ]
    assert not big, big
