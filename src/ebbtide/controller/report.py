"""What an endpoint's loop reports, built from what it knows: the status it writes and the
Pod-shaped view of its replicas (`get pods`, `top pods`). Pure functions: no I/O, no clock."""

from __future__ import annotations

from typing import Any

from ebbtide.autoscaler.decision import Decision
from ebbtide.metrics import UsageWindow
from ebbtide.spec.quantity import format_cpu, format_memory
from ebbtide.store import rfc3339
from ebbtide.supervisor import Replica


def endpoint_status(
    replicas: list[Replica],
    *,
    desired: int | None,
    decision: Decision | None,
    conditions: list[dict[str, Any]],
    generation: int,
    url: str,
    explanation: str | None,
    last_scale_time: str | None,
) -> dict[str, Any]:
    """The endpoint's status from its replicas (terminating ones left out) and last decision."""
    status: dict[str, Any] = {
        "replicas": len(replicas),
        "readyReplicas": sum(1 for r in replicas if r.ready),
        "desiredReplicas": desired,
        "currentMetrics": current_metrics(decision),
        "conditions": conditions,
        "observedGeneration": generation,
        "url": url,
    }
    if explanation:
        status["explanation"] = explanation
    if last_scale_time:
        status["lastScaleTime"] = last_scale_time
    objective = decision.objective_status() if decision else None
    if objective is not None:
        status["objective"] = objective
    return status


def current_metrics(decision: Decision | None) -> list[dict[str, Any]]:
    """Each metric's reading as the HPA's `status.currentMetrics` shows it."""
    if decision is None:
        return []
    metrics = []
    for proposal in decision.proposals:
        entry: dict[str, Any] = {"name": proposal.goal.name}
        if proposal.utilization is not None:
            entry["averageUtilization"] = proposal.utilization
        if proposal.average is not None:
            entry["averageValue"] = average_text(proposal.goal.name, proposal.average)
        if len(entry) > 1:
            metrics.append(entry)
    return metrics


def pod_object(replica: Replica, window: UsageWindow | None, draining: bool) -> dict[str, Any]:
    """One replica as a Pod-shaped object."""
    cores = window.cpu_cores() if window else None
    latest = window.latest if window else None
    status: dict[str, Any] = {
        "phase": "Terminating" if draining else replica.phase.value,
        "ready": replica.ready and not draining,
        "restarts": replica.restarts,
        "pid": replica.pid,
        "address": replica.address,
        "usage": {
            "cpu": format_cpu(cores or 0.0),
            "memory": format_memory(latest.memory_bytes if latest else 0),
        },
    }
    if replica.limits is not None:
        status["limitsNote"] = replica.limits.note
    template = replica.template
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": replica.name,
            "namespace": template.namespace,
            "labels": {"app": template.endpoint, "pod-template-hash": template.hash},
            "creationTimestamp": rfc3339(replica.created),
        },
        "spec": {"model": f"{template.model_name}:{template.model_version}"},
        "status": status,
    }


def average_text(metric: str, value: float) -> str:
    if metric == "cpu":
        return format_cpu(value)
    if metric == "memory":
        return format_memory(value)
    return f"{value:.3g}"
