"""What an endpoint renders to: three objects Kubernetes accepts, faithful to the spec."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from ebbtide.core.errors import SpecError
from ebbtide.kube.manifests import (
    AUTOSCALER_LABEL,
    SPEC_HASH_ANNOTATION,
    RenderOptions,
    render,
    spec_hash,
)
from ebbtide.spec import InferenceEndpoint, validate_document
from tests.spec.cases import SEED, seed_with

KUBERNETES = kubernetes_validate.utils.latest_version()


def endpoint(document: dict[str, Any] = SEED) -> InferenceEndpoint:
    return validate_document(document).endpoint


def assert_valid(manifest: dict[str, Any]) -> None:
    assert kubernetes_validate.validate(manifest, KUBERNETES, strict=True)


def container(rendered_deployment: dict[str, Any]) -> dict[str, Any]:
    containers = rendered_deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    first: dict[str, Any] = containers[0]
    return first


def test_seed_renders_three_valid_objects_named_after_the_endpoint() -> None:
    rendered = render(endpoint())
    kinds = [(o["apiVersion"], o["kind"]) for o in rendered.objects]
    assert kinds == [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ]
    for manifest in rendered.objects:
        assert manifest["metadata"]["name"] == "my-model-endpoint"
        assert manifest["metadata"]["namespace"] == "default"
        assert_valid(manifest)


def test_hpa_has_the_seed_bounds_and_cpu_target() -> None:
    hpa = render(endpoint()).autoscaler["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "my-model-endpoint",
    }
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 5)
    assert hpa["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 60},
            },
        }
    ]
    assert "behavior" not in hpa


def test_pods_carry_app_label_and_the_deployment_selects_them() -> None:
    deployment = render(endpoint()).deployment
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == "my-model-endpoint"
    assert labels["mlops.example.com/model-version"] == "v1"
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "my-model-endpoint"}}
    service = render(endpoint()).service["spec"]
    assert service["selector"] == {"app": "my-model-endpoint"}
    assert service["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]


def test_model_server_runs_serve_model_with_the_spec_resources() -> None:
    server = container(render(endpoint()).deployment)
    assert server["command"] == [
        "ebbtide", "serve-model", "my-ml-model", "--version", "v1",
        "--repository", "/models", "--host", "$(POD_IP)", "--port", "8080",
    ]  # fmt: skip
    assert server["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    }


def test_probes_drain_and_grace_period() -> None:
    deployment = render(endpoint()).deployment
    server = container(deployment)
    assert server["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert server["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    pause = int(server["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert 0 < pause < grace
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_replica_count_is_left_to_the_autoscaler() -> None:
    assert "replicas" not in render(endpoint()).deployment["spec"]


def test_model_repository_claim_by_default() -> None:
    options = RenderOptions(models_claim="team-models")
    pod = render(endpoint(), options).deployment["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert pod["volumes"][0] == {
        "name": "model-repository",
        "persistentVolumeClaim": {"claimName": "team-models", "readOnly": True},
    }
    assert container(render(endpoint(), options).deployment)["volumeMounts"][0] == {
        "name": "model-repository",
        "mountPath": "/models",
        "readOnly": True,
    }


def test_pvc_uri_mounts_the_claim_at_the_version_folder() -> None:
    document = seed_with("spec.model.uri", "pvc://shared-models/iris/v3")
    deployment = render(endpoint(document)).deployment
    assert_valid(deployment)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "shared-models"
    assert container(deployment)["volumeMounts"][0] == {
        "name": "model-repository",
        "mountPath": "/models/my-ml-model/v1",
        "readOnly": True,
        "subPath": "iris/v3",
    }


@pytest.mark.parametrize(
    ("uri", "image", "invocation"),
    [
        (
            "https://models.example.com/iris.tar.gz",
            "ebbtide:0.1.0",
            {"command": ["ebbtide", "kube", "fetch-model", "https://models.example.com/iris.tar.gz",
                         "/models/my-ml-model/v1"]},
        ),
        (
            "s3://bucket/iris/",
            "kserve/storage-initializer:v0.14.1",
            {"args": ["s3://bucket/iris/", "/models/my-ml-model/v1"]},
        ),
    ],
)  # fmt: skip
def test_remote_uri_is_fetched_by_an_init_container(
    uri: str, image: str, invocation: dict[str, list[str]]
) -> None:
    deployment = render(endpoint(seed_with("spec.model.uri", uri))).deployment
    assert_valid(deployment)
    pod = deployment["spec"]["template"]["spec"]
    (initializer,) = pod["initContainers"]
    assert initializer["image"] == image
    assert {key: initializer[key] for key in invocation} == invocation
    assert pod["volumes"][0] == {"name": "model-repository", "emptyDir": {}}
    assert initializer["volumeMounts"][0]["mountPath"] == "/models"


def test_local_file_uri_is_refused_with_the_alternatives() -> None:
    with pytest.raises(SpecError, match=r"pvc://CLAIM/PATH, https://"):
        render(endpoint(seed_with("spec.model.uri", "file:///srv/models/iris")))


def test_name_starting_with_a_digit_is_refused() -> None:
    with pytest.raises(SpecError, match="Service names start with a letter"):
        render(endpoint(seed_with("metadata.name", "9-models")))


def test_behavior_and_extra_metrics_pass_through() -> None:
    document = seed_with(
        "spec.autoscaling.behavior",
        {
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}],
                "tolerance": 0.05,
            },
            "scaleDown": {"stabilizationWindowSeconds": 120, "selectPolicy": "Min"},
        },
    )
    memory = {"type": "Utilization", "averageUtilization": 75}
    concurrency = {
        "metric": {"name": "concurrency"},
        "target": {"type": "AverageValue", "averageValue": "4"},
    }
    document["spec"]["autoscaling"]["metrics"] = [
        {"type": "Resource", "resource": {"name": "memory", "target": memory}},
        {"type": "Pods", "pods": concurrency},
    ]
    # A Pods metric needs a custom metrics adapter with an HPA: only class hpa renders one.
    document["spec"]["autoscaling"]["class"] = "hpa"
    rendered = render(InferenceEndpoint.model_validate(document))
    assert rendered.autoscaler is not None
    assert_valid(rendered.autoscaler)
    spec = rendered.autoscaler["spec"]
    assert spec["behavior"] == {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}],
            "tolerance": "50m",
        },
        "scaleDown": {"stabilizationWindowSeconds": 120, "selectPolicy": "Min"},
    }
    assert [m["type"] for m in spec["metrics"]] == ["Resource", "Resource", "Pods"]
    assert spec["metrics"][1]["resource"] == {"name": "memory", "target": memory}
    assert spec["metrics"][2]["pods"] == concurrency
    assert any("custom metrics adapter" in note for note in rendered.notes)


def test_no_target_at_all_defaults_to_80_percent_cpu_like_the_hpa() -> None:
    document = seed_with("spec.autoscaling.targetCPUUtilizationPercentage", ...)
    metric = render(endpoint(document)).autoscaler["spec"]["metrics"][0]
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 80}


def test_scale_to_zero_resolves_to_class_ebbtide_without_an_hpa() -> None:
    rendered = render(endpoint(seed_with("spec.autoscaling.minReplicas", 0)))
    assert rendered.autoscaler is None
    assert [o["kind"] for o in rendered.objects] == ["Deployment", "Service"]
    assert rendered.deployment["metadata"]["labels"][AUTOSCALER_LABEL] == "ebbtide"
    assert "replicas" not in rendered.deployment["spec"]
    assert any("class unset, so ebbtide (minReplicas 0 needs it)" in n for n in rendered.notes)


def test_a_concurrency_target_resolves_to_class_ebbtide() -> None:
    document = seed_with(
        "spec.autoscaling.metrics",
        [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "concurrency"},
                    "target": {"type": "AverageValue", "averageValue": "2"},
                },
            }
        ],
    )
    assert render(endpoint(document)).autoscaler is None


def test_the_seed_stays_class_hpa_with_no_autoscaler_label() -> None:
    rendered = render(endpoint())
    assert rendered.autoscaler is not None
    assert AUTOSCALER_LABEL not in rendered.deployment["metadata"]["labels"]
    assert rendered.notes == ()


def test_owner_reference_only_with_a_uid() -> None:
    assert all("ownerReferences" not in o["metadata"] for o in render(endpoint()).objects)
    for manifest in render(endpoint(), owner_uid="1234").objects:
        assert_valid(manifest)
        assert manifest["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "mlops.example.com/v1",
                "kind": "InferenceEndpoint",
                "name": "my-model-endpoint",
                "uid": "1234",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_hash_annotation_is_deterministic_and_tracks_changes() -> None:
    first, again = render(endpoint()), render(endpoint())
    assert first == again
    for manifest in first.objects:
        assert manifest["metadata"]["annotations"][SPEC_HASH_ANNOTATION] == spec_hash(manifest)
    bigger = render(endpoint(seed_with("spec.autoscaling.maxReplicas", 8)))
    annotation = SPEC_HASH_ANNOTATION

    def digest(manifest: dict[str, Any]) -> str:
        value: str = manifest["metadata"]["annotations"][annotation]
        return value

    assert digest(bigger.autoscaler) != digest(first.autoscaler)
    assert digest(bigger.deployment) == digest(first.deployment)
