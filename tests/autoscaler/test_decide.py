"""`decide` end to end on the HPA's documented behavior, at exact virtual times."""

from __future__ import annotations

import pytest

from ebbtide.autoscaler import (
    KUBERNETES,
    LOCAL,
    Decision,
    Observation,
    Policy,
    ReplicaSample,
    State,
    decide,
)
from tests.autoscaler.builders import pod, pods_metric, policy, resource_metric

T0 = 1000.0


def fleet(count: int, cores: float) -> tuple[ReplicaSample, ...]:
    """`count` ready replicas each using `cores` (1 core requested)."""
    return tuple(pod(f"r{i}", cores) for i in range(count))


def reason(decision: Decision, step: str) -> str:
    found = decision.step(step)
    assert found is not None, f"no {step} step in {decision.reasons}"
    return found.reason


def count(decision: Decision, step: str) -> int:
    found = decision.step(step)
    assert found is not None, f"no {step} step in {decision.reasons}"
    return found.replicas


def at(current: int, cores: float, resolved: Policy, state: State, now: float) -> Decision:
    return decide(Observation(current, fleet(current, cores)), resolved, state, now)


def test_default_scale_up_is_limited_to_double_or_four_more_per_15s() -> None:
    resolved = policy(cpu_target=50)
    decision = at(10, 2.5, resolved, State(), T0)  # 250% of a 50% target: 50 replicas
    assert count(decision, "metrics") == 50
    assert decision.desired == 20
    limited = decision.condition("ScalingLimited")
    assert limited is not None
    assert (limited.status, limited.reason) == ("True", "ScaleUpLimit")
    assert decision.event == (
        "New size: 20; reason: cpu resource utilization (percentage of request) above target"
    )


def test_default_scale_up_from_one_adds_four() -> None:
    decision = at(1, 5.0, policy(cpu_target=50), State(), T0)
    assert decision.desired == 5


def test_scale_up_rate_counts_the_replicas_added_within_the_period() -> None:
    resolved = policy(cpu_target=50)
    first = at(2, 5.0, resolved, State(), T0)
    assert first.desired == 6  # max(2 + 4, 2 * 2)
    # 5 s later, 4 were added within the last 15 s: the period started at 2.
    second = at(6, 5.0, resolved, first.state, T0 + 5)
    assert (second.desired, reason(second, "limit")) == (6, "ScaleUpLimit")
    # 15 s after the first event it no longer counts (only events after now - 15 s do).
    third = at(6, 5.0, resolved, second.state, T0 + 15)
    assert third.desired == 12


def test_max_replicas_caps_with_too_many_replicas() -> None:
    decision = at(4, 2.5, policy(cpu_target=50, max_replicas=6), State(), T0)
    assert decision.desired == 6
    assert reason(decision, "limit") == "TooManyReplicas"


def test_scale_down_waits_for_the_300s_stabilization_window() -> None:
    resolved = policy(cpu_target=50)
    state = State()
    # The first decision records the starting count (5) as a recommendation.
    for offset in range(0, 300, 15):
        decision = at(5, 0.1, resolved, state, T0 + offset)
        assert decision.desired == 5, offset
        assert reason(decision, "stabilize") == "ScaleDownStabilized"
        state = decision.state
    # At exactly T0 + 300 the initial recommendation leaves the window (only newer ones count).
    decision = at(5, 0.1, resolved, state, T0 + 300)
    assert decision.desired == 1
    assert decision.event == "New size: 1; reason: All metrics below target"


def test_a_higher_recent_recommendation_holds_a_scale_down() -> None:
    resolved = policy(cpu_target=50, behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    first = at(4, 1.0, resolved, State(), T0)  # 200% of target: 8 (limited to 8)
    assert first.desired == 8
    calm = at(8, 0.1, resolved, first.state, T0 + 30)
    assert calm.desired == 8  # the recommendation of 8 at T0 is within 60 s
    later = at(8, 0.1, resolved, calm.state, T0 + 60)
    assert later.desired == 2  # only the calm recommendation (2) remains


def test_scale_up_stabilization_takes_the_lowest_recent_recommendation() -> None:
    resolved = policy(cpu_target=50, behavior={"scaleUp": {"stabilizationWindowSeconds": 60}})
    state = at(2, 0.5, resolved, State(), T0).state  # the initial recommendation is 2
    decision = at(2, 2.0, resolved, state, T0 + 15)
    assert (decision.desired, reason(decision, "stabilize")) == (2, "ScaleUpStabilized")
    state = decision.state
    decision = at(2, 2.0, resolved, state, T0 + 60)  # T0's recommendation has left the window
    assert count(decision, "stabilize") == 8
    assert decision.desired == 6  # then the rate limit: max(2 + 4, 2 * 2)


def test_pods_policy_limits_scale_down_per_period() -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        }
    }
    resolved = policy(cpu_target=50, behavior=behavior)
    first = at(5, 0.1, resolved, State(), T0)
    assert (first.desired, reason(first, "limit")) == (4, "ScaleDownLimit")
    second = at(4, 0.1, resolved, first.state, T0 + 45)
    assert second.desired == 4
    third = at(4, 0.1, resolved, second.state, T0 + 60)
    assert third.desired == 3


def test_percent_policy_rounds_scale_down_toward_zero() -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}],
        }
    }
    decision = at(15, 0.1, policy(cpu_target=50, behavior=behavior), State(), T0)
    assert decision.desired == 13  # int(15 * 0.9) = 13


