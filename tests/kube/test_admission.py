"""The webhook's decision: every seed mistake refused with `ebbtide validate`'s words, on a
server with CEL and on one without (1.20), and warnings passed back as admission warnings."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ebbtide.core.errors import SpecError
from ebbtide.kube.admission import admission_response, one_line, review_object
from ebbtide.kube.crd import crd_manifest
from ebbtide.spec.validation import validate_document
from tests.kube.admission import admission_errors
from tests.spec.cases import INVALID_CASES, SEED, seed_with


def crd_without_cel() -> dict[str, Any]:
    """The CRD as a server without CEL (1.20 to 1.24) stores it: the rules dropped."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "x-kubernetes-validations"}
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    crd: dict[str, Any] = strip(crd_manifest())
    return crd


def as_stored(document: dict[str, Any]) -> dict[str, Any]:
    """The object the API server hands the webhook: namespaced, with a uid."""
    body = copy.deepcopy(document)
    body["metadata"] = {
        **body.get("metadata", {}),
        "namespace": "default",
        "uid": "0d6f0c4e-1",
        "generation": 1,
        "creationTimestamp": "2026-01-01T00:00:00Z",
    }
    return body


def review(body: dict[str, Any], operation: str = "CREATE", version: str = "v1") -> dict[str, Any]:
    """An AdmissionReview as kube-apiserver sends it."""
    return {
        "apiVersion": f"admission.k8s.io/{version}",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "mlops.example.com", "version": "v1", "kind": "InferenceEndpoint"},
            "resource": {
                "group": "mlops.example.com",
                "version": "v1",
                "resource": "inferenceendpoints",
            },
            "requestKind": {
                "group": "mlops.example.com",
                "version": "v1",
                "kind": "InferenceEndpoint",
            },
            "name": body.get("metadata", {}).get("name"),
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "admin", "groups": ["system:masters"]},
            "object": body,
            "oldObject": None if operation == "CREATE" else body,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def validate_says(document: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        validate_document(as_stored(document), "default/my-model-endpoint")
    return caught.value.problems


@pytest.mark.parametrize(
    ("case", "document", "fragment", "structural"),
    [pytest.param(*case, id=case[0]) for case in INVALID_CASES],
)
def test_every_mistake_is_refused_on_a_server_without_cel(
    case: str, document: dict[str, Any], fragment: str, structural: bool
) -> None:
    schema_errors = admission_errors(crd_without_cel(), copy.deepcopy(document))
    if schema_errors:
        return  # refused by the CRD's schema before any webhook is called
    answer = admission_response(review(as_stored(document)))["response"]
    assert answer["allowed"] is False, f"{case} would be stored on 1.20"
    assert answer["status"]["code"] == 422
    assert answer["status"]["message"] == "\n".join(validate_says(document))
    assert fragment in answer["status"]["message"]


def test_the_semantic_mistakes_reach_the_webhook_on_1_20() -> None:
    reached = [
        case
        for case, document, _, _ in INVALID_CASES
        if not admission_errors(crd_without_cel(), copy.deepcopy(document))
    ]
    assert {
        "min-above-max",
        "cpu-target-without-request",
        "limit-below-request",
        "zero-cpu-request",
        "memory-utilization-without-request",
    } <= set(reached)


def test_the_message_is_validates_own() -> None:
    document = seed_with("spec.autoscaling.minReplicas", 6)
    document["spec"]["resources"]["requests"] = {"memory": "1Gi"}
    message = admission_response(review(as_stored(document)))["response"]["status"]["message"]
    assert message == (
        "error: default/my-model-endpoint: spec.autoscaling.minReplicas: minReplicas (6) is "
        "greater than maxReplicas (5)\n"
        "  fix: set minReplicas to at most maxReplicas, e.g. minReplicas: 5, maxReplicas: 6\n"
        "error: default/my-model-endpoint: spec.resources.requests.cpu: a CPU target needs "
        "resources.requests.cpu: utilization is a percent of the request, so without one it "
        "cannot be computed\n"
        "  fix: add spec.resources.requests.cpu, e.g. 500m"
    )


def test_the_seed_is_allowed_without_warnings() -> None:
    answer = admission_response(review(as_stored(SEED)))
    assert answer == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True},
    }


