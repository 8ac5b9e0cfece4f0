"""ebbtide's own policy run by the operator, on a real API server (the project's 1.20.2
testbed control plane; the operator runs here as a process with the kubeconfig).

The traffic comes from a stand-in for the in-cluster gateway: a small real HTTP server in
this test serving the contract's `/ebbtide/v1/traffic` and `/ebbtide/v1/demand` JSON (a test
double; the real gateway serves the same documents). The seed keeps its HPA; a class-ebbtide
endpoint has none and its Deployment's replicas follow the stand-in's load.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from testbed.cluster import Cluster

from ebbtide.gateway.channel import EndpointReport
from ebbtide.kube.crd import CRD_NAME, crd_manifest
from ebbtide.kube.manifests import AUTOSCALER_LABEL
from tests.spec.cases import SEED

pytestmark = [pytest.mark.cluster, pytest.mark.integration, pytest.mark.timeout(600)]
NAMESPACE = "policy-e2e"
WAIT_SECONDS = 40.0


class StandInGateway:
    """A test double of the in-cluster gateway's admin port: serves the contract's JSON for
    reports the test sets. Not the gateway."""

    def __init__(self) -> None:
        self.reports: dict[str, EndpointReport] = {}
        self.operator_log: Path | None = None
        self.waiting: dict[str, int] = {}
        self.changed = threading.Condition()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path == "/ebbtide/v1/traffic":
                    body = gateway.traffic()
                elif url.path == "/ebbtide/v1/demand":
                    timeout = float(parse_qs(url.query).get("timeout", ["30"])[0])
                    body = gateway.demand(min(timeout, 30.0))
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def traffic(self) -> dict[str, Any]:
        with self.changed:
            reports = [r.to_wire() for r in self.reports.values()]
        return {"gateway": "stand-in", "started": 1.0, "endpoints": reports}

    def demand(self, timeout: float) -> dict[str, Any]:
        with self.changed:
            self.changed.wait_for(lambda: any(self.waiting.values()), timeout)
            waiting = [
                {"namespace": NAMESPACE, "endpoint": name, "queued": queued}
                for name, queued in self.waiting.items()
                if queued
            ]
        return {"waiting": waiting}

    def set(self, name: str, in_flight: int = 0, queued: int = 0) -> None:
        with self.changed:
            before = self.reports.get(name) or EndpointReport(NAMESPACE, name)
            arrivals = before.arrivals + in_flight + queued
            self.reports[name] = EndpointReport(
                NAMESPACE,
                name,
                in_flight=in_flight,
                queued=queued,
                arrivals=arrivals,
                concurrency_seconds=before.concurrency_seconds + in_flight,
            )
            self.waiting[name] = queued
            self.changed.notify_all()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def kubectl(*arguments: str, stdin: str | None = None, check: bool = True) -> str:
    completed = subprocess.run(
        ["kubectl", "-n", NAMESPACE, *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and completed.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(arguments)}: {completed.stderr}")
    return completed.stdout


def get(kind: str, name: str) -> dict[str, Any] | None:
    found = subprocess.run(
        ["kubectl", "-n", NAMESPACE, "get", kind, name, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(found.stdout) if found.returncode == 0 else None


def eventually(check: Callable[[], Any], what: str, seconds: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")


def replicas(name: str) -> int | None:
    text = kubectl("get", "deployment", name, "-o", "jsonpath={.spec.replicas}", check=False)
    return int(text) if text.strip() else None


class ReplicaWatch:
    """`kubectl get deployment NAME --watch`: each change of spec.replicas with the moment it
    arrived, without a kubectl start-up per poll in the measurement."""

    def __init__(self, name: str) -> None:
        self.changes: list[tuple[float, int]] = []
        self.process = subprocess.Popen(
            ["kubectl", "-n", NAMESPACE, "get", "deployment", name, "--watch", "-o",
             "jsonpath={.spec.replicas}{\"\\n\"}"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> ReplicaWatch:
        self.reader.start()
        deadline = time.monotonic() + WAIT_SECONDS
        while not self.changes and time.monotonic() < deadline:
            time.sleep(0.02)  # the watch's first line: it is listening
        return self

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                self.changes.append((time.monotonic(), int(line)))

    def until(self, wanted: Callable[[int], bool], seconds: float = 10.0) -> float:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for moment, count in list(self.changes):
                if wanted(count):
                    return moment
            time.sleep(0.01)
        raise AssertionError(f"no wanted replica count within {seconds:g}s: {self.changes}")


def ebbtide_endpoint(name: str, min_replicas: int = 1, **autoscaling: Any) -> dict[str, Any]:
    document = copy.deepcopy(SEED)
    document["metadata"] = {"name": name}
    spec = document["spec"]["autoscaling"]
    spec.pop("targetCPUUtilizationPercentage")
    spec.update(minReplicas=min_replicas, maxReplicas=5, **autoscaling)
    spec["metrics"] = [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "concurrency"},
                "target": {"type": "AverageValue", "averageValue": "2"},
            },
        }
    ]
    return document


def apply(document: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(document))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandInGateway]:
    own = Cluster(tmp_path_factory.mktemp("policy-control-plane"))
    own.start(with_node=False)
    stand_in = StandInGateway()
    log_path = Path(tmp_path_factory.mktemp("operator")) / "operator.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("KUBECONFIG", str(own.kubeconfig))
            subprocess.run(
                ["kubectl", "apply", "--server-side", "-f", "-"],
                input=yaml.safe_dump(crd_manifest(cel=False)),
                text=True,
                check=True,
                capture_output=True,
                timeout=60,
            )
            subprocess.run(["kubectl", "create", "namespace", NAMESPACE], check=True, timeout=60)
            subprocess.run(
                ["kubectl", "wait", "--for", "condition=established", "--timeout", "60s",
                 f"crd/{CRD_NAME}"],
                check=True, timeout=90,
            )  # fmt: skip
            command = [
                sys.executable, "-m", "ebbtide", "kube", "operator", "-n", NAMESPACE,
                "--gateway-url", stand_in.url,
            ]  # fmt: skip
            stand_in.operator_log = log_path
            with log_path.open("wb") as log:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            yield stand_in
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            print(log_path.read_text()[-4000:])
        stand_in.stop()
        own.stop()


def test_the_seed_still_gets_its_hpa(gateway: StandInGateway) -> None:
    apply(SEED)
    eventually(lambda: get("hpa", "my-model-endpoint"), "the seed's HPA")
    table = kubectl("get", "hpa", "my-model-endpoint")
    assert table.split()[:7] == [
        "NAME",
        "REFERENCE",
        "TARGETS",
        "MINPODS",
        "MAXPODS",
        "REPLICAS",
        "AGE",
    ]
    deployment = eventually(lambda: get("deployment", "my-model-endpoint"), "its Deployment")
    assert AUTOSCALER_LABEL not in deployment["metadata"]["labels"]


def test_a_class_ebbtide_endpoint_scales_up_within_a_second_of_load(
    gateway: StandInGateway,
) -> None:
    apply(ebbtide_endpoint("busy"))
    deployment = eventually(lambda: get("deployment", "busy"), "the Deployment")
    assert deployment["metadata"]["labels"][AUTOSCALER_LABEL] == "ebbtide"
    fields = json.loads(
        kubectl("get", "deployment", "busy", "-o", "json", "--show-managed-fields")
    )["metadata"]["managedFields"]
    applied = [f for f in fields if f["manager"] == "ebbtide-operator"]
    assert applied
    assert '"f:replicas"' not in json.dumps(applied)
    gateway.set("busy", in_flight=0)
    eventually(lambda: replicas("busy") == 1, "the Deployment at 1 replica")
    time.sleep(1.0)  # a few idle decisions first
    assert get("hpa", "busy") is None
    with ReplicaWatch("busy") as watch:
        started = time.monotonic()
        gateway.set("busy", in_flight=8)
        took = watch.until(lambda count: count > 1) - started
    print(f"load to raised replicas: {took:.2f} s")
    assert took <= 1.0
    described = eventually(
        lambda: "SuccessfulRescale" in (text := kubectl("describe", "ie", "busy")) and text,
        "the rescale event in kubectl describe",
    )
    print(described)
    assert "Explanation:" in described
    assert "concurrency" in described
    # A later apply of the same endpoint leaves the scaler's count alone.
    count = replicas("busy")
    apply(ebbtide_endpoint("busy"))
    time.sleep(1.0)
    assert (replicas("busy") or 0) >= (count or 0)


def test_demand_at_zero_scales_zero_to_one(gateway: StandInGateway) -> None:
    apply(ebbtide_endpoint("sleepy", min_replicas=0, scaleToZero={"idleSeconds": 1}))
    gateway.set("sleepy", in_flight=0)
    eventually(lambda: replicas("sleepy") == 0, "scale to zero when idle")
    with ReplicaWatch("sleepy") as watch:
        started = time.monotonic()
        gateway.set("sleepy", queued=1)
        took = watch.until(lambda count: count == 1) - started
    print(f"demand to 1 replica: {took:.2f} s")
    assert took <= 1.0
    gateway.set("sleepy", in_flight=0)


def test_switching_class_deletes_and_creates_the_hpa(gateway: StandInGateway) -> None:
    document = copy.deepcopy(SEED)
    document["spec"]["autoscaling"]["class"] = "ebbtide"
    apply(document)
    eventually(lambda: get("hpa", "my-model-endpoint") is None, "the HPA deleted")
    deployment = get("deployment", "my-model-endpoint")
    assert deployment is not None
    assert deployment["metadata"]["labels"][AUTOSCALER_LABEL] == "ebbtide"
    document["spec"]["autoscaling"]["class"] = "hpa"
    apply(document)
    eventually(lambda: get("hpa", "my-model-endpoint"), "the HPA back")


def test_a_steady_endpoint_is_not_rewritten_every_decision(gateway: StandInGateway) -> None:
    assert gateway.operator_log is not None

    def writes() -> int:
        assert gateway.operator_log is not None
        text = gateway.operator_log.read_text()
        return sum(1 for line in text.splitlines() if "PATCH" in line and "/busy/status" in line)

    gateway.set("busy", in_flight=3)
    # Settled: the pods it scaled to have started and its status stopped changing (no write
    # for 1.5 s, 6 decisions). An operator that wrote every decision never gets there.
    deadline, last, quiet_since = time.monotonic() + 60, writes(), time.monotonic()
    while time.monotonic() - quiet_since < 1.5:
        assert time.monotonic() < deadline, f"status still rewritten: {writes()} writes"
        time.sleep(0.25)
        if writes() != last:
            last, quiet_since = writes(), time.monotonic()
    before = writes()
    time.sleep(3.0)  # 12 decisions
    assert writes() - before <= 4
