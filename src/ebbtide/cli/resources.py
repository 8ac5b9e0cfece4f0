"""Resource names as kubectl accepts them, and how each kind prints in `get`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ebbtide.cli.output import age, table
from ebbtide.spec import API_GROUP, PLURAL, SHORT_NAMES, SINGULAR

ENDPOINT_NAMES = {
    PLURAL,
    SINGULAR,
    *SHORT_NAMES,
    f"{PLURAL}.{API_GROUP}",
    f"{SINGULAR}.{API_GROUP}",
}
POD_NAMES = {"pods", "pod", "po"}
HPA_NAMES = {"hpa", "horizontalpodautoscaler", "horizontalpodautoscalers"}
EVENT_NAMES = {"events", "event", "ev"}
QUALIFIED_ENDPOINT = f"{SINGULAR}.{API_GROUP}"


def kind_of(resource: str) -> str:
    """The canonical kind for a name the user typed, or a clear error naming the known ones."""
    name = resource.lower()
    for kind, names in (
        ("InferenceEndpoint", ENDPOINT_NAMES),
        ("Pod", POD_NAMES),
        ("HorizontalPodAutoscaler", HPA_NAMES),
        ("Event", EVENT_NAMES),
    ):
        if name in names:
            return kind
    raise ValueError(
        f'the server doesn\'t have a resource type "{resource}"; known types: '
        "inferenceendpoints (ie), pods (po), hpa, events (ev)"
    )


def target_text(spec: dict[str, Any]) -> str:
    """The scaling target in a few characters: `60%` for CPU, else `concurrency 4`, joined."""
    autoscaling = spec.get("autoscaling", {})
    parts = []
    percent = autoscaling.get("targetCPUUtilizationPercentage")
    if percent is not None:
        parts.append(f"cpu {percent}%")
    for metric in autoscaling.get("metrics") or []:
        source = metric.get("resource") or metric.get("pods") or {}
        name = source.get("name") or source.get("metric", {}).get("name", "?")
        target = source.get("target", {})
        if target.get("averageUtilization") is not None:
            parts.append(f"{name} {target['averageUtilization']}%")
        else:
            parts.append(f"{name} {target.get('averageValue', target.get('value', '?'))}")
    return ", ".join(parts) or "cpu 80%"


def endpoint_rows(items: list[dict[str, Any]], now: datetime, wide: bool) -> str:
    """`get ie`: NAME MIN MAX REPLICAS TARGET READY AGE (and MODEL, URL with -o wide)."""
    headers = ["NAME", "MIN", "MAX", "REPLICAS", "TARGET", "READY", "AGE"]
    if wide:
        headers += ["MODEL", "URL"]
    rows = []
    for item in items:
        spec, status = item.get("spec", {}), item.get("status") or {}
        autoscaling = spec.get("autoscaling", {})
        row = [
            item["metadata"]["name"],
            str(autoscaling.get("minReplicas", 1)),
            str(autoscaling.get("maxReplicas", "")),
            str(status.get("replicas", 0)),
            target_text(spec),
            f"{status.get('readyReplicas', 0)}/{status.get('replicas', 0)}",
            age(item["metadata"].get("creationTimestamp"), now),
        ]
        if wide:
            model = spec.get("model", {})
            row += [f"{model.get('name')}:{model.get('version')}", status.get("url") or "<none>"]
        rows.append(row)
    return table(headers, rows)