@pytest.mark.parametrize(
    ("path", "value", "warning"),
    [
        (
            "spec.autoscaling.minReplicas",
            5,
            "default/my-model-endpoint: spec.autoscaling.minReplicas: minReplicas "
            "equals maxReplicas (5): autoscaling is disabled, the endpoint always runs 5 "
            "replicas; fix: set minReplicas lower than maxReplicas to let it scale up and down",
        ),
        (
            "spec.autoscaling.targetCPUUtilizationPercentage",
            95,
            "default/my-model-endpoint: spec.autoscaling.targetCPUUtilizationPercentage:"
            " a CPU target of 95% is very high: replicas run hot and the endpoint scales up late,"
            " after latency has already risen; fix: choose a balanced target such as 60",
        ),
    ],
)
def test_warnings_are_admission_warnings_on_one_line(path: str, value: int, warning: str) -> None:
    answer = admission_response(review(as_stored(seed_with(path, value)), "UPDATE"))["response"]
    assert answer["allowed"] is True
    assert answer["warnings"] == [warning]
    validated = validate_document(as_stored(seed_with(path, value)), "default/my-model-endpoint")
    assert [one_line(w) for w in validated.warnings] == [f"warning: {warning}"]


def test_what_cannot_run_on_kubernetes_is_refused_with_renders_words() -> None:
    document = seed_with("spec.model.uri", "file:///srv/models/iris")
    verdict = review_object(as_stored(document))
    assert not verdict.allowed
    assert "points at one machine's disk, which pods cannot read" in verdict.message


def test_an_endpoint_on_its_way_out_is_let_go() -> None:
    body = as_stored(seed_with("spec.autoscaling.minReplicas", 6))
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    assert admission_response(review(body, "UPDATE"))["response"]["allowed"] is True


def test_v1beta1_reviews_are_answered_in_v1beta1() -> None:
    answer = admission_response(review(as_stored(SEED), version="v1beta1"))
    assert answer["apiVersion"] == "admission.k8s.io/v1beta1"
    assert answer["response"]["allowed"] is True


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_other_operations_are_let_through(operation: str) -> None:
    body = as_stored(seed_with("spec.autoscaling.minReplicas", 6))
    assert admission_response(review(body, operation))["response"]["allowed"] is True


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"kind": "Pod", "apiVersion": "v1"}, "expected an AdmissionReview"),
        ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}, "no request"),
        (
            {
                "kind": "AdmissionReview",
                "apiVersion": "admission.k8s.io/v1",
                "request": {
                    "uid": "u",
                    "operation": "CREATE",
                    "kind": {"kind": "InferenceEndpoint"},
                },
            },
            "no object to review",
        ),
    ],
)
def test_a_malformed_review_is_a_spec_error(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        admission_response(body)


def scale_review(replicas: int) -> dict[str, Any]:
    """What kube-apiserver sends for `kubectl scale ie my-model-endpoint --replicas=N`."""
    scale = {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "my-model-endpoint", "namespace": "default"},
        "spec": {"replicas": replicas},
    }
    body = review(as_stored(SEED), "UPDATE")
    body["request"] |= {
        "kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
        "subResource": "scale",
        "object": scale,
        "oldObject": {**scale, "spec": {"replicas": 1}},
    }
    return body


def test_kubectl_scale_above_max_is_refused_with_validates_message() -> None:
    answer = admission_response(scale_review(9), current=as_stored(SEED))["response"]
    assert answer["allowed"] is False
    assert answer["status"]["message"] == (
        "error: default/my-model-endpoint: spec.autoscaling.minReplicas: minReplicas (9) is "
        "greater than maxReplicas (5)\n"
        "  fix: set minReplicas to at most maxReplicas, e.g. minReplicas: 5, maxReplicas: 9"
    )


def test_kubectl_scale_within_bounds_is_allowed_and_to_max_warns() -> None:
    assert admission_response(scale_review(3), current=as_stored(SEED))["response"] == {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "allowed": True,
    }
    warned = admission_response(scale_review(5), current=as_stored(SEED))["response"]
    assert "minReplicas equals maxReplicas (5)" in warned["warnings"][0]


def test_a_scale_without_the_stored_endpoint_is_left_to_the_api_server() -> None:
    assert admission_response(scale_review(9))["response"]["allowed"] is True


def test_status_updates_are_let_through() -> None:
    body = review(as_stored(seed_with("spec.autoscaling.minReplicas", 6)), "UPDATE")
    body["request"]["subResource"] = "status"
    assert admission_response(body)["response"]["allowed"] is True
