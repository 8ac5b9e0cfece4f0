"""Stabilization and rate limits: the HPA's normalizeDesiredReplicasWithBehaviors, made pure.

Each step takes the history it needs and `now`, and returns a count with the HPA's reason and
message (ScaleUpStabilized, ScaleDownStabilized, ReadyForNewScale; ScaleUpLimit, ScaleDownLimit,
TooManyReplicas, TooFewReplicas, DesiredWithinRange).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ebbtide.autoscaler.profiles import DirectionRules
from ebbtide.autoscaler.state import Recommendation, ScaleEvent


@dataclass(frozen=True)
class Step:
    """One named step of a decision: the count it produced and why."""

    name: str
    replicas: int
    reason: str
    message: str


def stabilize(
    recommendations: Sequence[Recommendation],
    desired: int,
    current: int,
    now: float,
    scale_up: DirectionRules,
    scale_down: DirectionRules,
    burst_hold: float = 0.0,
) -> Step:
    """Hold `current` between the lowest recommendation of the scale-up window and the highest
    of the scale-down window (the new recommendation included). A recommendation made in burst
    mode stays in the scale-down window for `burst_hold` seconds when that is longer."""
    up_cutoff = now - scale_up.stabilization_window
    down_cutoff = now - scale_down.stabilization_window
    burst_cutoff = min(down_cutoff, now - burst_hold)
    lowest = highest = desired
    for recommendation in recommendations:
        if recommendation.time > up_cutoff:
            lowest = min(lowest, recommendation.replicas)
        if recommendation.time > (burst_cutoff if recommendation.burst else down_cutoff):
            highest = max(highest, recommendation.replicas)
    stabilized = min(max(current, lowest), highest)
    if stabilized == desired:
        return Step(
            "stabilize", stabilized, "ReadyForNewScale", "recommended size matches current size"
        )
    if desired >= current:
        return Step(
            "stabilize",
            stabilized,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent "
            "recommendation",
        )
    return Step(
        "stabilize",
        stabilized,
        "ScaleDownStabilized",
        "recent recommendations were higher than current one, applying the highest recent "
        "recommendation",
    )


def changed_within(events: Sequence[ScaleEvent], period: float, now: float) -> int:
    """Replicas added (or removed) by the events of the last `period` seconds."""
    cutoff = now - period
    return sum(event.change for event in events if event.time > cutoff)


def scale_up_limit(
    current: int,
    up_events: Sequence[ScaleEvent],
    down_events: Sequence[ScaleEvent],
    rules: DirectionRules,
    now: float,
) -> int:
    """The most replicas the policies allow now (calculateScaleUpLimitWithScalingRules)."""
    if rules.select_policy == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        added = changed_within(up_events, policy.period, now)
        removed = changed_within(down_events, policy.period, now)
        period_start = current - added + removed
        if policy.type == "Pods":
            proposals.append(period_start + policy.value)
        else:
            # Rounded up, or a small count could never grow.
            proposals.append(math.ceil(float(period_start) * (1 + float(policy.value) / 100)))
    if not proposals:
        return 2**31 - 1
    return min(proposals) if rules.select_policy == "Min" else max(proposals)


def scale_down_limit(
    current: int,
    up_events: Sequence[ScaleEvent],
    down_events: Sequence[ScaleEvent],
    rules: DirectionRules,
    now: float,
) -> int:
    """The fewest replicas the policies allow now (calculateScaleDownLimitWithBehaviors)."""
    if rules.select_policy == "Disabled":
        return current
    proposals = []
    for policy in rules.policies:
        added = changed_within(up_events, policy.period, now)
        removed = changed_within(down_events, policy.period, now)
        period_start = current - added + removed
        if policy.type == "Pods":
            proposals.append(period_start - policy.value)
        else:
            proposals.append(int(float(period_start) * (1 - float(policy.value) / 100)))
    if not proposals:
        return -(2**31)
    return max(proposals) if rules.select_policy == "Min" else min(proposals)


def limit_rate(
    desired: int,
    current: int,
    min_replicas: int,
    max_replicas: int,
    up_events: Sequence[ScaleEvent],
    down_events: Sequence[ScaleEvent],
    scale_up: DirectionRules,
    scale_down: DirectionRules,
    now: float,
) -> Step:
    """Apply the rate policies and the min/max bounds (convertDesiredReplicasWithBehaviorRate)."""
    if desired > current:
        limit = max(scale_up_limit(current, up_events, down_events, scale_up, now), current)
        if max_replicas > limit:
            ceiling, reason = limit, "ScaleUpLimit"
            message = "the desired replica count is increasing faster than the maximum scale rate"
        else:
            ceiling, reason = max_replicas, "TooManyReplicas"
            message = "the desired replica count is more than the maximum replica count"
        if desired > ceiling:
            return Step("limit", ceiling, reason, message)
    elif desired < current:
        limit = min(scale_down_limit(current, up_events, down_events, scale_down, now), current)
        if min_replicas < limit:
            floor, reason = limit, "ScaleDownLimit"
            message = "the desired replica count is decreasing faster than the maximum scale rate"
        else:
            floor, reason = min_replicas, "TooFewReplicas"
            message = "the desired replica count is less than the minimum replica count"
        if desired < floor:
            return Step("limit", floor, reason, message)
    return Step(
        "limit", desired, "DesiredWithinRange", "the desired count is within the acceptable range"
    )
