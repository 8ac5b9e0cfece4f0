"""End to end on a real cluster (the current KUBECONFIG context): CRD, operator, endpoint.

Skipped, with the reason, when no cluster is reachable. The model-server pods need not become
ready (the image may not be on the cluster): this checks the objects, the status, admission
and the operator's lifecycle, not inference.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ebbtide.kube.crd import CRD_NAME, crd_manifest
from tests.spec.cases import SEED, seed_with

pytestmark = [pytest.mark.cluster, pytest.mark.integration]
NAME = "my-model-endpoint"
WAIT_SECONDS = 40.0


def why_no_cluster() -> str | None:
    """None when a cluster answers; otherwise the reason to skip."""
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if not os.environ.get("KUBECONFIG") and not Path(kubeconfig).exists():
        return "no Kubernetes cluster: KUBECONFIG is unset and ~/.kube/config does not exist"
    if shutil.which("kubectl") is None:
        return "kubectl is not installed"
    probe = subprocess.run(
        ["kubectl", "version", "--request-timeout=5s", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if probe.returncode != 0 or "serverVersion" not in probe.stdout:
        detail = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"the cluster in {kubeconfig} is not reachable: {detail}"
    return None


def kubectl(*arguments: str, stdin: str | None = None, check: bool = True) -> str:
    completed = subprocess.run(
        ["kubectl", *arguments], input=stdin, capture_output=True, text=True, timeout=60
    )
    if check and completed.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(arguments)}: {completed.stderr}")
    return completed.stdout + (completed.stderr if not check else "")


def get(kind: str, namespace: str, name: str = NAME) -> dict[str, Any] | None:
    out = subprocess.run(
        ["kubectl", "get", kind, name, "-n", namespace, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(out.stdout) if out.returncode == 0 else None


def eventually(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {WAIT_SECONDS:g}s waiting for {what}")


class Operator:
    """`ebbtide kube operator` as its own process, watching one namespace."""

    def __init__(self, namespace: str, log: Path) -> None:
        self.namespace, self.log = namespace, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        code = "from ebbtide.cli.main import app; app()"
        command = [sys.executable, "-c", code, "kube", "operator", "-n", self.namespace]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


@pytest.fixture(scope="module")
def namespace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Operator]]:
    reason = why_no_cluster()
    if reason:
        pytest.skip(reason)
    name = f"ebbtide-e2e-{os.getpid()}"
    crd_existed = get("crd", "default", CRD_NAME) is not None
    kubectl("apply", "--server-side", "--field-manager=ebbtide-e2e", "-f", "-",
            stdin=yaml.safe_dump(crd_manifest()))  # fmt: skip
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=30s")
    kubectl("create", "namespace", name)
    operator = Operator(name, tmp_path_factory.mktemp("operator") / "operator.log")
    operator.start()
    try:
        yield name, operator
    finally:
        operator.stop()
        kubectl("delete", "namespace", name, "--wait=false", check=False)
        if not crd_existed:
            kubectl("delete", "crd", CRD_NAME, "--wait=false", check=False)


def apply_endpoint(namespace: str, document: dict[str, Any], check: bool = True) -> str:
    document = {**document, "metadata": {**document["metadata"], "namespace": namespace}}
    return kubectl("apply", "-f", "-", stdin=yaml.safe_dump(document), check=check)


def operator_writes(namespace: str) -> list[tuple[str, Any, Any]]:
    """Per child: its generation and when the operator's field manager last changed it
    (a no-op server-side apply changes neither; other controllers' status updates don't)."""
    found = []
    for kind in ("deployment", "service", "hpa"):
        metadata = (get(kind, namespace) or {}).get("metadata", {})
        times = [
            entry.get("time")
            for entry in metadata.get("managedFields", [])
            if entry.get("manager") == "ebbtide-operator"
        ]
        found.append((kind, metadata.get("generation"), times))
    return found


def test_endpoint_lifecycle_on_a_real_cluster(namespace: tuple[str, Operator]) -> None:
    ns, operator = namespace
    apply_endpoint(ns, SEED)
    hpa = eventually(lambda: get("hpa", ns), "the HorizontalPodAutoscaler")
    target = hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"], target) == (1, 5, 60)
    deployment = eventually(lambda: get("deployment", ns), "the Deployment")
    endpoint = get("inferenceendpoint", ns)
    assert endpoint is not None
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == endpoint["metadata"]["uid"]
    assert eventually(lambda: get("service", ns), "the Service")["spec"]["selector"] == {
        "app": NAME
    }
    eventually(
        lambda: (get("ie", ns) or {}).get("status", {}).get("observedGeneration") == 1,
        "status.observedGeneration 1",
    )
    header = kubectl("get", "ie", "-n", ns).splitlines()[0].split()
    assert header == ["NAME", "MIN", "MAX", "REPLICAS", "TARGET", "READY", "AGE"]

    apply_endpoint(ns, seed_with("spec.autoscaling.maxReplicas", 7))
    eventually(lambda: (get("hpa", ns) or {})["spec"]["maxReplicas"] == 7, "maxReplicas 7")

    refused = apply_endpoint(ns, seed_with("spec.autoscaling.minReplicas", 9), check=False)
    assert "greater than maxReplicas" in refused

    before = operator_writes(ns)
    operator.stop()
    operator.start()
    time.sleep(5)
    assert operator_writes(ns) == before, "a restarted operator rewrote converged objects"

    kubectl("delete", "ie", NAME, "-n", ns)
    eventually(lambda: get("deployment", ns) is None, "the Deployment to be deleted")
    eventually(lambda: get("hpa", ns) is None, "the HorizontalPodAutoscaler to be deleted")
