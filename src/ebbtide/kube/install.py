"""Everything `ebbtide kube install` prints: namespace, CRD, least-privilege RBAC, operator.

The operator's ClusterRole grants exactly what it does and nothing more: read and watch
InferenceEndpoints and write their status; create, patch (server-side apply), watch and delete
the three kinds of object it renders; set owner references that block deletion
(`inferenceendpoints/finalizers`, required by the OwnerReferencesPermissionEnforcement
admission plugin); post events; and get and patch the one ValidatingWebhookConfiguration it
writes its webhook's CA into (by name). It never reads Secrets, ConfigMaps or Pods, and does not
list CRDs or namespaces: the operator runs with kopf's cluster scanning off and checks once,
at start, that the CRD is served. Discovery (`GET /apis/autoscaling`, to choose the HPA API
version) needs no rule: the default `system:discovery` role grants it to every authenticated
client. The rules name API groups, not versions, so they cover autoscaling/v2 and v2beta2 alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ebbtide.kube.admission import (
    WEBHOOK_CONFIGURATION,
    WEBHOOK_PORT,
    WEBHOOK_SERVICE_PORT,
    WebhookTarget,
    webhook_configuration,
)
from ebbtide.kube.crd import crd_manifest
from ebbtide.kube.manifests import RenderOptions
from ebbtide.spec.models import API_GROUP, PLURAL

OPERATOR_NAME = "ebbtide-operator"
DEFAULT_OPERATOR_NAMESPACE = "ebbtide-system"
HEALTH_PORT = 8081
GATEWAY_APP = "ebbtide-gateway"
"""The gateway pods' `app.kubernetes.io/name` label, and its Deployment's and Service's name."""
GATEWAY_ADMIN_PORT = 9091
GATEWAY_DATA_PORT = 8080
GATEWAY_SERVICE_PORT = 80
GATEWAY_REPLICAS = 2
"""Two, so that a gateway pod being replaced or lost never leaves the Service with none."""
GATEWAY_DRAIN_SECONDS = 5
PART_OF = {"app.kubernetes.io/part-of": "ebbtide"}

