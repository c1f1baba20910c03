"""How a message's Celery task ends, decided from its nodes' outcomes (worker side)."""

from __future__ import annotations

from typing import Any

import pytest
from celery.exceptions import Ignore, Retry

from aethergraph.errors import NodesFailedError, ToolError
from aethergraph.execution.base import NodeOutcome, failure_from
from aethergraph.execution.worker.outcomes import Finished
from aethergraph.execution.worker.reporting import report


def _node(i: int, *, attempt: int = 1, retries: int = 0, timeout: float | None = None) -> Any:
    return {"run_id": "r1", "node_id": f"t_{i}", "attempt": attempt, "retries": retries,
            "timeout": timeout}  # fmt: skip


def _ok(i: int) -> Finished:
    return Finished(f"id{i}", _node(i), NodeOutcome({"y": i}))


def _failed(i: int, exc: BaseException, **meta: Any) -> Finished:
    try:
        raise exc
    except BaseException as raised:
        failure = failure_from(raised)
    return Finished(f"id{i}", _node(i, **meta), NodeOutcome(failure=failure))


def test_success_names_the_run_and_nodes() -> None:
    assert report("t", [_ok(0)]) == "t_0 of run r1: done"
    assert report("t", [_ok(0), _ok(1)]) == "2 nodes of run r1: done"
    assert report("t", []) == "no node ran: the client left"


def test_a_final_failure_raises_a_tool_error_chained_to_the_tools_exception() -> None:
    with pytest.raises(ToolError) as caught:
        report("t", [_failed(0, ValueError("boom"))])
    assert caught.value.node_id == "t_0"
    assert caught.value.run_id == "r1"
    assert isinstance(caught.value.__cause__, ValueError)


def test_a_failure_the_client_retries_is_a_retry() -> None:
    with pytest.raises(Retry) as caught:
        report("t", [_failed(0, ValueError("boom"), attempt=1, retries=2)])
    assert isinstance(caught.value.exc, ToolError)
    with pytest.raises(ToolError):  # the last attempt fails for good
        report("t", [_failed(0, ValueError("boom"), attempt=3, retries=2)])


def test_a_pack_names_which_of_its_nodes_failed() -> None:
    done = [_ok(0), _failed(1, KeyError("k1")), _ok(2), _failed(3, ValueError("v3"))]
    with pytest.raises(NodesFailedError) as caught:
        report("t", done)
    assert caught.value.node_ids == ["t_1", "t_3"]
    assert "2 of 4 nodes" in str(caught.value)
    assert "t_3 (ValueError: v3)" in str(caught.value)


def test_a_revoked_node_is_ignored() -> None:
    from celery.exceptions import SoftTimeLimitExceeded

    with pytest.raises(Ignore):
        report("t", [_failed(0, SoftTimeLimitExceeded())])
