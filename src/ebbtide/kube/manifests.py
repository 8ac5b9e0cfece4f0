"""What one `InferenceEndpoint` becomes on Kubernetes: a Deployment, a Service and, for class
hpa, an HPA (class ebbtide has none: the operator's own scaling loop sets the replicas).

`render` is pure: the same endpoint and options give the same three objects, byte for byte,
so `ebbtide render` shows exactly what the operator applies. Each object carries a hash of
itself in an annotation; the operator compares it to tell "the spec changed" from "nothing to
do" without diffing against server-side defaults.

The model-server container runs the same model server as a local replica
(`ebbtide serve-model`), with the spec's requests and limits, probes on the Open Inference
Protocol health endpoints, and a preStop pause so that the Service stops routing to a pod
before it is told to stop, then drains in-flight requests within the grace period.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ebbtide import __version__
from ebbtide.core.errors import KubernetesError, SpecError
from ebbtide.spec.models import API_VERSION, KIND, InferenceEndpoint, MetricSpec, ScalingRules

MANAGED_BY = "ebbtide"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
ENDPOINT_LABEL = "mlops.example.com/endpoint"
MODEL_VERSION_LABEL = "mlops.example.com/model-version"
SPEC_HASH_ANNOTATION = "mlops.example.com/spec-hash"
AUTOSCALER_LABEL = "ebbtide.dev/autoscaler"
"""On the Deployment of a class-ebbtide endpoint, value `ebbtide`: the operator's scaling loop
sets its replicas, and the in-cluster gateway holds requests for it at zero."""

DEFAULT_IMAGE = f"ebbtide:{__version__}"
DEFAULT_MODELS_CLAIM = "ebbtide-models"
# The KServe storage initializer knows the object stores' credential conventions; ebbtide's
# own `kube fetch-model` covers http(s).
DEFAULT_STORAGE_INITIALIZER = "kserve/storage-initializer:v0.14.1"

MODEL_PORT = 8080
SERVICE_PORT = 80
REPOSITORY_PATH = "/models"
CONTAINER_NAME = "model-server"
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
# The pause lets endpoints, kube-proxy and the ebbtide gateways (which drop a pod from rotation
# as soon as their Endpoints watch shows it gone) forget the pod before SIGTERM; the rest of
# the grace period is for requests already in flight.
PRESTOP_PAUSE_SECONDS = 10
TERMINATION_GRACE_SECONDS = 45
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
FETCHED_SCHEMES = ("http://", "https://")
OBJECT_STORE_SCHEMES = ("s3://", "gs://")

HPA_V2 = "autoscaling/v2"
# Kubernetes 1.20 to 1.22 serve HorizontalPodAutoscalers only as autoscaling/v2beta2, which has
# the same metrics and behavior fields as v2 (v2 is its GA form, 1.23 on).
HPA_V2BETA2 = "autoscaling/v2beta2"
HPA_API_VERSIONS = (HPA_V2, HPA_V2BETA2)


@dataclass(frozen=True)
class RenderOptions:
    """Cluster-specific choices that are not part of the endpoint's spec."""

    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    models_claim: str = DEFAULT_MODELS_CLAIM
    storage_initializer_image: str = DEFAULT_STORAGE_INITIALIZER
    hpa_api_version: str = HPA_V2
    """autoscaling/v2, or autoscaling/v2beta2 on a server without v2; the operator finds out
    which by discovery (`hpa_api_version_for`)."""

    def __post_init__(self) -> None:
        if self.hpa_api_version not in HPA_API_VERSIONS:
            raise SpecError(
                f"HorizontalPodAutoscaler API version {self.hpa_api_version!r} is not supported: "
                f"use {' or '.join(HPA_API_VERSIONS)}"
            )


def hpa_api_version_for(served_autoscaling_versions: Collection[str]) -> str:
    """The HPA API version to use given the versions the server lists for the `autoscaling`
    group (`GET /apis/autoscaling`): v2 where served, else v2beta2. Raises `KubernetesError`
    when neither is (Kubernetes older than 1.12, or v2beta2 removed and v2 absent)."""
    for candidate in HPA_API_VERSIONS:
        if candidate.removeprefix("autoscaling/") in served_autoscaling_versions:
            return candidate
    served = ", ".join(sorted(served_autoscaling_versions)) or "none"
    raise KubernetesError(
        "the cluster serves neither autoscaling/v2 nor autoscaling/v2beta2 (it serves: "
        f"{served}); ebbtide needs Kubernetes 1.20 or newer"
    )


