"""The seed's Kubernetes walkthrough, end to end, with the real kubectl on a real cluster.

By default the cluster is the project's test cluster (Kubernetes 1.20.2 built from source,
and the test node that runs pods as local processes; see tests/kube/conftest.py); with
EBBTIDE_E2E_KUBECONFIG it is any cluster whose pod IPs this machine can reach and that can run
the `ebbtide` image. The tests run in file order and build on each other, as a user would:
install the operator in the cluster, put real models in the model claim, apply the seed file,
read the seed's four commands, send inference requests, load it until the real HPA scales it,
roll out a new version under load, kill the operator, apply each seed mistake, delete.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from testbed import apps

from tests.kube.conftest import KubeTarget
from tests.spec.cases import INVALID_CASES, SEED

pytestmark = [pytest.mark.cluster, pytest.mark.integration]
NAME = "my-model-endpoint"
NAMESPACE = "ebbtide-e2e"
OPERATOR_NAMESPACE = "ebbtide-system"
MODEL = "my-ml-model"
WAIT_SECONDS = 120.0
# The spec's own behavior shortens the HPA's scale-down window (default five minutes).
SCALE_DOWN_WINDOW_SECONDS = 15
LOAD_THREADS = 4
CREATED = "inferenceendpoint.mlops.example.com/my-model-endpoint created"


def seed(**spec_changes: Any) -> dict[str, Any]:
    """The seed endpoint, with the test's scale-down window and any spec changes."""
    document = json.loads(json.dumps(SEED))
    autoscaling = document["spec"]["autoscaling"]
    autoscaling["behavior"] = {
        "scaleDown": {"stabilizationWindowSeconds": SCALE_DOWN_WINDOW_SECONDS}
    }
    for path, value in spec_changes.items():
        *parents, leaf = path.split("__")
        node = document["spec"]
        for part in parents:
            node = node[part]
        node[leaf] = value
    return document


