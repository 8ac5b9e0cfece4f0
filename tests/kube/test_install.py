"""What `ebbtide kube install` applies: valid objects, and no more permission than needed."""

from __future__ import annotations

import kubernetes_validate
import pytest

from ebbtide.kube.install import (
    GATEWAY_ADMIN_PORT,
    GATEWAY_APP,
    OPERATOR_RULES,
    gateway_manifests,
    install_manifests,
)
from ebbtide.kube.manifests import RenderOptions

KUBERNETES = kubernetes_validate.utils.latest_version()


def test_every_object_validates() -> None:
    objects = install_manifests()
    assert [o["kind"] for o in objects] == [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ValidatingWebhookConfiguration",
    ]
    for manifest in objects:
        assert kubernetes_validate.validate(manifest, KUBERNETES, strict=True)


def test_default_namespace_is_not_recreated() -> None:
    kinds = [o["kind"] for o in install_manifests("default")]
    assert "Namespace" not in kinds


def test_operator_runs_in_the_given_namespace_with_its_account() -> None:
    objects = {o["kind"]: o for o in install_manifests("ml-platform")}
    deployment = objects["Deployment"]
    assert deployment["metadata"]["namespace"] == "ml-platform"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ebbtide-operator"
    assert pod["containers"][0]["command"][:3] == ["ebbtide", "kube", "operator"]
    subject = objects["ClusterRoleBinding"]["subjects"][0]
    assert (subject["name"], subject["namespace"]) == ("ebbtide-operator", "ml-platform")


def test_operator_tells_the_endpoints_which_image_and_claim_to_use() -> None:
    options = RenderOptions(image="registry.local/ebbtide:dev", models_claim="models")
    deployment = next(
        o
        for o in install_manifests(options=options)
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "ebbtide-operator"
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.local/ebbtide:dev"
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["EBBTIDE_IMAGE"] == "registry.local/ebbtide:dev"
    assert env["EBBTIDE_MODELS_CLAIM"] == "models"


def test_rbac_is_least_privilege() -> None:
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in OPERATOR_RULES
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for verbs in granted.values():
        assert "*" not in verbs
        assert not verbs & {"escalate", "bind", "impersonate", "deletecollection"}
    assert all("*" not in key for key in granted)
    # The endpoint itself: read-only apart from its status; the operator never edits a spec.
    assert granted[("mlops.example.com", "inferenceendpoints")] == {"get", "list", "watch"}
    assert granted[("mlops.example.com", "inferenceendpoints/status")] == {"get", "patch"}
    assert ("", "secrets") not in granted
    # The scaling loop of class-ebbtide endpoints: pods and their metrics read, replicas set.
    assert granted[("", "pods")] == {"get", "list"}
    assert granted[("metrics.k8s.io", "pods")] == {"get", "list"}
    assert granted[("apps", "deployments/scale")] == {"get", "patch"}
    assert ("apiextensions.k8s.io", "customresourcedefinitions") not in granted
    assert ("", "namespaces") not in granted
    # The webhook's CA: get and patch of the one configuration install creates, by name.
    webhook_rules = [r for r in OPERATOR_RULES if "admissionregistration.k8s.io" in r["apiGroups"]]
    assert webhook_rules == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingwebhookconfigurations"],
            "resourceNames": ["ebbtide-operator"],
            "verbs": ["get", "patch"],
        }
    ]


def test_the_webhook_reaches_the_operator_through_its_service() -> None:
    objects = {o["kind"]: o for o in install_manifests("ml-platform")}
    service = objects["Service"]
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert service["spec"]["selector"] == {"app": "ebbtide-operator"}
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    assert "webhook" in ports
    webhook = objects["ValidatingWebhookConfiguration"]["webhooks"][0]
    assert webhook["clientConfig"] == {
        "service": {
            "namespace": "ml-platform",
            "name": "ebbtide-operator",
            "path": "/validate-inferenceendpoint",
            "port": 443,
        }
    }
    assert (webhook["failurePolicy"], webhook["sideEffects"]) == ("Fail", "None")
    assert webhook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    # The spec and the scale subresource (which sets minReplicas); never status.
    assert webhook["rules"][0]["resources"] == ["inferenceendpoints", "inferenceendpoints/scale"]
    command = container["command"]
    assert command[command.index("--webhook-service") + 1] == "ml-platform/ebbtide-operator"
    assert command[command.index("--webhook-port") + 1] == str(ports["webhook"])
    assert command[command.index("--host") + 1] == "$(POD_IP)"
    assert container["env"][0] == {
        "name": "POD_IP",
        "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "healthz"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}


@pytest.mark.parametrize(
    ("group", "resource"),
    [("apps", "deployments"), ("", "services"), ("autoscaling", "horizontalpodautoscalers")],
)
def test_rbac_covers_what_the_operator_writes(group: str, resource: str) -> None:
    verbs = {
        verb
        for rule in OPERATOR_RULES
        if group in rule["apiGroups"] and resource in rule["resources"]
        for verb in rule["verbs"]
    }
    # get to observe, create+patch for server-side apply, delete, list+watch for kopf.
    assert verbs == {"get", "list", "watch", "create", "patch", "delete"}


def test_the_gateway_reads_only_endpoints_and_runs_on_its_pod_ip() -> None:
    objects = {o["kind"]: o for o in gateway_manifests("ebbtide-system", RenderOptions())}
    rules = objects["ClusterRole"]["rules"]
    assert {verb for rule in rules for verb in rule["verbs"]} == {"get", "list", "watch"}
    assert {r for rule in rules for r in rule["resources"]} == {
        "inferenceendpoints",
        "endpoints",
        "endpointslices",
    }
    deployment = objects["Deployment"]
    assert deployment["metadata"]["name"] == GATEWAY_APP
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == GATEWAY_APP
    container = pod["spec"]["containers"][0]
    assert container["command"][:5] == ["ebbtide", "kube", "gateway", "--host", "$(POD_IP)"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    ports = {p["name"]: p["port"] for p in objects["Service"]["spec"]["ports"]}
    assert ports == {"http": 80, "admin": GATEWAY_ADMIN_PORT}
