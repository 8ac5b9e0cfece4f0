"""`describe ie NAME`: everything about one endpoint on one screen, as kubectl describes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ebbtide.cli.output import age, table
from ebbtide.cli.workloads import targets_text


def render(
    endpoint: dict[str, Any],
    events: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    now: datetime,
) -> str:
    """The text of `describe`: metadata, spec, status, conditions, the scaling verdict, events."""
    metadata, spec = endpoint["metadata"], endpoint["spec"]
    status = endpoint.get("status") or {}
    autoscaling = spec.get("autoscaling", {})
    model = spec.get("model", {})
    resources = spec.get("resources", {})
    lines = [
        _field("Name", metadata["name"]),
        _field("Namespace", metadata.get("namespace", "default")),
        _field("Labels", _pairs(metadata.get("labels"))),
        _field("Annotations", _pairs(metadata.get("annotations"))),
        _field("API Version", endpoint.get("apiVersion", "")),
        _field("Kind", endpoint.get("kind", "")),
        _field("CreationTimestamp", metadata.get("creationTimestamp", "<unknown>")),
        _field("Generation", str(metadata.get("generation", ""))),
        _field("URL", status.get("url") or "<none>"),
        "Model:",
        _field("  Name", model.get("name", "")),
        _field("  Version", model.get("version", "")),
    ]
    if model.get("uri"):
        lines.append(_field("  URI", model["uri"]))
    lines += [
        "Autoscaling:",
        _field("  Min replicas", str(autoscaling.get("minReplicas", 1))),
        _field("  Max replicas", str(autoscaling.get("maxReplicas", ""))),
        _field("  Metrics ( current / target )", targets_text(endpoint)),
    ]
    if autoscaling.get("objective"):
        lines.append(_field("  Latency objective", _objective_text(autoscaling, status)))
    lines += [
        "Resources:",
        _field("  Requests", _pairs(resources.get("requests"))),
        _field("  Limits", _pairs(resources.get("limits"))),
        "Status:",
        _field(
            "  Replicas",
            f"{status.get('replicas', 0)} current / {status.get('desiredReplicas', 0)} desired",
        ),
        _field("  Ready replicas", str(status.get("readyReplicas", 0))),
        _field("  Scaling", status.get("explanation") or "<no decision yet>"),
        _field("  Observed generation", str(status.get("observedGeneration", "<none>"))),
        _field("  Pods", ", ".join(p["metadata"]["name"] for p in pods) or "<none>"),
    ]
    for pod in pods:
        note = (pod.get("status") or {}).get("limitsNote")
        if note:
            lines.append(_field("  Limits enforcement", note))
            break
    lines += _conditions(status.get("conditions", []))
    lines += _events(events, now)
    return "\n".join(lines)


def _objective_text(autoscaling: dict[str, Any], status: dict[str, Any]) -> str:
    """`p99 within 50 ms; now 38.2 ms; learned limit 1.4 in flight per replica`."""
    objective = autoscaling["objective"]
    percentile = float(objective.get("percentile", 99))
    text = f"p{percentile:g} within {float(objective['latencyMilliseconds']):g} ms"
    standing = status.get("objective") or {}
    observed = standing.get("observedMilliseconds")
    text += f"; now {observed:.3g} ms" if observed is not None else "; now <too few answers>"
    if standing.get("learnedLimit") is not None:
        text += f"; learned limit {standing['learnedLimit']:.3g} in flight per replica"
    return text


def _field(label: str, value: str) -> str:
    return f"{label + ':':<32}{value}"


def _pairs(mapping: dict[str, Any] | None) -> str:
    if not mapping:
        return "<none>"
    return ", ".join(f"{key}={value}" for key, value in mapping.items())


def _conditions(conditions: list[dict[str, Any]]) -> list[str]:
    if not conditions:
        return ["Conditions:                     <none>"]
    rows = [[c["type"], c["status"], c.get("reason", ""), c.get("message", "")] for c in conditions]
    dashes = ["----", "------", "------", "-------"]
    body = table(["Type", "Status", "Reason", "Message"], [dashes, *rows])
    return ["Conditions:", *("  " + line for line in body.splitlines())]


def _events(events: list[dict[str, Any]], now: datetime) -> list[str]:
    if not events:
        return ["Events:                         <none>"]
    rows = []
    for event in events:
        seen = age(event.get("lastTimestamp"), now)
        count = event.get("count", 1)
        when = (
            seen
            if count <= 1
            else f"{seen} (x{count} over {age(event.get('firstTimestamp'), now)})"
        )
        rows.append(
            [
                event.get("type", ""),
                event.get("reason", ""),
                when,
                event.get("source", {}).get("component", "ebbtide"),
                event.get("message", ""),
            ]
        )
    dashes = ["----", "------", "----", "----", "-------"]
    body = table(["Type", "Reason", "Age", "From", "Message"], [dashes, *rows])
    return ["Events:", *("  " + line for line in body.splitlines())]
