"""Observe: what one decision looks at, gathered before the pure `decide` runs.

The only I/O is reading each replica's CPU seconds and memory from the OS; the readings go
into the endpoint's per-replica usage windows (kept for `top pods`) and into the observation.
"""

from __future__ import annotations

from collections.abc import Collection

from ebbtide.autoscaler.observation import Observation, ReplicaSample, Traffic
from ebbtide.metrics import UsageWindow, read_usage
from ebbtide.supervisor import Replica


def observe(
    replicas: list[Replica],
    current: int,
    traffic: Traffic | None,
    usage: dict[str, UsageWindow],
    draining: Collection[str],
    metric_window: float,
    now: float,
) -> Observation:
    """The observation at `now`: replicas as the autoscaler counts them (draining ones as
    terminating), their usage, and the gateway's counters."""
    return Observation(
        current_replicas=current,
        replicas=tuple(
            sample(r, usage.setdefault(r.name, UsageWindow(metric_window)), draining, now)
            for r in replicas
        ),
        traffic=traffic,
    )


def sample(
    replica: Replica, window: UsageWindow, draining: Collection[str], now: float
) -> ReplicaSample:
    reading = read_usage(replica.pid, now) if replica.pid else None
    if reading is not None:
        window.add(reading)
    leaving = replica.name in draining
    return ReplicaSample(
        name=replica.name,
        started_at=replica.started_at,
        ready=replica.ready and not leaving,
        ready_since=replica.ready_since,
        pending=replica.pid is None,
        terminating=replica.terminating or leaving,
        cpu_seconds=reading.cpu_seconds if reading else None,
        memory_bytes=float(reading.memory_bytes) if reading else None,
    )
