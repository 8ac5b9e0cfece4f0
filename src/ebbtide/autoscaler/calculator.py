"""The replica calculator: one metric and the replicas' readings -> a proposed replica count.

This follows Kubernetes' pkg/controller/podautoscaler/replica_calculator.go step for step, in
the same integer and floating-point arithmetic, so the same inputs give the same counts:

- `desired = ceil(ratio * ready)`, where `ratio` is the per-replica average over the target;
  no change while `ratio` is within the tolerance of 1.0 (per direction).
- Replicas with no reading yet ("missing") are assumed, on a scale-down, to use 100% of their
  request (or the target, when that is higher) and, on a scale-up, 0%.
- Replicas not ready yet are left out of the average; on a scale-up they are counted at 0%,
  so replicas already starting are not asked for twice. For CPU, a ready replica's reading is
  also left out until a full metric window has passed since it became ready (during the CPU
  initialization period), because start-up CPU says nothing about load.
- If filling in missing or unready replicas would reverse the direction, or bring the ratio
  within tolerance, the count stays as it is.

Request metrics from the gateway (`concurrency`, `requests_per_second`) are measured for the
whole endpoint, so they follow the HPA's rule for an endpoint-wide metric with a per-replica
`averageValue` target: `desired = ceil(total / target)` unless `total / (target * replicas)`
is within tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ebbtide.autoscaler.observation import Observation, ReplicaSample
from ebbtide.autoscaler.policy import MetricGoal, Policy
from ebbtide.autoscaler.windows import Rate, Sample, arrival_rate, concurrency, cpu_cores

EPSILON = 1e-9

RatioOf = Callable[[Mapping[str, int]], tuple[float, float]]
"""From milli-unit readings to (usage ratio, usage as displayed)."""


@dataclass(frozen=True)
class Tolerances:
    """How far below (`down`) and above (`up`) 1.0 a usage ratio may be and change nothing."""

    down: float
    up: float

    def within(self, ratio: float) -> bool:
        return (1.0 - self.down) <= ratio <= (1.0 + self.up)


@dataclass(frozen=True)
class Proposal:
    """What one metric asks for, with the numbers behind it."""

    goal: MetricGoal
    replicas: int | None
    """The proposed count; None when the metric could not be computed."""
    reason: str
    """CamelCase, as the HPA's: WithinTolerance, ScaleByRatio, MissingMetricsFilled,
    UnreadyReplicasFilled, DirectionReversed, or FailedGetResourceMetric/FailedGetPodsMetric."""
    message: str
    ratio: float | None = None
    """The usage ratio (average / target) before missing or unready replicas were filled in."""
    utilization: int | None = None
    """Percent of the request, for Utilization targets."""
    average: float | None = None
    """The per-replica average in the metric's unit: cores, bytes, requests, requests/s."""

    @property
    def valid(self) -> bool:
        return self.replicas is not None


@dataclass(frozen=True)
class _Groups:
    """Replicas sorted as the HPA's groupPods sorts pods."""

    ready: int
    unready: frozenset[str]
    missing: frozenset[str]
    metrics: dict[str, int]
    """Milli-unit readings of the replicas that count."""


def propose(
    goal: MetricGoal,
    observation: Observation,
    policy: Policy,
    samples: Sequence[Sample],
    now: float,
    tolerances: Tolerances,
) -> Proposal:
    """The replica count one metric asks for."""
    if goal.is_resource:
        return _resource(goal, observation, policy, samples, now, tolerances)
    return _traffic(goal, observation, policy, samples, tolerances)


