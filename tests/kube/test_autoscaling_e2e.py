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
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ebbtide.kube.install import GATEWAY_APP, GATEWAY_DATA_PORT
from tests.kube.conftest import KubeTarget
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
        pods = self.kubectl(
            "get", "pods", "-n", OPERATOR_NAMESPACE, "-l",
            f"app.kubernetes.io/name={GATEWAY_APP}", "-o", "json",
        ).stdout  # fmt: skip
        for pod in json.loads(pods)["items"]:
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            if conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp"):
                return f"http://{pod['status']['podIP']}:{GATEWAY_DATA_PORT}"
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


class Load:
    """Threads sending inference requests through one gateway, counting every outcome."""

    def __init__(self, url: str, threads: int, pause: float = 0.0) -> None:
        rows, _ = digits(1)
        self.url, self.threads, self.pause = url, threads, pause
        self.body = json.dumps(infer_body(rows))
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.workers: list[threading.Thread] = []

    def __enter__(self) -> Load:
        self.workers = [
            threading.Thread(target=self._send, daemon=True) for _ in range(self.threads)
        ]
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for worker in self.workers:
            worker.join(90)

    def _send(self) -> None:
        with httpx.Client(timeout=90.0) as client:
            while not self.stopping.is_set():
                try:
                    response = client.post(
                        f"{self.url}/endpoints/{NAME}/v2/models/{MODEL}/infer",
                        content=self.body,
                        headers={"Content-Type": "application/json"},
                    )
                    outcome = "ok" if response.status_code == 200 else str(response.status_code)
                    detail = response.text[:200]
                except httpx.HTTPError as error:
                    outcome, detail = type(error).__name__, str(error)
                with self.lock:
                    self.outcomes[outcome] += 1
                    if outcome != "ok" and len(self.failures) < 10:
                        self.failures.append(f"{outcome}: {detail}")
                if self.pause:
                    self.stopping.wait(self.pause)


@pytest.fixture(scope="module")
def cluster(kube_target: KubeTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("autoscaling")
    kubeconfig = kube_target.with_namespace(NAMESPACE, directory)
    cluster = Cluster(kube_target, kubeconfig, directory, directory / "endpoint.yaml")
    cluster.kubectl("create", "namespace", NAMESPACE)
    try:
        install = subprocess.run(
            [sys.executable, "-m", "ebbtide", "kube", "install", "--apply"],
            capture_output=True, text=True, timeout=180, check=False,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        )  # fmt: skip
        assert install.returncode == 0, install.stdout + install.stderr
        for deployment in (GATEWAY_APP, "ebbtide-operator"):
            cluster.kubectl("-n", OPERATOR_NAMESPACE, "scale", f"deployment/{deployment}",
                            f"--replicas={2 if deployment == GATEWAY_APP else 1}")  # fmt: skip
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
    with Load(gateway, threads=4) as load:
        eventually(lambda: load.outcomes["ok"] >= 20, "20 answers after the wake", seconds=120)
    assert set(load.outcomes) == {"ok"}, (load.outcomes, load.failures)
    events = cluster.kubectl("get", "events", "--field-selector", f"involvedObject.name={NAME}",
                             "-o", "json").stdout  # fmt: skip
    reasons = [e["reason"] for e in json.loads(events)["items"]]
    assert "SuccessfulRescale" in reasons


def test_load_scales_it_up_and_idleness_back_to_zero_with_no_failed_request(
    cluster: Cluster,
) -> None:
    gateway = eventually(cluster.gateway, "a ready gateway pod")
    with Load(gateway, threads=6) as load:
        eventually(lambda: cluster.replicas() >= 2, "more replicas under load", seconds=60)
        eventually(
            lambda: (
                int((cluster.get("deployment").get("status") or {}).get("readyReplicas") or 0) >= 2
            ),
            "the added replica ready",
        )
        time.sleep(3)  # requests keep flowing across the added pod
    assert set(load.outcomes) == {"ok"}, (load.outcomes, load.failures)
    described = cluster.kubectl("describe", "inferenceendpoint", NAME).stdout
    assert "SuccessfulRescale" in described
    eventually(lambda: cluster.replicas() == 0, "back to zero once idle", seconds=90)
