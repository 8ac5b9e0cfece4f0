"""The pure reconcile decision on create, update, delete, drift and status."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from ebbtide.kube.manifests import RenderOptions
from ebbtide.kube.reconcile import Observed, drift, plan
from tests.spec.cases import SEED, seed_with

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OPTIONS = RenderOptions()
NAME = "my-model-endpoint"


def stored(document: dict[str, Any] = SEED, generation: int = 1, **status: Any) -> dict[str, Any]:
    """The endpoint as the API server returns it."""
    body = copy.deepcopy(document)
    body["metadata"] = {
        **body["metadata"],
        "namespace": "default",
        "uid": "e-uid",
        "generation": generation,
        "resourceVersion": "42",
        "creationTimestamp": "2026-03-01T11:00:00Z",
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    }
    if status:
        body["status"] = status
    return body


def as_served(manifest: dict[str, Any]) -> dict[str, Any]:
    """An applied manifest as the API server stores it: with defaults and normalized values."""
    served = copy.deepcopy(manifest)
    served["metadata"].update(uid=f"{manifest['kind']}-uid", generation=1)
    spec = served["spec"]
    if manifest["kind"] == "Deployment":
        spec.update(replicas=3, progressDeadlineSeconds=600)
        pod = spec["template"]["spec"]
        pod.update(dnsPolicy="ClusterFirst", restartPolicy="Always")
        server = pod["containers"][0]
        server["terminationMessagePath"] = "/dev/termination-log"
        server["readinessProbe"].update(successThreshold=1)
        server["readinessProbe"]["httpGet"]["scheme"] = "HTTP"
        if "resources" in server:
            server["resources"]["requests"]["memory"] = "1024Mi"  # same amount as 1Gi
    if manifest["kind"] == "Service":
        spec.update(clusterIP="10.96.0.12", sessionAffinity="None")
    if manifest["kind"] == "HorizontalPodAutoscaler":
        spec["behavior"] = {"scaleUp": {"selectPolicy": "Max", "stabilizationWindowSeconds": 0}}
    return served


def converged(document: dict[str, Any] = SEED) -> dict[str, dict[str, Any]]:
    """The children as they are once the operator applied `document`."""
    created = plan(Observed("default", NAME, stored(document)), OPTIONS, NOW)
    return {a.ref.kind: as_served(dict(a.manifest or {})) for a in created.actions}


def kinds(decision: Any) -> list[str]:
    return [f"{action.verb} {action.ref.kind}" for action in decision.actions]


def test_create_applies_all_three_with_owner_references() -> None:
    decision = plan(Observed("default", NAME, stored()), OPTIONS, NOW)
    assert kinds(decision) == [
        "apply Deployment",
        "apply Service",
        "apply HorizontalPodAutoscaler",
    ]
    for action in decision.actions:
        assert action.reason.endswith("does not exist")
        assert action.manifest is not None
        assert action.manifest["metadata"]["ownerReferences"][0]["uid"] == "e-uid"
    assert decision.status is not None
    assert decision.status["conditions"][0]["reason"] == "Creating"
    assert decision.status["observedGeneration"] == 1


def test_converged_cluster_needs_nothing() -> None:
    decision = plan(Observed("default", NAME, stored(), converged()), OPTIONS, NOW)
    assert decision.actions == ()


def test_version_change_rolls_the_deployment_only() -> None:
    children = converged()
    updated = seed_with("spec.model.version", "v2")
    decision = plan(Observed("default", NAME, stored(updated, 2), children), OPTIONS, NOW)
    assert kinds(decision) == ["apply Deployment"]
    (action,) = decision.actions
    assert action.reason.startswith("the endpoint changed")
    assert action.manifest is not None
    template = action.manifest["spec"]["template"]
    assert template["metadata"]["labels"]["mlops.example.com/model-version"] == "v2"
    assert template["spec"]["containers"][0]["command"][4] == "v2"
    assert decision.status is not None
    assert decision.status["observedGeneration"] == 2


def test_bounds_change_updates_the_hpa_only() -> None:
    children = converged()
    updated = seed_with("spec.autoscaling", {"minReplicas": 2, "maxReplicas": 8,
                                             "targetCPUUtilizationPercentage": 60})  # fmt: skip
    decision = plan(Observed("default", NAME, stored(updated, 2), children), OPTIONS, NOW)
    assert kinds(decision) == ["apply HorizontalPodAutoscaler"]
    manifest = decision.actions[0].manifest
    assert manifest is not None
    assert (manifest["spec"]["minReplicas"], manifest["spec"]["maxReplicas"]) == (2, 8)
    assert "spec.minReplicas" in decision.actions[0].reason


def test_resources_change_updates_the_deployment_only() -> None:
    children = converged()
    updated = seed_with("spec.resources.requests", {"cpu": "1", "memory": "2Gi"})
    decision = plan(Observed("default", NAME, stored(updated, 2), children), OPTIONS, NOW)
    assert kinds(decision) == ["apply Deployment"]
    manifest = decision.actions[0].manifest
    assert manifest is not None
    resources = manifest["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "1", "memory": "2Gi"}


def test_removing_a_field_is_noticed_through_the_hash() -> None:
    children = converged()
    updated = seed_with("spec.resources.limits", {"memory": "2Gi"})
    decision = plan(Observed("default", NAME, stored(updated, 2), children), OPTIONS, NOW)
    assert kinds(decision) == ["apply Deployment"]


def test_hand_edits_to_a_child_are_reverted() -> None:
    children = converged()
    server = children["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    server["resources"]["limits"]["cpu"] = "4"
    decision = plan(Observed("default", NAME, stored(), children), OPTIONS, NOW)
    assert kinds(decision) == ["apply Deployment"]
    assert "changed by someone else" in decision.actions[0].reason
    assert "resources.limits.cpu" in decision.actions[0].reason


def test_delete_removes_what_the_endpoint_controls_and_nothing_else() -> None:
    children = converged()
    foreign = copy.deepcopy(children["Service"])
    foreign["metadata"] = {"name": NAME, "namespace": "default", "labels": {"app": NAME}}
    children["Service"] = foreign
    decision = plan(Observed("default", NAME, None, children), OPTIONS, NOW)
    assert kinds(decision) == ["delete Deployment", "delete HorizontalPodAutoscaler"]
    assert decision.status is None


def test_endpoint_being_deleted_is_treated_as_gone() -> None:
    body = stored()
    body["metadata"]["deletionTimestamp"] = "2026-03-01T12:00:00Z"
    decision = plan(Observed("default", NAME, body, converged()), OPTIONS, NOW)
    assert [a.verb for a in decision.actions] == ["delete"] * 3


def test_delete_with_nothing_left_does_nothing() -> None:
    assert plan(Observed("default", NAME, None, {}), OPTIONS, NOW).actions == ()


def test_invalid_update_leaves_the_running_objects_alone() -> None:
    children = converged()
    broken = seed_with("spec.autoscaling.minReplicas", 9)
    decision = plan(Observed("default", NAME, stored(broken, 3), children), OPTIONS, NOW)
    assert decision.actions == ()
    assert decision.problems
    assert "greater than maxReplicas" in decision.problems[0]
    assert decision.status is not None
    assert decision.status["observedGeneration"] == 3


def served_status(children: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    children["Deployment"]["status"] = {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3}
    children["HorizontalPodAutoscaler"]["status"] = {
        "currentReplicas": 3,
        "desiredReplicas": 4,
        "lastScaleTime": "2026-03-01T11:58:00Z",
        "currentMetrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "current": {"averageUtilization": 85, "averageValue": "425m"},
                },
            }
        ],
        "conditions": [
            {
                "type": "AbleToScale",
                "status": "True",
                "reason": "SucceededRescale",
                "message": "the HPA controller was able to update the target scale to 4",
                "lastTransitionTime": "2026-03-01T11:58:00Z",
            }
        ],
    }
    return children


def test_status_reports_replicas_metrics_and_conditions() -> None:
    children = served_status(converged())
    decision = plan(Observed("default", NAME, stored(), children), OPTIONS, NOW)
    status = decision.status
    assert status is not None
    assert (status["replicas"], status["readyReplicas"], status["desiredReplicas"]) == (3, 2, 4)
    assert status["currentMetrics"] == [
        {"name": "cpu", "averageUtilization": 85, "averageValue": "425m"}
    ]
    assert [c["type"] for c in status["conditions"]] == ["Ready", "AbleToScale"]
    assert status["conditions"][0] == {
        "type": "Ready",
        "status": "True",
        "reason": "ReplicasReady",
        "message": "2 of 3 replicas ready",
        "lastTransitionTime": "2026-03-01T12:00:00Z",
    }
    assert status["lastScaleTime"] == "2026-03-01T11:58:00Z"
    assert status["selector"] == "app=my-model-endpoint"
    assert status["url"] == "http://my-model-endpoint.default.svc.cluster.local"
    assert decision.status_changed


def test_status_converges_and_keeps_transition_times() -> None:
    children = served_status(converged())
    first = plan(Observed("default", NAME, stored(), children), OPTIONS, NOW)
    assert first.status is not None
    later = NOW + timedelta(minutes=5)
    again = plan(Observed("default", NAME, stored(**first.status), children), OPTIONS, later)
    assert again.status == first.status
    assert not again.status_changed
    children["Deployment"]["status"]["readyReplicas"] = 0
    dropped = plan(Observed("default", NAME, stored(**first.status), children), OPTIONS, later)
    assert dropped.status is not None
    ready = dropped.status["conditions"][0]
    assert (ready["status"], ready["lastTransitionTime"]) == ("False", "2026-03-01T12:05:00Z")


def test_drift_ignores_server_fields_and_compares_quantities_by_value() -> None:
    desired = {"a": {"cpu": "1", "memory": "1Gi", "list": [{"x": 1}]}}
    current = {"a": {"cpu": 1, "memory": "1024Mi", "list": [{"x": 1, "y": 2}], "extra": True}}
    assert drift(desired, current) == []
    assert drift(desired, {"a": {"cpu": "2", "memory": "1Gi", "list": [{"x": 1}]}}) == [".a.cpu"]
    assert drift(desired, {"a": {"cpu": "1", "memory": "1Gi", "list": []}}) == [".a.list"]
    assert drift({"flag": True}, {"flag": 1}) == [".flag"]


def test_switching_to_class_ebbtide_deletes_the_owned_hpa_and_relabels_the_deployment() -> None:
    children = converged()
    document = seed_with("spec.autoscaling.class", "ebbtide")
    decision = plan(Observed("default", NAME, stored(document, 2), children), OPTIONS, NOW)
    verbs = sorted((a.verb, a.ref.kind) for a in decision.actions)
    assert verbs == [("apply", "Deployment"), ("delete", "HorizontalPodAutoscaler")]
    deleted = [a for a in decision.actions if a.verb == "delete"]
    assert "class ebbtide" in deleted[0].reason


def test_class_ebbtide_status_keeps_what_the_scaling_loop_wrote() -> None:
    document = seed_with("spec.autoscaling.class", "ebbtide")
    children = converged(document)
    assert "HorizontalPodAutoscaler" not in children
    children["Deployment"]["status"] = {"replicas": 3, "readyReplicas": 3}
    first = plan(Observed("default", NAME, stored(document), children), OPTIONS, NOW)
    assert first.status is not None
    scaler = {
        "desiredReplicas": 4,
        "currentMetrics": [{"name": "cpu", "averageUtilization": 90}],
        "explanation": "scaling up from 3 to 4 replicas: cpu …",
        "lastScaleTime": "2026-03-01T12:00:00Z",
        "conditions": [
            *first.status["conditions"],
            {
                "type": "AbleToScale",
                "status": "True",
                "reason": "SucceededRescale",
                "message": "m",
                "lastTransitionTime": "2026-03-01T12:00:00Z",
            },
            {
                "type": "ScaledToZero",
                "status": "False",
                "reason": "NotScaledToZero",
                "message": "m",
                "lastTransitionTime": "2026-03-01T12:00:00Z",
            },
            {
                "type": "ObjectiveMet",
                "status": "False",
                "reason": "ObjectiveMissed",
                "message": "p99 latency 399 ms is over the objective 200 ms: 2 → 4",
                "lastTransitionTime": "2026-03-01T12:00:00Z",
            },
        ],
    }
    status = {**first.status, **scaler}
    again = plan(Observed("default", NAME, stored(document, **status), children), OPTIONS, NOW)
    assert again.status == status  # nothing to write: no fight with the scaling loop
    assert not again.status_changed
