"""The dashboard feed: one JSON document that the page and any script read.

Series are columns (one list per quantity, aligned with `time`), as chart libraries take them
and as they compress best. `?since=SEQUENCE` returns only the points taken after that sample,
so a page that already holds the history fetches only the newest sample's values; everything
else (replicas, metrics, state, trail, events) is small and sent whole each time.
docs/dashboard.md documents every field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ebbtide import __version__
from ebbtide.dashboard.history import (
    EndpointHistory,
    EndpointState,
    Point,
    ReplicaCounts,
    endpoint_state,
)
from ebbtide.dashboard.recorder import Recorder
from ebbtide.spec import KIND, InferenceEndpoint
from ebbtide.store import Event, Record, rfc3339

OBJECTIVE_ANNOTATION = "mlops.example.com/latency-objective-ms"
EVENTS_SHOWN = 20
FEED_KIND = "DashboardFeed"


def build_feed(recorder: Recorder, since: int = 0) -> dict[str, Any]:
    """The whole feed: every endpoint, its points after sample `since`, trail and events."""
    records = sorted(recorder.store.list_objects(KIND), key=lambda r: (r.key.namespace, r.key.name))
    endpoints = []
    for record in records:
        history = recorder.histories.get(record.key)
        if history is None:
            continue
        events = recorder.store.events(record.key.namespace, record.key.name)
        endpoints.append(endpoint_entry(record, history, recorder, events, since))
    return {
        "kind": FEED_KIND,
        "version": __version__,
        "generatedAt": recorder.clock.wall().timestamp(),
        "sequence": recorder.sequence,
        "since": since,
        "interval": recorder.settings.interval,
        "window": recorder.settings.window,
        "endpoints": endpoints,
    }


def endpoint_entry(
    record: Record,
    history: EndpointHistory,
    recorder: Recorder,
    events: Sequence[Event],
    since: int,
) -> dict[str, Any]:
    endpoint = InferenceEndpoint.model_validate(record.manifest)
    autoscaling = endpoint.spec.autoscaling
    status = record.status or {}
    latest = history.latest
    replicas = latest.replicas if latest else ReplicaCounts(0, 0, 0, 0, 0)
    queued = latest.queued if latest else 0
    state = endpoint_state(replicas, queued, status.get("conditions") or [])
    decision = recorder.decisions.get(record.key)
    return {
        "namespace": record.key.namespace,
        "name": record.key.name,
        "model": {"name": endpoint.spec.model.name, "version": endpoint.spec.model.version},
        "url": status.get("url"),
        "minReplicas": autoscaling.min_replicas,
        "maxReplicas": autoscaling.max_replicas,
        "replicas": _replicas(replicas),
        "queued": queued,
        "metrics": [
            {"name": m.name, "value": m.value, "target": m.target, "unit": m.unit}
            for m in (latest.metrics if latest else ())
        ],
        "explanation": decision.explanation if decision else status.get("explanation", ""),
        "state": _state(state),
        "conditions": status.get("conditions") or [],
        "latencyObjective": _objective(endpoint, recorder.settings.latency_objective),
        "series": series(history.points_after(since)),
        "trail": [
            {
                "time": r.time,
                "from": r.old,
                "to": r.new,
                "reason": r.reason,
                "explanation": r.explanation,
            }
            for r in history.trail
        ],
        "events": [_event(e) for e in events[-EVENTS_SHOWN:]],
    }


def series(points: Sequence[Point]) -> dict[str, Any]:
    """The points as columns; each metric gets a value and a target column."""
    names: list[str] = []
    for point in points:
        for reading in point.metrics:
            if reading.name not in names:
                names.append(reading.name)
    metrics: dict[str, dict[str, Any]] = {}
    for name in names:
        readings = [next((m for m in p.metrics if m.name == name), None) for p in points]
        unit = next(r.unit for r in readings if r is not None)
        metrics[name] = {
            "unit": unit,
            "value": [r.value if r else None for r in readings],
            "target": [r.target if r else None for r in readings],
        }
    return {
        "time": [round(p.time, 3) for p in points],
        "offered": [_round(p.offered) for p in points],
        "served": [_round(p.served) for p in points],
        "failed": [_round(p.failed) for p in points],
        "p50": [_round(p.p50, 5) for p in points],
        "p99": [_round(p.p99, 5) for p in points],
        "queued": [p.queued for p in points],
        "desired": [p.replicas.desired for p in points],
        "ready": [p.replicas.ready for p in points],
        "starting": [p.replicas.starting for p in points],
        "draining": [p.replicas.draining for p in points],
        "failing": [p.replicas.failing for p in points],
        "metrics": metrics,
    }


def _objective(endpoint: InferenceEndpoint, default: float) -> dict[str, Any]:
    """The line drawn on the latency chart: the spec's objective, which the autoscaler acts
    on, else the annotation (a line to look at, nothing more), else the default."""
    declared = endpoint.spec.autoscaling.objective
    if declared is not None:
        return {
            "seconds": declared.latency_milliseconds / 1000,
            "percentile": declared.percentile,
            "source": "spec.autoscaling.objective",
        }
    text = endpoint.metadata.annotations.get(OBJECTIVE_ANNOTATION)
    if text is not None:
        try:
            return {"seconds": float(text) / 1000, "source": OBJECTIVE_ANNOTATION}
        except ValueError:
            pass
    return {"seconds": default, "source": "default"}


def _replicas(counts: ReplicaCounts) -> dict[str, int]:
    return {
        "desired": counts.desired,
        "ready": counts.ready,
        "starting": counts.starting,
        "draining": counts.draining,
        "failing": counts.failing,
    }


def _state(state: EndpointState) -> dict[str, str]:
    return {"phase": state.phase, "message": state.message}


def _event(event: Event) -> dict[str, Any]:
    return {
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "count": event.count,
        "firstTimestamp": rfc3339(event.first_timestamp),
        "lastTimestamp": rfc3339(event.last_timestamp),
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
