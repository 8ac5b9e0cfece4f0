"""The replica calculator on the cases of Kubernetes' replica_calculator_test.go.

Each case keeps Kubernetes' numbers: replicas requesting 1 core, readings in millicores, a
utilization target in percent, and the replica count and utilization Kubernetes expects.
"""

from __future__ import annotations

import pytest

from ebbtide.autoscaler import Observation, Traffic
from ebbtide.autoscaler.calculator import Tolerances, propose, traffic_proposal
from ebbtide.autoscaler.policy import MetricGoal
from ebbtide.autoscaler.windows import Sample
from tests.autoscaler.builders import (
    NOW,
    cpu_proposal,
    hot,
    pod,
    pods_metric,
    policy,
    resource_metric,
    unready,
)


def m(millicores: int) -> float:
    return millicores / 1000


def test_scale_up() -> None:
    result = cpu_proposal(3, [pod("a", m(300)), pod("b", m(500)), pod("c", m(700))], 30)
    assert (result.replicas, result.utilization, result.reason) == (5, 50, "ScaleByRatio")


def test_scale_up_with_unready_pods_scales_less() -> None:
    # Unready pods are left out of the average, then counted at 0% on a scale-up.
    replicas = [unready("a", m(300)), pod("b", m(500)), pod("c", m(700))]
    result = cpu_proposal(3, replicas, 30)
    assert (result.replicas, result.utilization) == (4, 60)
    assert result.reason == "UnreadyReplicasFilled"


def test_scale_up_hot_cpu_pods_scale_less() -> None:
    # A replica whose CPU window began before it became ready counts as not ready.
    replicas = [hot("a", m(300)), pod("b", m(500)), pod("c", m(700))]
    assert cpu_proposal(3, replicas, 30).replicas == 4


def test_no_scale_when_unready_pods_would_reverse_direction() -> None:
    replicas = [pod("a", m(400)), unready("b", m(500)), unready("c", m(700))]
    result = cpu_proposal(3, replicas, 30)
    assert (result.replicas, result.utilization, result.reason) == (3, 40, "DirectionReversed")


def test_no_scale_when_hot_cpu_pods_are_ignored() -> None:
    replicas = [pod("a", m(400)), hot("b", m(500), ready=False), hot("c", m(700), ready=False)]
    assert (cpu_proposal(3, replicas, 30).replicas, cpu_proposal(3, replicas, 30).utilization) == (
        3,
        40,
    )


def test_terminating_pods_are_ignored() -> None:
    replicas = [
        pod("a", m(500)),
        pod("b", m(700)),
        pod("c", None, ready=False, terminating=True),
        pod("d", None, ready=False, terminating=True),
    ]
    result = cpu_proposal(2, replicas, 30)
    assert (result.replicas, result.utilization) == (4, 60)


def test_scale_down() -> None:
    levels = [100, 300, 500, 250, 250]
    result = cpu_proposal(5, [pod(str(i), m(v)) for i, v in enumerate(levels)], 50)
    assert (result.replicas, result.utilization) == (3, 28)


def test_scale_down_excludes_unready_pods() -> None:
    replicas = [pod("a", m(100)), pod("b", m(300)), pod("c", m(500))]
    replicas += [unready("d", m(250)), unready("e", m(250))]
    result = cpu_proposal(5, replicas, 50)
    assert (result.replicas, result.utilization) == (2, 30)


def test_scale_down_excludes_pending_pods() -> None:
    replicas = [pod("a", m(100))] + [pod(f"p{i}", ready=False, pending=True) for i in range(4)]
    result = cpu_proposal(5, replicas, 50)
    assert (result.replicas, result.utilization) == (1, 10)


def test_scale_down_ignores_hot_cpu_pods() -> None:
    replicas = [pod("a", m(100)), pod("b", m(300)), pod("c", m(500))]
    replicas += [hot("d", m(250)), hot("e", m(250))]
    result = cpu_proposal(5, replicas, 50)
    assert (result.replicas, result.utilization) == (2, 30)