_WRITE_CHILDREN = ["get", "list", "watch", "create", "patch", "delete"]
OPERATOR_RULES: list[dict[str, Any]] = [
    {"apiGroups": [API_GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [API_GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch"]},
    {"apiGroups": [API_GROUP], "resources": [f"{PLURAL}/finalizers"], "verbs": ["update"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": _WRITE_CHILDREN},
    {"apiGroups": [""], "resources": ["services"], "verbs": _WRITE_CHILDREN},
    # The scaling loop of class-ebbtide endpoints: pods and their metrics in, replicas out.
    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
    {"apiGroups": ["metrics.k8s.io"], "resources": ["pods"], "verbs": ["get", "list"]},
    {
        "apiGroups": ["autoscaling"],
        "resources": ["horizontalpodautoscalers"],
        "verbs": _WRITE_CHILDREN,
    },
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    # The webhook's CA goes into the one configuration install creates, and into no other.
    {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["validatingwebhookconfigurations"],
        "resourceNames": [WEBHOOK_CONFIGURATION],
        "verbs": ["get", "patch"],
    },
]


def install_manifests(
    namespace: str = DEFAULT_OPERATOR_NAMESPACE,
    options: RenderOptions | None = None,
    cel: bool = True,
) -> list[dict[str, Any]]:
    """The objects to apply, in order: Namespace (unless `default`), CRD, the in-cluster
    gateway's ServiceAccount, ClusterRole, binding, Deployment and Service, then the
    operator's ServiceAccount, ClusterRole, ClusterRoleBinding, Deployment, the webhook's
    Service and its ValidatingWebhookConfiguration (without its CA, which the operator
    writes). Without
    `cel` the CRD leaves out its CEL rules, for servers older than 1.28."""
    options = options or RenderOptions()
    objects: list[dict[str, Any]] = []
    if namespace != "default":
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": dict(PART_OF)},
            }
        )
    objects.append(crd_manifest(cel))
    objects.extend(gateway_manifests(namespace, options))
    objects.extend(rbac_manifests(namespace))
    objects.append(operator_deployment(namespace, options))
    objects.append(webhook_service(namespace))
    objects.append(webhook_configuration(WebhookTarget(namespace, OPERATOR_NAME)))
    return objects


def webhook_service(namespace: str) -> dict[str, Any]:
    """The Service the API server reaches the operator's webhook through (port 443)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": OPERATOR_NAME, "namespace": namespace, "labels": dict(PART_OF)},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": OPERATOR_NAME},
            "ports": [
                {
                    "name": "webhook",
                    "port": WEBHOOK_SERVICE_PORT,
                    "targetPort": "webhook",
                    "protocol": "TCP",
                }
            ],
        },
    }


def rbac_manifests(namespace: str) -> list[dict[str, Any]]:
    """The operator's ServiceAccount, ClusterRole and the binding between them."""
    return service_account_with_role(OPERATOR_NAME, namespace, OPERATOR_RULES, PART_OF)


def service_account_with_role(
    name: str, namespace: str, rules: list[dict[str, Any]], labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    """A ServiceAccount, a ClusterRole of `rules` and the binding between them, all `name`."""
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": dict(labels)},
        "rules": [dict(rule) for rule in rules],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": dict(labels)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }
    return [account, role, binding]


def operator_deployment(namespace: str, options: RenderOptions) -> dict[str, Any]:
    """One operator replica (Recreate: never two at once), in the same image as the model
    server, told which image and model claim the endpoints it renders should use."""
    labels = {"app": OPERATOR_NAME, **PART_OF}
    # The kubelet expands $(POD_IP): the ports listen on the pod's own address only.
    command = ["ebbtide", "kube", "operator", "--host", "$(POD_IP)"]
    command += ["--health-port", str(HEALTH_PORT)]
    command += ["--webhook-service", f"{namespace}/{OPERATOR_NAME}"]
    command += ["--webhook-port", str(WEBHOOK_PORT)]
    env = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "EBBTIDE_IMAGE", "value": options.image},
        {"name": "EBBTIDE_MODELS_CLAIM", "value": options.models_claim},
        {"name": "EBBTIDE_STORAGE_INITIALIZER", "value": options.storage_initializer_image},
        {"name": "EBBTIDE_HOME", "value": "/tmp/ebbtide"},
    ]
    container = {
        "name": "operator",
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": command,
        "env": env,
        "ports": [
            {"name": "healthz", "containerPort": HEALTH_PORT, "protocol": "TCP"},
            {"name": "webhook", "containerPort": WEBHOOK_PORT, "protocol": "TCP"},
        ],
        # Ready once the webhook serves with its CA in the configuration: only then does the
        # Service route reviews to this pod.
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "healthz"},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
        },
        "livenessProbe": _liveness_probe("healthz"),
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        **_locked_down(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": OPERATOR_NAME, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app": OPERATOR_NAME}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": OPERATOR_NAME,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


GATEWAY_RULES: list[dict[str, Any]] = [
    {"apiGroups": [API_GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["endpoints"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["get", "list", "watch"],
    },
]


def gateway_manifests(namespace: str, options: RenderOptions) -> list[dict[str, Any]]:
    """The in-cluster gateway: ServiceAccount, a read-only ClusterRole (InferenceEndpoints and
    Endpoints, list and watch), its binding, the Deployment and the Service (port 80)."""
    labels = {"app.kubernetes.io/name": GATEWAY_APP, **PART_OF}
    return [
        *service_account_with_role(GATEWAY_APP, namespace, GATEWAY_RULES, labels),
        gateway_deployment(namespace, options),
        gateway_service(namespace),
    ]


def _liveness_probe(port: str) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/healthz", "port": port},
        "initialDelaySeconds": 10,
        "periodSeconds": 20,
        "timeoutSeconds": 5,
    }


def _locked_down() -> dict[str, Any]:
    """No privileges, a read-only root and a writable /tmp (an emptyDir named `tmp`)."""
    return {
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }


def gateway_deployment(namespace: str, options: RenderOptions) -> dict[str, Any]:
    """`GATEWAY_REPLICAS` gateway pods, rolled one at a time with none unavailable; each
    serves on its pod IP, data on 8080 and admin on 9091, ready once its routes are synced."""
    labels = {"app.kubernetes.io/name": GATEWAY_APP, **PART_OF}
    # The kubelet expands $(POD_IP) and $(POD_NAME).
    command = ["ebbtide", "kube", "gateway", "--host", "$(POD_IP)"]
    command += ["--port", str(GATEWAY_DATA_PORT), "--admin-port", str(GATEWAY_ADMIN_PORT)]
    command += ["--name", "$(POD_NAME)", "--drain-seconds", str(GATEWAY_DRAIN_SECONDS)]
    container = {
        "name": "gateway",
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        "command": command,
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "EBBTIDE_HOME", "value": "/tmp/ebbtide"},
        ],
        "ports": [
            {"name": "http", "containerPort": GATEWAY_DATA_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": GATEWAY_ADMIN_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "admin"},
            "periodSeconds": 2,
            "timeoutSeconds": 2,
        },
        "livenessProbe": _liveness_probe("admin"),
        "resources": {
            "requests": {"cpu": "250m", "memory": "128Mi"},
            "limits": {"cpu": "2", "memory": "512Mi"},
        },
        **_locked_down(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": GATEWAY_APP, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": GATEWAY_REPLICAS,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "selector": {"matchLabels": {"app.kubernetes.io/name": GATEWAY_APP}},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "serviceAccountName": GATEWAY_APP,
                    "terminationGracePeriodSeconds": 45,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def gateway_service(namespace: str) -> dict[str, Any]:
    """Where clients in the cluster send inference requests: port 80 to the gateway pods."""
    labels = {"app.kubernetes.io/name": GATEWAY_APP, **PART_OF}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": GATEWAY_APP, "namespace": namespace, "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": GATEWAY_APP},
            "ports": [
                {
                    "name": "http",
                    "port": GATEWAY_SERVICE_PORT,
                    "targetPort": "http",
                    "protocol": "TCP",
                },
                {
                    "name": "admin",
                    "port": GATEWAY_ADMIN_PORT,
                    "targetPort": "admin",
                    "protocol": "TCP",
                },
            ],
        },
    }
