"""Invalid endpoints and the message each must produce: one table for every validator."""

from __future__ import annotations

import copy
from typing import Any

SEED: dict[str, Any] = {
    "apiVersion": "mlops.example.com/v1",
    "kind": "InferenceEndpoint",
    "metadata": {"name": "my-model-endpoint"},
    "spec": {
        "model": {"name": "my-ml-model", "version": "v1"},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 60},
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"},
            "limits": {"cpu": 1, "memory": "2Gi"},
        },
    },
}


def seed_with(path: str, value: Any) -> dict[str, Any]:
    """The seed endpoint with one field set (or removed, for value `...`)."""
    document = copy.deepcopy(SEED)
    *parents, leaf = path.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return document


def _memory_target_without_request() -> dict[str, Any]:
    document = seed_with("spec.resources.requests", {"cpu": "500m"})
    memory = {"type": "Utilization", "averageUtilization": 70}
    document["spec"]["autoscaling"]["metrics"] = [
        {"type": "Resource", "resource": {"name": "memory", "target": memory}}
    ]
    return document


# (id, document, a fragment the error message must contain, whether the check is structural:
# structural cases must also be rejected by the CRD's OpenAPI schema on a cluster)
INVALID_CASES: list[tuple[str, dict[str, Any], str, bool]] = [
    (
        "min-above-max",
        seed_with("spec.autoscaling.minReplicas", 6),
        "greater than maxReplicas",
        False,
    ),
    (
        "cpu-target-without-request",
        seed_with("spec.resources.requests", {"memory": "1Gi"}),
        "cannot be computed",
        False,
    ),
    (
        "limit-below-request",
        seed_with("spec.resources.limits", {"cpu": "250m"}),
        "limits.cpu (250m) is below requests.cpu (500m)",
        False,
    ),
    (
        "zero-cpu-request",
        seed_with("spec.resources.requests", {"cpu": "0"}),
        "divide by zero",
        False,
    ),
    (
        "negative-min",
        seed_with("spec.autoscaling.minReplicas", -1),
        "greater than or equal to 0",
        True,
    ),
    ("zero-max", seed_with("spec.autoscaling.maxReplicas", 0), "greater than or equal to 1", True),
    (
        "missing-max",
        seed_with("spec.autoscaling.maxReplicas", ...),
        "maxReplicas is required",
        True,
    ),
    (
        "zero-target",
        seed_with("spec.autoscaling.targetCPUUtilizationPercentage", 0),
        "greater than 0",
        True,
    ),
    (
        "unknown-field",
        seed_with("spec.autoscaling.maxReplica", 3),
        "did you mean maxReplicas?",
        True,
    ),
    ("unknown-top-field", seed_with("spec.replicas", 3), "unknown field 'replicas'", True),
    ("bad-name", seed_with("metadata.name", "My_Model"), "not a valid name", True),
    (
        "wrong-api-version",
        seed_with("apiVersion", "v1"),
        "set apiVersion: mlops.example.com/v1",
        True,
    ),
    ("wrong-kind", seed_with("kind", "Deployment"), "set kind: InferenceEndpoint", True),
    (
        "bad-quantity",
        seed_with("spec.resources.requests", {"cpu": "lots"}),
        "is not a quantity",
        True,
    ),
    ("negative-quantity", seed_with("spec.resources.requests", {"cpu": "-1"}), "negative", False),
    ("string-replicas", seed_with("spec.autoscaling.maxReplicas", "five"), "valid integer", True),
    ("missing-model", seed_with("spec.model", ...), "model is required", True),
    (
        "percent-as-fraction",
        seed_with(
            "spec.autoscaling", {"min_servers": 2, "max_servers": 6, "target_utilization": 60}
        ),
        "did you mean 0.6?",
        False,
    ),
    (
        "policy-period-too-long",
        seed_with(
            "spec.autoscaling.behavior",
            {"scaleUp": {"policies": [{"type": "Pods", "value": 4, "periodSeconds": 4000}]}},
        ),
        "less than or equal to 1800",
        True,
    ),
    (
        "bad-select-policy",
        seed_with("spec.autoscaling.behavior", {"scaleDown": {"selectPolicy": "Fastest"}}),
        "'Max', 'Min' or 'Disabled'",
        True,
    ),
    (
        "memory-utilization-without-request",
        _memory_target_without_request(),
        "needs resources.requests.memory",
        False,
    ),
]
