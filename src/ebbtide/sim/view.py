"""What a scaling policy sees at each of its ticks, and what it must answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ReplicaView:
    """One replica, as a metrics pipeline reports it."""

    name: str
    started_at: float
    ready: bool
    ready_since: float
    cpu_seconds: float
    """Busy core-seconds since the replica started (a counter)."""
    in_flight: int


@dataclass(frozen=True)
class View:
    """The endpoint at one moment: its replicas and the gateway's counters."""

    desired: int
    """The count the endpoint is scaled to (replicas starting or ready, not stopping)."""
    replicas: tuple[ReplicaView, ...]
    in_flight: int
    """Requests received and not answered, those queued at the gateway included."""
    requests_total: int
    in_flight_seconds: float
    """The integral of `in_flight` over time (a counter)."""
    latency_counts: tuple[int, ...] = ()
    """Completed requests per bucket of `ebbtide.core.latency.LATENCY_BOUNDS` (counters), as
    the gateway counts them; empty when the simulation does not count them."""

    @property
    def ready(self) -> int:
        return sum(1 for r in self.replicas if r.ready)


class ScalingPolicy(Protocol):
    """A policy under comparison: a name, a tick period, and a count at each tick."""

    name: str
    sync_period: float

    def decide(self, view: View, now: float) -> int:
        """The replica count to run from now on."""
        ...
