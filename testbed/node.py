"""The test node: a Node in the apiserver whose pods run as local processes.

`python -m testbed.node --state-dir DIR` registers the Node, keeps its status fresh, runs
every pod the scheduler binds to it (one `PodWorker` each, on a pod IP of its own from
127.0.0.0/8), provisions a directory for every pending PersistentVolumeClaim (a hostPath
PersistentVolume the controller-manager then binds), and serves `metrics.k8s.io` from the
processes' real CPU and memory. SIGTERM stops every container it started, then the node.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import psutil

from testbed.cluster import (
    NODE_NAME,
    VERSION,
    ClusterState,
    alive,
)
from testbed.metrics import MetricsServer, Sampler
from testbed.network import Relay, Sandbox, listen_in
from testbed.pods import Api, PodWorker, now_text

log = logging.getLogger("testbed.node")
HEARTBEAT_SECONDS = 10.0
SYNC_SECONDS = 0.5
SHUTDOWN_GRACE_SECONDS = 5.0
METRICS_SERVICE = "test-node-metrics"
METRICS_NAMESPACE = "kube-system"
# What the node offers the scheduler. Pods are processes sharing the machine, so this is a
# ceiling on what may be scheduled, not a reservation: generous enough that the walkthrough's
# five replicas at 500m fit on a two-core machine.
CAPACITY = {"cpu": "16", "pods": "110", "ephemeral-storage": "100Gi"}


class Node:
    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.root = Path(state.state_dir) / "node"
        self.root.mkdir(parents=True, exist_ok=True)
        self.api = Api(state.server, state.token, state.ca_file)
        self.apiserver_port = state.apiserver_port
        self.subnet = state.pod_subnet
        # The node's own address: its end of the cluster's bridge.
        self.host_ip = f"{self.subnet}.1"
        self.metrics_sandbox = Sandbox(self.subnet, 2)
        self.workers: dict[str, PodWorker] = {}
        self.ips_lock = threading.Lock()
        self.ips_in_use: set[int] = set()
        self.relays: dict[int, Relay] = {}
        self.stopping = threading.Event()
        self.sampler = Sampler()
        self.metrics: MetricsServer | None = None

    # -- pod IPs -------------------------------------------------------------------------

    def allocate_sandbox(self) -> Sandbox:
        """A network namespace with a pod IP of its own, and the apiserver relayed into it."""
        with self.ips_lock:
            last = next((n for n in range(3, 255) if n not in self.ips_in_use), None)
            if last is None:
                raise RuntimeError(f"no free pod IP left in {self.subnet}.0/24")
            self.ips_in_use.add(last)
        sandbox = Sandbox(self.subnet, last)
        sandbox.delete()
        sandbox.create()
        listener = listen_in(sandbox.path, "127.0.0.1", self.apiserver_port)
        self.relays[last] = Relay(listener, ("127.0.0.1", self.apiserver_port))
        return sandbox

    def release_sandbox(self, sandbox: Sandbox) -> None:
        relay = self.relays.pop(sandbox.last, None)
        if relay is not None:
            relay.close()
        sandbox.delete()
        with self.ips_lock:
            self.ips_in_use.discard(sandbox.last)

    # -- registration and heartbeat --------------------------------------------------------

    def _node_status(self) -> dict[str, Any]:
        memory = psutil.virtual_memory().total
        capacity = {**CAPACITY, "memory": f"{memory // 1024}Ki"}
        moment = now_text()

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
            return {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": moment,
                "lastTransitionTime": self.started_at,
            }

        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "ok"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "ok"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "ok"),
                condition("Ready", "True", "KubeletReady", "test node: pods run as processes"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.host_ip},
                {"type": "Hostname", "address": socket.gethostname()},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": platform.release(),
                "osImage": "ebbtide test node",
                "containerRuntimeVersion": "testbed://processes",
                "kubeletVersion": VERSION,
                "kubeProxyVersion": VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def register(self) -> None:
        self.started_at = now_text()
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "labels": {
                    "kubernetes.io/hostname": NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "ebbtide-test-node",
                },
            },
        }
        response = self.api.request("POST", "/api/v1/nodes", body)
        if response.status_code not in (201, 409):
            response.raise_for_status()
        self.heartbeat()

    def heartbeat(self) -> None:
        response = self.api.merge_patch(
            f"/api/v1/nodes/{NODE_NAME}/status", {"status": self._node_status()}
        )
        response.raise_for_status()

    def register_metrics_api(self) -> None:
        """A selector-less Service with hand-written Endpoints at the metrics server, and the
        APIService that points the aggregator at it."""
        ns = METRICS_NAMESPACE
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": METRICS_SERVICE, "namespace": ns},
            "spec": {
                "ports": [{"name": "https", "port": 443, "targetPort": self.state.metrics_port}]
            },
        }
        endpoints = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": METRICS_SERVICE, "namespace": ns},
            "subsets": [
                {
                    "addresses": [{"ip": self.metrics_sandbox.address}],
                    "ports": [{"name": "https", "port": self.state.metrics_port}],
                }
            ],
        }
        ca = (Path(self.state.state_dir) / "pki" / "ca.crt").read_bytes()
        api_service = {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "service": {"namespace": ns, "name": METRICS_SERVICE, "port": 443},
                "caBundle": base64.b64encode(ca).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        }
        for path, body in (
            (f"/api/v1/namespaces/{ns}/services", service),
            (f"/api/v1/namespaces/{ns}/endpoints", endpoints),
            ("/apis/apiregistration.k8s.io/v1/apiservices", api_service),
        ):
            name = body["metadata"]["name"]  # type: ignore[index]
            self.api.request("DELETE", f"{path}/{name}")
            self.api.request("POST", path, body).raise_for_status()

    # -- loops ---------------------------------------------------------------------------

    def pod_processes(self) -> list[tuple[dict[str, Any], list[tuple[str, int]]]]:
        return [(worker.pod, worker.processes()) for worker in list(self.workers.values())]

    def sync_pods(self) -> None:
        listing = self.api.get("/api/v1/pods", fieldSelector=f"spec.nodeName={NODE_NAME}")
        pods = {pod["metadata"]["uid"]: pod for pod in (listing or {}).get("items", [])}
        for uid, pod in pods.items():
            worker = self.workers.get(uid)
            if worker is None:
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") and not pod[
                    "metadata"
                ].get("deletionTimestamp"):
                    continue
                worker = PodWorker(self, pod)
                self.workers[uid] = worker
                worker.start()
            else:
                worker.update(pod)
        for uid, worker in list(self.workers.items()):
            if uid not in pods:
                worker.vanish()
            if worker.finished.is_set():
                del self.workers[uid]

    def provision_claims(self) -> None:
        listing = self.api.get("/api/v1/persistentvolumeclaims") or {}
        for claim in listing.get("items", []):
            spec, metadata = claim["spec"], claim["metadata"]
            if spec.get("volumeName") or claim.get("status", {}).get("phase") != "Pending":
                continue
            directory = self.root / "claims" / metadata["namespace"] / metadata["name"]
            directory.mkdir(parents=True, exist_ok=True)
            storage = spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
            volume = {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {
                    "name": f"pvc-{metadata['uid']}",
                    "labels": {"type": "ebbtide-test-node"},
                },
                "spec": {
                    "capacity": {"storage": storage},
                    "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": spec.get("storageClassName") or "",
                    "hostPath": {"path": str(directory), "type": "DirectoryOrCreate"},
                    "claimRef": {
                        "namespace": metadata["namespace"],
                        "name": metadata["name"],
                        "uid": metadata["uid"],
                    },
                },
            }
            response = self.api.request("POST", "/api/v1/persistentvolumes", volume)
            if response.status_code == 201:
                log.info(
                    "claim %s/%s: volume at %s", metadata["namespace"], metadata["name"], directory
                )

    def _every(self, seconds: float, action: Any, name: str) -> None:
        def loop() -> None:
            while not self.stopping.is_set():
                try:
                    action()
                except (httpx.HTTPError, OSError):
                    log.exception("%s failed; retrying", name)
                self.stopping.wait(seconds)

        threading.Thread(target=loop, daemon=True, name=name).start()

    def _sample(self) -> None:
        containers = [
            (worker.uid, name, pid)
            for worker in list(self.workers.values())
            for name, pid in worker.processes()
        ]
        self.sampler.sample(containers)

    def _watch_owner(self) -> None:
        owner = self.state.owner
        if owner is not None and not alive(owner):
            log.warning(
                "the cluster's owner (pid %d) ended without stopping it: stopping", owner.pid
            )
            subprocess.Popen(
                [sys.executable, "-m", "testbed", "down", "--state-dir", self.state.state_dir],
                start_new_session=True,
                stdin=subprocess.DEVNULL,
            )
            self.stopping.set()

    def run(self) -> None:
        self.metrics_sandbox.delete()
        self.metrics_sandbox.create()
        listener = listen_in(self.metrics_sandbox.path, "0.0.0.0", self.state.metrics_port)
        self.metrics = MetricsServer(
            listener,
            Path(self.state.state_dir) / "pki",
            NODE_NAME,
            self.pod_processes,
            self.sampler,
        )
        self.metrics.serve()
        self.register()
        self.register_metrics_api()
        self._every(HEARTBEAT_SECONDS, self.heartbeat, "heartbeat")
        self._every(1.0, self._sample, "sampler")
        self._every(1.0, self.provision_claims, "claims")
        self._every(2.0, self._watch_owner, "owner")
        log.info("node %s ready; pod IPs from %s.0/24", NODE_NAME, self.subnet)
        while not self.stopping.is_set():
            try:
                self.sync_pods()
            except (httpx.HTTPError, OSError):
                log.exception("listing pods failed; retrying")
            self.stopping.wait(SYNC_SECONDS)
        self.shutdown()

    def shutdown(self) -> None:
        workers = list(self.workers.values())
        stoppers = [
            threading.Thread(target=worker.shutdown, args=(SHUTDOWN_GRACE_SECONDS,))
            for worker in workers
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        if self.metrics is not None:
            self.metrics.close()
        self.metrics_sandbox.delete()
        log.info("node stopped")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    state = ClusterState.load(arguments.state_dir)
    if state is None:
        raise SystemExit(f"no cluster.json in {arguments.state_dir}: start the cluster first")
    node = Node(state)
    signal.signal(signal.SIGTERM, lambda *_: node.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: node.stopping.set())
    node.run()
    os._exit(0)


if __name__ == "__main__":
    main()