@dataclass(frozen=True)
class Rendered:
    """The objects for one endpoint, and notes on where Kubernetes differs from the spec."""

    deployment: dict[str, Any]
    service: dict[str, Any]
    autoscaler: dict[str, Any] | None
    """The HorizontalPodAutoscaler; None for class ebbtide."""
    notes: tuple[str, ...] = ()

    @property
    def objects(self) -> tuple[dict[str, Any], ...]:
        found = (self.deployment, self.service, self.autoscaler)
        return tuple(manifest for manifest in found if manifest is not None)


def render(
    endpoint: InferenceEndpoint, options: RenderOptions | None = None, owner_uid: str | None = None
) -> Rendered:
    """The Deployment, Service and (class hpa) HorizontalPodAutoscaler for `endpoint`. With
    `owner_uid` (the endpoint's uid in a cluster) each carries an owner reference, so deleting
    the endpoint deletes them. Raises `SpecError` for what cannot run on Kubernetes."""
    options = options or RenderOptions()
    _check_kubernetes_name(endpoint)
    autoscaler: dict[str, Any] | None
    if endpoint.spec.autoscaling.resolved_class() == "hpa":
        autoscaler, notes = _autoscaler(endpoint, options.hpa_api_version)
    else:
        autoscaler, notes = None, _ebbtide_notes(endpoint)
    objects = (_deployment(endpoint, options), _service(endpoint), autoscaler)
    for manifest in objects:
        if manifest is None:
            continue
        metadata = manifest["metadata"]
        metadata["annotations"] = {}
        if owner_uid:
            metadata["ownerReferences"] = [_owner_reference(endpoint, owner_uid)]
        metadata["annotations"][SPEC_HASH_ANNOTATION] = spec_hash(manifest)
    return Rendered(*objects, notes=notes)


def spec_hash(manifest: dict[str, Any]) -> str:
    """A short digest of a manifest, its own hash annotation left out."""
    data = copy.deepcopy(manifest)
    data.get("metadata", {}).get("annotations", {}).pop(SPEC_HASH_ANNOTATION, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pod_labels(endpoint: InferenceEndpoint) -> dict[str, str]:
    """The labels on every model-server pod; `app=<name>` is what `kubectl get pods -l` uses."""
    return {
        "app": endpoint.name,
        "app.kubernetes.io/name": "ebbtide-model-server",
        "app.kubernetes.io/instance": endpoint.name,
        MANAGED_BY_LABEL: MANAGED_BY,
        ENDPOINT_LABEL: endpoint.name,
        MODEL_VERSION_LABEL: endpoint.spec.model.version,
    }


def object_labels(endpoint: InferenceEndpoint) -> dict[str, str]:
    """Labels on the Deployment, Service and HPA: the operator watches these."""
    return {
        "app": endpoint.name,
        "app.kubernetes.io/instance": endpoint.name,
        MANAGED_BY_LABEL: MANAGED_BY,
        ENDPOINT_LABEL: endpoint.name,
    }


def service_url(name: str, namespace: str) -> str:
    """Where clients inside the cluster reach the endpoint."""
    return f"http://{name}.{namespace}.svc.cluster.local"


def _check_kubernetes_name(endpoint: InferenceEndpoint) -> None:
    if not DNS1035_LABEL.match(endpoint.name):
        raise SpecError(
            f"metadata.name {endpoint.name!r} cannot name a Kubernetes Service: Service names "
            "start with a letter; rename the endpoint, e.g. to "
            f"'ie-{endpoint.name}'"
        )


def _metadata(endpoint: InferenceEndpoint) -> dict[str, Any]:
    return {
        "name": endpoint.name,
        "namespace": endpoint.namespace,
        "labels": object_labels(endpoint),
    }


def _owner_reference(endpoint: InferenceEndpoint, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": endpoint.name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _deployment(endpoint: InferenceEndpoint, options: RenderOptions) -> dict[str, Any]:
    volumes, mounts, init_containers = _model_source(endpoint, options)
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if init_containers:
        pod_spec["initContainers"] = init_containers
    pod_spec["containers"] = [_model_server(endpoint, options, mounts)]
    pod_spec["volumes"] = [*volumes, {"name": "tmp", "emptyDir": {}}]
    # No spec.replicas: the HorizontalPodAutoscaler (class hpa) or the operator's scaling loop
    # (class ebbtide, through the scale subresource under a field manager of its own) owns the
    # count. Server-side apply only changes fields the applier's manager owns, so a manifest
    # without replicas never resets the count the scaler set.
    metadata = _metadata(endpoint)
    if endpoint.spec.autoscaling.resolved_class() == "ebbtide":
        metadata["labels"][AUTOSCALER_LABEL] = "ebbtide"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": {"app": endpoint.name}},
            "revisionHistoryLimit": 5,
            # A version change brings new replicas up before old ones go: capacity never dips.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {"metadata": {"labels": pod_labels(endpoint)}, "spec": pod_spec},
        },
    }