def test_select_policy_min_takes_the_smallest_change() -> None:
    behavior = {"scaleUp": {"selectPolicy": "Min"}}
    decision = at(10, 2.5, policy(cpu_target=50, behavior=behavior), State(), T0)
    assert decision.desired == 14  # min(10 + 4, 10 * 2)


def test_select_policy_disabled_never_scales_that_way() -> None:
    behavior = {"scaleDown": {"selectPolicy": "Disabled", "stabilizationWindowSeconds": 0}}
    decision = at(5, 0.1, policy(cpu_target=50, behavior=behavior), State(), T0)
    assert (decision.desired, reason(decision, "limit")) == (5, "ScaleDownLimit")


def test_min_replicas_floor_is_too_few_replicas() -> None:
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    decision = at(5, 0.1, policy(cpu_target=50, min_replicas=3, behavior=behavior), State(), T0)
    assert (decision.desired, reason(decision, "limit")) == (3, "TooFewReplicas")


def test_per_direction_tolerance_from_behavior() -> None:
    behavior = {"scaleUp": {"tolerance": 0.01}}
    loose = at(3, 0.54, policy(cpu_target=50), State(), T0)  # 108%: inside 10%
    tight = at(3, 0.54, policy(cpu_target=50, behavior=behavior), State(), T0)
    assert (loose.desired, tight.desired) == (3, 4)


def test_the_largest_proposal_wins_and_names_the_reason() -> None:
    metrics = [
        resource_metric("cpu", "Utilization", 50),
        resource_metric("memory", "AverageValue", "1Gi"),
    ]
    resolved = policy(metrics=metrics)
    replicas = tuple(pod(f"r{i}", 0.5, memory=3 * 2**30) for i in range(2))
    decision = decide(Observation(2, replicas), resolved, State(), T0)
    assert decision.desired == 6
    assert decision.rescale_reason == "memory resource above target"


def test_an_invalid_metric_blocks_a_scale_down() -> None:
    resolved = policy(
        metrics=[resource_metric("cpu", "Utilization", 50), pods_metric("concurrency", 2)]
    )
    decision = at(4, 0.1, resolved, State(), T0)  # cpu says 1, concurrency is unknown
    assert decision.desired == 4
    active = decision.condition("ScalingActive")
    assert active is not None
    assert (active.status, active.reason) == ("False", "FailedGetPodsMetric")


def test_an_invalid_metric_does_not_block_a_scale_up() -> None:
    resolved = policy(
        metrics=[resource_metric("cpu", "Utilization", 50), pods_metric("concurrency", 2)]
    )
    assert at(2, 1.0, resolved, State(), T0).desired == 4


def test_zero_replicas_with_min_one_means_scaling_disabled() -> None:
    decision = decide(Observation(0), policy(cpu_target=50), State(), T0)
    assert decision.desired == 0
    active = decision.condition("ScalingActive")
    assert active is not None
    assert (active.status, active.reason) == ("False", "ScalingDisabled")


@pytest.mark.parametrize(
    ("current", "desired", "reason"),
    [
        (9, 5, "Current number of replicas above Spec.MaxReplicas"),
        (1, 2, "Current number of replicas below Spec.MinReplicas"),
    ],
)
def test_out_of_bounds_goes_to_the_bound(current: int, desired: int, reason: str) -> None:
    resolved = policy(cpu_target=50, min_replicas=2, max_replicas=5)
    decision = at(current, 0.5, resolved, State(), T0)
    assert decision.desired == desired
    assert decision.event == f"New size: {desired}; reason: {reason}"


def test_cpu_from_counters_needs_two_readings() -> None:
    resolved = policy(cpu_target=50)

    def replicas(cpu_seconds: float) -> tuple[ReplicaSample, ...]:
        return tuple(
            ReplicaSample(f"r{i}", 0.0, True, 0.0, cpu_seconds=cpu_seconds) for i in range(2)
        )

    first = decide(Observation(2, replicas(100.0)), resolved, State(), T0)
    assert (first.desired, first.reasons[0].reason) == (2, "FailedGetResourceMetric")
    # 15 s later each replica used 15 more CPU seconds: 1 core, 100% of request.
    second = decide(Observation(2, replicas(115.0)), resolved, first.state, T0 + 15)
    assert second.desired == 4


def test_the_behavior_in_the_spec_overrides_the_profile() -> None:
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 7}}
    resolved = policy(LOCAL, cpu_target=50, behavior=behavior)
    assert resolved.scale_down.stabilization_window == 7
    assert resolved.scale_down.policies == LOCAL.scale_down.policies
    assert resolved.scale_up == LOCAL.scale_up
    assert policy(KUBERNETES, cpu_target=50).scale_down.stabilization_window == 300


def test_decisions_are_pure() -> None:
    resolved = policy(cpu_target=50)
    state = State()
    first = at(3, 1.0, resolved, state, T0)
    again = at(3, 1.0, resolved, state, T0)
    assert first == again
    assert state == State()


def test_current_metrics_for_status_and_get_hpa() -> None:
    metrics = [
        resource_metric("cpu", "Utilization", 50),
        resource_metric("memory", "AverageValue", "1Gi"),
        resource_metric("cpu", "AverageValue", "500m"),
    ]
    replicas = tuple(pod(f"r{i}", 0.25, memory=2**29) for i in range(2))
    decision = decide(Observation(2, replicas), policy(metrics=metrics), State(), T0)
    statuses = {(m.name, m.average_utilization, m.average_value) for m in decision.current_metrics}
    assert statuses == {("cpu", 25, None), ("memory", None, "512Mi"), ("cpu", None, "250m")}
