"""One line for people: why an endpoint is, or is not, scaling right now.

`describe` prints it under the conditions, so "why does it never go above 1 replica?" has an
answer on screen: `holding 1 replica: cpu utilization 75% of request is below the target 95%
(a target this high leaves little headroom; 60-70% is usual)`.
"""

from __future__ import annotations

from ebbtide.autoscaler.calculator import Proposal
from ebbtide.autoscaler.decision import Decision
from ebbtide.autoscaler.policy import Policy

HIGH_TARGET_PERCENT = 90
"""CPU or memory targets at or above this leave too little headroom to absorb a burst."""


def explain(decision: Decision, policy: Policy) -> str:
    """Why the decision came out as it did, in one line."""
    current, desired = decision.current, decision.desired
    first = decision.reasons[0]
    if first.reason == "ScalingDisabled":
        return (
            "not scaling: the endpoint was scaled to 0 replicas by hand; scale it to 1 or more "
            "to resume autoscaling"
        )
    active = decision.condition("ScalingActive")
    if active is not None and active.status == "False":
        return f"not scaling: cannot compute a replica count: {_detail(active.message)}"
    if first.name == "bounds" or first.name == "zero":
        if first.reason == "ScaledToZero":
            return f"idle at 0 replicas: {first.message}"
        return f"{_moving(current, desired)}: {first.message}"
    special = _extension(decision)
    if special:
        return special
    chosen = _chosen(decision)
    usage = _usage(chosen) if chosen else "no metric value"
    wanted = decision.reasons[0].replicas
    limit = decision.step("limit")
    stable = decision.step("stabilize")
    if desired > current:
        line = f"scaling up {current} → {desired}: {usage}"
        return line + _limited(limit.reason if limit else "", wanted, policy)
    short = decision.step("short window")
    if desired < current:
        line = f"scaling down {current} → {desired}: all metrics below target ({usage})"
        if short is not None:
            return f"{line}, but no lower: {short.message}"
        return line + _limited(limit.reason if limit else "", wanted, policy)
    plural = "replica" if current == 1 else "replicas"
    if limit and limit.reason == "TooManyReplicas":
        return (
            f"not scaling up: already at maxReplicas ({policy.max_replicas}) while {usage} "
            f"(it asks for {wanted}); raise maxReplicas to allow more"
        )
    if limit and limit.reason == "ScaleUpLimit":
        return f"not scaling up yet: {usage}, but the scale-up rate limit allows no more yet"
    if limit and limit.reason == "TooFewReplicas":
        return f"not scaling down: at minReplicas ({policy.min_replicas}); {usage}"
    if wanted is not None and wanted < current <= policy.min_replicas:
        # Whatever the stabilization window remembers, the floor alone would hold this count.
        return f"not scaling down: at minReplicas ({policy.min_replicas}); {usage}"
    if short is not None:
        return (
            f"holding {current} {plural}: the metrics ask for {wanted}, but {short.message} "
            "(no scale-down below what the short window asks for)"
        )
    if limit and limit.reason == "ScaleDownLimit":
        return f"not scaling down yet: {usage}, but the scale-down rate limit allows no fewer yet"
    if stable and stable.reason == "ScaleDownStabilized":
        window, hold = _windows(decision, policy)
        if _held_by_burst(decision, window, stable.replicas):
            return (
                f"holding {current} {plural}: the metrics ask for {wanted}, but what burst mode "
                f"asked for within the last {hold:.3g} s still holds (a burst is remembered "
                f"{hold:.3g} s, the scale-down stabilization window {window:.3g} s"
                f"{_timing_source(decision, policy)})"
            )
        return (
            f"holding {current} {plural}: the metrics ask for {wanted}, but a higher "
            f"recommendation within the last {window:.3g} s (the scale-down stabilization "
            f"window{_timing_source(decision, policy)}) still holds"
        )
    if stable and stable.reason == "ScaleUpStabilized":
        window = policy.scale_up.stabilization_window
        return (
            f"holding {current} {plural}: the metrics ask for {wanted}, but a lower "
            f"recommendation within the last {window:.3g} s (the scale-up stabilization window) "
            "still holds"
        )
    return f"holding {current} {plural}: {usage}{_high_target_hint(chosen)}"


