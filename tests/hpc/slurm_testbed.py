"""A real single-node Slurm for the SlurmCluster tests, started by the session and torn down.

Everything lives in one temporary folder: ``slurm.conf`` (free ports, this host as the one node,
``proctrack/linuxproc`` and ``task/none`` so no cgroup set-up is needed), the state, spool, pid
and log files, and a private ``munged`` with its own key and socket (``AuthInfo=socket=...``).
Nothing of the system's is touched: not ``/etc/munge``, not a running ``munged``, not an
installed ``slurm.conf``. The daemons run in the foreground (``-D`` / ``-F``) as children of the
test process and are stopped by pid at the end; the clusters get ``SLURM_CONF`` through their
``env=``. Needs root (``SlurmUser=root``) and the Debian packages ``slurm-wlm`` and ``munge``;
otherwise the tests that need it skip, saying why.

Not a ``conftest.py`` on purpose: tests/distributed does ``from conftest import TOOLS``, and a
second ``conftest`` module loaded first (as when both folders are named on the command line)
would answer for it. The Slurm test module imports the fixture from here.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

TOOLS = str(HERE / "hpc_tools.py")
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")


def _free_port() -> int:
    with socket.socket() as sock:  # slurmctld and slurmd listen on every interface
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


@dataclass
class Slurm:
    """The test Slurm: its folder, config and the environment its commands need."""

    root: Path
    conf: Path
    node: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def command(self, *argv: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def queue(self) -> dict[str, str]:
        """``squeue``: every job id in the queue -> its state."""
        done = self.command("squeue", "--noheader", "--format=%i %T")
        assert done.returncode == 0, done.stderr
        return dict(line.split() for line in done.stdout.splitlines() if line.strip())

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted((self.root / "log").glob("*"))
        )


def _config(root: Path, node: str) -> str:
    cpus = os.cpu_count() or 1
    return "\n".join(
        [
            "ClusterName=agtest",
            f"SlurmctldHost={node}",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={root / 'munge' / 'munge.socket'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "ReturnToService=2",
            "KillWait=5",
            "MinJobAge=2",
            "SchedulerParameters=sched_interval=1",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd.pid'}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            f"NodeName={node} CPUs={cpus} RealMemory=4000 State=UNKNOWN",
            f"PartitionName=agtest Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        ]
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_idle(slurm: Slurm, timeout: float = 30.0) -> None:
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in slurm.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}\n{slurm.logs()}")
        try:
            done = slurm.command("sinfo", "--noheader", "--format=%t", timeout=5)
        except subprocess.TimeoutExpired:
            continue
        if done.stdout.strip() == "idle":
            return
        pause.wait(0.2)
    raise RuntimeError(f"the test Slurm's node did not become idle in {timeout:g}s\n{slurm.logs()}")


@pytest.fixture(scope="session", name="slurm")
def slurm_fixture() -> Iterator[Slurm]:
    """A running single-node Slurm (skips where it cannot run)."""
    if os.geteuid() != 0:
        pytest.skip("a private Slurm needs root here (SlurmUser=root; munged as root)")
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        pytest.skip(f"Slurm/munge not installed (apt-get install slurm-wlm munge): no {missing}")
    root = Path(tempfile.mkdtemp(prefix="ag-slurm-"))
    root.chmod(0o711)
    for sub in ("state", "spool", "log", "jobs"):
        (root / sub).mkdir()
    munge = root / "munge"
    munge.mkdir(mode=0o711)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o400)
    node = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(_config(root, node) + "\n")
    slurm = Slurm(root, conf, node)
    log = open(root / "log" / "daemons.out", "wb")  # noqa: SIM115  # closed at teardown
    try:
        slurm.procs.append(
            subprocess.Popen(
                ["munged", "-F", "--force", f"--socket={munge / 'munge.socket'}",
                 f"--key-file={key}", f"--pid-file={munge / 'munged.pid'}",
                 f"--seed-file={munge / 'munged.seed'}",
                 f"--log-file={root / 'log' / 'munged.log'}"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        for daemon in ("slurmctld", "slurmd"):
            slurm.procs.append(
                subprocess.Popen(
                    [daemon, "-D", "-f", str(conf)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **slurm.env},
                )
            )
        try:
            _wait_idle(slurm)
        except RuntimeError as exc:
            pytest.skip(f"the test Slurm did not start: {exc}")
        yield slurm
    finally:
        try:
            leftover = slurm.queue() if slurm.procs[-1].poll() is None else {}
            if leftover:
                slurm.command("scancel", *leftover)
        except (AssertionError, OSError, subprocess.SubprocessError):
            pass
        for proc in reversed(slurm.procs):  # slurmd, slurmctld, then munged
            _stop(proc)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
