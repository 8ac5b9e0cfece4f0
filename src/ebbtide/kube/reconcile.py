"""The reconcile decision: (endpoint, observed objects, now) → actions and status. Pure.

The operator gathers what the cluster holds (the endpoint and its Deployment, Service and
HorizontalPodAutoscaler), calls `plan`, and carries the actions out; `ebbtide render` shows
the objects the same function would apply to an empty cluster. Every action says why.

- Created or changed spec → apply the objects whose hash annotation or fields differ.
- Unchanged → no action at all, so a restarted operator converges without writing.
- Deleted endpoint → delete the objects it controls (owner references make the garbage
  collector do the same; deleting explicitly covers objects that lost their reference).
- Invalid spec → touch nothing (the last good objects keep serving) and say why in status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ebbtide.core.errors import SpecError
from ebbtide.kube.manifests import (
    AUTOSCALER_LABEL,
    ENDPOINT_LABEL,
    HPA_V2,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SPEC_HASH_ANNOTATION,
    RenderOptions,
    render,
    service_url,
)
from ebbtide.spec.models import API_VERSION, KIND, InferenceEndpoint
from ebbtide.spec.quantity import QuantityError, parse_quantity
from ebbtide.spec.validation import ValidatedEndpoint, validate_document


def child_kinds(hpa_api_version: str = HPA_V2) -> tuple[tuple[str, str], ...]:
    """(apiVersion, kind) of the objects an endpoint owns, the HPA in the version in use."""
    return (
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        (hpa_api_version, "HorizontalPodAutoscaler"),
    )


HPA_CONDITIONS = ("AbleToScale", "ScalingActive", "ScalingLimited")
SCALING_LOOP_CONDITIONS = (*HPA_CONDITIONS, "ScaledToZero", "ObjectiveMet")
"""The conditions the operator's scaling loop writes for a class-ebbtide endpoint: a pass of
this reconciler keeps them as they are (the status is a merge patch, and a list in one is
replaced whole)."""


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Names one namespaced object."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> ObjectRef:
        metadata = manifest["metadata"]
        return cls(
            manifest["apiVersion"],
            manifest["kind"],
            metadata.get("namespace", "default"),
            metadata["name"],
        )

    @classmethod
    def endpoint(cls, namespace: str, name: str) -> ObjectRef:
        return cls(API_VERSION, KIND, namespace, name)

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


def child_refs(namespace: str, name: str, hpa_api_version: str = HPA_V2) -> tuple[ObjectRef, ...]:
    """The Deployment, Service and HPA an endpoint owns: all named after it."""
    kinds = child_kinds(hpa_api_version)
    return tuple(ObjectRef(version, kind, namespace, name) for version, kind in kinds)


@dataclass(frozen=True)
class Observed:
    """What the cluster holds for one endpoint. `endpoint` is None once it is gone."""

    namespace: str
    name: str
    endpoint: Mapping[str, Any] | None = None
    children: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Existing children by kind (Deployment, Service, HorizontalPodAutoscaler)."""


@dataclass(frozen=True)
class Action:
    """One write: apply a manifest (server-side apply) or delete an object."""

    verb: Literal["apply", "delete"]
    ref: ObjectRef
    reason: str
    manifest: Mapping[str, Any] | None = None

    def __str__(self) -> str:
        return f"{self.verb} {self.ref}: {self.reason}"


@dataclass(frozen=True)
class Plan:
    """What to do now; `status` is None when there is nothing to report it on."""

    actions: tuple[Action, ...] = ()
    status: dict[str, Any] | None = None
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    previous_status: Mapping[str, Any] | None = None

    @property
    def status_changed(self) -> bool:
        """Whether `status` differs from what the endpoint shows now."""
        return self.status is not None and self.status != self.previous_status


def endpoint_from_object(body: Mapping[str, Any]) -> InferenceEndpoint:
    """The endpoint a cluster object declares, validated as `ebbtide validate` does; server
    fields (uid, generation, managedFields, status) are left out. Raises `SpecError`."""
    return validate_object(body).endpoint


def validate_object(body: Mapping[str, Any]) -> ValidatedEndpoint:
    """`ebbtide validate` on a cluster object: the endpoint and its warnings, the object named
    `namespace/name` in every message. Raises `SpecError` listing every error."""
    metadata = body.get("metadata") or {}
    document = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "labels", "annotations")
            if metadata.get(key) is not None
        },
        "spec": body.get("spec"),
    }
    source = f"{metadata.get('namespace') or 'default'}/{metadata.get('name') or '?'}"
    return validate_document(document, source)


