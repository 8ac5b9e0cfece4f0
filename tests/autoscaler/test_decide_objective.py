"""`decide` with a latency objective: the objective step joins the others, at exact times."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ebbtide.autoscaler import (
    KUBERNETES,
    LOCAL,
    Decision,
    Observation,
    Policy,
    State,
    Step,
    Traffic,
    decide,
    explain,
)
from ebbtide.autoscaler.objective import MissedWindow
from ebbtide.autoscaler.windows import Sample, latency_window
from ebbtide.core.latency import LATENCY_BOUNDS
from ebbtide.spec.models import Condition
from tests.autoscaler.builders import NOW, pod, pods_metric, policy, unready

BUCKET_400MS = LATENCY_BOUNDS.index(0.4)
"""Answers between 300 ms and 400 ms."""
BUCKET_100MS = LATENCY_BOUNDS.index(0.1)
"""Answers between 80 ms and 100 ms."""
SLOW = LATENCY_BOUNDS.index(2.0)
"""Answers between 1.5 s and 2 s."""


def objective_policy(max_replicas: int = 10, latency_ms: float = 200) -> Policy:
    return policy(
        KUBERNETES,
        max_replicas=max_replicas,
        metrics=[pods_metric("concurrency", 2)],
        objective={"percentile": 99, "latencyMilliseconds": latency_ms},
    )


def counts(bucket: int, answers: int) -> tuple[int, ...]:
    buckets = [0] * (len(LATENCY_BOUNDS) + 1)
    buckets[bucket] = answers
    return tuple(buckets)


def latency_counts(
    samples: tuple[Sample, ...], window: float, slack: float, at_least: int = 0
) -> tuple[int, ...] | None:
    """The window's answers per bucket, without the time they are counted from."""
    found = latency_window(samples, window, slack, at_least)
    return found[0] if found is not None else None


