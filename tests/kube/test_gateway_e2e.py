"""The in-cluster gateway, end to end, on a real cluster with the real kubectl.

`ebbtide kube install --apply` installs the gateway (two pods in ebbtide-system) beside the
operator. The test applies an endpoint, lets the operator render its Deployment and Service,
then stands in for the operator's policy loop (built separately): it stops the operator and
deletes the endpoint's HPA, so that only the test's own `kubectl scale` sets the replicas.
Requests go to a gateway pod's IP (the test node has no kube-proxy; on a real cluster clients
use the `ebbtide-gateway` Service), and its admin port is read as the operator would.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from testbed import apps

from ebbtide.kube.install import GATEWAY_ADMIN_PORT, GATEWAY_APP
from tests.kube.conftest import KubeTarget
from tests.kube.gateway_load import GatewayLoad
from tests.kube.test_cluster_e2e import (
    MODEL,
    OPERATOR_NAMESPACE,
    Walkthrough,
    digits,
    eventually,
    infer_body,
    load_models,
)
from tests.spec.cases import SEED

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(420)]
NAME = "gw-endpoint"
NAMESPACE = "ebbtide-gateway-e2e"


class Cluster(Walkthrough):
    def get(self, kind: str, name: str = NAME, namespace: str = NAMESPACE) -> Any:
        return super().get(kind, name, namespace)

    def scale(self, replicas: int) -> None:
        self.kubectl("scale", f"deployment/{NAME}", f"--replicas={replicas}")

    def gateways(self) -> list[str]:
        """The IPs of the ready gateway pods."""
        pods = self.kubectl(
            "get", "pods", "-n", OPERATOR_NAMESPACE, "-l",
            f"app.kubernetes.io/name={GATEWAY_APP}", "-o", "json",
        ).stdout  # fmt: skip
        found = []
        for pod in json.loads(pods)["items"]:
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            if conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp"):
                found.append(pod["status"]["podIP"])
        return sorted(found)


def report(gateway: str) -> dict[str, Any]:
    answer = httpx.get(f"http://{gateway}:{GATEWAY_ADMIN_PORT}/ebbtide/v1/traffic", timeout=5)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    mine = [e for e in data["endpoints"] if (e["namespace"], e["endpoint"]) == (NAMESPACE, NAME)]
    return {"gateway": data, "endpoint": mine[0] if mine else None}


def upstreams(gateway: str) -> int | None:
    endpoint = report(gateway)["endpoint"]
    return None if endpoint is None else int(endpoint["upstreams"])


def infer(client: httpx.Client, gateway: str, **headers: str) -> httpx.Response:
    rows, _ = digits(1)
    path = (
        f"/endpoints/{NAME}/v2/models/{MODEL}/infer" if not headers else f"/v2/models/{MODEL}/infer"
    )
    return client.post(f"http://{gateway}:8080{path}", json=infer_body(rows), headers=headers)


@pytest.fixture(scope="module")
def cluster(kube_target: KubeTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("gateway")
    kubeconfig = kube_target.with_namespace(NAMESPACE, directory)
    cluster = Cluster(kube_target, kubeconfig, directory, directory / "endpoint.yaml")
    cluster.kubectl("create", "namespace", NAMESPACE)
    try:
        apps.install(kubeconfig, wait_for=(GATEWAY_APP,))
        load_models(cluster)
        document = copy.deepcopy(SEED)
        document["metadata"]["name"] = NAME
        document["spec"]["model"]["version"] = "v2"
        document["spec"]["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"}}
        cluster.kubectl("apply", "-f", str(cluster.write(document)))
        eventually(lambda: cluster.get("deployment", NAME), "the operator's Deployment")
        eventually(lambda: cluster.get(cluster.hpa, NAME), "the operator's HPA")
        # Standing in for the operator's policy loop: no operator, no HPA, replicas by hand.
        cluster.kubectl("-n", OPERATOR_NAMESPACE, "scale", "deployment/ebbtide-operator",
                        "--replicas=0")  # fmt: skip
        eventually(
            lambda: (
                not cluster.kubectl(
                    "get",
                    "pods",
                    "-n",
                    OPERATOR_NAMESPACE,
                    "-l",
                    "app=ebbtide-operator",
                    "-o",
                    "name",
                ).stdout.strip()
            ),
            "the operator stopped",
        )
        cluster.kubectl("delete", cluster.hpa, NAME)
        yield cluster
    finally:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
        cluster.kubectl("-n", OPERATOR_NAMESPACE, "scale", "deployment/ebbtide-operator",
                        "--replicas=1", check=False)  # fmt: skip


def test_requests_through_the_gateway_answer_from_the_model_pods(cluster: Cluster) -> None:
    gateways = eventually(lambda: len(cluster.gateways()) == 2 and cluster.gateways(), "2 gateways")
    for gateway in gateways:
        eventually(lambda g=gateway: upstreams(g) == 1, f"gateway {gateway} routes to the pod")
    _, labels = digits(1)
    with httpx.Client(timeout=30) as client:
        for gateway in gateways:
            for headers in ({}, {"Host": f"{NAME}.{NAMESPACE}.example.com"}):
                answer = infer(client, gateway, **headers)
                assert answer.status_code == 200, answer.text
                assert answer.json()["model_version"] == "v2"
                predicted = next(o for o in answer.json()["outputs"] if o["name"] == "predict")
                assert predicted["data"] == labels
    for path, status in (
        ("/healthz", 200),
        ("/readyz", 200),
        ("/ebbtide/v1/demand?timeout=x", 400),
    ):
        answer = httpx.get(f"http://{gateways[0]}:{GATEWAY_ADMIN_PORT}{path}", timeout=5)
        assert answer.status_code == status, answer.text


def test_routes_follow_kubectl_scale(cluster: Cluster) -> None:
    gateway = cluster.gateways()[0]
    cluster.scale(3)
    eventually(lambda: upstreams(gateway) == 3, "three upstreams", seconds=120)
    cluster.scale(1)
    eventually(lambda: upstreams(gateway) == 1, "one upstream", seconds=120)


def test_a_pod_deleted_under_load_fails_no_request_and_counters_match(cluster: Cluster) -> None:
    gateway = cluster.gateways()[0]
    cluster.scale(2)
    eventually(lambda: upstreams(gateway) == 2, "two upstreams", seconds=120)
    before = report(gateway)["endpoint"]
    with GatewayLoad(f"http://{gateway}:8080/endpoints/{NAME}/v2/models/{MODEL}/infer") as load:
        time.sleep(2)
        victim = cluster.items("pods", f"app={NAME}")[0]["metadata"]["name"]
        cluster.kubectl("delete", "pod", victim, "--wait=true", timeout=120)
        eventually(lambda: upstreams(gateway) == 2, "a replacement pod in rotation", seconds=120)
        time.sleep(2)
    after = report(gateway)["endpoint"]
    assert set(load.outcomes) == {"200"}, load.outcomes
    sent = sum(load.outcomes.values())
    assert after["arrivals"] - before["arrivals"] == sent
    assert after["completions"] - before["completions"] == sent
    assert after["errors"] == before["errors"]


def test_a_request_at_zero_is_held_wakes_the_demand_poll_and_answers(cluster: Cluster) -> None:
    gateway = cluster.gateways()[0]
    cluster.scale(0)
    eventually(lambda: upstreams(gateway) == 0, "no upstream", seconds=120)
    answers: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(timeout=60) as client:
            answers.append(infer(client, gateway))

    held = threading.Thread(target=send, daemon=True)
    started = time.monotonic()
    held.start()
    poll = httpx.get(
        f"http://{gateway}:{GATEWAY_ADMIN_PORT}/ebbtide/v1/demand?timeout=20", timeout=30
    )
    assert poll.status_code == 200, poll.text
    waiting = poll.json()["waiting"]
    assert {"namespace": NAMESPACE, "endpoint": NAME, "queued": 1} in waiting
    assert time.monotonic() - started < 10, "the demand poll answered only at its timeout"
    cluster.scale(1)  # what the operator does when the demand poll answers
    held.join(60)
    assert answers, "the held request got no answer"
    assert answers[0].status_code == 200, answers[0].text
    rejected = report(gateway)["endpoint"]["rejected"]
    assert rejected == 0
