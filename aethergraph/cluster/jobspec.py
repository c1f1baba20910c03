"""What one batch job of a :class:`~aethergraph.cluster.jobqueue.JobQueueCluster` asks for and
runs: its parameters, checked once (every mistake a :class:`ConfigurationError` that says how to
fix it), and the ``aethergraph worker`` command its processes run.

The parameter names are dask-jobqueue's (``cores``, ``memory``, ``walltime``, ``queue``,
``account``, ``processes``, ``job_extra_directives``, ``job_script_prologue``, ...), so that a
``SLURMCluster`` user finds their way; ``queues`` (plural) are AetherGraph's logical queues the
workers consume (``-Q``), not the batch system's.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aethergraph.errors import ConfigurationError
from aethergraph.keys import DEFAULT_QUEUE

STOP_MARGIN = 30  # seconds between the workers' grace running out and the walltime
POOLS = ("prefork", "threads", "solo")

_MEMORY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)\s*", re.IGNORECASE)
_UNITS = {"": 1, "B": 1}
for _i, _p in enumerate("KMGT", start=1):
    _UNITS[_p] = _UNITS[_p + "IB"] = 1024**_i  # Slurm's and PBS's K/M/G/T are binary
    _UNITS[_p + "B"] = 1000**_i  # dask-jobqueue's "4GB" is decimal
_WALLTIME = re.compile(r"(?:(\d+)-)?(\d+):(\d{1,2}):(\d{1,2})")


def parse_memory(memory: str) -> int:
    """Bytes in ``"4GB"`` (decimal), ``"4GiB"`` / ``"4G"`` (binary, as Slurm and PBS read them)."""
    match = _MEMORY.fullmatch(memory) if isinstance(memory, str) else None
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _UNITS or float(match.group(1)) <= 0:
        raise ConfigurationError(
            f"memory must be an amount like '4GB', '500MB' or '16GiB' (per job), got {memory!r}"
        )
    return math.ceil(float(match.group(1)) * _UNITS[unit])


def parse_walltime(walltime: str) -> int:
    """Seconds in ``"HH:MM:SS"`` or ``"D-HH:MM:SS"``."""
    match = _WALLTIME.fullmatch(walltime) if isinstance(walltime, str) else None
    if match is None or int(match.group(3)) > 59 or int(match.group(4)) > 59:
        raise ConfigurationError(
            f"walltime must be 'HH:MM:SS' or 'D-HH:MM:SS' (e.g. '01:00:00'), got {walltime!r}"
        )
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def hms(seconds: int) -> str:
    """``HH:MM:SS`` (hours may exceed 24), as PBS writes a walltime."""
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _strings(value: Sequence[str] | str | None, what: str, *, single: bool = True) -> list[str]:
    """A list of non-empty, one-line strings (a lone string is one item if ``single``)."""
    if value is None:
        return []
    if isinstance(value, str):
        if not single:
            raise ConfigurationError(f"{what} must be a list of strings, got the string {value!r}")
        value = [value]
    items = list(value)
    for item in items:
        if not isinstance(item, str) or not item.strip() or "\n" in item or "\0" in item:
            raise ConfigurationError(f"{what}: each item must be a non-empty line, got {item!r}")
    return items


def _optional_word(value: str | None, what: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not re.fullmatch(r"[\w.@+-]+", value)):
        raise ConfigurationError(f"{what} must be a name (letters, digits, '_.@+-'), got {value!r}")
    return value


def _count(value: object, what: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(f"{what} must be an int >= {minimum}, got {value!r}")
    return value


def _tools(tools: Sequence[str] | str | None) -> list[str]:
    from aethergraph.cluster.local import _default_tools

    found = _strings(tools, "tools") if tools is not None else _default_tools()
    if not found:
        raise ConfigurationError(
            "tools=[...] is needed: the modules (pkg.tools) or .py files whose @tool functions "
            "the workers serve; they must be importable on the compute nodes"
        )
    resolved = []
    for item in found:
        if item.endswith(".py"):  # the job may start elsewhere: a file goes by its full path
            path = Path(item).expanduser().resolve()
            if not path.is_file():
                raise ConfigurationError(f"tools: no such file {item!r}")
            item = str(path)
        elif "," in item or " " in item:
            raise ConfigurationError(f"tools: one module or file per item, got {item!r}")
        resolved.append(item)
    return resolved


@dataclass(frozen=True)
class JobSpec:
    """One job's resources and worker command, validated (see :func:`job_spec`)."""

    cores: int
    processes: int
    memory: str | None
    memory_bytes: int | None
    walltime: str
    walltime_seconds: int
    queue: str | None
    account: str | None
    job_name: str
    job_extra_directives: tuple[str, ...]
    job_script_prologue: tuple[str, ...]
    tools: tuple[str, ...]
    services: str | None
    queues: tuple[str, ...]
    pool: str
    python: str
    worker_extra_args: tuple[str, ...]
    grace: float
    submit_command_extra: tuple[str, ...]

    @property
    def slots(self) -> int:
        """Pool slots per worker process (``-c``)."""
        return self.cores // self.processes

    @property
    def stop_lead(self) -> int:
        """Seconds before the walltime the workers are told to stop (grace + margin)."""
        return math.ceil(self.grace) + STOP_MARGIN

    @property
    def memory_mib(self) -> int | None:
        """The memory as whole MiB, the unit both batch systems are given."""
        return None if self.memory_bytes is None else math.ceil(self.memory_bytes / 2**20)

    def worker_command(self) -> list[str]:
        """``python -m aethergraph.cli worker ...`` without ``-n`` (each process adds its name)."""
        return [
            self.python, "-m", "aethergraph.cli", "worker",
            "--tools", ",".join(self.tools),
            "-Q", ",".join(self.queues),
            "-c", str(self.slots),
            "--pool", self.pool,
            "--grace", f"{self.grace:g}",
            "-l", "INFO",
            *(["--services", self.services] if self.services else []),
            *self.worker_extra_args,
        ]  # fmt: skip