def plan(observed: Observed, options: RenderOptions, now: datetime) -> Plan:
    """Decide the writes that bring the cluster to what the endpoint declares, and its status."""
    body = observed.endpoint
    if body is None or body.get("metadata", {}).get("deletionTimestamp"):
        return Plan(actions=_deletions(observed, options.hpa_api_version))
    metadata = body.get("metadata", {})
    previous = body.get("status") or None
    try:
        endpoint = endpoint_from_object(body)
        rendered = render(endpoint, options, owner_uid=metadata.get("uid"))
    except SpecError as error:
        problems = tuple(error.problems)
        status = endpoint_status(observed, now, problems=problems)
        return Plan(status=status, problems=problems, previous_status=previous)
    actions = []
    for desired in rendered.objects:
        reason = _why_apply(desired, observed.children.get(desired["kind"]))
        if reason:
            actions.append(Action("apply", ObjectRef.of(desired), reason, desired))
    hpa = observed.children.get("HorizontalPodAutoscaler")
    if rendered.autoscaler is None and hpa is not None and _controlled_by(hpa, observed.name):
        ref = ObjectRef(options.hpa_api_version, "HorizontalPodAutoscaler", *_key(observed))
        actions.append(Action("delete", ref, "class ebbtide: ebbtide's policy scales the endpoint"))
    status = endpoint_status(observed, now)
    return Plan(tuple(actions), status, notes=rendered.notes, previous_status=previous)


def _key(observed: Observed) -> tuple[str, str]:
    return observed.namespace, observed.name


def _deletions(observed: Observed, hpa_api_version: str) -> tuple[Action, ...]:
    actions = []
    for version, kind in child_kinds(hpa_api_version):
        child = observed.children.get(kind)
        if child is not None and _controlled_by(child, observed.name):
            ref = ObjectRef(version, kind, observed.namespace, observed.name)
            actions.append(Action("delete", ref, f"{KIND} {observed.name} was deleted"))
    return tuple(actions)


def _controlled_by(child: Mapping[str, Any], name: str) -> bool:
    metadata = child.get("metadata", {})
    for owner in metadata.get("ownerReferences") or []:
        if owner.get("kind") == KIND and owner.get("name") == name and owner.get("controller"):
            return True
    labels = metadata.get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(ENDPOINT_LABEL) == name


