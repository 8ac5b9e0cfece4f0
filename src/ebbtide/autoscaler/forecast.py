"""Predictive scale-up (opt-in): provision for the arrival rate one replica start ahead.

A least-squares line through the arrival rates of the recent history (60 s by default) is
extended `horizon` seconds ahead (5 s by default: more than a replica takes to start). While
the line rises, the replicas that the forecast rate calls for (`demand.replicas_for_rate`) are
a floor under the decision; a falling line does nothing, so the endpoint never scales down on a
forecast alone. A trend needs history: with less than half the history seen, there is none.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from ebbtide.autoscaler.demand import Demand, replicas_for_rate
from ebbtide.autoscaler.policy import Policy
from ebbtide.autoscaler.profiles import ForecastSettings
from ebbtide.autoscaler.windows import Sample


def forecast_rate(samples: Sequence[Sample], settings: ForecastSettings) -> float | None:
    """The arrival rate expected `horizon` seconds after the newest sample, when rising."""
    now = samples[-1].time if samples else 0.0
    recent = [
        s for s in samples if s.time >= now - settings.history and s.requests_total is not None
    ]
    points = [
        (
            (a.time + b.time) / 2,
            ((b.requests_total or 0) - (a.requests_total or 0)) / (b.time - a.time),
        )
        for a, b in pairwise(recent)
        if b.time > a.time
    ]
    if len(points) < 3 or recent[-1].time - recent[0].time < settings.history / 2:
        return None
    slope, intercept = _line(points)
    if slope <= 0:
        return None
    return max(0.0, intercept + slope * (now + settings.horizon))


def forecast_replicas(
    samples: Sequence[Sample], policy: Policy, settings: ForecastSettings, demand: Demand | None
) -> tuple[int, float] | None:
    """The replicas the forecast rate calls for, with that rate; None without a rising trend."""
    rate = forecast_rate(samples, settings)
    if rate is None or demand is None:
        return None
    counts = [replicas_for_rate(goal, rate, demand, policy) for goal in policy.metrics]
    known = [count for count in counts if count is not None]
    return (max(known), rate) if known else None


def _line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope and intercept."""
    count = len(points)
    mean_x = sum(x for x, _ in points) / count
    mean_y = sum(y for _, y in points) / count
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0, mean_y
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    return slope, mean_y - slope * mean_x
