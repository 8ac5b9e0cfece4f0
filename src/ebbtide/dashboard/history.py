"""What the dashboard remembers of one endpoint: plain data and the pure functions that make it.

A `Point` is one sample: the traffic between two snapshots of the gateway's counters, the
replicas by state, and each scaling metric against its target. Points go into a bounded ring,
so the charts cover the last minutes and the control plane's memory stays flat however long it
runs. The decision trail keeps each rescale with its old and new size and its reason.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ebbtide.autoscaler.calculator import Proposal
from ebbtide.gateway.traffic import TrafficSnapshot


@dataclass(frozen=True, slots=True)
class MetricReading:
    """One scaling metric against its target, in the unit the spec states the target in."""

    name: str
    value: float | None
    target: float
    unit: str
    """`%` for utilization targets; cores, bytes or the metric's own unit for averages."""

    @classmethod
    def of(cls, proposal: Proposal) -> MetricReading:
        goal = proposal.goal
        if goal.kind == "Utilization":
            value = None if proposal.utilization is None else float(proposal.utilization)
            return cls(goal.name, value, goal.target, "%")
        unit = {"cpu": "cores", "memory": "bytes"}.get(goal.name, goal.name)
        return cls(goal.name, proposal.average, goal.target, unit)


@dataclass(frozen=True, slots=True)
class ReplicaCounts:
    """Replicas by what they are doing now."""

    desired: int
    ready: int
    starting: int
    """Created, not ready yet (starting up, loading the model)."""
    draining: int
    """Out of rotation, finishing their requests before they stop."""
    failing: int
    """Crash-looping: the process exited and is not ready again (restarted with backoff)."""

    @classmethod
    def of(cls, desired: int, pods: Iterable[Mapping[str, Any]]) -> ReplicaCounts:
        ready = starting = draining = failing = 0
        for pod in pods:
            status = pod.get("status") or {}
            phase = status.get("phase")
            if phase == "Terminating":
                draining += 1
            elif status.get("ready"):
                ready += 1
            elif phase == "CrashLoopBackOff" or status.get("restarts"):
                # Between backoffs a crash-looping replica starts again: still failing.
                failing += 1
            else:
                starting += 1
        return cls(desired, ready, starting, draining, failing)


@dataclass(frozen=True, slots=True)
class Point:
    """One sample of an endpoint, taken at `time` (wall-clock seconds since the epoch)."""

    time: float
    offered: float | None
    """Requests per second that arrived at the gateway since the previous sample."""
    served: float | None
    """Requests per second answered with a status below 500."""
    failed: float | None
    """Answers per second with a 5xx status, the gateway's own refusals included."""
    p50: float | None
    """Median latency in seconds of the answers since the previous sample."""
    p99: float | None
    queued: int
    """Requests waiting in the gateway now: for a free replica, or held at zero replicas."""
    replicas: ReplicaCounts
    metrics: tuple[MetricReading, ...]


def traffic_between(
    earlier: TrafficSnapshot | None, later: TrafficSnapshot | None
) -> tuple[float | None, float | None, float | None, float | None, float | None]:
    """Offered, served and failed requests/s, and p50 and p99 latency, between two snapshots;
    None where there is nothing to measure (no earlier snapshot, or no answers for latency)."""
    if earlier is None or later is None or later.taken_at <= earlier.taken_at:
        return None, None, None, None, None
    window = later.since(earlier)
    if window.arrivals < 0:  # the gateway restarted: its counters began again
        return None, None, None, None, None
    served = (window.completions - window.errors) / window.seconds
    return (
        window.arrival_rate,
        served,
        window.error_rate,
        window.latency_percentile(50),
        window.latency_percentile(99),
    )


@dataclass(frozen=True)
class Rescale:
    """One change of the replica count, as the decision trail shows it."""

    sequence: int
    time: float
    old: int
    new: int
    reason: str
    """In the HPA's words (`cpu resource utilization (percentage of request) above target`),
    or `request at zero` / `scaled by request` for changes no autoscaling decision made."""
    explanation: str


@dataclass
class EndpointHistory:
    """The ring of points and the trail of one endpoint."""

    capacity: int
    trail_capacity: int = 50
    points: deque[tuple[int, Point]] = field(init=False)
    trail: deque[Rescale] = field(init=False)
    last_snapshot: TrafficSnapshot | None = None
    desired: int | None = None
    """The count the last rescale (or the first sample) left the endpoint at."""
    rescales: dict[str, int] = field(default_factory=dict)
    """How many rescales each reason caused, since the control plane started."""

    def __post_init__(self) -> None:
        self.points = deque(maxlen=self.capacity)
        self.trail = deque(maxlen=self.trail_capacity)

    def add_point(self, sequence: int, point: Point) -> None:
        self.points.append((sequence, point))

    def add_rescale(self, rescale: Rescale) -> None:
        self.trail.append(rescale)
        self.desired = rescale.new
        self.rescales[rescale.reason] = self.rescales.get(rescale.reason, 0) + 1

    def points_after(self, sequence: int) -> list[Point]:
        return [point for number, point in self.points if number > sequence]

    @property
    def latest(self) -> Point | None:
        return self.points[-1][1] if self.points else None


def unexplained_rescale(previous: int | None, desired: int) -> str | None:
    """The reason for a change of the desired count that no decision reported: the gateway
    woke an endpoint at zero for a waiting request, or someone ran `ebbtide scale`."""
    if previous is None or previous == desired:
        return None
    return "request at zero" if previous == 0 and desired == 1 else "scaled by request"


@dataclass(frozen=True)
class EndpointState:
    """What the endpoint is doing, in one word and one sentence, for the page's badge."""

    phase: str
    """ModelUnavailable, Failing, Holding, ScaledToZero, ScalingUp, ScalingDown or Ready."""
    message: str


def endpoint_state(
    replicas: ReplicaCounts, queued: int, conditions: Iterable[Mapping[str, Any]]
) -> EndpointState:
    """The first of these that holds: the model cannot be found or loaded, replicas crash,
    requests wait at zero, idle at zero, moving up, moving down, ready."""
    for condition in conditions:
        if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
            return EndpointState("ModelUnavailable", str(condition.get("message", "")))
    if replicas.failing:
        plural = "replica keeps" if replicas.failing == 1 else "replicas keep"
        return EndpointState(
            "Failing",
            f"{replicas.failing} {plural} exiting and restarting with backoff; "
            "`ebbtide logs POD` shows why",
        )
    if replicas.ready == 0 and queued > 0:
        return EndpointState(
            "Holding",
            f"{queued} request{'s' if queued != 1 else ''} held at zero replicas "
            "while a replica starts",
        )
    if replicas.desired == 0 and replicas.ready == 0 and replicas.starting == 0:
        return EndpointState("ScaledToZero", "idle at zero replicas; a request wakes it")
    if replicas.desired > replicas.ready:
        return EndpointState(
            "ScalingUp", f"{replicas.ready} of {replicas.desired} replicas ready, more starting"
        )
    if replicas.draining or replicas.ready > replicas.desired:
        return EndpointState(
            "ScalingDown", f"{replicas.draining} replica(s) draining towards {replicas.desired}"
        )
    return EndpointState("Ready", f"{replicas.ready} of {replicas.desired} replicas ready")
