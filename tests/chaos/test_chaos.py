"""The quick chaos set (CI): each scenario once — nothing lost, nothing reported twice, in time.

``make chaos`` runs the same scenarios ten times each and prints the table (``table.py``).
"""

from __future__ import annotations

import pytest
from scenarios import ALL, CLIENT_KILL, run_trial


@pytest.mark.parametrize("scenario", ALL)
def test_scenario(scenario: str) -> None:
    trial = run_trial(scenario)
    assert trial.duplicates == 0, trial
    if scenario == CLIENT_KILL:
        assert not any("without a TTL" in note for note in trial.notes), trial.notes
        assert trial.nodes > trial.reruns  # sanity: the run was under way
    else:
        assert trial.lost == 0, trial
        assert trial.recovery is not None, "the fault hit no running node"
    assert trial.recovery is not None
    # the scenario's documented bound (docs/reliability.md): seconds, not the hour-long
    # visibility timeout; generous against a loaded CI machine
    assert trial.recovery < trial.bound, trial