def _model_server(
    endpoint: InferenceEndpoint, options: RenderOptions, mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    model = endpoint.spec.model
    command = ["ebbtide", "serve-model", model.name, "--version", model.version]
    # The kubelet expands $(POD_IP): the server listens on the pod's own address, which is
    # all a pod network needs, and lets pods that share a host's network stay apart.
    command += ["--repository", REPOSITORY_PATH, "--host", "$(POD_IP)", "--port", str(MODEL_PORT)]
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": command,
        "ports": [{"name": "http", "containerPort": MODEL_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "EBBTIDE_HOME", "value": "/tmp/ebbtide"},
        ],
    }
    resources = _resources(endpoint)
    if resources:
        container["resources"] = resources
    container.update(
        {
            "startupProbe": _probe(LIVE_PATH, period=2, failures=60),
            "readinessProbe": _probe(READY_PATH, period=5, failures=3),
            "livenessProbe": _probe(LIVE_PATH, period=10, failures=3),
            "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_PAUSE_SECONDS)]}}},
            "securityContext": _restricted_container(),
            "volumeMounts": [*mounts, {"name": "tmp", "mountPath": "/tmp"}],
        }
    )
    return container


def _restricted_container() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 2,
    }


def _resources(endpoint: InferenceEndpoint) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for side in ("requests", "limits"):
        amounts = getattr(endpoint.spec.resources, side).model_dump(exclude_none=True)
        if amounts:
            resources[side] = amounts
    return resources