def test_pods_missing_metrics_count_as_their_full_request_on_a_scale_down() -> None:
    # 495m over 2 reporting replicas is 24%; the 2 silent ones are assumed at 100%.
    replicas = [pod("a", m(400)), pod("b", m(95)), pod("c"), pod("d")]
    result = cpu_proposal(4, replicas, 100)
    assert (result.replicas, result.utilization) == (3, 24)
    assert result.reason == "MissingMetricsFilled"


def test_missing_metrics_count_as_the_target_when_it_is_above_100_percent() -> None:
    replicas = [unready("a", m(200)), pod("b", m(100)), pod("c", m(100)), pod("d")]
    result = cpu_proposal(4, replicas, 300)
    # 200m over 2 cores is 10%, 0.033 of the target; pod d counts at 300% of its request.
    assert (result.replicas, result.utilization) == (2, 10)


@pytest.mark.parametrize(
    ("level", "expected"),
    [(1000, 2), (1900, 2), (600, 2)],
    ids=["equal to target", "above target", "below target"],
)
def test_no_change_when_the_missing_pod_would_reverse_the_direction(
    level: int, expected: int
) -> None:
    result = cpu_proposal(2, [pod("a", m(level)), pod("b")], 100)
    assert result.replicas == expected


def test_no_change_unready_pod_and_missing_metric() -> None:
    replicas = [unready("a", m(100)), pod("b", m(450)), pod("c")]
    result = cpu_proposal(3, replicas, 50)
    assert (result.replicas, result.utilization) == (3, 45)


def test_no_change_hot_cpu_pod_and_missing_metric() -> None:
    replicas = [hot("a", m(100)), pod("b", m(450)), pod("c")]
    assert cpu_proposal(3, replicas, 50).replicas == 3


def test_scale_up_unready_pod_and_missing_metric() -> None:
    replicas = [unready("a", m(100)), pod("b", m(2000)), pod("c")]
    result = cpu_proposal(3, replicas, 50)
    assert (result.replicas, result.utilization) == (4, 200)


def test_scale_down_unready_pod_and_missing_metric() -> None:
    replicas = [unready("a", m(100)), pod("b", m(100)), pod("c", m(100)), pod("d")]
    result = cpu_proposal(4, replicas, 50)
    assert (result.replicas, result.utilization) == (3, 10)


def test_rolling_update_surge_pod_without_metrics_changes_nothing() -> None:
    replicas = [pod("a", m(100)), pod("b", m(100)), pod("c")]
    result = cpu_proposal(2, replicas, 50)
    assert (result.replicas, result.utilization) == (2, 10)


def test_no_ready_metrics_is_an_error_naming_the_problem() -> None:
    result = cpu_proposal(2, [pod("a"), unready("b", m(300))], 50)
    assert result.replicas is None
    assert result.reason == "FailedGetResourceMetric"
    assert "did not receive metrics" in result.message


def test_tolerance_is_applied_to_the_usage_ratio() -> None:
    # 102% of a 100% target: inside the default 10%.
    replicas = [pod(str(i), m(v)) for i, v in enumerate([1010, 1030, 1020])]
    assert cpu_proposal(3, replicas, 100).replicas == 3
    assert cpu_proposal(3, replicas, 100, Tolerances(0.0, 0.0)).replicas == 4


@pytest.mark.parametrize(
    ("tolerances", "levels", "expected"),
    [
        (Tolerances(0.1, 2.0), [1890, 1910, 1900], 3),
        (Tolerances(2.0, 0.08), [1100, 1080, 1090], 4),
        (Tolerances(0.36, 0.1), [660, 640, 650], 3),
        (Tolerances(0.34, 0.1), [660, 640, 650], 2),
    ],
    ids=["within 200% up", "outside 8% up", "within 36% down", "outside 34% down"],
)
def test_per_direction_tolerances(tolerances: Tolerances, levels: list[int], expected: int) -> None:
    replicas = [pod(str(i), m(v)) for i, v in enumerate(levels)]
    assert cpu_proposal(3, replicas, 100, tolerances).replicas == expected


def test_computed_tolerance_boundary() -> None:
    # Kubernetes' TestReplicaCalcComputedToleranceAlgImplementation with equal requests:
    # 10 replicas at 150m of 300m (50%) against a target of 56% (ratio 0.89) scale to 9,
    # and against 55% (ratio 0.909, inside the tolerance) stay at 10.
    replicas = [pod(str(i), m(150)) for i in range(10)]
    assert cpu_proposal(10, replicas, 56, cpu_request="300m").replicas == 9
    assert cpu_proposal(10, replicas, 55, cpu_request="300m").replicas == 10


