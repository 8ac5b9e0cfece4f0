"""Scaling profiles: the timing and rate defaults a decision runs with when the spec says nothing.

Two profiles ship:

- `KUBERNETES` reproduces the kube-controller-manager and autoscaling/v2 defaults exactly:
  a 15 s sync period, a 15 s metric window (metrics-server's resolution), tolerance 0.1,
  scale-up with no stabilization and at most max(+100%, +4 pods) per 15 s, scale-down with a
  300 s stabilization window and at most -100% per 15 s, a 300 s CPU initialization period and
  a 30 s initial readiness delay.
- `LOCAL` (the default) keeps the same algorithm but retunes its clock for replicas that start
  in well under a second: a decision every quarter second, a 2 s metric window, a 0.25 s burst
  window, and a scale-down window of 16 replica starts (32 for what a burst asked for), at
  least 2 s, from the start time measured on the endpoint's own replicas.
  docs/autoscaling.md explains each choice.

A user's `spec.autoscaling.behavior` overrides a profile field by field (`policy_for`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

SelectPolicy = Literal["Max", "Min", "Disabled"]


@dataclass(frozen=True)
class RatePolicy:
    """At most `value` replicas (Pods) or percent of the replicas (Percent) per `period` seconds."""

    type: Literal["Pods", "Percent"]
    value: int
    period: float


@dataclass(frozen=True)
class DirectionRules:
    """How one direction may move, as autoscaling/v2's HPAScalingRules with defaults filled in."""

    stabilization_window: float
    """Seconds of past recommendations considered: the most conservative one wins."""
    select_policy: SelectPolicy
    """Max: the policy allowing the most change wins; Min: the least; Disabled: never move."""
    policies: tuple[RatePolicy, ...]
    """Rate limits; with none, the direction is unlimited."""
    tolerance: float = 0.1
    """A metric ratio within this distance of 1.0 changes nothing (on this side of 1.0)."""

    @property
    def longest_period(self) -> float:
        """The longest policy period: older scale events never matter again."""
        return max((policy.period for policy in self.policies), default=0.0)


@dataclass(frozen=True)
class BurstSettings:
    """Burst mode (Knative's panic mode): a short window beside the stable one."""

    window: float
    """Seconds of the short window."""
    threshold: float
    """Enter burst mode when the short window asks for this many times the ready replicas."""
    hold: float = 0.0
    """Seconds the scale-down stabilization window remembers what a burst asked for, when
    longer than the window itself: bursty traffic tends to burst again."""


@dataclass(frozen=True)
class ReleaseTiming:
    """Scale-down timing that follows how long the endpoint's replicas take to start.

    An idle replica is worth keeping while giving it up and starting it again would cost more:
    the requests that queue while a replacement starts. That cost grows with the start time, so
    the scale-down window and the burst hold are set in replica starts rather than seconds."""

    window_starts: float
    """The scale-down stabilization window, in replica start times."""
    hold_starts: float
    """How long what burst mode asked for is remembered, in replica start times."""
    minimum: float
    """Seconds neither is ever shorter than: a full metric window of calm."""
    assumed_start: float
    """Seconds a start is taken to last until one has been measured."""
    samples: int = 5
    """The measured start is the median of this many of the latest starts."""

    def windows(self, start: float) -> tuple[float, float]:
        """The scale-down window and the burst hold, in seconds, for replicas that start in
        `start` seconds."""
        return (
            max(self.minimum, self.window_starts * start),
            max(self.minimum, self.hold_starts * start),
        )


@dataclass(frozen=True)
class ZeroSettings:
    """Scale to zero, for endpoints with minReplicas 0."""

    idle_period: float
    """Seconds without any request before the last replica is removed."""


@dataclass(frozen=True)
class ForecastSettings:
    """Predictive scale-up (opt-in per endpoint)."""

    history: float
    """Seconds of arrival history the forecast fits."""
    horizon: float
    """Seconds ahead the forecast looks: at least one replica start."""


