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
from testbed import apps

from ebbtide.kube.install import GATEWAY_APP, GATEWAY_DATA_PORT
from tests.kube.conftest import KubeTarget
from tests.kube.gateway_load import GatewayLoad
from tests.kube.test_cluster_e2e import (
    MODEL,
    OPERATOR_NAMESPACE,
    Walkthrough,
    eventually,
    load_models,
)
from tests.spec.cases import SEED

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(420)]
NAME = "scaled-by-ebbtide"
NAMESPACE = "ebbtide-autoscaling-e2e"
IDLE_SECONDS = 5


class Cluster(Walkthrough):
    def get(self, kind: str, name: str = NAME, namespace: str = NAMESPACE) -> Any:
        return super().get(kind, name, namespace)

    def replicas(self) -> int:
        deployment = self.get("deployment") or {}
        return int((deployment.get("spec") or {}).get("replicas") or 0)

    def gateway(self) -> str:
        """The infer URL through a ready gateway pod, or "" while none is ready."""
        pods = self.kubectl(
            "get", "pods", "-n", OPERATOR_NAMESPACE, "-l",
            f"app.kubernetes.io/name={GATEWAY_APP}", "-o", "json",
        ).stdout  # fmt: skip
        for pod in json.loads(pods)["items"]:
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            if conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp"):
                address = f"http://{pod['status']['podIP']}:{GATEWAY_DATA_PORT}"
                return f"{address}/endpoints/{NAME}/v2/models/{MODEL}/infer"
        return ""


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
def cluster(kube_target: KubeTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("autoscaling")
    kubeconfig = kube_target.with_namespace(NAMESPACE, directory)
    cluster = Cluster(kube_target, kubeconfig, directory, directory / "endpoint.yaml")
    cluster.kubectl("create", "namespace", NAMESPACE)
    try:
        apps.install(kubeconfig, wait_for=())
        # An earlier module may have scaled these; this one needs both, as installed.
        for deployment, replicas in ((GATEWAY_APP, 2), ("ebbtide-operator", 1)):
            cluster.kubectl("-n", OPERATOR_NAMESPACE, "scale", f"deployment/{deployment}",
                            f"--replicas={replicas}")  # fmt: skip
            cluster.kubectl(
                "-n", OPERATOR_NAMESPACE, "rollout", "status", f"deployment/{deployment}",
                "--timeout=120s", timeout=150,
            )  # fmt: skip
        load_models(cluster)
        cluster.kubectl("apply", "-f", str(cluster.write(endpoint())))
        eventually(lambda: cluster.get("deployment"), "the operator's Deployment")
        yield cluster
    finally:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_a_class_ebbtide_endpoint_gets_no_hpa_and_rests_at_zero(cluster: Cluster) -> None:
    eventually(lambda: cluster.replicas() == 0, "the Deployment at 0 replicas", seconds=60)
    assert cluster.get(cluster.hpa) is None
    labels = cluster.get("deployment")["metadata"]["labels"]
    assert labels["ebbtide.dev/autoscaler"] == "ebbtide"


def test_requests_at_zero_wake_the_operator_and_all_answer(cluster: Cluster) -> None:
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
    cluster: Cluster,
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
