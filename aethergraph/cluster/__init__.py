"""Clusters: a pool of ``aethergraph worker`` processes and the broker they share, as one object.

* :class:`LocalCluster` — a private Redis and N worker processes on this machine (scripts,
  notebooks, tests).
* :class:`SlurmCluster` / :class:`PBSCluster` — worker pools as batch jobs, submitted from a login
  node (``sbatch`` / ``qsub``), sized with ``scale(n)`` or by demand with ``adapt()``, in the
  manner of dask-jobqueue (docs/hpc.md).

Every cluster is a context manager, runs graphs with ``cluster.run(gf, **inputs)``, and can be
given to the entry points directly: ``run(gf, executor=cluster)`` (or ``cluster.executor``).
"""

from __future__ import annotations

from aethergraph.cluster.jobqueue import JobQueueCluster
from aethergraph.cluster.local import LocalCluster
from aethergraph.cluster.pbs import PBSCluster
from aethergraph.cluster.slurm import SlurmCluster
from aethergraph.redis_server import find_redis_server

__all__ = ["JobQueueCluster", "LocalCluster", "PBSCluster", "SlurmCluster", "find_redis_server"]
