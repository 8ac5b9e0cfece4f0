"""The test node does what a kubelet does, checked on the test cluster with real pods:
images map to programs (others refused), env from the downward API, private volume mounts,
exec probes, restarts with backoff, preStop then SIGTERM then SIGKILL at the grace period.

Only on the test cluster (the test node is what is under test); with EBBTIDE_E2E_KUBECONFIG
these are reported skipped, as they test no part of ebbtide.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube.conftest import KubeTarget

pytestmark = [pytest.mark.cluster, pytest.mark.integration]
NAMESPACE = "testbed-node"
IMAGE = "ebbtide:test"


class Node:
    def __init__(self, kubeconfig: Path, shared: Path) -> None:
        self.kubeconfig, self.shared = kubeconfig, shared

    def kubectl(self, *arguments: str, stdin: str | None = None) -> str:
        completed = subprocess.run(
            ["kubectl", *arguments],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        return completed.stdout

    def run(self, name: str, containers: list[dict[str, Any]], **spec: Any) -> None:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "containers": containers,
                "volumes": [{"name": "shared", "hostPath": {"path": str(self.shared)}}],
                **spec,
            },
        }
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pod))

    def pod(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.kubectl("get", "pod", name, "-o", "json"))
        return found

    def status(self, name: str) -> dict[str, Any]:
        statuses: list[dict[str, Any]] = self.pod(name)["status"].get("containerStatuses", [])
        return statuses[0] if statuses else {}


def eventually(check: Callable[[], Any], what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")
        time.sleep(0.5)


def shell(name: str, script: str, **container: Any) -> dict[str, Any]:
    mount = {"name": "shared", "mountPath": "/shared"}
    return {
        "name": name,
        "image": IMAGE,
        "command": ["sh", "-c", script],
        "volumeMounts": [mount],
        **container,
    }


@pytest.fixture(scope="module")
def node(kube_target: KubeTarget, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    if not kube_target.test_node:
        pytest.skip("tests the test node itself; the cluster in EBBTIDE_E2E_KUBECONFIG has none")
    directory = tmp_path_factory.mktemp("test-node")
    shared = directory / "shared"
    shared.mkdir()
    node = Node(kube_target.with_namespace(NAMESPACE, directory), shared)
    node.kubectl("create", "namespace", NAMESPACE)
    eventually(
        lambda: "default" in node.kubectl("get", "serviceaccounts"),
        "the namespace's default service account",
    )
    yield node
    node.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def test_an_unknown_image_is_refused_with_a_reason(node: Node) -> None:
    node.run("busybox", [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "60"]}])
    waiting = eventually(
        lambda: node.status("busybox").get("state", {}).get("waiting", {}).get("message"),
        "a waiting reason",
    )
    assert node.status("busybox")["state"]["waiting"]["reason"] == "ImageNotMapped"
    assert "busybox:1.36" in waiting
    assert "ebbtide:*" in waiting
    node.kubectl("delete", "pod", "busybox", "--wait=false")


def test_env_downward_api_and_private_mounts(node: Node) -> None:
    script = (
        'echo "$POD_IP $POD_NAME $(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"'
        " > /shared/env && ls /cache > /shared/cache && sleep 60"
    )
    container = shell("main", script)
    container["env"] = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    container["volumeMounts"].append({"name": "cache", "mountPath": "/cache"})
    node.run(
        "env",
        [container],
        volumes=[
            {"name": "shared", "hostPath": {"path": str(node.shared)}},
            {"name": "cache", "emptyDir": {}},
        ],
    )
    written = eventually(lambda: (node.shared / "env").exists(), "the container's output")
    assert written
    pod_ip = node.pod("env")["status"]["podIP"]
    assert (node.shared / "env").read_text().split() == [pod_ip, "env", NAMESPACE]
    # /cache is the pod's own empty directory, not whatever the machine has there.
    assert (node.shared / "cache").read_text() == ""
    node.kubectl("delete", "pod", "env", "--grace-period=1")


def test_a_failing_container_is_restarted_with_backoff(node: Node) -> None:
    node.run("crash", [shell("main", "echo started >> /shared/crash; exit 3")])
    status = eventually(
        lambda: node.status("crash").get("restartCount", 0) >= 2 and node.status("crash"),
        "two restarts",
    )
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert (node.shared / "crash").read_text().count("started") >= 3
    node.kubectl("delete", "pod", "crash", "--grace-period=1")


def test_an_exec_readiness_probe_sets_the_ready_condition(node: Node) -> None:
    container = shell("main", "sleep 120")
    container["readinessProbe"] = {
        "exec": {"command": ["test", "-e", "/shared/ready"]},
        "periodSeconds": 1,
    }
    node.run("probed", [container])
    eventually(lambda: node.status("probed").get("state", {}).get("running"), "running")
    time.sleep(3)
    assert node.status("probed")["ready"] is False
    (node.shared / "ready").touch()
    eventually(lambda: node.status("probed").get("ready"), "ready after the file appears")
    conditions = {c["type"]: c["status"] for c in node.pod("probed")["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    assert conditions["ContainersReady"] == "True"
    node.kubectl("delete", "pod", "probed", "--grace-period=1")


def test_deletion_runs_prestop_then_sigterm_then_sigkill_at_the_grace_period(node: Node) -> None:
    # The container ignores SIGTERM: only SIGKILL at the end of the grace period ends it.
    container = shell(
        "main", "trap 'echo TERM >> /shared/stop' TERM; while true; do sleep 0.2; done"
    )
    container["lifecycle"] = {
        "preStop": {"exec": {"command": ["sh", "-c", "echo preStop >> /shared/stop"]}}
    }
    node.run("stubborn", [container], terminationGracePeriodSeconds=4)
    eventually(lambda: node.status("stubborn").get("state", {}).get("running"), "running")
    pid = int(node.status("stubborn")["containerID"].removeprefix("testbed://"))
    began = time.monotonic()
    node.kubectl("delete", "pod", "stubborn", "--wait=true", "--timeout=60s")
    took = time.monotonic() - began
    assert 3.5 < took < 20, took
    assert (node.shared / "stop").read_text().split() == ["preStop", "TERM"]
    assert not Path(f"/proc/{pid}").exists()
