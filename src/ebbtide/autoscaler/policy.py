"""A resolved policy: an endpoint's targets and bounds merged with a profile's timing.

`policy_for(endpoint, profile)` is the one place where spec fields and profile defaults meet;
`decide` reads only the result, so it never parses quantities or looks for unset fields.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ebbtide.autoscaler.profiles import (
    LOCAL,
    BurstSettings,
    DirectionRules,
    ForecastSettings,
    Profile,
    RatePolicy,
    ReleaseTiming,
    ZeroSettings,
)
from ebbtide.spec.models import (
    BurstMode,
    InferenceEndpoint,
    LatencyObjective,
    MetricSpec,
    Prediction,
    ScaleToZero,
    ScalingRules,
)
from ebbtide.spec.quantity import parse_quantity

DEFAULT_BURST_THRESHOLD = 2.0
"""Knative's panic threshold: the short window asks for twice the ready replicas."""

MetricName = Literal["cpu", "memory", "concurrency", "requests_per_second"]


@dataclass(frozen=True)
class MetricGoal:
    """One target: a per-replica average to hold a metric at.

    For `Utilization`, `target` is a percent of the replica's request (60 means 60%); for
    `AverageValue` it is an amount per replica: cores, bytes, requests in flight, or requests
    per second.
    """

    name: MetricName
    kind: Literal["Utilization", "AverageValue"]
    target: float

    @property
    def is_resource(self) -> bool:
        return self.name in ("cpu", "memory")

    @property
    def description(self) -> str:
        """How the HPA names the metric in events: `cpu resource utilization (percentage of
        request)`, `memory resource`, `pods metric concurrency`."""
        if not self.is_resource:
            return f"pods metric {self.name}"
        if self.kind == "Utilization":
            return f"{self.name} resource utilization (percentage of request)"
        return f"{self.name} resource"


@dataclass(frozen=True)
class Objective:
    """A latency objective, resolved: this percentile of latency within this many seconds."""

    percentile: float
    latency: float
    """Seconds."""
    history: float = 30.0
    """Seconds of answers the step may reach back over when the stable window holds too few
    to place the percentile: 100 answers at 3.3 requests/s and above."""


@dataclass(frozen=True)
class Policy:
    """Everything `decide` needs besides the observation, the state and the time."""

    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricGoal, ...]
    cpu_request: float | None
    """Cores requested per replica (`requests.cpu`), the base of CPU utilization."""
    memory_request: float | None
    """Bytes requested per replica (`requests.memory`), the base of memory utilization."""
    scale_up: DirectionRules
    scale_down: DirectionRules
    sync_period: float
    metric_window: float
    cpu_initialization_period: float
    initial_readiness_delay: float
    burst: BurstSettings | None
    zero: ZeroSettings
    forecast: ForecastSettings | None
    """None unless the endpoint opted in to predictive scale-up."""
    profile: str = LOCAL.name
    release: ReleaseTiming | None = None
    """Scale-down timing from the measured replica start; None when the windows are fixed (the
    profile has none, or the spec sets the scale-down window)."""
    objective: Objective | None = None
    """The spec's latency objective; None when it sets none."""

    @property
    def history(self) -> float:
        """Seconds of samples the state must keep to compute every window."""
        longest = max(self.metric_window, self.burst.window if self.burst else 0.0)
        if self.forecast is not None:
            longest = max(longest, self.forecast.history)
        if self.objective is not None:
            longest = max(longest, self.objective.history)
        return longest + self.sync_period

    def with_bounds(self, min_replicas: int, max_replicas: int) -> Policy:
        """The same policy between other bounds."""
        return replace(self, min_replicas=min_replicas, max_replicas=max_replicas)


