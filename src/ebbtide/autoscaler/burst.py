"""Burst mode: Knative's panic mode on the HPA's algorithm.

Beside the stable metric window, a short window (1 s by default) watches for a surge. When what
the short window asks for reaches `threshold` times the ready replicas (200% by default), the
endpoint enters burst mode: it scales up at once to the larger of the two proposals, with no
rate limit, and it does not scale down at all until a full stable window (the metric window) has
passed without another surge: by then the surge shows in the stable metric, and the scale-down
stabilization window takes over.

In the short window each target proposes from what reveals demand soonest: requests in flight
(queued ones included) for a concurrency target, the arrival rate for a requests-per-second
target, and for a CPU target the arrival rate times the CPU a request costs (from the stable
window; `demand`), because measured CPU stops at the cores a replica has and so hides a surge.
Requests waiting (in flight beyond one per ready replica) count as demand to clear within half a
second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ebbtide.autoscaler.calculator import Tolerances, propose, traffic_proposal
from ebbtide.autoscaler.demand import Demand, replicas_for_rate
from ebbtide.autoscaler.observation import Observation
from ebbtide.autoscaler.policy import MetricGoal, Policy
from ebbtide.autoscaler.profiles import BurstSettings
from ebbtide.autoscaler.state import State
from ebbtide.autoscaler.windows import Sample, arrival_rate, concurrency

NO_TOLERANCE = Tolerances(0.0, 0.0)

SURGE_MIN_ARRIVALS = 10
"""A short window that saw fewer requests arrive cannot call a surge. A quarter second at
10 requests/s holds 2.5 arrivals on average and, by Poisson chance alone, 7 or more about once
every 20 s: enough to ask for twice one small replica. 10 or more happens about once in 15
minutes, while a real surge of a few hundred requests per second fills the window many times
over."""

BACKLOG_CLEAR_SECONDS = 0.5
"""Requests waiting (those in flight beyond one per ready replica) count as demand to clear
within this long, or the short window when longer. A quarter second would turn the two or
three requests a busy machine keeps waiting into a surge of ten more per second."""


@dataclass(frozen=True)
class Burst:
    """What the short window asks for, and whether burst mode is on after this decision."""

    replicas: int | None
    """The short window's proposal, waiting requests included; None when it cannot be
    computed."""
    sustained: int | None
    """The same without the waiting requests: what the surge needs once the queue is clear."""
    ready: int
    active: bool
    triggered: bool
    state: State
    significant: bool
    """Whether the short window saw enough arrivals (`SURGE_MIN_ARRIVALS`) to be more than
    chance: neither a surge nor a floor under scale-down comes from fewer."""

    def message(self, settings: BurstSettings, stable_window: float, now: float) -> str:
        if self.triggered:
            return (
                f"the last {settings.window:g} s asks for {self.replicas} replicas, at least "
                f"{settings.threshold * 100:.0f}% of the {self.ready} ready: scaling up at "
                "once, no scale-down until a calm stabilization window has passed"
            )
        ago = now - (self.state.burst_last_triggered or now)
        return (
            f"a surge {ago:.2g} s ago asked for at least {settings.threshold * 100:.0f}% of the "
            f"ready replicas: no scale-down until it has passed through the "
            f"{stable_window:g} s stable window"
        )


def assess(
    observation: Observation,
    policy: Policy,
    settings: BurstSettings,
    state: State,
    demand: Demand | None,
    now: float,
) -> Burst:
    """Enter, stay in, or leave burst mode."""
    replicas, sustained = short_window_replicas(
        observation, policy, settings, state.samples, demand, now
    )
    ready = _ready(observation)
    significant = _enough_arrivals(state.samples, settings, policy.sync_period / 2)
    triggered = (
        replicas is not None and replicas >= settings.threshold * max(ready, 1) and significant
    )
    if triggered:
        state = replace(
            state,
            burst_since=state.burst_since if state.burst_since else now,
            burst_last_triggered=now,
        )
    elif (
        state.burst_since is not None
        and now - (state.burst_last_triggered or now) >= policy.metric_window
    ):
        # Calm once the surge has made its way into the stable metric window.
        state = replace(state, burst_since=None, burst_last_triggered=None)
    active = state.burst_since is not None
    return Burst(replicas, sustained, ready, active, triggered, state, significant)


def short_window_replicas(
    observation: Observation,
    policy: Policy,
    settings: BurstSettings,
    samples: Sequence[Sample],
    demand: Demand | None,
    now: float,
) -> tuple[int | None, int | None]:
    """The largest proposal of the short window over the targets it can judge, with and
    without the requests already waiting."""
    slack = policy.sync_period / 2
    with_backlog: list[int] = []
    sustained: list[int] = []
    replicas = sum(1 for r in observation.replicas if not r.terminating)
    # One request in service on each ready replica is not waiting.
    in_flight_now = (samples[-1].in_flight or 0.0) if samples else 0.0
    waiting = max(0.0, in_flight_now - _ready(observation))
    for goal in policy.metrics:
        if goal.name == "concurrency":
            in_flight = concurrency(samples, settings.window, slack)
            if in_flight is not None:
                count = traffic_proposal(goal, in_flight.value, replicas, NO_TOLERANCE).replicas
                with_backlog.append(count or 0)
                sustained.append(count or 0)
            continue
        if goal.name not in ("requests_per_second", "cpu"):
            continue
        rate = arrival_rate(samples, settings.window, slack)
        if rate is not None and (goal.name == "requests_per_second" or demand is not None):
            # Requests waiting are demand too: clear them soon.
            clear_within = max(settings.window, BACKLOG_CLEAR_SECONDS)
            for total, into in (
                (rate.value + waiting / clear_within, with_backlog),
                (rate.value, sustained),
            ):
                count = _for_rate(goal, total, demand, policy)
                if count is not None:
                    into.append(count)
        elif goal.name == "cpu":
            short = replace(policy, metric_window=settings.window)
            count = propose(goal, observation, short, samples, now, NO_TOLERANCE).replicas
            if count is not None:
                with_backlog.append(count)
                sustained.append(count)
    return max(with_backlog, default=None), max(sustained, default=None)


def _for_rate(goal: MetricGoal, rate: float, demand: Demand | None, policy: Policy) -> int | None:
    if goal.name == "requests_per_second":
        return math.ceil(rate / goal.target - 1e-9)
    return None if demand is None else replicas_for_rate(goal, rate, demand, policy)


def _enough_arrivals(samples: Sequence[Sample], settings: BurstSettings, slack: float) -> bool:
    """Whether the short window saw enough arrivals to tell a surge from chance; without
    arrival counts (no gateway counters), there is nothing to doubt."""
    rate = arrival_rate(samples, settings.window, slack)
    if rate is None:
        return True
    return rate.value * (rate.end - rate.start) >= SURGE_MIN_ARRIVALS - 1e-9


def _ready(observation: Observation) -> int:
    return sum(1 for r in observation.replicas if r.ready and not r.terminating and not r.pending)