@dataclass(frozen=True)
class Profile:
    """Everything about a decision's timing that a spec may leave unset."""

    name: str
    sync_period: float
    """Seconds between two decisions (--horizontal-pod-autoscaler-sync-period)."""
    metric_window: float
    """Seconds over which CPU and request rates are averaged (metrics-server's window)."""
    scale_up: DirectionRules
    scale_down: DirectionRules
    cpu_initialization_period: float
    """Seconds after a replica starts during which its CPU counts only once a full metric window
    has passed since it became ready (--horizontal-pod-autoscaler-cpu-initialization-period)."""
    initial_readiness_delay: float
    """Seconds after start during which a replica turning unready counts as never ready
    (--horizontal-pod-autoscaler-initial-readiness-delay)."""
    burst: BurstSettings | None = None
    """Burst mode, or None for none (Kubernetes has none)."""
    zero: ZeroSettings = field(default_factory=lambda: ZeroSettings(idle_period=30.0))
    """Scale-to-zero timing, used only when minReplicas is 0."""
    forecast: ForecastSettings = field(
        default_factory=lambda: ForecastSettings(history=60.0, horizon=5.0)
    )
    """Forecast timing, used only when an endpoint opts in."""
    release: ReleaseTiming | None = None
    """Scale-down timing that follows the measured replica start, or None for fixed windows."""

    def with_sync_period(self, seconds: float) -> Profile:
        """The same profile deciding every `seconds` seconds."""
        return replace(self, sync_period=seconds)


KUBERNETES = Profile(
    name="kubernetes",
    sync_period=15.0,
    metric_window=15.0,
    scale_up=DirectionRules(
        stabilization_window=0.0,
        select_policy="Max",
        policies=(RatePolicy("Pods", 4, 15.0), RatePolicy("Percent", 100, 15.0)),
    ),
    scale_down=DirectionRules(
        stabilization_window=300.0,
        select_policy="Max",
        policies=(RatePolicy("Percent", 100, 15.0),),
    ),
    cpu_initialization_period=300.0,
    initial_readiness_delay=30.0,
    burst=None,
    zero=ZeroSettings(idle_period=300.0),
    forecast=ForecastSettings(history=600.0, horizon=60.0),
)
"""Kubernetes' defaults, exactly: what an HPA on a cluster does with this spec."""

_LOCAL_RELEASE = ReleaseTiming(window_starts=16.0, hold_starts=32.0, minimum=2.0, assumed_start=0.5)
# The fixed windows are what the release timing gives at its assumed start; a measured start
# replaces them at each decision.
_LOCAL_WINDOW, _LOCAL_HOLD = _LOCAL_RELEASE.windows(_LOCAL_RELEASE.assumed_start)

LOCAL = Profile(
    name="local",
    sync_period=0.25,
    metric_window=2.0,
    scale_up=DirectionRules(
        stabilization_window=0.0,
        select_policy="Max",
        policies=(RatePolicy("Pods", 4, 1.0), RatePolicy("Percent", 100, 1.0)),
    ),
    scale_down=DirectionRules(
        stabilization_window=_LOCAL_WINDOW,
        select_policy="Max",
        policies=(RatePolicy("Percent", 50, 5.0),),
    ),
    cpu_initialization_period=10.0,
    initial_readiness_delay=2.0,
    burst=BurstSettings(window=0.25, threshold=2.0, hold=_LOCAL_HOLD),
    zero=ZeroSettings(idle_period=30.0),
    forecast=ForecastSettings(history=60.0, horizon=5.0),
    release=_LOCAL_RELEASE,
)
"""ebbtide's default on one machine: the HPA's algorithm on a clock matched to sub-second starts."""

PROFILES: dict[str, Profile] = {profile.name: profile for profile in (LOCAL, KUBERNETES)}
"""Profiles by name, for settings files and the command line."""
