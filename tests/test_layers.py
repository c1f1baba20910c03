"""The layers import one way only: entry points > tracing > scheduling > execution > graph spec
> services/context > foundation. A lower layer importing a higher one fails this test."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aethergraph"

LAYERS = [
    (
        "foundation",
        [
            "errors",
            "settings",
            "registry",
            "runtime_loop",
            "keys",
            "redis_server",
            "redis_clients",
            "jsontext",
            "watchdog",
        ],
    ),
    ("services", ["services", "codec", "accepted_types", "offload"]),
    ("graph", ["graph"]),
    ("execution", ["execution"]),
    ("scheduling", ["scheduling", "progress"]),
    ("tracing", ["tracing"]),
    (
        "entry",
        [
            "runner",
            "attached",
            "cli",
            "cli_options",
            "monitor_cli",
            "demo",
            "__init__",
            "__main__",
            "worker_cli",
            "cluster",
        ],
    ),
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


def _module_level_imports(path: Path) -> set[str]:
    """Modules of ours imported when ``path`` is imported (not under TYPE_CHECKING, not lazily
    inside functions), resolved to module files."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aethergraph"):
                base = str(node.module)
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if _is_module(candidate) else base)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("aethergraph"))

    visit(tree.body)
    return found


def _is_module(dotted: str) -> bool:
    parts = dotted.split(".")[1:]
    target = PACKAGE.joinpath(*parts)
    return target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("aethergraph", *parts))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def walk(module: str, stack: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph.get(module, ())):
            if imported == module or imported not in graph:
                continue
            if state.get(imported) == 1:
                cycles.append([*stack[stack.index(imported) :], imported])
            elif imported not in state:
                walk(imported, [*stack, imported])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    return [c for c in cycles if not all(m.startswith(c[0] + ".") or m == c[0] for m in c[1:])]


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_module_level_import_cycle() -> None:
    graph = {_name(p): _module_level_imports(p) for p in PACKAGE.rglob("*.py")}
    found = _cycles(graph)
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_no_import_cycle_between_top_level_parts() -> None:
    """Also no cycle between the package's parts (``services`` <-> ``context`` once was one)."""
    collapsed: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = _name(path)
        if module == "aethergraph":
            continue  # the package __init__ re-exports everything by design
        imported = {_top(m) for m in _module_level_imports(path)} - {"aethergraph"}
        collapsed.setdefault(_top(module), set()).update(imported)
    found = _cycles(collapsed)
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_classes_stay_small() -> None:
    big = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > 300:
                    big.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}: {size}")
    assert not big, big
