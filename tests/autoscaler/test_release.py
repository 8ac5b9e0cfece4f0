"""Release timing: the scale-down window and burst hold follow the measured replica start."""

from __future__ import annotations

import pytest

from ebbtide.autoscaler import KUBERNETES, LOCAL, Observation, ReplicaSample, State
from ebbtide.autoscaler.profiles import ReleaseTiming
from ebbtide.autoscaler.release import applied, note_starts, timing
from tests.autoscaler.builders import pods_metric, policy

SETTINGS = ReleaseTiming(window_starts=16.0, hold_starts=32.0, minimum=2.0, assumed_start=0.5)


def seen(state: State, *replicas: ReplicaSample) -> State:
    """A decision's view: the replicas given, beside one serving since long before."""
    fleet = (ReplicaSample("first", 0.0, True, 0.0), *replicas)
    return note_starts(state, Observation(len(fleet), fleet, None), SETTINGS)


def started(name: str, at: float, took: float | None) -> ReplicaSample:
    """A replica started at `at`, ready `took` seconds later (None: not ready yet)."""
    if took is None:
        return ReplicaSample(name, at, False)
    return ReplicaSample(name, at, True, at + took)


def test_windows_are_a_number_of_starts_with_a_floor() -> None:
    assert SETTINGS.windows(0.5) == (8.0, 16.0)
    assert SETTINGS.windows(2.5) == (40.0, 80.0)
    assert SETTINGS.windows(0.03) == (2.0, 2.0)


def test_each_replica_is_timed_once_when_it_becomes_ready() -> None:
    state = seen(State(), started("a", 10.0, None))
    assert state.start_times == ()
    state = seen(state, started("a", 10.0, 0.25))
    assert state.start_times == (0.25,)
    # Seen again, ready again later (a restart of its readiness): not a second start.
    state = seen(state, ReplicaSample("a", 10.0, True, 50.0), started("b", 20.0, 0.5))
    assert state.start_times == (0.25, 0.5)
    assert state.timed == {"first", "a", "b"}
    # Gone replicas are forgotten; their starts are kept.
    state = seen(state, started("b", 20.0, 0.5))
    assert state.timed == {"first", "b"}
    assert state.start_times == (0.25, 0.5)


def test_a_replica_ready_when_it_was_created_says_nothing() -> None:
    state = seen(State(), started("a", 0.0, 0.0))
    assert state.start_times == ()
    assert state.timed == {"first", "a"}


def test_a_start_with_no_replica_serving_says_nothing() -> None:
    # The endpoint's first replica also warms the process the next ones are forked from.
    alone = Observation(1, (started("a", 10.0, 2.0),), None)
    state = note_starts(State(), alone, SETTINGS)
    assert state.start_times == ()
    assert state.timed == {"a"}
    # The next one, started beside it, is what a scale-up costs.
    beside = Observation(2, (started("a", 10.0, 2.0), started("b", 20.0, 0.05)), None)
    assert note_starts(state, beside, SETTINGS).start_times == pytest.approx((0.05,))


def test_the_median_of_the_latest_starts_sets_the_windows() -> None:
    state = State()
    for i, took in enumerate([3.0, 0.05, 0.06, 0.07, 0.05, 0.04]):
        state = seen(state, started(f"r{i}", 1.0, took))
    # The first fell out.
    assert state.start_times == pytest.approx((0.05, 0.06, 0.07, 0.05, 0.04))
    local = policy(LOCAL, metrics=[pods_metric("concurrency", 2)])
    chosen = timing(local, state)
    assert chosen is not None
    assert chosen.start == pytest.approx(0.05)
    assert chosen.measured
    tuned = applied(local, chosen)
    assert tuned.scale_down.stabilization_window == 2.0
    assert tuned.burst is not None
    assert tuned.burst.hold == 2.0


def test_until_a_start_is_measured_the_assumed_one_counts() -> None:
    local = policy(LOCAL, metrics=[pods_metric("concurrency", 2)])
    chosen = timing(local, State())
    assert chosen is not None
    assert (chosen.start, chosen.measured) == (0.5, False)
    assert (chosen.scale_down_window, chosen.burst_hold) == (8.0, 16.0)


def test_fixed_windows_do_not_follow_the_start() -> None:
    assert timing(policy(KUBERNETES, cpu_target=60), State()) is None
    chosen = policy(
        LOCAL,
        metrics=[pods_metric("concurrency", 2)],
        behavior={"scaleDown": {"stabilizationWindowSeconds": 20}},
    )
    assert chosen.release is None
    assert timing(chosen, State()) is None
