"""``python -m aethergraph``: the ``aethergraph`` command without the console script.

For environments where the script is not on ``PATH`` (a venv that is not activated, a
notebook's kernel, ``sys.executable -m aethergraph`` in a subprocess), as with ``python -m
celery``. It is the same :func:`aethergraph.cli.main`, so the same flags and exit codes apply.
"""

from __future__ import annotations

from aethergraph.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
