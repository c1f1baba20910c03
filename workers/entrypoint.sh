#!/bin/sh
# Entrypoint of the worker image (workers/Dockerfile): `aethergraph worker` configured by the
# WORKER_* variables of workers/worker.env, plus the AETHERGRAPH_* settings it reads itself.
#
#   docker run --env-file workers/worker.env aethergraph-worker                 # the pool
#   docker run ... aethergraph-worker --max-tasks-per-child 100                  # extra flags
#   docker run ... aethergraph-worker aethergraph status                         # any command
#
# exec: the worker replaces this shell, so it gets the runtime's SIGTERM itself (a warm stop:
# running nodes get AETHERGRAPH_STOP_GRACE seconds, then their messages are handed back).
set -eu

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$@"  # a command, not worker flags
fi

set -- --tools "${WORKER_TOOLS:-example_tools}" \
  -Q "${WORKER_QUEUES:-aethergraph}" \
  --pool "${WORKER_POOL:-prefork}" \
  -l "${WORKER_LOGLEVEL:-INFO}" \
  "$@"
if [ -n "${WORKER_SERVICES:-}" ]; then
  set -- --services "$WORKER_SERVICES" "$@"
fi
if [ -n "${WORKER_CONCURRENCY:-}" ]; then
  set -- -c "$WORKER_CONCURRENCY" "$@"
fi

# WORKER_ARGS is split on whitespace on purpose: several flags in one variable
# shellcheck disable=SC2086
exec aethergraph worker "$@" ${WORKER_ARGS:-}
