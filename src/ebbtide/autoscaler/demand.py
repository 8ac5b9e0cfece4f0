"""What one request costs, learned from the stable window, to turn a request rate into replicas.

Burst mode and prediction both start from a request rate (the last second's, or a forecast)
and need the replica count that rate calls for under each target. Over the stable window the
gateway's counters give the completion rate, and the replicas' CPU counters the cores used, so:

- CPU per request = cores used / requests completed per second (core-seconds per request);
- time in the system per request = average requests in flight / completion rate (Little's law);

and one replica at its target serves `target cores / CPU per request` requests per second
(`target in flight / time per request` for concurrency, the target itself for requests/s).
Measured CPU stops at the cores a replica has, so in a burst it hides how much more is needed;
the arrival rate does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ebbtide.autoscaler.observation import Observation
from ebbtide.autoscaler.policy import MetricGoal, Policy
from ebbtide.autoscaler.windows import Sample, concurrency, window_start

EPSILON = 1e-9


@dataclass(frozen=True)
class Demand:
    """Per-request costs over the stable window."""

    completion_rate: float
    """Requests finished per second."""
    cpu_per_request: float | None
    """Core-seconds per request; None without CPU readings."""
    time_per_request: float | None
    """Seconds a request spends in the endpoint, queue included; None without in-flight data."""


def estimate(observation: Observation, policy: Policy, samples: Sequence[Sample]) -> Demand | None:
    """Per-request costs over the stable window, or None when no request completed in it."""
    index = window_start(samples, policy.metric_window, policy.sync_period / 2)
    if index is None:
        return None
    first, latest = samples[index], samples[-1]
    span = latest.time - first.time
    if first.requests_total is None or latest.requests_total is None or span <= 0:
        return None
    done = (latest.requests_total - (latest.in_flight or 0.0)) - (
        first.requests_total - (first.in_flight or 0.0)
    )
    completions = max(0.0, done) / span
    if completions <= EPSILON:
        return None
    cores = _cores_used(observation, first, latest, span)
    in_flight = concurrency(samples, policy.metric_window, policy.sync_period / 2)
    return Demand(
        completion_rate=completions,
        cpu_per_request=None if cores is None else cores / completions,
        time_per_request=None if in_flight is None else in_flight.value / completions,
    )


def replicas_for_rate(goal: MetricGoal, rate: float, demand: Demand, policy: Policy) -> int | None:
    """Replicas that serve `rate` requests per second with each at `goal`'s target."""
    per_replica = rate_per_replica(goal, demand, policy)
    if per_replica is None or per_replica <= EPSILON:
        return None
    return max(0, math.ceil(rate / per_replica - EPSILON))


def rate_per_replica(goal: MetricGoal, demand: Demand, policy: Policy) -> float | None:
    """Requests per second one replica serves at the target."""
    if goal.name == "requests_per_second":
        return goal.target
    if goal.name == "concurrency":
        cost = demand.time_per_request
        return None if not cost else goal.target / cost
    if goal.name == "cpu" and demand.cpu_per_request:
        if goal.kind == "AverageValue":
            return goal.target / demand.cpu_per_request
        if policy.cpu_request:
            return goal.target / 100 * policy.cpu_request / demand.cpu_per_request
    return None


def _cores_used(
    observation: Observation, first: Sample, latest: Sample, span: float
) -> float | None:
    """Cores the serving replicas used between two readings (the span the completions cover).

    Only replicas that are ready now and were already running at the first reading count: a
    replica that started inside the span spent its CPU loading a model, not serving, and
    counting it would make every request look dearer and a rollout look like a burst."""
    if latest.cpu_seconds:
        serving = {r.name for r in observation.replicas if r.ready and not r.terminating}
        used = 0.0
        for name, now_used in latest.cpu_seconds.items():
            before = first.cpu_seconds.get(name)
            if name in serving and before is not None and now_used >= before:
                used += now_used - before
        return used / span
    given = [r.cpu_cores for r in observation.replicas if r.cpu_cores is not None]
    return sum(given) if given else None
