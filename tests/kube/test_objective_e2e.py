"""A latency objective through the operator, on a real cluster: the gateway as installed
measures every answer's latency, the operator reads those counts from its traffic report and
runs the same objective step as the local control plane.

The objective here is 1 ms at the p99, which no replica count meets through a gateway on a
shared machine: the operator must raise the endpoint to `maxReplicas`, say the objective
cannot be met there, and keep what it learned in `status.objective`, so that an operator
restarted under load starts from it (the limit never leaves the status) and no request fails
meanwhile.
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
from tests.kube.test_cluster_e2e import OPERATOR_NAMESPACE, eventually
from tests.spec.cases import SEED

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(420)]
NAME = "held-to-an-objective"
NAMESPACE = "ebbtide-objective-e2e"
MAX_REPLICAS = 2
OPERATOR = "app=ebbtide-operator"


class Cluster(EndpointCluster):
    def status(self) -> dict[str, Any]:
        return dict((self.get("inferenceendpoint") or {}).get("status") or {})

    def condition(self, type_: str) -> dict[str, Any]:
        for condition in self.status().get("conditions") or []:
            if condition.get("type") == type_:
                return dict(condition)
        return {}

    def operator_pods(self) -> list[dict[str, Any]]:
        out = self.kubectl("-n", OPERATOR_NAMESPACE, "get", "pods", "-l", OPERATOR, "-o", "json")
        return list(json.loads(out.stdout)["items"])


def endpoint() -> dict[str, Any]:
    document = copy.deepcopy(SEED)
    document["metadata"] = {"name": NAME}
    document["spec"]["model"]["version"] = "v2"  # the fast sample
    document["spec"]["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"}}
    autoscaling = document["spec"]["autoscaling"]
    autoscaling.pop("targetCPUUtilizationPercentage")
    autoscaling.update(
        minReplicas=1,
        maxReplicas=MAX_REPLICAS,
        objective={"percentile": 99, "latencyMilliseconds": 1},
        # A concurrency target that never asks for a second replica: the objective must.
        metrics=[
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "concurrency"},
                    "target": {"type": "AverageValue", "averageValue": "50"},
                },
            }
        ],
    )
    return document


@pytest.fixture(scope="module")
def cluster(kube_target: KubeTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("objective")
    with endpoint_applied(
        Cluster, kube_target, directory, endpoint(), NAMESPACE, gateways=1
    ) as cluster:
        eventually(lambda: cluster.replicas() == 1, "the operator's Deployment at 1 replica")
        yield cluster


def test_an_unmeetable_objective_goes_to_max_replicas_says_so_and_survives_an_operator_restart(
    cluster: Cluster,
) -> None:
    idle = eventually(lambda: cluster.condition("ObjectiveMet"), "the ObjectiveMet condition")
    assert (idle["status"], idle["reason"]) == ("Unknown", "ObjectiveNoData")
    gateway = eventually(cluster.gateway, "a ready gateway pod")
    with GatewayLoad(gateway, threads=4, pause=0, timeout=90) as load:
        eventually(lambda: cluster.replicas() == MAX_REPLICAS, "maxReplicas for the objective")
        unmeetable = eventually(
            lambda: (
                (found := cluster.condition("ObjectiveMet")).get("reason")
                == "ObjectiveUnmeetableAtMaxReplicas"
                and found
            ),
            "the objective said unmeetable at maxReplicas",
        )
        message = unmeetable.get("message", "")
        assert "over the objective 1 ms at maxReplicas (2)" in message, cluster.status()
        assert "raise maxReplicas or the objective" in message
        standing = eventually(
            lambda: (cluster.status().get("objective") or {}).get("learnedLimit"),
            "a learned limit in status.objective",
        )
        assert standing > 0
        assert cluster.status()["objective"]["observedMilliseconds"] > 1
        described = cluster.kubectl("describe", "inferenceendpoint", NAME).stdout
        assert "ObjectiveUnmeetableAtMaxReplicas" in described, described

        # The operator restarted under load: the new one starts from the status's limit, so
        # the field never leaves the status and the endpoint keeps its replicas.
        (old,) = cluster.operator_pods()
        cluster.kubectl("-n", OPERATOR_NAMESPACE, "delete", "pod", old["metadata"]["name"],
                        "--wait=false")  # fmt: skip
        seen: list[tuple[float | None, int]] = []

        def restarted() -> bool:
            objective = cluster.status().get("objective") or {}
            seen.append((objective.get("learnedLimit"), cluster.replicas()))
            pods = [
                p
                for p in cluster.operator_pods()
                if p["metadata"]["name"] != old["metadata"]["name"]
                and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p["status"].get("conditions", [])
                )
            ]
            return bool(pods)

        eventually(restarted, "a new operator pod ready", seconds=120)
        deadline = time.monotonic() + 10  # the new operator's first decisions
        while time.monotonic() < deadline:
            objective = cluster.status().get("objective") or {}
            seen.append((objective.get("learnedLimit"), cluster.replicas()))
            time.sleep(0.3)
        assert all(limit is not None and limit > 0 for limit, _ in seen), seen
        assert all(replicas == MAX_REPLICAS for _, replicas in seen), seen
        assert cluster.condition("ObjectiveMet")["reason"] == "ObjectiveUnmeetableAtMaxReplicas"
    assert set(load.outcomes) == {"200"}, (load.outcomes, load.failures)
