"""Loading what a worker serves: the ``--tools`` modules and the ``--services`` bootstrap.

This is the worker's allowlist: the tools found in this process's registry after these imports
are the only Celery tasks it registers (``tasks.py``), so a message can never make a worker
import or run anything else.

Importing a tools module runs its module-level code, in the worker. For a one-file script —
tools and graph at module level, ``print(run(...))``, then ``if __name__ == "__main__":`` with a
``LocalCluster`` — that includes the module-level ``run(...)`` (the ``__main__`` block does not
run: the file is imported under its own name). Two things keep that working:

* :class:`aethergraph.cluster.LocalCluster` gives its workers the default executor the script
  itself had, so that ``run(...)`` runs in-process as it did in the script, instead of waiting
  on Celery for a worker — this one, still importing — that serves the tool.
* a prefork worker stops what the imports started on the runtime loop (executors, services)
  before it forks its pool (``runtime.py``): a runtime thread does not survive ``fork``, and a
  child inheriting a started loop would wait on it forever.

An import that fails is reported as a :class:`~aethergraph.errors.ConfigurationError` naming the
module, its error, and the fix.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from aethergraph.errors import ConfigurationError
from aethergraph.graph.tool_spec import ToolSpec
from aethergraph.registry import current_registry

_SCRIPT_HINT = (
    "a tools module's module-level code runs again in every worker that imports it; keep "
    'run(...) and other work of a script under `if __name__ == "__main__":`'
)


def load_tools(modules: Sequence[str]) -> dict[str, ToolSpec]:
    """Import the tool modules; return every tool registered in this process, by name."""
    for name in modules:
        try:
            if name.endswith(".py"):
                _import_file(name)
            else:
                importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(
                f"--tools {name}: cannot import it ({exc}); pass an importable module path "
                "(e.g. mypkg.tools) and run the worker where that package is installed"
            ) from exc
        except Exception as exc:
            raise ConfigurationError(
                f"--tools {name}: importing it failed: {type(exc).__name__}: {exc}; {_SCRIPT_HINT}"
            ) from exc
    tools: dict[str, ToolSpec] = {}
    for entry in current_registry().list("tool"):
        tools[entry.name] = entry.obj.spec  # list() is version-sorted: the latest wins
    return tools


def _import_file(path: str) -> None:
    """Import a ``.py`` file as a module named after it (its ``__main__`` block does not run)."""
    file = os.path.abspath(path)
    if not os.path.isfile(file):
        raise ImportError(f"no such file: {path}")
    module_name = os.path.splitext(os.path.basename(file))[0]
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise


def load_bootstrap(spec: str | None) -> Callable[[], Any] | None:
    """``MODULE:FUNC`` → the services bootstrap function."""
    if not spec:
        return None
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise ConfigurationError(f"--services expects MODULE:FUNC, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"--services {spec}: cannot import {module_name!r} ({exc}); run the worker where "
            "that module is importable"
        ) from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigurationError(f"--services {spec}: {func_name!r} is not a function")
    return func  # type: ignore[no-any-return]