def _windows(decision: Decision, policy: Policy) -> tuple[float, float]:
    """The scale-down window and burst hold the decision used."""
    if decision.timing is not None:
        return decision.timing.scale_down_window, decision.timing.burst_hold
    window = policy.scale_down.stabilization_window
    return window, max(window, policy.burst.hold) if policy.burst else window


def _timing_source(decision: Decision, policy: Policy) -> str:
    if decision.timing is None or policy.release is None:
        return ""
    return f", {decision.timing.describe(policy.release)}"


def _held_by_burst(decision: Decision, window: float, held: int) -> bool:
    """Whether only a burst's recommendation, older than the scale-down window, holds the count."""
    recommendations = decision.state.recommendations
    if not any(r.burst for r in recommendations):
        return False
    now = recommendations[-1].time
    cutoff = now - window
    recent = max((r.replicas for r in recommendations if r.time > cutoff), default=0)
    return recent < held


def _extension(decision: Decision) -> str | None:
    """Burst mode, prediction and scale to zero, when one of them decided."""
    current, desired = decision.current, decision.desired
    zero = decision.step("zero")
    if zero is not None:
        return f"{_moving(current, desired)}: {zero.message}"
    burst = decision.step("burst")
    if burst is not None and desired > current:
        return f"scaling up at once {current} → {desired} (burst mode): {burst.message}"
    if burst is not None:
        return f"holding {current} (burst mode): {burst.message}"
    forecast = decision.step("forecast")
    if forecast is not None and desired > current:
        return f"scaling up {current} → {desired} ahead of the {forecast.message}"
    objective = decision.step("objective")
    if objective is not None and objective.reason == "ObjectiveUnmeetableAtMaxReplicas":
        return f"objective unmet at {current} replicas: {objective.message}"
    missed = ("ObjectiveMissed", "ObjectiveMissedWhileStarting")
    if objective is not None and objective.reason in missed and desired > current:
        return f"scaling up {current} → {desired} for the latency objective: {objective.message}"
    return None


def _chosen(decision: Decision) -> Proposal | None:
    valid = [p for p in decision.proposals if p.replicas is not None]
    return max(valid, key=lambda p: p.replicas or 0, default=None)


def _usage(proposal: Proposal) -> str:
    goal = proposal.goal
    if proposal.utilization is not None:
        value, target = f"{proposal.utilization}%", f"{goal.target:g}%"
        what = f"{goal.name} utilization {value} of request"
    else:
        value, target = f"{proposal.average or 0:.3g}", f"{goal.target:g}"
        what = f"{goal.name} {value} per replica"
    ratio = proposal.ratio
    if ratio is None:
        return f"{what} (target {target})"
    if proposal.reason == "WithinTolerance":
        return f"{what} is within tolerance of the target {target}"
    side = "above" if ratio > 1.0 else "below" if ratio < 1.0 else "at"
    return f"{what} is {side} the target {target}"


def _high_target_hint(proposal: Proposal | None) -> str:
    if proposal is None or proposal.goal.kind != "Utilization":
        return ""
    if proposal.goal.target < HIGH_TARGET_PERCENT or (proposal.ratio or 0) >= 1.0:
        return ""
    return (
        f" (a target of {proposal.goal.target:g}% leaves little headroom: replicas run hot "
        "before another is added; 60-70% is usual)"
    )


def _limited(reason: str, wanted: int, policy: Policy) -> str:
    if reason == "TooManyReplicas":
        return f" (capped at maxReplicas {policy.max_replicas}; the metrics ask for {wanted})"
    if reason == "TooFewReplicas":
        return f" (held at minReplicas {policy.min_replicas}; the metrics ask for {wanted})"
    if reason in ("ScaleUpLimit", "ScaleDownLimit"):
        return f" (rate-limited; the metrics ask for {wanted})"
    return ""


def _moving(current: int, desired: int) -> str:
    if desired == current:
        return f"holding {current}"
    direction = "scaling up" if desired > current else "scaling down"
    return f"{direction} {current} → {desired}"


def _detail(message: str) -> str:
    return message.removeprefix("the HPA was unable to compute the replica count: ")