def eventually(check: Callable[[], Any], what: str, seconds: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")
        time.sleep(1)


@dataclass
class Walkthrough:
    """The state the walkthrough's steps share: where kubectl points, and the seed's files."""

    target: KubeTarget
    kubeconfig: Path
    directory: Path
    seed_file: Path
    hpa: str = "hpa"

    def __post_init__(self) -> None:
        # `kubectl get hpa` reads autoscaling/v1 (no behavior, no metrics list): name the
        # version the server serves for the full object.
        versions = self.kubectl("api-versions").stdout.split()
        version = "v2" if "autoscaling/v2" in versions else "v2beta2"
        self.hpa = f"horizontalpodautoscalers.{version}.autoscaling"

    def kubectl(
        self, *arguments: str, stdin: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return apps.kubectl(self.kubeconfig, *arguments, stdin=stdin, check=check, timeout=timeout)

    def get(self, kind: str, name: str = NAME, namespace: str = NAMESPACE) -> Any:
        completed = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        return json.loads(completed.stdout) if completed.returncode == 0 else None

    def items(self, kind: str, selector: str = f"app={NAME}") -> list[dict[str, Any]]:
        out = self.kubectl("get", kind, "-l", selector, "-o", "json").stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def write(self, document: dict[str, Any], file_name: str = "inference_endpoint.yaml") -> Path:
        path = self.directory / file_name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def ready_addresses(self) -> list[str]:
        endpoints = self.get("endpoints") or {}
        return [
            f"http://{address['ip']}:{port['port']}"
            for subset in endpoints.get("subsets") or []
            for address in subset.get("addresses") or []
            for port in subset.get("ports") or []
        ]

    def replicas(self) -> int:
        deployment = self.get("deployment") or {}
        count: int = deployment.get("spec", {}).get("replicas", 0)
        return count


def digits(rows: int) -> tuple[list[list[float]], list[int]]:
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    return features[:rows].tolist(), [int(label) for label in labels[:rows]]


def infer_body(rows: list[list[float]]) -> dict[str, Any]:
    flat = [value for row in rows for value in row]
    return {
        "inputs": [{"name": "input-0", "shape": [len(rows), 64], "datatype": "FP64", "data": flat}]
    }


class Load:
    """Inference requests from `threads` clients, each sent to a ready address of the
    Service's Endpoints as kube-proxy would (refreshed twice a second); counts outcomes."""

    def __init__(self, walk: Walkthrough, threads: int, pause: float = 0.0) -> None:
        self.walk, self.threads, self.pause = walk, threads, pause
        self.addresses: list[str] = walk.ready_addresses()
        self.outcomes: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.workers: list[threading.Thread] = []
        rows, _ = digits(1)
        self.body = json.dumps(infer_body(rows))

    def __enter__(self) -> Load:
        self.workers = [threading.Thread(target=self._refresh, daemon=True)]
        self.workers += [
            threading.Thread(target=self._send, args=(index,), daemon=True)
            for index in range(self.threads)
        ]
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for worker in self.workers:
            worker.join(30)

    def _refresh(self) -> None:
        while not self.stopping.wait(0.5):
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                found = self.walk.ready_addresses()
                if found:
                    self.addresses = found

    def _send(self, index: int) -> None:
        turn = index
        with httpx.Client(timeout=30.0) as client:
            while not self.stopping.is_set():
                addresses = self.addresses
                address = addresses[turn % len(addresses)]
                turn += 1
                try:
                    response = client.post(
                        f"{address}/v2/models/{MODEL}/infer",
                        content=self.body,
                        headers={"Content-Type": "application/json"},
                    )
                    outcome = "ok" if response.status_code == 200 else str(response.status_code)
                    version = response.json().get("model_version", "?") if outcome == "ok" else ""
                except httpx.HTTPError as error:
                    outcome, version = type(error).__name__, ""
                with self.lock:
                    self.outcomes[outcome] += 1
                    if version:
                        self.versions[version] += 1
                    if outcome != "ok" and len(self.failures) < 10:
                        self.failures.append(f"{address}: {outcome}")
                if self.pause:
                    self.stopping.wait(self.pause)


@pytest.fixture(scope="module")
def walk(
    kube_target: KubeTarget, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Walkthrough]:
    directory = tmp_path_factory.mktemp("walkthrough")
    kubeconfig = kube_target.with_namespace(NAMESPACE, directory)
    walk = Walkthrough(kube_target, kubeconfig, directory, directory / "inference_endpoint.yaml")
    walk.kubectl("create", "namespace", NAMESPACE)
    try:
        apps.install(kubeconfig)
        load_models(walk)
        yield walk
    finally:
        walk.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def load_models(walk: Walkthrough) -> None:
    """The model repository claim, filled by a Job in the ebbtide image: v1 the CPU-heavy
    sample (so load shows in CPU), v2 the fast one."""
    apps.load_models(walk.kubeconfig, (("heavy", f"{MODEL}:v1"), ("fast", f"{MODEL}:v2")))


def test_kubectl_apply_of_the_seed_file_prints_created(walk: Walkthrough) -> None:
    walk.write(SEED)
    applied = walk.kubectl("apply", "-f", str(walk.seed_file))
    assert applied.stdout.strip() == CREATED


def test_the_seed_pod_is_running(walk: Walkthrough) -> None:
    def running() -> str | None:
        out = walk.kubectl("get", "pods", "-l", f"app={NAME}").stdout
        rows = [line.split() for line in out.splitlines()[1:]]
        return out if any(row[1:3] == ["1/1", "Running"] for row in rows) else None

    out = eventually(running, "a 1/1 Running pod")
    assert out.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]


def test_inference_answers_with_the_models_prediction_at_the_pod_and_its_endpoints(
    walk: Walkthrough,
) -> None:
    rows, labels = digits(5)
    pod = walk.items("pods")[0]
    addresses = eventually(walk.ready_addresses, "the Service's ready endpoints")
    pod_address = f"http://{pod['status']['podIP']}:8080"
    assert addresses == [pod_address]
    for address in (pod_address, *addresses):
        response = httpx.post(
            f"{address}/v2/models/{MODEL}/infer", json=infer_body(rows), timeout=30
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model_name"] == MODEL
        assert answer["model_version"] == "v1"
        predicted = next(o for o in answer["outputs"] if o["name"] == "predict")["data"]
        assert predicted == labels


def test_kubectl_top_pods_shows_real_cpu_and_memory(walk: Walkthrough) -> None:
    def top() -> list[str] | None:
        completed = walk.kubectl("top", "pods", "-l", f"app={NAME}", check=False)
        lines = completed.stdout.splitlines()
        return lines if completed.returncode == 0 and len(lines) == 2 else None

    header, row = eventually(top, "pod metrics")
    assert header.split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    name, cpu, memory = row.split()
    assert name.startswith(f"{NAME}-")
    assert re.fullmatch(r"\d+m", cpu)
    # A model server with scikit-learn and a 100-tree forest loaded is well over 50 MiB.
    assert re.fullmatch(r"\d+Mi", memory), memory
    assert int(memory[:-2]) > 50, memory


def test_kubectl_get_hpa_shows_the_seeds_columns(walk: Walkthrough) -> None:
    def with_metrics() -> list[str] | None:
        lines = walk.kubectl("get", "hpa", NAME).stdout.splitlines()
        return lines if "<unknown>" not in lines[1] else None

    header, row = eventually(with_metrics, "the HPA to read CPU")
    assert header.split() == [
        "NAME",
        "REFERENCE",
        "TARGETS",
        "MINPODS",
        "MAXPODS",
        "REPLICAS",
        "AGE",
    ]
    match = re.match(
        r"^my-model-endpoint\s+Deployment/my-model-endpoint\s+(cpu: )?\d+%/60%\s+1\s+5\s+1\s", row
    )
    assert match, row


def test_kubectl_get_ie_and_describe_show_the_operators_status(walk: Walkthrough) -> None:
    def ready() -> list[str] | None:
        lines = walk.kubectl("get", "ie").stdout.splitlines()
        return lines if lines[1].split()[3:6] == ["1", "60", "1"] else None

    header, row = eventually(ready, "READY 1 in kubectl get ie")
    assert header.split() == ["NAME", "MIN", "MAX", "REPLICAS", "TARGET", "READY", "AGE"]
    assert row.split()[:6] == [NAME, "1", "5", "1", "60", "1"]
    described = walk.kubectl("describe", "ie", NAME).stdout
    assert re.search(r"Observed Generation:\s+1", described), described
    assert re.search(r"Message:\s+1 of 1 replicas ready", described), described
    assert re.search(r"Reason:\s+ReplicasReady", described), described
    assert "Type:                  Ready" in described or re.search(r"Type:\s+Ready", described)


@pytest.mark.timeout(420)
def test_the_real_hpa_scales_up_under_load_and_back_down(walk: Walkthrough) -> None:
    # The scale-down window comes from the spec's own behavior (set on the HPA by the operator).
    walk.write(seed())
    assert "configured" in walk.kubectl("apply", "-f", str(walk.seed_file)).stdout
    eventually(
        lambda: (
            (walk.get(walk.hpa) or {})
            .get("spec", {})
            .get("behavior", {})
            .get("scaleDown", {})
            .get("stabilizationWindowSeconds")
            == SCALE_DOWN_WINDOW_SECONDS
        ),
        "the HPA's scale-down window from the spec",
    )
    with Load(walk, LOAD_THREADS) as load:
        eventually(lambda: walk.replicas() >= 2, "the HPA to scale the Deployment up", 180)
        peak = walk.replicas()
        utilization = (walk.get(walk.hpa) or {}).get("status", {}).get("currentMetrics")
    assert load.outcomes["ok"] > 50, load.outcomes
    assert peak >= 2
    assert utilization, "the HPA scaled without reading CPU"
    eventually(lambda: walk.replicas() == 1, "the HPA to scale back down to 1", 180)
    eventually(
        lambda: walk.kubectl("get", "hpa", NAME).stdout.splitlines()[1].split()[5] == "1",
        "kubectl get hpa to show 1 replica",
    )


@pytest.mark.timeout(300)
def test_a_version_change_rolls_out_with_no_failed_request(walk: Walkthrough) -> None:
    eventually(lambda: len(walk.items("pods")) == 1, "one pod left after scaling down")
    with Load(walk, 2, pause=0.02) as load:
        time.sleep(2)
        walk.write(seed(model__version="v2"))
        assert "configured" in walk.kubectl("apply", "-f", str(walk.seed_file)).stdout
        walk.kubectl("rollout", "status", f"deployment/{NAME}", "--timeout=180s", timeout=200)

        def only_v2() -> bool:
            versions = [
                p["metadata"]["labels"].get("mlops.example.com/model-version")
                for p in walk.items("pods")
            ]
            return versions == ["v2"]

        eventually(only_v2, "the v1 pod to be gone", 180)
        time.sleep(2)
    assert set(load.outcomes) == {"ok"}, (load.outcomes, load.failures)
    assert load.versions["v1"] > 0, load.versions
    assert load.versions["v2"] > 0, load.versions


def operator_writes(walk: Walkthrough) -> list[tuple[str, Any, list[Any]]]:
    """Per child: its generation and when the operator's field manager last wrote it."""
    found = []
    for kind in ("deployment", "service", "hpa"):
        metadata = (walk.get(kind) or {}).get("metadata", {})
        times = [
            entry.get("time")
            for entry in metadata.get("managedFields", [])
            if entry.get("manager") == "ebbtide-operator"
        ]
        found.append((kind, metadata.get("generation"), times))
    return found


def operator_pod(walk: Walkthrough) -> dict[str, Any]:
    out = walk.kubectl(
        "-n", OPERATOR_NAMESPACE, "get", "pods", "-l", "app=ebbtide-operator", "-o", "json"
    ).stdout
    pods = [pod for pod in json.loads(out)["items"] if not pod["metadata"].get("deletionTimestamp")]
    assert len(pods) == 1, [pod["metadata"]["name"] for pod in pods]
    return pods[0]


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(
        condition["type"] == "Ready" and condition["status"] == "True"
        for condition in pod.get("status", {}).get("conditions", [])
    )


@pytest.mark.timeout(240)
def test_the_operator_killed_with_sigkill_converges_with_no_duplicate(walk: Walkthrough) -> None:
    before = operator_writes(walk)
    pod = operator_pod(walk)
    status = pod["status"]["containerStatuses"][0]
    restarts = status["restartCount"]
    if walk.target.test_node:
        # The test node runs the container as a process: SIGKILL it, the node restarts it.
        os.kill(int(status["containerID"].removeprefix("testbed://")), signal.SIGKILL)
    else:
        walk.kubectl(
            "-n",
            OPERATOR_NAMESPACE,
            "delete",
            "pod",
            pod["metadata"]["name"],
            "--grace-period=0",
            "--force",
        )

    def back() -> bool:
        again = operator_pod(walk)
        restarted = (
            again["metadata"]["uid"] != pod["metadata"]["uid"]
            or again["status"]["containerStatuses"][0]["restartCount"] > restarts
        )
        return restarted and pod_ready(again)

    eventually(back, "the operator to be restarted and ready")
    time.sleep(10)  # its startup pass over every endpoint
    assert operator_writes(walk) == before, "a restarted operator rewrote converged objects"
    for kind in ("deployments", "services", "hpa"):
        names = [item["metadata"]["name"] for item in walk.items(kind)]
        assert names == [NAME], (kind, names)
    walk.write(seed(model__version="v2", autoscaling__maxReplicas=6))
    walk.kubectl("apply", "-f", str(walk.seed_file))
    eventually(lambda: (walk.get(walk.hpa) or {})["spec"]["maxReplicas"] == 6, "maxReplicas 6")


@pytest.mark.parametrize(
    ("case", "document", "fragment", "structural"),
    [pytest.param(*case, id=case[0]) for case in INVALID_CASES],
)
def test_each_seed_mistake_is_refused_by_kubectl_apply(
    walk: Walkthrough, case: str, document: dict[str, Any], fragment: str, structural: bool
) -> None:
    before = walk.get("ie")
    assert before is not None
    path = walk.write(document, f"{case}.yaml")
    refused = walk.kubectl("apply", "-f", str(path), check=False)
    assert refused.returncode != 0, f"{case} was accepted: {refused.stdout}"
    if not structural and "denied the request" in refused.stderr:
        # Refused by the operator's webhook, in `ebbtide validate`'s words.
        assert fragment in refused.stderr, refused.stderr
    elif not structural:
        # The CRD's schema refused it before any webhook was asked: the API server (a quantity
        # pattern) or kubectl's validation against it (the seed's simplified field names).
        assert "is invalid" in refused.stderr or "error validating data" in refused.stderr, (
            refused.stderr
        )
    after = walk.get("ie")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]


@pytest.mark.timeout(240)
def test_kubectl_delete_removes_everything_the_operator_made(walk: Walkthrough) -> None:
    deleted = walk.kubectl("delete", "-f", str(walk.seed_file))
    assert (
        deleted.stdout.strip() == 'inferenceendpoint.mlops.example.com "my-model-endpoint" deleted'
    )

    def gone() -> bool:
        left = walk.kubectl("get", "deploy,svc,hpa,pods", "-l", f"app={NAME}")
        return left.stdout == "" and "No resources found" in left.stderr

    eventually(gone, "the Deployment, Service, HPA and pods to be garbage-collected", 180)
