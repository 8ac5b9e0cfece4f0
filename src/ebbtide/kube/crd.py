"""The `InferenceEndpoint` CustomResourceDefinition, its schema generated from the spec models.

`ebbtide.spec.schema.endpoint_openapi_schema()` gives the models' JSON schema with every `$ref`
inlined; `structural_schema` turns it into the *structural* OpenAPI v3 schema the Kubernetes
API server demands: optional fields lose their `anyOf: [X, null]`, quantities become
`x-kubernetes-int-or-string` with the quantity pattern, `const` becomes a one-value `enum`,
exclusive bounds take the OpenAPI 3.0 (boolean) form, and `additionalProperties: false`
goes (the API server rejects unknown fields itself under `kubectl`'s strict field validation,
and prunes them otherwise). `structural_problems` checks the result, so a model change that
would produce a CRD the API server refuses fails the tests, not a user's `kubectl apply`.

Two of the spec's semantic checks run at admission as CEL rules (`x-kubernetes-validations`)
where the server has CEL (1.25 on); the operator's validating webhook (`kube.admission`)
makes every check, with the same words as `ebbtide validate`, on every supported server.
Those rules need 1.28 (`crd_manifest(cel=False)` leaves them out for older servers, which
refuse fields they do not know). Nothing else in the CRD needs a server newer than 1.20:
apiextensions.k8s.io/v1, structural schemas with defaults, int-or-string, printer columns and
the scale subresource all date from 1.16; an empty-string default, which 1.20 refuses, is left
out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ebbtide.core.errors import KubernetesError
from ebbtide.spec.models import (
    API_GROUP,
    DEFAULT_CPU_UTILIZATION,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
)
from ebbtide.spec.schema import endpoint_openapi_schema

CRD_NAME = f"{PLURAL}.{API_GROUP}"
VERSION = "v1"
CATEGORY = "ebbtide"

# Kubernetes' own grammar for resource.Quantity (as controller-gen emits it for Quantity fields),
# without the leading minus: every quantity in the spec is a non-negative amount.
NON_NEGATIVE_QUANTITY_PATTERN = (
    r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

# The rules say what `ebbtide validate` says, word for word: `messageExpression` (Kubernetes
# 1.27 on) with the values, `message` without them where the server has CEL but not that.
# Servers without CEL (before 1.25) drop these fields and leave the checks to the webhook.
_MIN_ABOVE_MAX_FIX = "fix: set minReplicas to at most maxReplicas"
MIN_WITHIN_MAX_RULE = {
    "rule": "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
    "message": f"minReplicas is greater than maxReplicas; {_MIN_ABOVE_MAX_FIX}",
    "messageExpression": "'minReplicas (' + string(self.minReplicas) + ') is greater than "
    "maxReplicas (' + string(self.maxReplicas) + '); "
    f"{_MIN_ABOVE_MAX_FIX}, e.g. minReplicas: ' + string(self.maxReplicas) + "
    "', maxReplicas: ' + string(self.minReplicas)",
    "fieldPath": ".minReplicas",
    "reason": "FieldValueInvalid",
}
_NEEDS_CPU_REQUEST = (
    " needs resources.requests.cpu: utilization is a percent of the request, so without one it "
    "cannot be computed; fix: add spec.resources.requests.cpu, e.g. 500m"
)
CPU_TARGET_NEEDS_REQUEST_RULE = {
    # The CPU target applies when given, and by default (80%) when no metric is listed.
    "rule": "(has(self.autoscaling.metrics) && size(self.autoscaling.metrics) > 0"
    " && !has(self.autoscaling.targetCPUUtilizationPercentage))"
    " || (has(self.resources) && has(self.resources.requests)"
    " && has(self.resources.requests.cpu))",
    "message": f"a CPU target (given, or the default {DEFAULT_CPU_UTILIZATION}% when no metric is "
    f"set){_NEEDS_CPU_REQUEST}",
    "messageExpression": "(has(self.autoscaling.targetCPUUtilizationPercentage) ? 'a CPU target'"
    f" : 'a CPU target (the default target of {DEFAULT_CPU_UTILIZATION}% CPU applies when no "
    f"target is set)') + '{_NEEDS_CPU_REQUEST}'",
    "fieldPath": ".resources.requests.cpu",
    "reason": "FieldValueRequired",
}

SELECTOR_STATUS_FIELD = {
    "type": "string",
    "description": "The label selector of the endpoint's pods (app=<name>), for the scale "
    "subresource.",
}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Min",
        "type": "integer",
        "jsonPath": ".spec.autoscaling.minReplicas",
        "description": "The fewest replicas.",
    },
    {
        "name": "Max",
        "type": "integer",
        "jsonPath": ".spec.autoscaling.maxReplicas",
        "description": "The most replicas.",
    },
    {
        "name": "Replicas",
        "type": "integer",
        "jsonPath": ".status.replicas",
        "description": "Replicas that exist.",
    },
    {
        "name": "Target",
        "type": "integer",
        "jsonPath": ".spec.autoscaling.targetCPUUtilizationPercentage",
        "description": "The CPU target, in percent of requests.cpu.",
    },
    {
        "name": "Ready",
        "type": "integer",
        "jsonPath": ".status.readyReplicas",
        "description": "Replicas ready to serve.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Model",
        "type": "string",
        "jsonPath": ".spec.model.name",
        "priority": 1,
        "description": "The model served.",
    },
    {
        "name": "Version",
        "type": "string",
        "jsonPath": ".spec.model.version",
        "priority": 1,
        "description": "The model version served.",
    },
    {
        "name": "URL",
        "type": "string",
        "jsonPath": ".status.url",
        "priority": 1,
        "description": "Where clients in the cluster send requests.",
    },
]

# The scale subresource exposes the replica floor: `kubectl scale ie NAME --replicas=N` sets
# minReplicas, so the HorizontalPodAutoscaler keeps at least N and may still scale up to
# maxReplicas. The endpoint has no other single "desired replicas" field: the count itself
# belongs to the autoscaler.
SCALE_SUBRESOURCE = {
    "specReplicasPath": ".spec.autoscaling.minReplicas",
    "statusReplicasPath": ".status.replicas",
    "labelSelectorPath": ".status.selector",
}


# The CEL rules' fields (rule, message, messageExpression, fieldPath, reason) are all served from
# 1.28. Older servers refuse a server-side apply that sets a field they lack ("field not declared
# in schema"), and kubectl refuses it client-side: they get the CRD without rules, and the
# webhook makes those checks alone.
CEL_SINCE = (1, 28)


def cel_supported(server_version: tuple[int, int]) -> bool:
    """Whether a server of this (major, minor) version takes the CRD's CEL rules."""
    return server_version >= CEL_SINCE