def job_spec(
    *,
    cores: int,
    processes: int,
    memory: str | None,
    walltime: str,
    queue: str | None,
    account: str | None,
    job_name: str,
    job_extra_directives: Sequence[str],
    job_script_prologue: Sequence[str],
    tools: Sequence[str] | str | None,
    services: str | None,
    queues: Sequence[str] | str,
    pool: str,
    python: str | None,
    worker_extra_args: Sequence[str],
    grace: float,
    submit_command_extra: Sequence[str],
) -> JobSpec:
    """Check every parameter; the first mistake raises a :class:`ConfigurationError`."""
    _count(cores, "cores (CPU cores per job)", 1)
    _count(processes, "processes (worker processes per job)", 1)
    if cores % processes:
        raise ConfigurationError(
            f"cores={cores} must be a multiple of processes={processes}: each of a job's worker "
            "processes gets cores/processes pool slots (-c)"
        )
    seconds = parse_walltime(walltime)
    if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace < 1e6:
        raise ConfigurationError(f"grace must be seconds >= 0 (default 25), got {grace!r}")
    if seconds <= math.ceil(grace) + STOP_MARGIN:
        raise ConfigurationError(
            f"walltime={walltime!r} leaves no time to work: the workers are stopped "
            f"{math.ceil(grace) + STOP_MARGIN} s before it (grace={grace:g} + {STOP_MARGIN} s); "
            "ask for a longer walltime or a shorter grace"
        )
    if pool not in POOLS:
        raise ConfigurationError(f"pool must be one of {', '.join(POOLS)}, got {pool!r}")
    if services is not None and (not isinstance(services, str) or ":" not in services):
        raise ConfigurationError(f"services must be 'module:function', got {services!r}")
    queue_list = _strings(queues, "queues")
    if not queue_list or any("," in q or " " in q for q in queue_list):
        raise ConfigurationError(f"queues must name AetherGraph queues (-Q), got {queues!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", job_name or ""):
        raise ConfigurationError(
            f"job_name must be 1-64 letters, digits or '_.-', got {job_name!r}"
        )
    python = python or sys.executable
    if not isinstance(python, str) or not python.strip():
        raise ConfigurationError(f"python must be the interpreter's path, got {python!r}")
    return JobSpec(
        cores=cores,
        processes=processes,
        memory=memory,
        memory_bytes=None if memory is None else parse_memory(memory),
        walltime=walltime,
        walltime_seconds=seconds,
        queue=_optional_word(queue, "queue (the batch queue / partition)"),
        account=_optional_word(account, "account"),
        job_name=job_name,
        job_extra_directives=tuple(_strings(job_extra_directives, "job_extra_directives")),
        job_script_prologue=tuple(_strings(job_script_prologue, "job_script_prologue")),
        tools=tuple(_tools(tools)),
        services=services,
        queues=tuple(queue_list or [DEFAULT_QUEUE]),
        pool=pool,
        python=python,
        worker_extra_args=tuple(_strings(worker_extra_args, "worker_extra_args", single=False)),
        grace=float(grace),
        submit_command_extra=tuple(
            _strings(submit_command_extra, "submit_command_extra", single=False)
        ),
    )