def test_average_value_cpu_target() -> None:
    resolved = policy(metrics=[resource_metric("cpu", "AverageValue", "500m")])
    observation = Observation(3, (pod("a", 0.9), pod("b", 0.6), pod("c", 0.9)))
    result = propose(resolved.metrics[0], observation, resolved, (), NOW, Tolerances(0.1, 0.1))
    assert result.replicas == 5  # 800m average against 500m: ratio 1.6, ceil(4.8)
    assert result.average == pytest.approx(0.8)


def test_memory_utilization_target() -> None:
    resolved = policy(metrics=[resource_metric("memory", "Utilization", 50)], memory_request="1Gi")
    gib = 2**30
    observation = Observation(2, (pod("a", memory=0.8 * gib), pod("b", memory=0.7 * gib)))
    result = propose(resolved.metrics[0], observation, resolved, (), NOW, Tolerances(0.1, 0.1))
    assert (result.replicas, result.utilization) == (3, 75)


def test_memory_ignores_cpu_readiness_rules() -> None:
    # Only CPU readings are distrusted during start-up; memory of a fresh replica counts.
    resolved = policy(metrics=[resource_metric("memory", "Utilization", 50)], memory_request="1Gi")
    gib = 2**30
    fresh = pod("b", memory=0.7 * gib, started=NOW, ready_since=NOW - 1)
    observation = Observation(2, (pod("a", memory=0.8 * gib), fresh))
    result = propose(resolved.metrics[0], observation, resolved, (), NOW, Tolerances(0.1, 0.1))
    assert result.replicas == 3


# Endpoint-wide request metrics follow GetExternalPerPodMetricReplicas.


@pytest.mark.parametrize(
    ("replicas", "total", "target", "expected"),
    [(3, 8.6, 2.15, 4), (5, 8.6, 2.867, 3), (3, 8.6, 2.9, 3), (0, 20.0, 5.0, 4), (0, 0.0, 5.0, 0)],
    ids=["scale up", "scale down", "within tolerance", "from zero", "zero at zero"],
)
def test_endpoint_wide_request_metric(
    replicas: int, total: float, target: float, expected: int
) -> None:
    goal = MetricGoal("concurrency", "AverageValue", target)
    assert traffic_proposal(goal, total, replicas, Tolerances(0.1, 0.1)).replicas == expected


def test_concurrency_is_averaged_over_the_metric_window() -> None:
    resolved = policy(metrics=[pods_metric("concurrency", 2)])
    samples = [
        Sample(NOW - 15, 0, 0.0, 0.0, {}),
        Sample(NOW, 300, 9.0, 120.0, {}),  # 120 request-seconds over 15 s: 8 in flight
    ]
    observation = Observation(2, (pod("a"), pod("b")), Traffic(9.0, 300, 120.0))
    result = propose(resolved.metrics[0], observation, resolved, samples, NOW, Tolerances(0.1, 0.1))
    assert (result.replicas, result.average) == (4, 4.0)


def test_requests_per_second_is_the_arrival_rate_over_the_window() -> None:
    resolved = policy(metrics=[pods_metric("requests_per_second", 10)])
    samples = [Sample(NOW - 15, 1000, 0.0, None, {}), Sample(NOW, 1450, 0.0, None, {})]
    observation = Observation(2, (pod("a"), pod("b")), Traffic(0.0, 1450))
    result = propose(resolved.metrics[0], observation, resolved, samples, NOW, Tolerances(0.1, 0.1))
    assert result.replicas == 3  # 30 requests/s against 10 per replica


def test_a_request_metric_without_gateway_counters_fails_clearly() -> None:
    resolved = policy(metrics=[pods_metric("concurrency", 2)])
    observation = Observation(2, (pod("a"), pod("b")))
    result = propose(resolved.metrics[0], observation, resolved, (), NOW, Tolerances(0.1, 0.1))
    assert (result.replicas, result.reason) == (None, "FailedGetPodsMetric")
