"""The policies a simulation compares, each behind the same small interface (`view.ScalingPolicy`).

- `Autoscaler` runs ebbtide's real `decide` (the local profile: ebbtide's default; the
  kubernetes profile: the HPA with Kubernetes' defaults).
- `Knative` is the KPA's algorithm with its defaults: 2 s ticks, requests in flight averaged
  over a 60 s stable and a 6 s panic window, a target of 70% of the replica's concurrency,
  panic at 200%, never scaling down while panicking, at most halving per tick.
- `RayServe` is Ray Serve's default request-queue policy: `ceil(ongoing / 2)` averaged over a
  30 s look-back, applied only after it has held for 30 s (up) or 600 s (down).
- `Fixed` keeps one count; the clairvoyant oracle is in `oracle.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ebbtide.autoscaler import Observation, Policy, ReplicaSample, State, Traffic, decide
from ebbtide.sim.view import View


class Autoscaler:
    """ebbtide's `decide` under a fake clock: the simulator's time is the decision's `now`."""

    def __init__(self, name: str, policy: Policy) -> None:
        self.name = name
        self.policy = policy
        self.sync_period = policy.sync_period
        self.state = State()

    def decide(self, view: View, now: float) -> int:
        replicas = tuple(
            ReplicaSample(
                name=r.name,
                started_at=r.started_at,
                ready=r.ready,
                ready_since=r.ready_since if r.ready else None,
                pending=not r.ready,
                cpu_seconds=r.cpu_seconds,
            )
            for r in view.replicas
        )
        traffic = Traffic(
            view.in_flight, view.requests_total, view.in_flight_seconds, view.latency_counts
        )
        decision = decide(
            Observation(view.desired, replicas, traffic), self.policy, self.state, now
        )
        self.state = decision.state
        return decision.desired


@dataclass
class _Windows:
    """(time, in-flight integral) readings, to average requests in flight over windows."""

    readings: list[tuple[float, float]] = field(default_factory=list)

    def add(self, now: float, integral: float, keep: float) -> None:
        self.readings.append((now, integral))
        while self.readings and self.readings[0][0] < now - keep:
            self.readings.pop(0)

    def average(self, window: float) -> float | None:
        now, latest = self.readings[-1]
        base = next((r for r in self.readings if r[0] >= now - window - 1e-9), None)
        if base is None or base[0] >= now:
            return None
        return (latest - base[1]) / (now - base[0])


class Knative:
    """The Knative Pod Autoscaler with its default settings."""

    def __init__(
        self,
        concurrency: int,
        min_replicas: int,
        max_replicas: int,
        target_utilization: float = 0.7,
        stable_window: float = 60.0,
        panic_window_percent: float = 10.0,
        panic_threshold: float = 2.0,
        max_scale_up_rate: float = 1000.0,
        max_scale_down_rate: float = 2.0,
        tick: float = 2.0,
    ) -> None:
        self.name = "knative-kpa"
        self.sync_period = tick
        self.target = concurrency * target_utilization
        self.min_replicas, self.max_replicas = min_replicas, max_replicas
        self.stable_window = stable_window
        self.panic_window = stable_window * panic_window_percent / 100
        self.panic_threshold = panic_threshold
        self.max_up, self.max_down = max_scale_up_rate, max_scale_down_rate
        self.windows = _Windows()
        self.panic_since: float | None = None
        self.max_panic_pods = 0

    def decide(self, view: View, now: float) -> int:
        self.windows.add(now, view.in_flight_seconds, self.stable_window + self.sync_period)
        stable = self.windows.average(self.stable_window)
        panic = self.windows.average(self.panic_window)
        if stable is None or panic is None:
            return view.desired
        ready = max(1, view.ready)
        most, fewest = math.ceil(self.max_up * ready), math.floor(ready / self.max_down)
        desired_stable = min(max(math.ceil(stable / self.target), fewest), most)
        desired_panic = min(max(math.ceil(panic / self.target), fewest), most)
        over = desired_panic / ready >= self.panic_threshold
        if over:
            self.panic_since = now
        elif self.panic_since is not None and now > self.panic_since + self.stable_window:
            self.panic_since, self.max_panic_pods = None, 0
        desired = desired_stable
        if self.panic_since is not None:
            desired = max(desired, desired_panic)
            if desired > self.max_panic_pods:
                self.max_panic_pods = desired
            else:
                desired = self.max_panic_pods
        return min(max(desired, self.min_replicas), self.max_replicas)


class RayServe:
    """Ray Serve's default autoscaling policy (target_ongoing_requests=2)."""

    def __init__(
        self,
        min_replicas: int,
        max_replicas: int,
        target_ongoing_requests: float = 2.0,
        upscale_delay: float = 30.0,
        downscale_delay: float = 600.0,
        look_back: float = 30.0,
        tick: float = 1.0,
    ) -> None:
        self.name = "ray-serve"
        self.sync_period = tick
        self.target = target_ongoing_requests
        self.min_replicas, self.max_replicas = min_replicas, max_replicas
        self.upscale_delay, self.downscale_delay = upscale_delay, downscale_delay
        self.look_back = look_back
        self.windows = _Windows()
        self.wanting_since: float | None = None
        self.wanting_up = False

    def decide(self, view: View, now: float) -> int:
        self.windows.add(now, view.in_flight_seconds, self.look_back + self.sync_period)
        ongoing = self.windows.average(self.look_back)
        current = view.desired
        if ongoing is None:
            return current
        desired = min(
            max(math.ceil(ongoing / self.target - 1e-9), self.min_replicas), self.max_replicas
        )
        if current == 0 and desired > 0:
            return desired  # Ray scales up from zero at once
        if desired == current:
            self.wanting_since = None
            return current
        up = desired > current
        if self.wanting_since is None or self.wanting_up != up:
            self.wanting_since, self.wanting_up = now, up
        delay = self.upscale_delay if up else self.downscale_delay
        if now - self.wanting_since >= delay:
            self.wanting_since = None
            return desired
        return current


class Fixed:
    """The same count all along: a fleet sized by hand."""

    def __init__(self, replicas: int) -> None:
        self.name = f"fixed-{replicas}"
        self.sync_period = 60.0
        self.replicas = replicas

    def decide(self, view: View, now: float) -> int:
        return self.replicas
