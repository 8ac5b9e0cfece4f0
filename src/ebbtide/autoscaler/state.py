"""What one decision hands the next: recommendations, scale events and counter readings.

The HPA keeps the same things in maps inside its controller; here they go in and come back
with every decision (`Decision.state`), so a decision depends on nothing hidden. Every entry
carries the time it was made, and every delay compares times: nothing counts ticks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ebbtide.autoscaler.objective import MissedWindow
from ebbtide.autoscaler.windows import Sample


@dataclass(frozen=True)
class Recommendation:
    """An unstabilized recommendation, kept for the stabilization windows."""

    time: float
    replicas: int
    burst: bool = False
    """Made in burst mode: the scale-down window keeps it for the burst's hold period."""


@dataclass(frozen=True)
class ScaleEvent:
    """A change of the replica count, kept for the rate policies; `change` is always positive."""

    time: float
    change: int


@dataclass(frozen=True)
class State:
    """An endpoint's autoscaler memory. Start with `State()`; keep the one each decision returns."""

    recommendations: tuple[Recommendation, ...] = ()
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()
    samples: tuple[Sample, ...] = ()
    initialized: bool = False
    """False until the first decision has recorded the starting replica count as a
    recommendation (as the HPA's recordInitialRecommendation)."""
    burst_since: float | None = None
    """When burst mode began; None outside burst mode."""
    burst_last_triggered: float | None = None
    """The last time the short window asked for a burst; burst mode ends a full stable window
    after it."""
    last_request_at: float | None = None
    """The last time a request was seen arriving or in flight (for scale to zero)."""
    scaled_to_zero: bool = False
    """True after the autoscaler itself scaled the endpoint to zero (as opposed to a person)."""
    start_times: tuple[float, ...] = ()
    """Seconds the latest replicas took from start to ready, oldest first."""
    timed: frozenset[str] = frozenset()
    """The replicas present whose start is already in `start_times`."""
    objective_load: float | None = None
    """Requests in flight per ready replica at which the latency objective held, as learned
    (`objective.py`); None until the objective was first missed."""
    objective_lowered_at: float | None = None
    """When `objective_load` was last lowered: it is lowered again only on answers after it."""
    objective_misses: tuple[MissedWindow, ...] = ()
    """Recent windows that missed the objective, the latest per replica count: a later miss at
    more replicas is compared with them (`objective.compare_with_fewer`)."""
    objective_not_lowered: tuple[MissedWindow, MissedWindow] | None = None
    """The earlier miss and the later one, at more replicas, whose latency was not lower: said
    in every miss's message until a comparison shows it was, or the objective is met."""

    def with_sample(self, sample: Sample, keep: float) -> State:
        """Add a reading and drop those older than `keep` seconds (except the newest)."""
        oldest = sample.time - keep
        kept = tuple(s for s in self.samples if s.time >= oldest and s.time < sample.time)
        return replace(self, samples=(*kept, sample))

    def with_recommendation(
        self, now: float, replicas: int, keep: float, burst: bool = False
    ) -> State:
        """Record an unstabilized recommendation; drop those older than every window."""
        kept = tuple(r for r in self.recommendations if r.time >= now - keep)
        return replace(self, recommendations=(*kept, Recommendation(now, replicas, burst)))

    def with_scale_event(
        self, now: float, before: int, after: int, keep_up: float, keep_down: float
    ) -> State:
        """Record a change of the replica count; drop events older than every policy period."""
        if after > before:
            kept = tuple(e for e in self.scale_up_events if e.time >= now - keep_up)
            return replace(self, scale_up_events=(*kept, ScaleEvent(now, after - before)))
        if after < before:
            kept = tuple(e for e in self.scale_down_events if e.time >= now - keep_down)
            return replace(self, scale_down_events=(*kept, ScaleEvent(now, before - after)))
        return self

    def to_record(self) -> dict[str, Any]:
        """The state as JSON-ready data for a control plane that restarts, less the counter
        readings (`samples`): the gateway that produced them may restart too, and its
        counters with it, so the windows start afresh while the history is kept."""
        return {
            "recommendations": [[r.time, r.replicas, r.burst] for r in self.recommendations],
            "scale_up_events": [[e.time, e.change] for e in self.scale_up_events],
            "scale_down_events": [[e.time, e.change] for e in self.scale_down_events],
            "initialized": self.initialized,
            "burst_since": self.burst_since,
            "burst_last_triggered": self.burst_last_triggered,
            "last_request_at": self.last_request_at,
            "scaled_to_zero": self.scaled_to_zero,
            "start_times": list(self.start_times),
            "timed": sorted(self.timed),
            "objective_load": self.objective_load,
            "objective_lowered_at": self.objective_lowered_at,
            "objective_misses": [_window_record(w) for w in self.objective_misses],
            "objective_not_lowered": (
                None
                if self.objective_not_lowered is None
                else [_window_record(w) for w in self.objective_not_lowered]
            ),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> State:
        """The state `to_record` wrote; `ValueError` if it is not one."""
        try:
            return cls(
                recommendations=tuple(
                    Recommendation(float(t), int(n), bool(b))
                    for t, n, b in record["recommendations"]
                ),
                scale_up_events=tuple(
                    ScaleEvent(float(t), int(c)) for t, c in record["scale_up_events"]
                ),
                scale_down_events=tuple(
                    ScaleEvent(float(t), int(c)) for t, c in record["scale_down_events"]
                ),
                initialized=bool(record["initialized"]),
                burst_since=_optional_time(record["burst_since"]),
                burst_last_triggered=_optional_time(record["burst_last_triggered"]),
                last_request_at=_optional_time(record["last_request_at"]),
                scaled_to_zero=bool(record["scaled_to_zero"]),
                start_times=tuple(float(t) for t in record["start_times"]),
                timed=frozenset(str(name) for name in record["timed"]),
                # Absent from records written before the objective learned a load.
                objective_load=_optional_time(record.get("objective_load")),
                objective_lowered_at=_optional_time(record.get("objective_lowered_at")),
                objective_misses=tuple(_window_from(w) for w in record.get("objective_misses", ())),
                objective_not_lowered=_finding_from(record.get("objective_not_lowered")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not an autoscaler state: {error!r}") from None


def _window_record(window: MissedWindow) -> list[float]:
    return [window.time, window.ready, window.load, window.observed, window.rate]


def _window_from(values: Any) -> MissedWindow:
    time, ready, load, observed, rate = values
    return MissedWindow(float(time), int(ready), float(load), float(observed), float(rate))


def _finding_from(value: Any) -> tuple[MissedWindow, MissedWindow] | None:
    if value is None:
        return None
    earlier, later = value
    return _window_from(earlier), _window_from(later)


def _optional_time(value: Any) -> float | None:
    """A float or None, as JSON holds it."""
    return None if value is None else float(value)
