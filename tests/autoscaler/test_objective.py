"""The latency objective step, with exact values."""

import pytest

from ebbtide.autoscaler.objective import (
    GROWTH,
    MissedWindow,
    ObjectiveReason,
    answers_over,
    compare_with_fewer,
    not_lowered_message,
    note_miss,
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


# The learned load: requests in flight per ready replica at which the objective holds.


def test_a_miss_learns_the_load_that_would_have_met_it() -> None:
    # 2 replicas, 4 in flight (2 each), p99 0.396 s against 0.2 s: 2 * 0.2 / 0.396 each.
    proposal = propose_for_objective((50, 0, 50, 0, 0), BOUNDS, 99, 0.2, 2, 10, in_flight=4.0)
    assert proposal.learned == pytest.approx(2 * 0.2 / 0.396)
    assert proposal.replicas == 4  # ceil(4 / 1.01), and 2 * 1.98 rounded up
    assert proposal.message.endswith("2 → 4 (learned limit: 1.01 in flight per replica)")


def test_one_miss_at_most_halves_what_was_learned() -> None:
    proposal = propose_for_objective(
        (50, 0, 50, 0, 0), BOUNDS, 99, 0.2, 2, 10, in_flight=4.0, learned=3.0
    )
    assert proposal.learned == pytest.approx(1.5)


def test_within_the_objective_the_learned_load_is_a_floor() -> None:
    # The concurrency the floor holds: 6 in flight at 1.5 each is 4 replicas, whatever else
    # the other targets ask for; within the objective the step keeps it, so the count does
    # not fall back to where the latency was missed.
    proposal = propose_for_objective(
        (50, 50, 0, 0, 0), BOUNDS, 99, 0.2, 4, 10, in_flight=6.0, learned=1.5
    )
    assert proposal.reason is ObjectiveReason.MET
    assert (proposal.replicas, proposal.learned) == (4, 1.5)  # p99 0.198 s: no room to grow


def test_with_room_and_the_floor_holding_the_replicas_the_load_grows() -> None:
    # p99 0.099 s, under 90% of 0.2 s, and the floor (ceil(3 / 1.0) = 3) holds all 3 ready.
    proposal = propose_for_objective(
        (100, 0, 0, 0, 0), BOUNDS, 99, 0.2, 3, 10, in_flight=3.0, learned=1.0
    )
    assert proposal.learned == pytest.approx(GROWTH)
    assert proposal.replicas == 3


def test_while_other_targets_hold_more_replicas_a_met_objective_teaches_nothing() -> None:
    proposal = propose_for_objective(
        (100, 0, 0, 0, 0), BOUNDS, 99, 0.2, 5, 10, in_flight=3.0, learned=1.0
    )
    assert proposal.learned == 1.0


def test_a_miss_within_chance_holds_and_says_so() -> None:
    # 1000 answers, 12 over 0.2 s: the p99 is over it (0.233 s), but 12 against the 10 a p99
    # allows is within one binomial standard deviation (3.1): hold, learn nothing.
    counts = (988, 0, 12, 0, 0)
    proposal = propose_for_objective(counts, BOUNDS, 99, 0.2, 2, 10, in_flight=4.0)
    assert proposal.reason is ObjectiveReason.MISSED
    assert (proposal.replicas, proposal.learned) == (2, None)
    assert proposal.message == (
        "p99 latency 233 ms is over the objective 200 ms: holding 2: 12 of 1000 answers over "
        "it is within chance of the 10 allowed"
    )
    # 15 over is beyond chance: it acts.
    acted = propose_for_objective((985, 0, 15, 0, 0), BOUNDS, 99, 0.2, 2, 10, in_flight=4.0)
    assert acted.learned is not None
    assert acted.replicas == 3


def test_until_the_replicas_asked_for_have_served_a_window_a_miss_holds() -> None:
    proposal = propose_for_objective(
        (50, 0, 50, 0, 0), BOUNDS, 99, 0.2, 4, 10, in_flight=8.0, learned=1.0, may_lower=False
    )
    assert (proposal.replicas, proposal.learned) == (8, 1.0)
    assert "holding 8 until the replicas it asked for have served a window" in proposal.message


def test_without_enough_answers_the_learned_floor_still_holds() -> None:
    proposal = propose_for_objective(
        (10, 0, 0, 0, 0), BOUNDS, 99, 0.2, 1, 10, in_flight=3.0, learned=1.0
    )
    assert (proposal.replicas, proposal.reason) == (3, ObjectiveReason.NO_DATA)


def test_answers_over_split_the_bucket_the_objective_falls_in() -> None:
    # 10 answers in (0.1, 0.2]: a quarter of that bucket is above 0.175 s.
    assert answers_over((0, 10, 4, 0, 1), BOUNDS, 0.175) == pytest.approx(2.5 + 4 + 1)


def window(
    time: float, ready: int, load: float, observed: float, rate: float = 50.0
) -> MissedWindow:
    """A missed window; the traffic the same 50 requests/s unless given."""
    return MissedWindow(time, ready, load, observed, rate)


def test_missed_windows_keep_the_latest_per_replica_count_for_five_minutes() -> None:
    kept = note_miss((), window(0.0, 2, 2.0, 0.4))
    kept = note_miss(kept, window(10.0, 4, 1.0, 0.4))
    kept = note_miss(kept, window(20.0, 2, 2.5, 0.5))
    assert [(w.time, w.ready) for w in kept] == [(10.0, 4), (20.0, 2)]
    kept = note_miss(kept, window(315.0, 6, 1.0, 0.4))
    assert [(w.time, w.ready) for w in kept] == [(20.0, 2), (315.0, 6)]


@pytest.mark.parametrize(
    ("earlier", "now", "lowered"),
    [
        # Half the load per replica, the same p99: more replicas did not lower it.
        ((0.0, 2, 2.0, 0.4), (15.0, 4, 1.0, 0.4), False),
        # A little lower is still not lowered (within 15%).
        ((0.0, 2, 2.0, 0.4), (15.0, 4, 1.0, 0.345), False),
        # Lower: they did.
        ((0.0, 2, 2.0, 0.4), (15.0, 4, 1.0, 0.3), True),
        # Not clearly less load each (the traffic rose with the replicas): nothing to compare.
        ((0.0, 2, 2.0, 0.4), (15.0, 4, 1.7, 0.4), None),
        # Fewer replicas now, or the earlier window over five minutes old: nothing to compare.
        ((0.0, 4, 2.0, 0.4), (15.0, 2, 1.0, 0.4), None),
        ((0.0, 2, 2.0, 0.4), (301.0, 4, 1.0, 0.4), None),
        ((0.0, 2, 2.0, 0.4), (299.0, 4, 1.0, 0.4), False),
        # Requests arriving more than 1.5 times as fast: a larger burst, nothing to compare.
        ((0.0, 2, 2.0, 0.4), (15.0, 4, 1.0, 0.4, 80.0), None),
    ],
)
def test_a_miss_compares_with_one_at_fewer_replicas_each_holding_more(
    earlier: tuple[float, int, float, float],
    now: tuple[float, ...],
    lowered: bool | None,
) -> None:
    before = window(*earlier)
    compared = compare_with_fewer((before,), window(*now))
    assert compared == (None if lowered is None else (before, lowered))


def test_a_miss_compares_with_the_fastest_of_the_windows_at_fewer_replicas() -> None:
    # At 1 replica 15 ms, at 4 a transient 24.7 ms; at 5, 19.6 ms: lower than at 4, not at 1.
    fewer = (window(0.0, 1, 1.0, 0.015), window(5.0, 4, 0.5, 0.0247))
    compared = compare_with_fewer(fewer, window(10.0, 5, 0.3, 0.0196))
    assert compared == (fewer[0], False)


def test_the_not_lowered_message_gives_both_windows() -> None:
    message = not_lowered_message(
        window(0.0, 1, 2.0, 0.0287), window(10.0, 5, 0.9, 0.0369), 99, 2.0
    )
    assert message.startswith(
        "; more replicas have not lowered it: p99 28.7 ms at 1 replica, 36.9 ms at 5 with 55% "
        "less load each."
    )
    assert "or in bursts shorter than the 2 s window" in message