def parse_server_version(info: Mapping[str, Any]) -> tuple[int, int]:
    """(major, minor) from the server's `/version` (`{"major": "1", "minor": "20+"}`, as
    managed clusters add a `+`). Raises `KubernetesError` when it holds no number."""
    try:
        major, minor = (int(str(info[key]).rstrip("+")) for key in ("major", "minor"))
    except (KeyError, ValueError) as error:
        raise KubernetesError(f"cannot read the server's version from {dict(info)}") from error
    return major, minor


def crd_manifest(cel: bool = True) -> dict[str, Any]:
    """The CustomResourceDefinition `inferenceendpoints.mlops.example.com`, ready to apply;
    without `cel`, for servers older than 1.28, it carries no `x-kubernetes-validations`."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/part-of": "ebbtide"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": crd_schema(cel)},
                    "subresources": {"status": {}, "scale": dict(SCALE_SUBRESOURCE)},
                    "additionalPrinterColumns": [dict(c) for c in PRINTER_COLUMNS],
                }
            ],
        },
    }


def crd_schema(cel: bool = True) -> dict[str, Any]:
    """The CRD's `openAPIV3Schema`: structural, with admission rules (unless not `cel`) and the
    kube-only status field the scale subresource reads."""
    schema: dict[str, Any] = structural_schema(endpoint_openapi_schema())
    properties = schema["properties"]
    # The API server owns apiVersion, kind and metadata: a CRD may only say they exist.
    properties["apiVersion"] = {"type": "string", "description": "mlops.example.com/v1."}
    properties["kind"] = {"type": "string", "description": "InferenceEndpoint."}
    properties["metadata"] = {"type": "object"}
    schema["required"] = ["spec"]
    if cel:
        spec = properties["spec"]
        spec["x-kubernetes-validations"] = [dict(CPU_TARGET_NEEDS_REQUEST_RULE)]
        autoscaling = spec["properties"]["autoscaling"]
        autoscaling["x-kubernetes-validations"] = [dict(MIN_WITHIN_MAX_RULE)]
    properties["status"]["properties"]["selector"] = dict(SELECTOR_STATUS_FIELD)
    problems = structural_problems(schema)
    if problems:  # pragma: no cover - a model change the tests would catch first
        raise ValueError("the generated CRD schema is not structural: " + "; ".join(problems))
    return schema


def structural_schema(node: Any) -> Any:
    """A JSON schema (draft 2020-12, no `$ref`) rewritten in the structural OpenAPI v3 form."""
    if isinstance(node, list):
        return [structural_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = _without_null_option(node)
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "$defs"):
            converted[key] = {name: structural_schema(child) for name, child in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            converted[key] = structural_schema(value)
        else:
            converted[key] = value
    if "properties" in converted and converted.get("additionalProperties") is False:
        del converted["additionalProperties"]
    if "const" in converted:
        converted["enum"] = [converted.pop("const")]
    if converted.get("default") == "":
        # Kubernetes 1.20 reads an empty string default as null and refuses the CRD; an absent
        # field reads the same to every client.
        del converted["default"]
    _exclusive_bounds(converted)
    if converted.get("x-kubernetes-int-or-string"):
        converted.pop("type", None)
        converted["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        converted["pattern"] = NON_NEGATIVE_QUANTITY_PATTERN
    return converted


def _without_null_option(node: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, {type: null}]` (an optional field) becomes X; the field may be omitted."""
    options = node.get("anyOf")
    if not isinstance(options, list):
        return node
    kept = [option for option in options if option.get("type") != "null"]
    if len(kept) != 1 or len(kept) == len(options):
        return node
    outer = {k: v for k, v in node.items() if k != "anyOf"}
    if outer.get("default", 0) is None:
        del outer["default"]
    merged: dict[str, Any] = {**_without_null_option(kept[0]), **outer}
    return merged


