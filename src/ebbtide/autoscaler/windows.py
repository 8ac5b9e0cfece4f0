"""Averages over time windows, from the counter readings the state keeps.

A window of `w` seconds ending now averages between the current reading and the oldest
reading no older than `w` plus a little slack (half a sync period), so ticks that arrive a few
milliseconds late do not shrink a 3 s window to 2 s; when readings are further apart than the
window, it spans one tick. A replica seen only once has no average yet, which is exactly the
HPA's "missing metrics" case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ebbtide.autoscaler.observation import Observation


@dataclass(frozen=True)
class Sample:
    """The counters of one observation."""

    time: float
    requests_total: int | None
    in_flight: float | None
    in_flight_seconds: float | None
    cpu_seconds: Mapping[str, float]
    """Per replica name; never mutated after creation."""
    latency_counts: tuple[int, ...] = ()
    """The gateway's answers per latency bucket (counters); empty when not measured."""

    @classmethod
    def of(cls, observation: Observation, now: float) -> Sample:
        traffic = observation.traffic
        cpu = {r.name: r.cpu_seconds for r in observation.replicas if r.cpu_seconds is not None}
        return cls(
            time=now,
            requests_total=traffic.requests_total if traffic else None,
            in_flight=traffic.in_flight if traffic else None,
            in_flight_seconds=traffic.in_flight_seconds if traffic else None,
            cpu_seconds=cpu,
            latency_counts=traffic.latency_counts if traffic else (),
        )


@dataclass(frozen=True)
class Rate:
    """An average over a window, and the window it really covered."""

    value: float
    start: float
    end: float


def window_start(samples: Sequence[Sample], window: float, slack: float) -> int | None:
    """Index of the oldest sample inside the window; when the readings are further apart than
    the window, the one before the newest (a window is never shorter than a tick). None when
    only the newest exists."""
    if len(samples) < 2:
        return None
    oldest = samples[-1].time - window - slack
    for index, sample in enumerate(samples[:-1]):
        if sample.time >= oldest:
            return index
    return len(samples) - 2


def cpu_cores(samples: Sequence[Sample], name: str, window: float, slack: float) -> Rate | None:
    """A replica's CPU cores over the window, or None without two readings (or after a restart
    reset its counter)."""
    if not samples or name not in samples[-1].cpu_seconds:
        return None
    latest = samples[-1]
    oldest = latest.time - window - slack
    earlier = [s for s in samples[:-1] if name in s.cpu_seconds]
    if not earlier:
        return None
    first = next((s for s in earlier if s.time >= oldest), earlier[-1])
    used = latest.cpu_seconds[name] - first.cpu_seconds[name]
    if used < 0 or latest.time <= first.time:
        return None
    return Rate(used / (latest.time - first.time), first.time, latest.time)


def arrival_rate(samples: Sequence[Sample], window: float, slack: float) -> Rate | None:
    """Requests per second arriving over the window."""
    index = window_start(samples, window, slack)
    if index is None:
        return None
    first, latest = samples[index], samples[-1]
    if first.requests_total is None or latest.requests_total is None:
        return None
    arrived = max(0, latest.requests_total - first.requests_total)
    return Rate(arrived / (latest.time - first.time), first.time, latest.time)


def concurrency(samples: Sequence[Sample], window: float, slack: float) -> Rate | None:
    """Average requests in flight over the window; the instantaneous value with no window yet."""
    if not samples or samples[-1].in_flight is None:
        return None
    latest = samples[-1]
    index = window_start(samples, window, slack)
    if index is None:
        return Rate(float(latest.in_flight or 0.0), latest.time, latest.time)
    first = samples[index]
    span = latest.time - first.time
    if first.in_flight_seconds is not None and latest.in_flight_seconds is not None:
        integral = max(0.0, latest.in_flight_seconds - first.in_flight_seconds)
        return Rate(integral / span, first.time, latest.time)
    readings = [s.in_flight for s in samples[index + 1 :] if s.in_flight is not None]
    return Rate(sum(readings) / len(readings), first.time, latest.time)


def latency_window(
    samples: Sequence[Sample], window: float, slack: float, at_least: int = 0
) -> tuple[tuple[int, ...], float] | None:
    """Answers per latency bucket over the window, and the time of the reading they are
    counted from: the difference of two counter readings, reaching back past the window to
    older readings the samples keep until it holds `at_least` answers (a p99 needs about 100,
    more than a short window holds at low rates). None without two readings that both carry
    buckets of one layout, or after the counters went back (a gateway restart)."""
    index = window_start(samples, window, slack)
    if index is None:
        return None
    latest = samples[-1].latency_counts
    while index > 0 and _answers(samples[index], latest) < at_least:
        index -= 1
    first = samples[index].latency_counts
    if not latest or len(first) != len(latest):
        return None
    counts = tuple(now - before for now, before in zip(latest, first, strict=True))
    if any(count < 0 for count in counts):
        return None
    return counts, samples[index].time


def _answers(sample: Sample, latest: tuple[int, ...]) -> int:
    if len(sample.latency_counts) != len(latest):
        return 0
    return sum(latest) - sum(sample.latency_counts)
