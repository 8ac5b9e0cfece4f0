"""Small builders for autoscaler tests: replicas as the HPA's test pods, endpoints, policies."""

from __future__ import annotations

from typing import Any

from ebbtide.autoscaler import KUBERNETES, Observation, Policy, Profile, ReplicaSample, policy_for
from ebbtide.autoscaler.calculator import Proposal, Tolerances, propose
from ebbtide.spec import InferenceEndpoint

NOW = 1000.0
"""The time of the decision under test. Replicas started at 0 are long past initialization."""

DEFAULT_TOLERANCES = Tolerances(0.1, 0.1)


def pod(
    name: str,
    cpu: float | None = None,
    *,
    ready: bool = True,
    started: float = 0.0,
    ready_since: float | None = 0.0,
    pending: bool = False,
    terminating: bool = False,
    memory: float | None = None,
) -> ReplicaSample:
    """A replica reporting `cpu` cores (None: no metrics yet), ready since long ago."""
    return ReplicaSample(
        name=name,
        started_at=started,
        ready=ready,
        ready_since=ready_since,
        pending=pending,
        terminating=terminating,
        cpu_cores=cpu,
        memory_bytes=memory,
    )


def unready(name: str, cpu: float | None = None) -> ReplicaSample:
    """A replica that has never been ready (its Ready condition went False as it started)."""
    return pod(name, cpu, ready=False, ready_since=0.0)


def hot(name: str, cpu: float | None = None, ready: bool = True) -> ReplicaSample:
    """A replica that just started: its CPU window began before it became ready."""
    return pod(name, cpu, ready=ready, started=NOW, ready_since=NOW - 1)


def endpoint(
    max_replicas: int = 100,
    min_replicas: int = 1,
    cpu_target: int | None = None,
    cpu_request: str = "1",
    memory_request: str | None = None,
    metrics: list[dict[str, Any]] | None = None,
    behavior: dict[str, Any] | None = None,
    **extensions: Any,
) -> InferenceEndpoint:
    """An endpoint; `extensions` are more spec.autoscaling fields (burst, prediction, ...)."""
    autoscaling: dict[str, Any] = {"minReplicas": min_replicas, "maxReplicas": max_replicas}
    autoscaling.update(extensions)
    if cpu_target is not None:
        autoscaling["targetCPUUtilizationPercentage"] = cpu_target
    if metrics is not None:
        autoscaling["metrics"] = metrics
    if behavior is not None:
        autoscaling["behavior"] = behavior
    requests = {"cpu": cpu_request}
    if memory_request is not None:
        requests["memory"] = memory_request
    return InferenceEndpoint.model_validate(
        {
            "apiVersion": "mlops.example.com/v1",
            "kind": "InferenceEndpoint",
            "metadata": {"name": "model"},
            "spec": {
                "model": {"name": "model", "version": "v1"},
                "autoscaling": autoscaling,
                "resources": {"requests": requests},
            },
        }
    )


def policy(profile: Profile = KUBERNETES, **spec: Any) -> Policy:
    return policy_for(endpoint(**spec), profile)


def cpu_proposal(
    current: int,
    replicas: list[ReplicaSample],
    target: int,
    tolerances: Tolerances = DEFAULT_TOLERANCES,
    cpu_request: str = "1",
) -> Proposal:
    """What a CPU utilization target proposes, with readings given directly as cores."""
    resolved = policy(cpu_target=target, cpu_request=cpu_request)
    observation = Observation(current_replicas=current, replicas=tuple(replicas))
    return propose(resolved.metrics[0], observation, resolved, (), NOW, tolerances)


def resource_metric(name: str, kind: str, value: str | int) -> dict[str, Any]:
    key = "averageUtilization" if kind == "Utilization" else "averageValue"
    return {"type": "Resource", "resource": {"name": name, "target": {"type": kind, key: value}}}


def pods_metric(name: str, value: str | float) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": name},
            "target": {"type": "AverageValue", "averageValue": value},
        },
    }
