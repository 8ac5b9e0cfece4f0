"""ebbtide's policy for class-ebbtide endpoints on Kubernetes: the pure parts. No I/O.

The operator's scaling loop (`kube.scaler`) gathers, for one endpoint, its Deployment, its
pods, their metrics.k8s.io PodMetrics and the gateways' `/ebbtide/v1/traffic` reports; this
module turns them into the same `Observation` the local control plane builds, and turns the
`decide` + `explain` result into what to write: a scale-subresource patch (only when the
count changes, never while an HPA owns the Deployment), the endpoint's status, and Events.

Times: `Observation` times are readings of the injected clock's `now()` (monotonic seconds);
pod times are wall-clock RFC 3339 stamps, mapped onto the monotonic clock by their age at
`wall`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ebbtide.autoscaler.decision import Decision
from ebbtide.autoscaler.observation import Observation, ReplicaSample, Traffic
from ebbtide.gateway.channel import EndpointReport
from ebbtide.spec.models import API_VERSION, KIND, ObjectiveStatus
from ebbtide.spec.quantity import QuantityError, parse_quantity

Key = tuple[str, str]
"""(namespace, name) of an endpoint."""

STALE_METRICS_SECONDS = 60.0
"""A PodMetrics sample older than this is left out: the pod counts as one without a CPU
reading, which the policy treats as the HPA treats a pod with a missing metric."""
EVENT_SOURCE = "ebbtide-operator"
STATUS_QUIET_SECONDS = 1.0
"""While only the figures move (currentMetrics, the explanation's numbers), the status is
written at most this often: every write is a watch event the reconciler answers."""
FIGURES = frozenset({"currentMetrics", "explanation", "objective"})


# -- traffic: the gateways' reports, summed -------------------------------------------------


@dataclass(frozen=True)
class GatewayReading:
    """One gateway process's answer to `GET /ebbtide/v1/traffic`."""

    gateway: str
    started: float
    reports: tuple[EndpointReport, ...]

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> GatewayReading:
        return cls(
            str(data["gateway"]),
            float(data["started"]),
            tuple(EndpointReport.from_wire(r) for r in data.get("endpoints") or []),
        )


@dataclass(frozen=True)
class TrafficBook:
    """Every gateway's latest counters, and the counters of gateway processes that have gone
    (restarted with a new `started`, or no longer running): their sum only ever grows, so the
    policy's rates stay right across a gateway restart, as locally."""

    latest: Mapping[str, GatewayReading] = field(default_factory=dict)
    base: Mapping[Key, EndpointReport] = field(default_factory=dict)

    def update(self, readings: Iterable[GatewayReading], running: Iterable[str]) -> TrafficBook:
        """Take new readings; a gateway not in `running` has gone and leaves its counters in
        the base. A running gateway that did not answer keeps its last reading."""
        latest = dict(self.latest)
        base = dict(self.base)
        for reading in readings:
            before = latest.get(reading.gateway)
            if before is not None and before.started != reading.started:
                base = _into_base(base, before)
            latest[reading.gateway] = reading
        alive = set(running)
        for name in [name for name in latest if name not in alive]:
            base = _into_base(base, latest.pop(name))
        return TrafficBook(latest, base)

    def report(self, key: Key) -> EndpointReport | None:
        """The endpoint's counters over every gateway process, gone ones included."""
        parts = [self.base.get(key)] + [
            r for reading in self.latest.values() for r in reading.reports if _key(r) == key
        ]
        found = [part for part in parts if part is not None]
        if not found:
            return None
        total = found[0]
        for part in found[1:]:
            total = total.plus(part)
        return total

    def traffic(self, key: Key) -> Traffic | None:
        """`Traffic` as the local control plane builds it from the same report."""
        report = self.report(key)
        return None if report is None else report.traffic()


def _key(report: EndpointReport) -> Key:
    return report.namespace, report.endpoint


def _into_base(
    base: dict[Key, EndpointReport], reading: GatewayReading
) -> dict[Key, EndpointReport]:
    for report in reading.reports:
        counters = report.counters_only()
        earlier = base.get(_key(report))
        base[_key(report)] = counters if earlier is None else earlier.plus(counters)
    return base


def learned_limit(status: Mapping[str, Any] | None) -> float | None:
    """The learned limit an endpoint's status kept (`status.objective.learnedLimit`): what a
    restarted operator starts from. None when there is none, or it is not one."""
    try:
        kept = ObjectiveStatus.model_validate((status or {}).get("objective") or {})
    except ValidationError:
        return None
    return kept.learned_limit or None


def waiting_at_zero(answer: Mapping[str, Any]) -> tuple[Key, ...]:
    """The endpoints a `/ebbtide/v1/demand` answer says have requests waiting at zero."""
    keys = []
    for entry in answer.get("waiting") or []:
        if int(entry.get("queued") or 0) > 0:
            keys.append((str(entry["namespace"]), str(entry["endpoint"])))
    return tuple(keys)


# -- pods and PodMetrics → Observation ------------------------------------------------------


def parse_time(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@dataclass(frozen=True)
class PodUsage:
    """One pod's PodMetrics: CPU cores averaged over `window` seconds ending at `timestamp`."""

    cpu_cores: float | None
    memory_bytes: float | None
    timestamp: datetime | None

    @classmethod
    def from_pod_metrics(cls, item: Mapping[str, Any]) -> PodUsage:
        cpu = memory = 0.0
        known_cpu = known_memory = False
        for container in item.get("containers") or []:
            usage = container.get("usage") or {}
            try:
                if usage.get("cpu") is not None:
                    cpu += float(parse_quantity(usage["cpu"]))
                    known_cpu = True
                if usage.get("memory") is not None:
                    memory += float(parse_quantity(usage["memory"]))
                    known_memory = True
            except QuantityError:
                continue
        return cls(
            cpu if known_cpu else None,
            memory if known_memory else None,
            parse_time(item.get("timestamp")),
        )


def usage_by_pod(pod_metrics: Iterable[Mapping[str, Any]]) -> dict[str, PodUsage]:
    return {str(item["metadata"]["name"]): PodUsage.from_pod_metrics(item) for item in pod_metrics}


def replica_sample(
    pod: Mapping[str, Any], usage: PodUsage | None, now: float, wall: datetime
) -> ReplicaSample:
    """A pod as the policy counts it, as the HPA sees a pod: Pending is not ready, a pod
    with a deletionTimestamp is terminating, usage only from a fresh PodMetrics sample."""
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}

    def monotonic(stamp: datetime | None) -> float | None:
        return None if stamp is None else now - (wall - stamp).total_seconds()

    started = parse_time(status.get("startTime") or metadata.get("creationTimestamp"))
    ready, ready_since = False, None
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            ready = condition.get("status") == "True"
            ready_since = monotonic(parse_time(condition.get("lastTransitionTime")))
    fresh = (
        usage is not None
        and usage.timestamp is not None
        and (wall - usage.timestamp).total_seconds() <= STALE_METRICS_SECONDS
    )
    terminating = bool(metadata.get("deletionTimestamp"))
    return ReplicaSample(
        name=str(metadata.get("name")),
        started_at=monotonic(started) or now,
        ready=ready and not terminating,
        ready_since=ready_since,
        pending=status.get("phase") == "Pending",
        terminating=terminating,
        cpu_cores=usage.cpu_cores if fresh and usage else None,
        memory_bytes=usage.memory_bytes if fresh and usage else None,
    )


def observation(
    deployment: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    usage: Mapping[str, PodUsage],
    traffic: Traffic | None,
    now: float,
    wall: datetime,
) -> Observation:
    """What one decision looks at: the Deployment's spec.replicas as the current count."""
    current = int((deployment.get("spec") or {}).get("replicas") or 0)
    samples = tuple(
        replica_sample(pod, usage.get(str(pod["metadata"]["name"])), now, wall) for pod in pods
    )
    return Observation(current_replicas=current, replicas=samples, traffic=traffic)


# -- decision → scale patch, status, events -------------------------------------------------


@dataclass(frozen=True)
class EventNote:
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Act:
    """What one decision writes."""

    replicas: int | None
    """Patch deployments/<name>/scale to this; None: leave the count alone."""
    status: dict[str, Any]
    """The endpoint's status fields the scaling loop owns (a merge patch)."""
    events: tuple[EventNote, ...] = ()

    @property
    def status_changed(self) -> bool:
        return bool(self.status)


def act(
    decision: Decision,
    explanation: str,
    previous_status: Mapping[str, Any] | None,
    hpa_present: bool,
    wall: datetime,
    quiet: bool = False,
) -> Act:
    """Turn a decision into writes. While an HPA still owns the Deployment (a switch to class
    ebbtide not yet reconciled) nothing is scaled: two scalers must never fight. `quiet`: the
    status was written less than `STATUS_QUIET_SECONDS` ago, so a change of figures alone
    waits; a rescale or a condition change is written at once."""
    previous = dict(previous_status or {})
    stamp = rfc3339(wall)
    if hpa_present:
        return Act(None, {})
    rescale = decision.desired != decision.current
    status: dict[str, Any] = {
        "desiredReplicas": decision.desired,
        "currentMetrics": [
            m.model_dump(by_alias=True, exclude_none=True) for m in decision.current_metrics
        ],
        "conditions": merged_conditions(previous.get("conditions"), decision, stamp),
        "explanation": explanation,
    }
    objective = decision.objective_status()
    if objective is not None:
        status["objective"] = objective
    events: tuple[EventNote, ...] = ()
    if rescale:
        status["lastScaleTime"] = stamp
        message = decision.event or f"New size: {decision.desired}"
        events = (EventNote("Normal", "SuccessfulRescale", message),)
    changed = {key: value for key, value in status.items() if previous.get(key) != value}
    before = previous.get("objective")
    if isinstance(before, Mapping):
        # A merge patch merges objects: a figure the decision no longer has is nulled, and
        # the whole field when the objective left the spec.
        if objective is None:
            changed["objective"] = None
        elif "objective" in changed:
            changed["objective"] = {**dict.fromkeys(before), **objective}
    if quiet and changed.keys() <= FIGURES:
        changed = {}
    return Act(decision.desired if rescale else None, changed, events)


def merged_conditions(previous: Any, decision: Decision, stamp: str) -> list[dict[str, Any]]:
    """The endpoint's conditions with the decision's set by type (a type it does not list
    keeps its last value), lastTransitionTime kept while a status stays the same."""
    before = [dict(c) for c in previous or [] if isinstance(c, Mapping)]
    by_type = {c.get("type"): c for c in before}
    for condition in decision.conditions:
        old = by_type.get(condition.type)
        same = old is not None and old.get("status") == condition.status
        since = old.get("lastTransitionTime") if same and old is not None else None
        by_type[condition.type] = {
            "type": condition.type,
            "status": condition.status,
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": since or stamp,
        }
    order = [c.get("type") for c in before] + [
        c.type for c in decision.conditions if c.type not in {b.get("type") for b in before}
    ]
    return [by_type[kind] for kind in order if kind in by_type]


def event_manifest(
    namespace: str, name: str, uid: str | None, note: EventNote, wall: datetime
) -> dict[str, Any]:
    """A core/v1 Event about the endpoint, as `kubectl describe ie` lists them."""
    stamp = rfc3339(wall)
    involved: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "namespace": namespace,
    }
    if uid:
        involved["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": involved,
        "type": note.type,
        "reason": note.reason,
        "message": note.message,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": EVENT_SOURCE},
        "reportingComponent": EVENT_SOURCE,
    }


def rfc3339(wall: datetime) -> str:
    return wall.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scale_patch(replicas: int) -> dict[str, Any]:
    """The merge patch for deployments/<name>/scale."""
    return {"spec": {"replicas": replicas}}
