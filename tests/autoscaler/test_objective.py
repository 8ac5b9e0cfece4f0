"""The latency objective step, with exact values."""

import pytest

from ebbtide.autoscaler.objective import (
    ObjectiveReason,
    propose_for_objective,
)
from ebbtide.core.latency import bucket_percentile

BOUNDS = (0.1, 0.2, 0.4, 0.8)


def test_percentile_interpolates_inside_its_bucket() -> None:
    # 100 answers: 50 under 0.1 s, 50 between 0.2 s and 0.4 s. The p99 is the 99th answer,
    # 49 of 50 into the third bucket.
    assert bucket_percentile((50, 0, 50, 0, 0), 99, BOUNDS) == pytest.approx(0.2 + 0.2 * 49 / 50)
    assert bucket_percentile((0, 0, 0, 0, 10), 99, BOUNDS) == 0.8
    assert bucket_percentile((0, 0, 0, 0, 0), 99, BOUNDS) is None


def test_too_few_answers_ask_for_nothing() -> None:
    proposal = propose_for_objective((99, 0, 0, 0, 0), BOUNDS, 99, 0.2, 2, 5)
    assert (proposal.replicas, proposal.reason) == (None, ObjectiveReason.NO_DATA)


def test_met_objective_sets_no_floor() -> None:
    proposal = propose_for_objective((100, 0, 0, 0, 0), BOUNDS, 99, 0.2, 2, 5)
    assert proposal.replicas is None
    assert proposal.reason is ObjectiveReason.MET
    assert proposal.message == "p99 latency 99 ms is within the objective 200 ms"


def test_missed_objective_scales_with_how_far_over() -> None:
    # p99 = 0.2 + 0.2 * 49/50 = 0.396 s against 0.2 s: 2 ready * 1.98 → 4.
    proposal = propose_for_objective((50, 0, 50, 0, 0), BOUNDS, 99, 0.2, 2, 10)
    assert proposal.replicas == 4
    assert proposal.reason is ObjectiveReason.MISSED
    assert proposal.message == "p99 latency 396 ms is over the objective 200 ms: 2 → 4"


def test_slightly_over_still_adds_one() -> None:
    # p99 = 0.1 + 0.1 * 9/10 = 0.19 s against 0.15 s: 3 * 1.27 → 4, at least 3 + 1.
    proposal = propose_for_objective((90, 10, 0, 0, 0), BOUNDS, 99, 0.15, 3, 10)
    assert proposal.replicas == 4


def test_missed_at_max_replicas_says_it_cannot_be_met() -> None:
    proposal = propose_for_objective((50, 0, 50, 0, 0), BOUNDS, 99, 0.2, 5, 5)
    assert proposal.replicas == 5
    assert proposal.reason is ObjectiveReason.UNMEETABLE_AT_MAX
    assert "at maxReplicas (5): the objective cannot be met" in proposal.message


def test_proposal_never_exceeds_max_replicas() -> None:
    proposal = propose_for_objective((0, 0, 0, 0, 100), BOUNDS, 99, 0.1, 2, 3)
    assert (proposal.replicas, proposal.reason) == (3, ObjectiveReason.MISSED)
