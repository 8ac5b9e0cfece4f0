"""What the controller gathers before each decision: plain data, no clients, no clocks.

Times are readings of the control plane's `Clock.now()` (monotonic seconds). Counters
(`cpu_seconds`, `requests_total`, `in_flight_seconds`, `latency_counts`) only ever grow; the
autoscaler keeps earlier readings in its state and turns differences into averages over its
windows, so the caller never computes a rate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicaSample:
    """One replica, as the HPA sees a pod."""

    name: str
    started_at: float
    """When the replica's process started."""
    ready: bool
    """Whether it passes its readiness check now."""
    ready_since: float | None = None
    """When `ready` last changed (the Ready condition's lastTransitionTime); None if never set."""
    pending: bool = False
    """Created but not running yet: counted as not ready, as a Pending pod."""
    terminating: bool = False
    """Draining or stopping: left out entirely, as a pod with a deletionTimestamp."""
    cpu_seconds: float | None = None
    """CPU time the process has used since it started (a counter); None when unknown."""
    cpu_cores: float | None = None
    """CPU cores averaged over the metric window, when the caller already has it (as from
    metrics-server); it then takes the place of `cpu_seconds`."""
    memory_bytes: float | None = None
    """Resident memory now; None when unknown."""


@dataclass(frozen=True)
class Traffic:
    """The gateway's counters for one endpoint, read at one moment."""

    in_flight: float
    """Requests received and not yet answered, those waiting in the gateway's queue included."""
    requests_total: int
    """Requests received since the gateway started (a counter)."""
    in_flight_seconds: float | None = None
    """The integral of `in_flight` over time (a counter); None to average the sampled
    `in_flight` values instead."""
    latency_counts: tuple[int, ...] = ()
    """Answers per latency bucket of `ebbtide.core.latency.LATENCY_BOUNDS` since the gateway
    started (counters, one more bucket above the last bound); empty when not measured."""
    latency_sum: float | None = None
    """Seconds of latency summed over those answers (a counter); None when not measured."""


@dataclass(frozen=True)
class Observation:
    """Everything one decision looks at."""

    current_replicas: int
    """The replica count the endpoint is scaled to now (a Deployment's spec.replicas)."""
    replicas: tuple[ReplicaSample, ...] = ()
    """The replicas that exist, in any state."""
    traffic: Traffic | None = None
    """The gateway's counters; None when the gateway has not reported."""
