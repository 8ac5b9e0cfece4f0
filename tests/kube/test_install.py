"""What `ebbtide kube install` applies: valid objects, and no more permission than needed."""

from __future__ import annotations

import kubernetes_validate
import pytest

from ebbtide.kube.install import OPERATOR_RULES, install_manifests
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
    deployment = install_manifests(options=options)[-1]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.local/ebbtide:dev"
    env = {item["name"]: item["value"] for item in container["env"]}
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
    assert ("", "pods") not in granted
    assert ("apiextensions.k8s.io", "customresourcedefinitions") not in granted
    assert ("", "namespaces") not in granted


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
