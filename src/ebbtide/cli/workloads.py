"""`get pods`, `get hpa` and `get events`: the objects an endpoint runs, shaped as kubectl's."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ebbtide.cli.output import age, table


def collect(
    client: Any,
    kind: str,
    name: str | None,
    namespace: str,
    selector: str | None,
    now: datetime,
    output: str | None,
) -> tuple[list[dict[str, Any]], Callable[[], str]]:
    """The objects to show and how to draw them as a table."""
    if kind == "Pod":
        pods = client.list_pods(namespace, selector)
        if name:
            pods = _named(pods, name, "pods")
        return pods, lambda: pod_table(pods, now, output == "wide")
    if kind == "HorizontalPodAutoscaler":
        endpoints = (
            [client.get_endpoint(namespace, name)]
            if name
            else client.list_endpoints(namespace, selector)
        )
        autoscalers = [hpa_view(endpoint) for endpoint in endpoints]
        return autoscalers, lambda: hpa_table(autoscalers, now)
    events = client.events(namespace, name)
    return events, lambda: event_table(events, now)


def _named(items: list[dict[str, Any]], name: str, plural: str) -> list[dict[str, Any]]:
    from ebbtide.core.errors import NotFoundError

    found = [item for item in items if item["metadata"]["name"] == name]
    if not found:
        raise NotFoundError(f'{plural} "{name}" not found')
    return found


def pod_table(pods: list[dict[str, Any]], now: datetime, wide: bool = False) -> str:
    """NAME READY STATUS RESTARTS AGE, as `kubectl get pods`."""
    headers = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        headers += ["PID", "ADDRESS", "MODEL"]
    rows = []
    for pod in pods:
        status = pod.get("status", {})
        row = [
            pod["metadata"]["name"],
            "1/1" if status.get("ready") else "0/1",
            status.get("phase", "Unknown"),
            str(status.get("restarts", 0)),
            age(pod["metadata"].get("creationTimestamp"), now),
        ]
        if wide:
            spec = pod.get("spec", {})
            row += [
                str(status.get("pid", "<none>")),
                status.get("address") or "<none>",
                spec.get("model", "<none>"),
            ]
        rows.append(row)
    return table(headers, rows)


def hpa_view(endpoint: dict[str, Any]) -> dict[str, Any]:
    """The HorizontalPodAutoscaler an endpoint amounts to, shaped as autoscaling/v2 prints it."""
    metadata = endpoint["metadata"]
    autoscaling = endpoint["spec"].get("autoscaling", {})
    status = endpoint.get("status") or {}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata.get("namespace", "default"),
            "creationTimestamp": metadata.get("creationTimestamp"),
        },
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": metadata["name"],
            },
            "minReplicas": autoscaling.get("minReplicas", 1),
            "maxReplicas": autoscaling.get("maxReplicas"),
            "targets": targets_text(endpoint),
        },
        "status": {
            "currentReplicas": status.get("replicas", 0),
            "desiredReplicas": status.get("desiredReplicas", 0),
            "currentMetrics": status.get("currentMetrics", []),
            "conditions": status.get("conditions", []),
        },
    }


def targets_text(endpoint: dict[str, Any]) -> str:
    """TARGETS as kubectl shows them: `45%/60%`, `<unknown>/60%`, several joined by `, `."""
    autoscaling = endpoint["spec"].get("autoscaling", {})
    current = {m.get("name"): m for m in (endpoint.get("status") or {}).get("currentMetrics", [])}
    wanted: list[tuple[str, str, str]] = []
    percent = autoscaling.get("targetCPUUtilizationPercentage")
    if percent is None and not autoscaling.get("metrics"):
        percent = 80
    if percent is not None:
        wanted.append(("cpu", "%", str(percent)))
    for metric in autoscaling.get("metrics") or []:
        source = metric.get("resource") or metric.get("pods") or {}
        metric_name = source.get("name") or source.get("metric", {}).get("name", "?")
        target = source.get("target", {})
        if target.get("averageUtilization") is not None:
            wanted.append((metric_name, "%", str(target["averageUtilization"])))
        else:
            wanted.append((metric_name, "", str(target.get("averageValue", "?"))))
    parts = []
    for metric_name, unit, target_value in wanted:
        seen = current.get(metric_name)
        if seen is None:
            value = "<unknown>"
        elif unit == "%":
            value = f"{seen.get('averageUtilization', 0)}%"
        else:
            value = str(seen.get("averageValue", "<unknown>"))
        parts.append(f"{value}/{target_value}{unit}")
    return ", ".join(parts)


def hpa_table(autoscalers: list[dict[str, Any]], now: datetime) -> str:
    """NAME REFERENCE TARGETS MINPODS MAXPODS REPLICAS AGE, as `kubectl get hpa`."""
    rows = [
        [
            hpa["metadata"]["name"],
            f"Deployment/{hpa['spec']['scaleTargetRef']['name']}",
            hpa["spec"]["targets"],
            str(hpa["spec"]["minReplicas"]),
            str(hpa["spec"]["maxReplicas"]),
            str(hpa["status"]["currentReplicas"]),
            age(hpa["metadata"].get("creationTimestamp"), now),
        ]
        for hpa in autoscalers
    ]
    return table(["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"], rows)


def event_table(events: list[dict[str, Any]], now: datetime) -> str:
    """LAST SEEN TYPE REASON OBJECT MESSAGE, as `kubectl get events`."""
    rows = [
        [
            age(event.get("lastTimestamp"), now),
            event.get("type", ""),
            event.get("reason", ""),
            f"{event['involvedObject'].get('kind', '').lower()}/{event['involvedObject']['name']}",
            event.get("message", ""),
        ]
        for event in events
    ]
    return table(["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], rows)
