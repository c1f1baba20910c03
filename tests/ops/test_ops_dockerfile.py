"""workers/Dockerfile, without a Docker engine (none runs here or in CI).

* Always: the instructions are parsed and checked against what the image must be — the
  python:3.11-slim base, a non-root runtime user, ``STOPSIGNAL SIGTERM``, an exec-form
  ENTRYPOINT that is the copied workers/entrypoint.sh, every COPY source present in the build
  context (the repository root), ENV defaults that are workers/worker.env's variables with valid
  values, and every RUN line clean under shellcheck (``sh``, as /bin/sh runs them).
* ``make ops-image-check`` (AETHERGRAPH_OPS_IMAGE=1; ~30 s and PyPI access, so not in the
  default run): the Dockerfile's steps are *replayed* — ARG defaults and ENV applied, COPY into
  a scratch root, every RUN executed by ``sh`` in a fresh venv with the image's absolute paths
  mapped into that root (only the useradd step, which needs root, is skipped: the static checks
  cover it). The installed entrypoint then starts a worker from the scratch root's /app against
  a private Redis, and a graph of the example tools runs on it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from ops_support import REPO, child_env, run_tool, venv_tool, wait_until
from polling import stop_group

from aethergraph.settings import Settings

DOCKERFILE = REPO / "workers" / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def arg_defaults(steps: list[tuple[str, str]]) -> dict[str, str]:
    values = {}
    for word, rest in steps:
        if word == "ARG":
            name, _, default = rest.partition("=")
            values[name] = default
    return values


def env_values(rest: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(rest))


def expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m[1] or m[2], m[0]), text)


def test_the_dockerfile_builds_a_non_root_worker_image_that_stops_gracefully() -> None:
    steps = instructions()
    words = [w for w, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert ("STOPSIGNAL", "SIGTERM") in steps
    users = [rest for w, rest in steps if w == "USER"]
    assert users == ["aethergraph"], "one runtime user, not root"
    assert words.index("USER") > max(i for i, w in enumerate(words) if w in ("RUN", "COPY"))
    assert "ADD" not in words  # COPY only: no remote URLs or auto-extracted archives
    entry = json.loads(dict(steps)["ENTRYPOINT"])  # exec form: the worker gets SIGTERM itself
    assert entry == ["aethergraph-worker"]
    copies = [shlex.split(rest) for w, rest in steps if w == "COPY"]
    assert ["--chmod=0755", "workers/entrypoint.sh", "/usr/local/bin/aethergraph-worker"] in copies
    args = arg_defaults(steps)
    for copy in copies:
        for source in [s for s in copy[:-1] if not s.startswith("--")]:
            assert (REPO / expand(source, args)).exists(), f"COPY source {source} is missing"
    assert "useradd --uid 10001" in " ".join(rest for w, rest in steps if w == "RUN")


def test_the_image_env_defaults_are_worker_env_variables_with_valid_values() -> None:
    env: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ENV":
            env.update(env_values(rest))
    documented = {
        line.split("=", 1)[0]
        for line in (REPO / "workers" / "worker.env").read_text().splitlines()
        if line and not line.startswith("#")
    }
    ours = {k for k in env if k.startswith(("AETHERGRAPH_", "WORKER_"))}
    assert ours - documented <= {"WORKER_SCRATCH_DIR"}, ours - documented  # bootstrap.py's
    Settings(**{k.removeprefix("AETHERGRAPH_").lower(): v for k, v in env.items()
                if k.startswith("AETHERGRAPH_")})  # fmt: skip
    assert "AETHERGRAPH_BROKER_URL" not in env  # a password never goes into an image layer
    assert ("EXPOSE", env["AETHERGRAPH_METRICS_PORT"]) in instructions()


def test_every_run_line_passes_shellcheck(tmp_dir: Path) -> None:
    runs = [rest for word, rest in instructions() if word == "RUN"]
    assert runs
    script = tmp_dir / "run.sh"
    script.write_text("#!/bin/sh\nset -e\n" + "\n".join(runs) + "\n")
    done = run_tool(venv_tool("shellcheck"), "--shell=sh", script)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("AETHERGRAPH_OPS_IMAGE") != "1",
    reason="replays the image build in a fresh venv from PyPI (~30 s): make ops-image-check",
)
def test_the_dockerfile_steps_install_a_worker_that_runs_a_graph(tmp_dir: Path) -> None:
    from aethergraph import run, runtime_loop
    from aethergraph.execution.celery import CeleryExecutor
    from aethergraph.execution.select import close_executor
    from aethergraph.redis_server import RedisServer

    root, env_dir = tmp_dir / "root", tmp_dir / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    mapped = ("/src", "/app", "/usr/local/bin")
    values = {**os.environ, "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    values.update(arg_defaults(instructions()))

    def in_root(text: str) -> str:
        for path in mapped:
            text = re.sub(rf"(?<![\w/]){re.escape(path)}(?=/|\b|\"|$)", f"{root}{path}", text)
        return text

    for word, rest in instructions():
        if word == "ENV":
            values.update(env_values(rest))
        elif word == "COPY":
            *sources, dest = [s for s in shlex.split(rest) if not s.startswith("--")]
            target = Path(in_root(dest))
            for source in sources:
                src = REPO / expand(source, values)
                if src.is_dir():  # Docker copies a directory's contents into dest
                    shutil.copytree(src, target, dirs_exist_ok=True)
                else:
                    file_target = target / src.name if dest.endswith("/") else target
                    file_target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, file_target)
        elif word == "RUN" and not rest.startswith("groupadd"):
            command = in_root(rest)
            done = subprocess.run(
                ["sh", "-c", command], env=values, capture_output=True, text=True, timeout=600
            )
            assert done.returncode == 0, f"RUN {rest}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    entrypoint = root / "usr/local/bin/aethergraph-worker"
    assert os.access(entrypoint, os.X_OK)
    assert not (root / "src").exists()  # the build cleans up after itself

    sys.path.insert(0, str(REPO / "workers"))
    import example_tools

    with RedisServer() as server:
        env = child_env(
            **{k: v for k, v in values.items() if k.startswith(("AETHERGRAPH_", "WORKER_"))}
        )
        env.update(
            PATH=f"{env_dir / 'bin'}{os.pathsep}{root / 'usr/local/bin'}{os.pathsep}/usr/bin:/bin",
            AETHERGRAPH_BROKER_URL=server.url,
            AETHERGRAPH_METRICS_PORT="",
            WORKER_CONCURRENCY="1",
            WORKER_SCRATCH_DIR=str(tmp_dir / "scratch"),
        )
        env.pop("AETHERGRAPH_METRICS_PORT")
        log = (tmp_dir / "worker.log").open("wb")
        proc = subprocess.Popen(
            ["aethergraph-worker"], cwd=root / "app", env=env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        settings = Settings(broker_url=server.url, namespace=env["AETHERGRAPH_NAMESPACE"])
        executor = CeleryExecutor(settings=settings)
        client = server.client()
        try:
            wait_until(
                lambda: proc.poll() is not None or client.zrange("ag:workers", 0, -1),
                "the image's worker to heartbeat",
                timeout=60,
            )
            assert proc.poll() is None, (tmp_dir / "worker.log").read_text()
            out = run(example_tools.squares, n=4, executor=executor)
            assert out["total"] == 14
        finally:
            runtime_loop.run_sync(close_executor(executor), timeout=30)
            client.close()
            stop_group(proc)
            log.close()
