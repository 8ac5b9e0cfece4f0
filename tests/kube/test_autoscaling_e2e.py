"""ebbtide's own autoscaling on a real cluster: the operator and the gateway as installed, together.

`ebbtide kube install --apply` runs both in ebbtide-system. A class-ebbtide endpoint with
`minReplicas: 0` and a concurrency target gets no HPA; the operator reads the gateways'
traffic, sets the Deployment's replicas through its scale subresource, and wakes from zero on
the gateways' demand long poll. Every request goes through a gateway pod's IP (the test node
has no kube-proxy; on a real cluster clients use the `ebbtide-gateway` Service), and every
answer is counted: nothing may fail while the endpoint scales from zero, up, and back down.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kube.conftest import KubeTarget
from tests.kube.endpoint_e2e import EndpointCluster, endpoint_applied
from tests.kube.gateway_load import GatewayLoad
from tests.kube.test_cluster_e2e import eventually
from tests.spec.cases import SEED

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(420)]
NAME = "scaled-by-ebbtide"
NAMESPACE = "ebbtide-autoscaling-e2e"
IDLE_SECONDS = 5


def endpoint() -> dict[str, Any]:
    document = copy.deepcopy(SEED)
    document["metadata"] = {"name": NAME}
    document["spec"]["model"]["version"] = "v2"  # the fast sample: the load is concurrency
    document["spec"]["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    autoscaling = document["spec"]["autoscaling"]
    autoscaling.pop("targetCPUUtilizationPercentage")
    autoscaling.update(
        minReplicas=0,
        maxReplicas=3,
        scaleToZero={"idleSeconds": IDLE_SECONDS, "holdTimeoutSeconds": 60},
        metrics=[
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "concurrency"},
                    "target": {"type": "AverageValue", "averageValue": "1"},
                },
            }
        ],
    )
    return document


@pytest.fixture(scope="module")
def cluster(
    kube_target: KubeTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EndpointCluster]:
    directory = tmp_path_factory.mktemp("autoscaling")
    with endpoint_applied(
        EndpointCluster, kube_target, directory, endpoint(), NAMESPACE, gateways=2
    ) as cluster:
        eventually(lambda: cluster.get("deployment"), "the operator's Deployment")
        yield cluster


def test_a_class_ebbtide_endpoint_gets_no_hpa_and_rests_at_zero(cluster: EndpointCluster) -> None:
    eventually(lambda: cluster.replicas() == 0, "the Deployment at 0 replicas", seconds=60)
    assert cluster.get(cluster.hpa) is None
    labels = cluster.get("deployment")["metadata"]["labels"]
    assert labels["ebbtide.dev/autoscaler"] == "ebbtide"


def test_requests_at_zero_wake_the_operator_and_all_answer(cluster: EndpointCluster) -> None:
    gateway = eventually(cluster.gateway, "a ready gateway pod")
    assert cluster.replicas() == 0
    with GatewayLoad(gateway, threads=4, pause=0, timeout=90) as load:
        eventually(lambda: load.outcomes["200"] >= 20, "20 answers after the wake", seconds=120)
    assert set(load.outcomes) == {"200"}, (load.outcomes, load.failures)
    events = cluster.kubectl("get", "events", "--field-selector", f"involvedObject.name={NAME}",
                             "-o", "json").stdout  # fmt: skip
    reasons = [e["reason"] for e in json.loads(events)["items"]]
    assert "SuccessfulRescale" in reasons


def test_load_scales_it_up_and_idleness_back_to_zero_with_no_failed_request(
    cluster: EndpointCluster,
) -> None:
    gateway = eventually(cluster.gateway, "a ready gateway pod")
    with GatewayLoad(gateway, threads=6, pause=0, timeout=90) as load:
        eventually(lambda: cluster.replicas() >= 2, "more replicas under load", seconds=60)
        eventually(
            lambda: (
                int((cluster.get("deployment").get("status") or {}).get("readyReplicas") or 0) >= 2
            ),
            "the added replica ready",
        )
        time.sleep(3)  # requests keep flowing across the added pod
    assert set(load.outcomes) == {"200"}, (load.outcomes, load.failures)
    described = cluster.kubectl("describe", "inferenceendpoint", NAME).stdout
    assert "SuccessfulRescale" in described
    eventually(lambda: cluster.replicas() == 0, "back to zero once idle", seconds=90)