def _why_apply(desired: Mapping[str, Any], current: Mapping[str, Any] | None) -> str | None:
    kind = desired["kind"]
    if current is None:
        return f"{kind} does not exist"
    annotations = current.get("metadata", {}).get("annotations") or {}
    wanted = desired["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    if annotations.get(SPEC_HASH_ANNOTATION) != wanted:
        changed = drift(desired, current)
        return "the endpoint changed" + (f": {', '.join(changed[:3])}" if changed else "")
    changed = drift(desired, current)
    if changed:
        return f"{kind} was changed by someone else: {', '.join(changed[:3])}"
    return None


def drift(desired: Any, current: Any, path: str = "") -> list[str]:
    """Paths where `current` does not hold what `desired` says. Fields only `current` has
    (server defaults, other controllers' fields) are ignored; quantities compare by value."""
    if isinstance(desired, Mapping):
        if not isinstance(current, Mapping):
            return [path or "."]
        changed: list[str] = []
        for key, value in desired.items():
            changed.extend(drift(value, current.get(key), f"{path}.{key}"))
        return changed
    if isinstance(desired, list):
        if not isinstance(current, list) or len(current) != len(desired):
            return [path]
        found: list[str] = []
        for index, (want, have) in enumerate(zip(desired, current, strict=True)):
            found.extend(drift(want, have, f"{path}[{index}]"))
        return found
    return [] if _same_value(desired, current) else [path]


def _same_value(desired: Any, current: Any) -> bool:
    if isinstance(desired, bool) or isinstance(current, bool):
        return desired is current  # True == 1 in Python, not in the API
    if desired == current:
        return True
    if isinstance(desired, str | int) and isinstance(current, str | int):
        try:
            return parse_quantity(desired) == parse_quantity(current)
        except QuantityError:
            return False
    return False


def endpoint_status(
    observed: Observed, now: datetime, problems: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The endpoint's status from its children's: replica counts, the HPA's metrics and
    conditions, a Ready condition, and the generation this was computed for."""
    body = observed.endpoint or {}
    previous = body.get("status") or {}
    deployment = observed.children.get("Deployment") or {}
    hpa = observed.children.get("HorizontalPodAutoscaler") or {}
    deployment_status = deployment.get("status") or {}
    hpa_status = hpa.get("status") or {}
    replicas = int(deployment_status.get("replicas") or 0)
    ready = int(deployment_status.get("readyReplicas") or 0)
    ebbtide = not hpa and _scaled_by_ebbtide(deployment)
    # Class ebbtide: the scaling loop writes desiredReplicas, currentMetrics, the scaling
    # conditions, the explanation and lastScaleTime; this pass keeps what it wrote.
    source: Mapping[str, Any] = previous if ebbtide else hpa_status
    status: dict[str, Any] = {
        "replicas": replicas,
        "readyReplicas": ready,
        "desiredReplicas": int(
            replicas if source.get("desiredReplicas") is None else source["desiredReplicas"]
        ),
        "currentMetrics": (
            list(previous.get("currentMetrics") or []) if ebbtide else _current_metrics(hpa_status)
        ),
    }
    ready_condition = _ready_condition(deployment, ready, replicas, problems)
    conditions = [ready_condition, *_hpa_conditions(source, ebbtide)]
    status["conditions"] = _with_transition_times(conditions, previous.get("conditions"), now)
    generation = body.get("metadata", {}).get("generation")
    if generation is not None:
        status["observedGeneration"] = generation
    if source.get("lastScaleTime"):
        status["lastScaleTime"] = source["lastScaleTime"]
    if ebbtide and previous.get("explanation"):
        status["explanation"] = previous["explanation"]
    status["url"] = service_url(observed.name, observed.namespace)
    status["selector"] = f"app={observed.name}"
    return status


def _scaled_by_ebbtide(deployment: Mapping[str, Any]) -> bool:
    labels = deployment.get("metadata", {}).get("labels") or {}
    return bool(labels.get(AUTOSCALER_LABEL) == "ebbtide")


def _ready_condition(
    deployment: Mapping[str, Any], ready: int, replicas: int, problems: tuple[str, ...]
) -> dict[str, Any]:
    if problems:
        message = "the spec is invalid, nothing was changed: " + "; ".join(problems)
        return _condition("Ready", "False", "InvalidSpec", message)
    if not deployment:
        return _condition("Ready", "False", "Creating", "the Deployment is being created")
    if ready > 0:
        return _condition("Ready", "True", "ReplicasReady", f"{ready} of {replicas} replicas ready")
    return _condition("Ready", "False", "NoReplicaReady", f"0 of {replicas} replicas ready")


def _hpa_conditions(hpa_status: Mapping[str, Any], ebbtide: bool = False) -> list[dict[str, Any]]:
    kinds = SCALING_LOOP_CONDITIONS if ebbtide else HPA_CONDITIONS
    conditions = []
    for condition in hpa_status.get("conditions") or []:
        if condition.get("type") in kinds:
            conditions.append(
                _condition(
                    condition["type"],
                    condition.get("status", "Unknown"),
                    condition.get("reason", ""),
                    condition.get("message", ""),
                    condition.get("lastTransitionTime"),
                )
            )
    return conditions


def _condition(
    kind: str, status: str, reason: str, message: str, since: str | None = None
) -> dict[str, Any]:
    condition = {"type": kind, "status": status, "reason": reason, "message": message}
    if since:
        condition["lastTransitionTime"] = since
    return condition


def _with_transition_times(
    conditions: list[dict[str, Any]], previous: Any, now: datetime
) -> list[dict[str, Any]]:
    """Keep a condition's lastTransitionTime while its status stays the same."""
    before = {c.get("type"): c for c in previous or [] if isinstance(c, Mapping)}
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for condition in conditions:
        if "lastTransitionTime" in condition:
            continue
        old = before.get(condition["type"])
        same = old is not None and old.get("status") == condition["status"]
        kept = old.get("lastTransitionTime") if same and old is not None else None
        condition["lastTransitionTime"] = kept or stamp
    return conditions


def _current_metrics(hpa_status: Mapping[str, Any]) -> list[dict[str, Any]]:
    metrics = []
    for metric in hpa_status.get("currentMetrics") or []:
        source = metric.get("resource") or metric.get("pods") or {}
        name = source.get("name") or (source.get("metric") or {}).get("name")
        if not name:
            continue
        current = source.get("current") or {}
        entry: dict[str, Any] = {"name": name}
        if current.get("averageUtilization") is not None:
            entry["averageUtilization"] = current["averageUtilization"]
        if current.get("averageValue") is not None:
            entry["averageValue"] = str(current["averageValue"])
        metrics.append(entry)
    return metrics