def _resource(
    goal: MetricGoal,
    observation: Observation,
    policy: Policy,
    samples: Sequence[Sample],
    now: float,
    tolerances: Tolerances,
) -> Proposal:
    current = observation.current_replicas
    failed = "FailedGetResourceMetric"
    counted = [r for r in observation.replicas if not r.terminating]
    if not counted:
        return Proposal(goal, None, failed, "no replicas to take metrics from")
    readings = _resource_readings(goal, counted, policy, samples, now)
    groups = _group(counted, readings, goal.name == "cpu", now, policy)
    if not groups.metrics:
        message = "did not receive metrics for any ready replica (replicas might be unready)"
        return Proposal(goal, None, failed, message)
    if goal.kind == "Utilization":
        request = _request_milli(goal, policy)
        if request is None:
            message = f"missing request for {goal.name}: set resources.requests.{goal.name}"
            return Proposal(goal, None, failed, message)
        target = int(goal.target)
        fallback = request * max(100, target) // 100

        def ratio_of(metrics: Mapping[str, int]) -> tuple[float, float]:
            utilization = sum(metrics.values()) * 100 // (request * len(metrics))
            return utilization / target, float(utilization)

        ratio, utilization = ratio_of(groups.metrics)
        average = sum(groups.metrics.values()) / len(groups.metrics) / 1000
        replicas, reason, message = _average_replicas(
            current, groups, ratio_of, fallback, tolerances
        )
        return Proposal(goal, replicas, reason, message, ratio, int(utilization), average)
    target_milli = _milli(goal.target)

    def plain_ratio(metrics: Mapping[str, int]) -> tuple[float, float]:
        usage = sum(metrics.values()) // len(metrics)
        return usage / target_milli, float(usage)

    ratio, usage = plain_ratio(groups.metrics)
    replicas, reason, message = _average_replicas(
        current, groups, plain_ratio, target_milli, tolerances
    )
    return Proposal(goal, replicas, reason, message, ratio, None, usage / 1000)


def _milli(value: float) -> int:
    """A quantity's MilliValue: rounded up to a whole milli-unit, as Kubernetes rounds."""
    return math.ceil(value * 1000 - EPSILON)


def _request_milli(goal: MetricGoal, policy: Policy) -> int | None:
    request = policy.cpu_request if goal.name == "cpu" else policy.memory_request
    return None if request is None or request <= 0 else _milli(request)


def _resource_readings(
    goal: MetricGoal,
    replicas: Sequence[ReplicaSample],
    policy: Policy,
    samples: Sequence[Sample],
    now: float,
) -> dict[str, tuple[int, float]]:
    """Per replica: the reading in milli-units and when its window started."""
    readings: dict[str, tuple[int, float]] = {}
    slack = policy.sync_period / 2
    for replica in replicas:
        if goal.name == "memory":
            if replica.memory_bytes is not None:
                readings[replica.name] = (_milli(replica.memory_bytes), now)
            continue
        if replica.cpu_cores is not None:
            readings[replica.name] = (_milli(replica.cpu_cores), now - policy.metric_window)
            continue
        rate: Rate | None = cpu_cores(samples, replica.name, policy.metric_window, slack)
        if rate is not None:
            readings[replica.name] = (_milli(rate.value), rate.start)
    return readings


def _group(
    replicas: Sequence[ReplicaSample],
    readings: Mapping[str, tuple[int, float]],
    is_cpu: bool,
    now: float,
    policy: Policy,
) -> _Groups:
    """groupPods: pending replicas are unready, replicas without a reading are missing, and a
    CPU reading is left out while it may still reflect start-up rather than load."""
    ready = 0
    unready: set[str] = set()
    missing: set[str] = set()
    metrics: dict[str, int] = {}
    for replica in replicas:
        if replica.pending:
            unready.add(replica.name)
            continue
        reading = readings.get(replica.name)
        if reading is None:
            missing.add(replica.name)
            continue
        if is_cpu and _cpu_unready(replica, reading[1], now, policy):
            unready.add(replica.name)
            continue
        ready += 1
        metrics[replica.name] = reading[0]
    return _Groups(ready, frozenset(unready), frozenset(missing), metrics)