def added(first: tuple[int, ...], second: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(a + b for a, b in zip(first, second, strict=True))


def two_readings(resolved: Policy, replicas: int, answers: tuple[int, ...]) -> Decision:
    """A reading at NOW - 15 with no answers yet, then one at NOW after `answers` and 15 s of
    two requests in flight per replica (the concurrency target exactly: it asks for no change)."""
    fleet = tuple(pod(f"r{i}") for i in range(replicas))
    empty = tuple(0 for _ in answers)
    first = Observation(replicas, fleet, Traffic(0.0, 0, 0.0, empty, 0.0))
    state = decide(first, resolved, State(), NOW - 15).state
    in_flight = 2.0 * replicas
    traffic = Traffic(in_flight, 1500, in_flight * 15, answers, 0.0)
    return decide(Observation(replicas, fleet, traffic), resolved, state, NOW)


def objective_of(decision: Decision) -> tuple[Step, Condition]:
    """The decision's objective step and its ObjectiveMet condition, both present."""
    step, met = decision.step("objective"), decision.condition("ObjectiveMet")
    assert step is not None
    assert met is not None
    return step, met


def test_the_policy_resolves_the_objective_in_seconds() -> None:
    resolved = objective_policy(latency_ms=250)
    assert resolved.objective is not None
    assert (resolved.objective.percentile, resolved.objective.latency) == (99.0, 0.25)
    assert policy(KUBERNETES, cpu_target=60).objective is None


def test_the_window_takes_differences_of_the_latency_counters() -> None:
    resolved = objective_policy()
    fleet = (pod("r0"),)
    state = State()
    for when, answers in ((NOW - 15, 40), (NOW, 140)):
        traffic = Traffic(0.0, answers, 0.0, counts(BUCKET_100MS, answers), 0.0)
        state = decide(Observation(1, fleet, traffic), resolved, state, when).state
    assert latency_counts(state.samples, 15.0, 7.5) == counts(BUCKET_100MS, 100)


def test_a_missed_objective_raises_the_count_and_says_why() -> None:
    # 100 answers in (300 ms, 400 ms]: p99 = 0.3 + 0.1 * 99/100 = 0.399 s against 0.2 s,
    # so 2 ready replicas * 1.995 → 4. The concurrency target alone asks for 2.
    decision = two_readings(objective_policy(), 2, counts(BUCKET_400MS, 100))
    metrics, objective = decision.step("metrics"), decision.step("objective")
    assert metrics is not None
    assert metrics.replicas == 2
    assert objective is not None
    assert (objective.replicas, objective.reason) == (4, "ObjectiveMissed")
    # It learns the load that would have met it: 2 in flight per replica * 200/399.
    limit = "(learned limit: 1 in flight per replica)"
    assert objective.message == f"p99 latency 399 ms is over the objective 200 ms: 2 → 4 {limit}"
    assert decision.desired == 4
    assert decision.rescale_reason == objective.message
    met = decision.condition("ObjectiveMet")
    assert met is not None
    assert (met.status, met.reason) == ("False", "ObjectiveMissed")
    assert explain(decision, objective_policy()) == (
        f"scaling up 2 → 4 for the latency objective: {objective.message}"
    )
    assert decision.state.objective_load == pytest.approx(2 * 0.2 / 0.399)


def test_a_met_objective_leaves_the_count_to_the_other_targets() -> None:
    # p99 = 0.08 + 0.02 * 99/100 = 0.0998 s, within 0.2 s.
    decision = two_readings(objective_policy(), 2, counts(BUCKET_100MS, 100))
    assert decision.desired == 2
    objective = decision.step("objective")
    assert objective is not None
    assert (objective.replicas, objective.reason) == (2, "ObjectiveMet")
    met = decision.condition("ObjectiveMet")
    assert met is not None
    assert (met.status, met.reason, met.message) == (
        "True",
        "ObjectiveMet",
        "p99 latency 99.8 ms is within the objective 200 ms",
    )


def test_at_max_replicas_the_objective_is_unmeetable_and_the_condition_says_so() -> None:
    resolved = objective_policy(max_replicas=2)
    decision = two_readings(resolved, 2, counts(BUCKET_400MS, 100))
    assert decision.desired == 2
    met = decision.condition("ObjectiveMet")
    assert met is not None
    assert (met.status, met.reason) == ("False", "ObjectiveUnmeetableAtMaxReplicas")
    assert met.message == (
        "p99 latency 399 ms is over the objective 200 ms at maxReplicas (2): the objective "
        "cannot be met; raise maxReplicas or the objective"
    )
    assert explain(decision, resolved) == f"objective unmet at 2 replicas: {met.message}"


def test_too_few_answers_leave_the_objective_unknown() -> None:
    decision = two_readings(objective_policy(), 2, counts(BUCKET_400MS, 99))
    assert decision.desired == 2
    met = decision.condition("ObjectiveMet")
    assert met is not None
    assert (met.status, met.reason) == ("Unknown", "ObjectiveNoData")


def test_without_an_objective_there_is_no_step_and_no_condition() -> None:
    resolved = policy(KUBERNETES, metrics=[pods_metric("concurrency", 2)])
    decision = two_readings(resolved, 2, counts(BUCKET_400MS, 100))
    assert decision.step("objective") is None
    assert decision.condition("ObjectiveMet") is None


def test_the_window_reaches_back_to_older_readings_until_it_holds_enough_answers() -> None:
    # Readings every 15 s with 60 answers each: the 15 s window holds 60, fewer than the 100
    # a p99 needs, so it reaches back one more reading (120), never past the oldest kept.
    resolved = objective_policy()
    fleet = (pod("r0"),)
    state = State()
    for step in range(3):
        answers = 60 * step
        traffic = Traffic(0.0, answers, 0.0, counts(BUCKET_100MS, answers), 0.0)
        state = decide(Observation(1, fleet, traffic), resolved, state, NOW + 15 * step).state
    assert latency_counts(state.samples, 15.0, 7.5) == counts(BUCKET_100MS, 60)
    assert latency_counts(state.samples, 15.0, 7.5, at_least=100) == counts(BUCKET_100MS, 120)
    assert latency_counts(state.samples, 15.0, 7.5, at_least=500) == counts(BUCKET_100MS, 120)


def test_a_met_objective_keeps_the_replicas_that_met_it_instead_of_flapping() -> None:
    # The miss above raised 2 → 4 and learned 1.0 in flight per replica. 15 s later the same
    # 4 requests in flight are answered within the objective: the concurrency target alone
    # (2 per replica) asks for 2 again, which is where the latency was missed; the learned
    # floor, ceil(4 / 1.0025), keeps 4.
    resolved = objective_policy()
    missed = two_readings(resolved, 2, counts(BUCKET_400MS, 100))
    assert missed.desired == 4
    fleet = tuple(pod(f"r{i}") for i in range(4))
    answers = added(counts(BUCKET_400MS, 100), counts(BUCKET_100MS, 200))
    traffic = Traffic(4.0, 1800, 4.0 * 15 + 60.0, answers, 0.0)
    met = decide(Observation(4, fleet, traffic), resolved, missed.state, NOW + 15)
    metrics, objective = met.step("metrics"), met.step("objective")
    assert metrics is not None
    assert objective is not None
    assert metrics.replicas == 2
    assert (objective.reason, objective.replicas) == ("ObjectiveMet", 4)
    assert met.desired == 4


def test_the_learned_load_is_lowered_again_only_on_answers_after_the_last_lowering() -> None:
    # The local profile (2 s window), 2 replicas, 8 in flight. At 0.25 s answers take about
    # 400 ms: the first lowering. At 1.25 s and 2.0 s slower answers (about 2 s) would lower
    # it again, but the window still counts from before the lowering (the reading at 0 s),
    # so it holds. At 2.5 s the window counts from 1.25 s, after the lowering (no replica
    # start measured to wait for), and it is lowered again, at most halved.
    resolved = policy(
        LOCAL,
        max_replicas=20,
        metrics=[pods_metric("concurrency", 100)],
        objective={"percentile": 99, "latencyMilliseconds": 200},
    )
    fleet = tuple(pod(f"r{i}") for i in range(2))
    state = State()
    answers = counts(BUCKET_400MS, 0)
    learned: list[float | None] = []
    readings = ((0.0, None), (0.25, BUCKET_400MS), (1.25, SLOW), (2.0, SLOW), (2.5, SLOW))
    for when, bucket in readings:
        if bucket is not None:
            answers = added(answers, counts(bucket, 200))
        traffic = Traffic(8.0, sum(answers), 8.0 * when, answers, 0.0)
        state = decide(Observation(2, fleet, traffic), resolved, state, NOW + when).state
        learned.append(state.objective_load)
    first = 4.0 * 0.2 / 0.399  # p99 of 200 answers in (300 ms, 400 ms]: 399 ms
    assert learned[0] is None  # no window yet
    assert learned[1] == pytest.approx(first)
    assert learned[2] == learned[1]
    assert learned[3] == learned[1]
    assert learned[4] == pytest.approx(first / 2)


def test_what_the_objective_learned_survives_a_control_plane_restart() -> None:
    earlier, later = MissedWindow(985.0, 2, 2.0, 0.399, 50.0), MissedWindow(990, 4, 1.0, 0.4, 50.0)
    state = State(
        objective_load=1.25,
        objective_lowered_at=990.0,
        objective_misses=(earlier, later),
        objective_not_lowered=(earlier, later),
    )
    assert State.from_record(state.to_record()) == state
    older = state.to_record()
    for field in (
        "objective_load",
        "objective_lowered_at",
        "objective_misses",
        "objective_not_lowered",
    ):
        del older[field]
    assert State.from_record(older).objective_load is None
    assert State.from_record(older).objective_misses == ()


def test_a_miss_while_replicas_start_says_they_are_starting() -> None:
    # Two ready, one still starting: the miss asks for more, and the message says the wait
    # for the one already asked for is part of it.
    resolved = objective_policy()
    fleet = (pod("r0"), pod("r1"), unready("r2"))
    empty = counts(BUCKET_400MS, 0)
    first = decide(
        Observation(3, fleet, Traffic(0.0, 0, 0.0, empty, 0.0)), resolved, State(), NOW - 15
    )
    traffic = Traffic(4.0, 1500, 4.0 * 15, counts(BUCKET_400MS, 100), 0.0)
    decision = decide(Observation(3, fleet, traffic), resolved, first.state, NOW)
    objective, met = objective_of(decision)
    assert objective.reason == "ObjectiveMissedWhileStarting"
    assert objective.message.endswith(
        "; 1 replica still starting: the traffic rose faster than replicas start "
        "(more minReplicas, or faster starts, would hold it)"
    )
    assert (met.status, met.reason) == ("False", "ObjectiveMissedWhileStarting")


def miss_then_more_replicas(later: tuple[int, ...], forget: bool = False) -> Decision:
    """A miss at 2 replicas (2 in flight each, p99 399 ms) that asks for 4; then, 15 s later,
    the 4 replicas ready, 1 in flight each (half the load), and the window's answers `later`
    (`forget`: with no earlier miss kept to compare with)."""
    resolved = objective_policy()
    first = two_readings(resolved, 2, counts(BUCKET_400MS, 100))
    assert first.desired == 4
    state = replace(first.state, objective_misses=()) if forget else first.state
    fleet = tuple(pod(f"r{i}") for i in range(4))
    answers = added(counts(BUCKET_400MS, 100), later)
    traffic = Traffic(4.0, 3000, 2.0 * 2 * 15 + 4.0 * 15, answers, 0.0)
    return decide(Observation(4, fleet, traffic), resolved, state, NOW + 15)


def test_a_miss_that_more_replicas_did_not_lower_says_so() -> None:
    # At 4 replicas each holds half the load it held at 2, and the p99 is still 399 ms.
    decision = miss_then_more_replicas(counts(BUCKET_400MS, 100))
    objective, met = objective_of(decision)
    assert objective.reason == "ObjectiveMissed"
    assert objective.message.endswith(
        "; more replicas have not lowered it: p99 399 ms at 2 replicas, 399 ms at 4 with 50% "
        "less load each. The latency does not follow the replicas' load: it is spent outside "
        "them (the gateway, the network, the client), in the requests' own work, or in bursts "
        "shorter than the 15 s window, and adding replicas as the load asks is unlikely to "
        "meet the objective"
    )
    assert met.message == objective.message
    # Only the explanation: the step asks for what it would with nothing to compare with.
    unexplained = miss_then_more_replicas(counts(BUCKET_400MS, 100), forget=True)
    assert "more replicas have not lowered it" not in objective_of(unexplained)[0].message
    assert decision.desired == unexplained.desired > 4
    assert [w.ready for w in decision.state.objective_misses] == [2, 4]
    # The next decision does not act on the same answers (the step waits for a window after
    # its change), and still says it: the finding stands until one shows otherwise.
    fleet = tuple(pod(f"r{i}") for i in range(4))
    answers = added(counts(BUCKET_400MS, 200), counts(BUCKET_400MS, 1))
    traffic = Traffic(4.0, 3001, 2.0 * 2 * 15 + 4.0 * 15.25, answers, 0.0)
    resolved = objective_policy()
    later = decide(Observation(4, fleet, traffic), resolved, decision.state, NOW + 15.25)
    step, _ = objective_of(later)
    assert ": holding " in step.message
    assert "more replicas have not lowered it: p99 399 ms at 2 replicas" in step.message
    # Met: the finding is dropped.
    met_answers = added(answers, counts(BUCKET_100MS, 20000))
    traffic = Traffic(4.0, 23001, 2.0 * 2 * 15 + 4.0 * 30, met_answers, 0.0)
    met_later = decide(Observation(4, fleet, traffic), resolved, later.state, NOW + 30)
    assert met_later.state.objective_not_lowered is None


def test_a_miss_that_more_replicas_lowered_says_nothing_of_the_kind() -> None:
    # p99 = 0.2 + 0.05 * 99/100 = 0.2495 s: still over 200 ms, but lower than at 2 replicas.
    decision = miss_then_more_replicas(counts(LATENCY_BOUNDS.index(0.25), 100))
    objective, _ = objective_of(decision)
    assert objective.reason == "ObjectiveMissed"
    assert "more replicas have not lowered it" not in objective.message


def test_removing_the_objective_forgets_its_missed_windows() -> None:
    decision = two_readings(objective_policy(), 2, counts(BUCKET_400MS, 100))
    assert decision.state.objective_misses
    fleet = (pod("r0"), pod("r1"))
    without = policy(KUBERNETES, max_replicas=10, metrics=[pods_metric("concurrency", 2)])
    traffic = Traffic(4.0, 1600, 4.0 * 30, counts(BUCKET_400MS, 100), 0.0)
    later = decide(Observation(2, fleet, traffic), without, decision.state, NOW + 15)
    assert later.state.objective_misses == ()