def _model_source(
    endpoint: InferenceEndpoint, options: RenderOptions
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes, model-server mounts and init containers that put the model at
    /models/<name>/<version>: the repository claim, a claim named by pvc://, or a download."""
    model = endpoint.spec.model
    version_path = f"{REPOSITORY_PATH}/{model.name}/{model.version}"
    uri = model.uri
    if uri is None:
        claim = {"claimName": options.models_claim, "readOnly": True}
        volume = {"name": "model-repository", "persistentVolumeClaim": claim}
        return [volume], [_mount(REPOSITORY_PATH)], []
    if uri.startswith("pvc://"):
        claim_name, _, sub_path = uri.removeprefix("pvc://").partition("/")
        volume = {
            "name": "model-repository",
            "persistentVolumeClaim": {"claimName": claim_name, "readOnly": True},
        }
        mount = _mount(version_path)
        if sub_path.strip("/"):
            mount["subPath"] = sub_path.strip("/")
        return [volume], [mount], []
    if uri.startswith(FETCHED_SCHEMES + OBJECT_STORE_SCHEMES):
        volume = {"name": "model-repository", "emptyDir": {}}
        return [volume], [_mount(REPOSITORY_PATH)], [_initializer(uri, version_path, options)]
    raise SpecError(
        f"spec.model.uri {uri!r} points at one machine's disk, which pods cannot read; on "
        "Kubernetes use pvc://CLAIM/PATH, https://…, s3://… or gs://…, or leave uri unset to "
        f"serve from the model repository claim {options.models_claim!r}"
    )


def _mount(path: str) -> dict[str, Any]:
    return {"name": "model-repository", "mountPath": path, "readOnly": True}


def _initializer(uri: str, destination: str, options: RenderOptions) -> dict[str, Any]:
    """An init container that downloads the model before the server starts, as KServe's
    storage initializer does."""
    if uri.startswith(FETCHED_SCHEMES):
        image, command = options.image, ["ebbtide", "kube", "fetch-model", uri, destination]
        args: list[str] = []
    else:
        image, command, args = options.storage_initializer_image, [], [uri, destination]
    container: dict[str, Any] = {
        "name": "storage-initializer",
        "image": image,
        "imagePullPolicy": options.image_pull_policy,
    }
    if command:
        container["command"] = command
    if args:
        container["args"] = args
    container["resources"] = {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    container["securityContext"] = _restricted_container()
    container["volumeMounts"] = [
        {"name": "model-repository", "mountPath": REPOSITORY_PATH},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    return container


def _service(endpoint: InferenceEndpoint) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(endpoint),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": endpoint.name},
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def _autoscaler(
    endpoint: InferenceEndpoint, api_version: str
) -> tuple[dict[str, Any], tuple[str, ...]]:
    autoscaling = endpoint.spec.autoscaling
    notes: list[str] = []
    # Validation refuses class hpa with minReplicas 0 or a Pods metric, and an unset class
    # resolves to ebbtide for them; these notes cover an endpoint built without validation.
    low = autoscaling.min_replicas
    if low == 0:
        low = 1
        notes.append(
            f"{endpoint.name}: class hpa with minReplicas 0: the HorizontalPodAutoscaler keeps "
            "at least 1 replica (scale to zero needs class ebbtide)"
        )
    metrics = [_metric(metric) for metric in endpoint.scaling_metrics()]
    for metric in endpoint.scaling_metrics():
        if metric.pods is not None:
            notes.append(
                f"{endpoint.name}: class hpa with the Pods metric {metric.pods.metric.name!r}: "
                "the HorizontalPodAutoscaler needs a custom metrics adapter serving it per pod "
                "(class ebbtide reads it from the ebbtide gateway instead)"
            )
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": endpoint.name},
        "minReplicas": low,
        "maxReplicas": autoscaling.max_replicas,
        "metrics": metrics,
    }
    behavior = autoscaling.behavior
    if behavior is not None:
        rules = {"scaleUp": behavior.scale_up, "scaleDown": behavior.scale_down}
        converted = {key: _rules(value) for key, value in rules.items() if value is not None}
        if api_version == HPA_V2BETA2:
            notes.extend(_without_tolerance(endpoint.name, converted))
        if converted:
            spec["behavior"] = converted
    manifest = {
        "apiVersion": api_version,
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(endpoint),
        "spec": spec,
    }
    return manifest, tuple(notes)


def _ebbtide_notes(endpoint: InferenceEndpoint) -> tuple[str, ...]:
    why = endpoint.spec.autoscaling.needs_ebbtide()
    chosen = (
        "class ebbtide"
        if endpoint.spec.autoscaling.autoscaler_class
        else (f"class unset, so ebbtide ({', '.join(why)} need{'s' if len(why) == 1 else ''} it)")
    )
    return (
        f"{endpoint.name}: {chosen}: no HorizontalPodAutoscaler; the operator runs ebbtide's "
        "policy and sets the Deployment's replicas through its scale subresource",
    )


def _without_tolerance(name: str, behavior: dict[str, Any]) -> list[str]:
    """autoscaling/v2beta2 has no per-direction tolerance (a v2 field since 1.33), and the API
    server refuses an apply that sets a field its schema lacks: drop it and say so."""
    notes = []
    for direction, rules in behavior.items():
        if rules.pop("tolerance", None) is not None:
            notes.append(
                f"{name}: behavior.{direction}.tolerance needs autoscaling/v2 (Kubernetes 1.33 "
                "or newer); with autoscaling/v2beta2 the cluster-wide tolerance (10%) applies"
            )
    return notes


def _metric(metric: MetricSpec) -> dict[str, Any]:
    """The spec's metrics already use autoscaling/v2's names and shapes."""
    data: dict[str, Any] = metric.model_dump(by_alias=True, exclude_none=True, mode="json")
    return data


def _rules(rules: ScalingRules) -> dict[str, Any]:
    data: dict[str, Any] = rules.model_dump(by_alias=True, exclude_none=True, mode="json")
    if rules.tolerance is not None:
        # autoscaling/v2 types tolerance as a Quantity: 0.1 is "100m".
        data["tolerance"] = _decimal_text(Decimal(repr(rules.tolerance)))
    return data


def _decimal_text(value: Decimal) -> str:
    milli = value * 1000
    if milli == milli.to_integral_value():
        return f"{int(milli)}m"
    return format(value, "f")
