"""The runtime state of one node, and the references into a run that tracing hands out.

Memory (dask's ``release_data``, done by reference counting). A finished node's outputs live in
an :class:`OutputCell`. The scheduler fills the cell when the node finishes and drops its own
reference to it at once; what keeps the cell — and so the values — alive is only what can still
need them:

* the :class:`RunRef` objects (handles and refs) that the graph body still holds,
* the pending arguments of downstream nodes that name it (a node keeps its raw arguments until
  it has finished, retries included), and
* the body's return value until the outputs are normalized.

So an intermediate value is freed as soon as no pending node and no live handle needs it, and a
finished run's ``TaskGraph`` (``gf.last_graph``) keeps structure, statuses, attempts and timings —
its nodes' inputs hold plain :class:`~aethergraph.graph.refs.RefSpec` references — but no values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aethergraph.graph.refs import PathItem, RefBase
from aethergraph.graph.task_graph import TaskNode
from aethergraph.graph.tool_spec import ToolSpec
from aethergraph.scheduling.waiting import Waitable

if TYPE_CHECKING:
    from aethergraph.execution.base import NodeJob
    from aethergraph.scheduling.scheduler import RunScheduler


#: Where a finished node's outputs are kept while someone can still read them: a one-item list
#: (``cell[0]``), the cheapest mutable box Python has — one is made per node on the hot path.
OutputCell = list[dict[str, Any] | None]


class NodeState(Waitable):
    """Runtime state of one node (the TaskNode holds what is shown to users)."""

    __slots__ = (
        "args",
        "cell",
        "dependents",
        "error",
        "job",
        "node",
        "refs",
        "remaining",
        "tool",
    )

    def __init__(
        self, node: TaskNode, tool: ToolSpec, args: dict[str, Any], refs: list[RefBase]
    ) -> None:
        self.is_finished = False
        self.waiters = None
        self.node = node
        self.tool = tool
        #: the call's arguments with live refs; dropped when the node has finished
        self.args: dict[str, Any] | None = args
        self.refs = refs
        self.remaining = 0
        self.dependents: list[NodeState] = []
        #: filled and then let go by the scheduler when the node finishes (see module docstring)
        self.cell: OutputCell | None = [None]
        self.error: BaseException | None = None
        self.job: NodeJob | None = None


class RunRef(RefBase):
    """A reference into a live run: the scheduling side of tracing's ``NodeHandle``/``Ref``.

    It pins the producing node's :class:`OutputCell`, which is how values stay alive exactly as
    long as a reference to them does.
    """

    __slots__ = ("_cell", "_run", "_state")

    def __init__(
        self,
        run: RunScheduler,
        state: NodeState,
        cell: OutputCell,
        path: tuple[PathItem, ...] = (),
    ) -> None:
        self._ref_node = state.node.node_id
        self._ref_path = path
        self._run = run
        self._state = state
        self._cell = cell

    def _outputs(self) -> dict[str, Any]:
        """The producing node's outputs, or its error raised (the node must have finished)."""
        state = self._state
        if state.error is not None:
            raise state.error
        value = self._cell[0]
        assert value is not None, "outputs read before the node finished"
        return value