def policy_for(endpoint: InferenceEndpoint, profile: Profile = LOCAL) -> Policy:
    """Resolve an endpoint's autoscaling spec against a profile: the spec wins where it speaks."""
    autoscaling = endpoint.spec.autoscaling
    behavior = autoscaling.behavior
    cpu = endpoint.cpu_request()
    memory = endpoint.memory_request()
    return Policy(
        min_replicas=autoscaling.min_replicas,
        max_replicas=autoscaling.max_replicas,
        metrics=tuple(_goal(metric) for metric in endpoint.scaling_metrics()),
        cpu_request=None if cpu is None else float(cpu),
        memory_request=None if memory is None else float(memory),
        scale_up=_merge(profile.scale_up, behavior.scale_up if behavior else None),
        scale_down=_merge(profile.scale_down, behavior.scale_down if behavior else None),
        sync_period=profile.sync_period,
        metric_window=profile.metric_window,
        cpu_initialization_period=profile.cpu_initialization_period,
        initial_readiness_delay=profile.initial_readiness_delay,
        burst=_burst(profile, autoscaling.burst, behavior.scale_down if behavior else None),
        zero=_zero(profile, autoscaling.scale_to_zero),
        forecast=_forecast(profile, autoscaling.prediction),
        profile=profile.name,
        release=_release(profile, behavior.scale_down if behavior else None),
        objective=_objective(autoscaling.objective),
    )


def _objective(spec: LatencyObjective | None) -> Objective | None:
    if spec is None:
        return None
    return Objective(percentile=spec.percentile, latency=spec.latency_milliseconds / 1000)


def _release(profile: Profile, scale_down: ScalingRules | None) -> ReleaseTiming | None:
    """A scale-down window set in the spec is the window: it does not follow the start time."""
    if scale_down is not None and scale_down.stabilization_window_seconds is not None:
        return None
    return profile.release


def _burst(
    profile: Profile, spec: BurstMode | None, scale_down: ScalingRules | None
) -> BurstSettings | None:
    """The profile's burst mode with the spec's fields over it; `enabled: false` turns it off,
    `enabled: true` turns it on where the profile has none (a window of one sync period). A
    scale-down window set in the spec governs what bursts asked for too: the profile's longer
    hold is a default, not something to impose over a window the user chose."""
    if scale_down is not None and scale_down.stabilization_window_seconds is not None:
        chosen = _burst(profile, spec, None)
        return replace(chosen, hold=0.0) if chosen is not None else None
    if spec is None:
        return profile.burst
    if spec.enabled is False:
        return None
    base = profile.burst
    if base is None and not spec.enabled:
        return None
    base = base or BurstSettings(window=profile.sync_period, threshold=DEFAULT_BURST_THRESHOLD)
    return BurstSettings(
        window=base.window if spec.window_seconds is None else spec.window_seconds,
        threshold=base.threshold
        if spec.threshold_percent is None
        else spec.threshold_percent / 100,
        hold=base.hold,
    )


def _zero(profile: Profile, spec: ScaleToZero | None) -> ZeroSettings:
    if spec is None or spec.idle_seconds is None:
        return profile.zero
    return ZeroSettings(idle_period=spec.idle_seconds)


def _forecast(profile: Profile, spec: Prediction | None) -> ForecastSettings | None:
    if spec is None or not spec.enabled:
        return None
    base = profile.forecast
    return ForecastSettings(
        history=base.history if spec.history_seconds is None else spec.history_seconds,
        horizon=base.horizon if spec.horizon_seconds is None else spec.horizon_seconds,
    )


def _goal(metric: MetricSpec) -> MetricGoal:
    name: MetricName
    if metric.resource is not None:
        name, target = metric.resource.name, metric.resource.target
    elif metric.pods is not None:
        name, target = metric.pods.metric.name, metric.pods.target
    else:  # validation rejects this; a resolved policy must not guess
        raise ValueError(f"a {metric.type} metric without its {metric.type.lower()} field")
    if target.type == "Utilization" and target.average_utilization is not None:
        return MetricGoal(name, "Utilization", float(target.average_utilization))
    if target.type == "AverageValue" and target.average_value is not None:
        return MetricGoal(name, "AverageValue", float(parse_quantity(target.average_value)))
    raise ValueError(f"{name}: a target of type {target.type} without its value")


def _merge(defaults: DirectionRules, rules: ScalingRules | None) -> DirectionRules:
    """autoscaling/v2 defaulting: every field the user leaves unset comes from the profile."""
    if rules is None:
        return defaults
    policies = defaults.policies
    if rules.policies is not None:
        policies = tuple(
            RatePolicy(policy.type, policy.value, float(policy.period_seconds))
            for policy in rules.policies
        )
    window = rules.stabilization_window_seconds
    return DirectionRules(
        stabilization_window=defaults.stabilization_window if window is None else float(window),
        select_policy=rules.select_policy or defaults.select_policy,
        policies=policies,
        tolerance=defaults.tolerance if rules.tolerance is None else rules.tolerance,
    )