def _exclusive_bounds(node: dict[str, Any]) -> None:
    """Draft 2020-12 numeric exclusive bounds become OpenAPI 3.0 booleans; integers tighten."""
    for exclusive, inclusive, step in (
        ("exclusiveMinimum", "minimum", 1),
        ("exclusiveMaximum", "maximum", -1),
    ):
        bound = node.get(exclusive)
        if isinstance(bound, bool) or not isinstance(bound, int | float):
            continue
        if node.get("type") == "integer" and isinstance(bound, int):
            node[inclusive] = bound + step
            del node[exclusive]
        else:
            node[inclusive] = bound
            node[exclusive] = True


_FORBIDDEN_KEYS = ("$ref", "$defs", "const", "definitions", "oneOf", "allOf", "not", "nullable")
_INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def structural_problems(schema: dict[str, Any], path: str = "") -> list[str]:
    """What keeps `schema` from being a structural schema the API server accepts (empty if
    nothing): every node typed, no references, no unions other than int-or-string, no
    `properties` next to `additionalProperties`, OpenAPI 3.0 exclusive bounds."""
    problems: list[str] = []
    where = path or "<root>"
    for key in _FORBIDDEN_KEYS:
        if key in schema:
            problems.append(f"{where}: {key} is not allowed")
    int_or_string = bool(schema.get("x-kubernetes-int-or-string"))
    if int_or_string:
        if "type" in schema:
            problems.append(f"{where}: x-kubernetes-int-or-string must not set type")
        if schema.get("anyOf", _INT_OR_STRING) != _INT_OR_STRING:
            problems.append(f"{where}: int-or-string allows only anyOf integer|string")
    else:
        if "anyOf" in schema:
            problems.append(f"{where}: anyOf is allowed only for int-or-string")
        typed = schema.get("type") in ("object", "array", "string", "integer", "number", "boolean")
        if not typed and not schema.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{where}: type must be set (found {schema.get('type')!r})")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{where}: properties and additionalProperties are mutually exclusive")
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if key in schema and not isinstance(schema[key], bool):
            problems.append(f"{where}: {key} must be a boolean in OpenAPI v3.0")
    for name, child in schema.get("properties", {}).items():
        problems.extend(structural_problems(child, f"{path}.{name}"))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            problems.extend(structural_problems(schema[key], f"{path}.{key}"))
    return problems