def _cpu_unready(replica: ReplicaSample, window_start: float, now: float, policy: Policy) -> bool:
    if replica.ready_since is None:
        return True
    if replica.started_at + policy.cpu_initialization_period > now:
        # Still initializing: trust only a window that began after the replica became ready.
        return not replica.ready or window_start < replica.ready_since
    # Past initialization: ignore only a replica that is unready and has never been ready.
    return (
        not replica.ready
        and replica.started_at + policy.initial_readiness_delay > replica.ready_since
    )


def _average_replicas(
    current: int,
    groups: _Groups,
    ratio_of: RatioOf,
    fallback: int,
    tolerances: Tolerances,
) -> tuple[int, str, str]:
    """The shared core of GetResourceReplicas and calcPlainMetricReplicas."""
    ratio, _ = ratio_of(groups.metrics)
    scale_up_with_unready = bool(groups.unready) and ratio > 1.0
    if not scale_up_with_unready and not groups.missing:
        if tolerances.within(ratio):
            return current, "WithinTolerance", "the change would be within tolerance"
        return math.ceil(ratio * float(groups.ready)), "ScaleByRatio", "scaled by the usage ratio"
    filled = dict(groups.metrics)
    if groups.missing and ratio < 1.0:
        filled.update(dict.fromkeys(groups.missing, fallback))
    elif groups.missing and ratio > 1.0:
        filled.update(dict.fromkeys(groups.missing, 0))
    if scale_up_with_unready:
        filled.update(dict.fromkeys(groups.unready, 0))
    new_ratio, _ = ratio_of(filled)
    reversed_direction = (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio)
    if tolerances.within(new_ratio) or reversed_direction:
        return (
            current,
            "DirectionReversed" if reversed_direction else "WithinTolerance",
            ("counting replicas without metrics or not ready leaves no change to make"),
        )
    replicas = math.ceil(new_ratio * float(len(filled)))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current, "DirectionReversed", "the change would reverse direction"
    reason = "MissingMetricsFilled" if groups.missing else "UnreadyReplicasFilled"
    return replicas, reason, _FILLED_MESSAGES[reason]


_FILLED_MESSAGES = {
    "MissingMetricsFilled": "replicas without metrics counted at 100% of the request on a "
    "scale-down and 0% on a scale-up",
    "UnreadyReplicasFilled": "replicas not ready yet counted at 0% on a scale-up",
}


def _traffic(
    goal: MetricGoal,
    observation: Observation,
    policy: Policy,
    samples: Sequence[Sample],
    tolerances: Tolerances,
) -> Proposal:
    """An endpoint-wide request metric against a per-replica averageValue target."""
    failed = "FailedGetPodsMetric"
    slack = policy.sync_period / 2
    if goal.name == "concurrency":
        rate = concurrency(samples, policy.metric_window, slack)
    else:
        rate = arrival_rate(samples, policy.metric_window, slack)
    if rate is None:
        return Proposal(goal, None, failed, f"no {goal.name} reported by the gateway yet")
    return traffic_proposal(goal, rate.value, _live(observation), tolerances)


def traffic_proposal(
    goal: MetricGoal, total: float, replicas: int, tolerances: Tolerances
) -> Proposal:
    """GetExternalPerPodMetricReplicas: `ceil(total / target)` unless within tolerance."""
    usage = _milli(total) if total > 0 else 0
    target = _milli(goal.target)
    average = total / replicas if replicas else 0.0
    if replicas == 0:
        return Proposal(goal, math.ceil(usage / target), "ScaleByRatio", "from zero", None, None)
    ratio = usage / (target * replicas)
    if tolerances.within(ratio):
        return Proposal(
            goal,
            replicas,
            "WithinTolerance",
            "the change would be within tolerance",
            ratio,
            None,
            average,
        )
    proposed = math.ceil(usage / target)
    return Proposal(
        goal, proposed, "ScaleByRatio", "scaled by the usage ratio", ratio, None, average
    )


def _live(observation: Observation) -> int:
    """Replicas that exist and are not going away: the HPA's status.replicas."""
    return sum(1 for r in observation.replicas if not r.terminating)
