"""The status and the Pod view an endpoint's loop writes, from plain values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ebbtide.controller.report import endpoint_status, pod_object
from ebbtide.supervisor import Phase, Replica, ReplicaTemplate

TEMPLATE = ReplicaTemplate("default", "iris", "iris", "v1", Path("/models"))


def replica(name: str, ready: bool) -> Replica:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    return Replica(name, TEMPLATE, 9001, created, 0.0, Phase.RUNNING, ready, pid=42)


def test_the_status_counts_ready_replicas_and_keeps_what_the_loop_knows() -> None:
    status = endpoint_status(
        [replica("a", True), replica("b", False)],
        desired=3,
        decision=None,
        conditions=[],
        generation=2,
        url="http://127.0.0.1:8080/endpoints/iris",
        explanation="holding 2 replicas",
        last_scale_time=None,
    )
    assert status == {
        "replicas": 2,
        "readyReplicas": 1,
        "desiredReplicas": 3,
        "currentMetrics": [],
        "conditions": [],
        "observedGeneration": 2,
        "url": "http://127.0.0.1:8080/endpoints/iris",
        "explanation": "holding 2 replicas",
    }


def test_a_draining_replica_shows_as_terminating_and_not_ready() -> None:
    pod = pod_object(replica("a", True), None, draining=True)
    assert pod["status"]["phase"] == "Terminating"
    assert pod["status"]["ready"] is False
    assert pod["metadata"]["labels"] == {"app": "iris", "pod-template-hash": TEMPLATE.hash}
    assert pod["metadata"]["creationTimestamp"] == "2026-01-01T00:00:00Z"
    assert pod["status"]["usage"] == {"cpu": "0m", "memory": "0Mi"}


def test_the_status_shows_where_the_latency_objective_stands() -> None:
    from tests.autoscaler.test_decide_objective import (
        BUCKET_400MS,
        counts,
        objective_policy,
        two_readings,
    )

    decision = two_readings(objective_policy(), 2, counts(BUCKET_400MS, 100))
    status = endpoint_status(
        [replica("a", True), replica("b", True)],
        desired=decision.desired,
        decision=decision,
        conditions=[],
        generation=1,
        url="http://127.0.0.1:8080/endpoints/iris",
        explanation=None,
        last_scale_time=None,
    )
    # p99 399 ms against 200 ms at 2 in flight per replica: it holds at 2 x 200/399.
    assert status["objective"] == {"observedMilliseconds": 399.0, "learnedLimit": 1.0025}
    without = endpoint_status(
        [], desired=1, decision=None, conditions=[], generation=1, url="", explanation=None,
        last_scale_time=None,
    )  # fmt: skip
    assert "objective" not in without
