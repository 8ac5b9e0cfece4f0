"""The test cluster's control plane: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler as local processes on 127.0.0.1 free ports, plus the test node.

Everything lives in one state directory: certificates, etcd's data, each process's log, the
kubeconfig (`<state>/kubeconfig`) and `<state>/cluster.json`, which records every pid started
so that `stop` (from this or another process) ends exactly those processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from testbed import network, pki

VERSION = "v1.20.2"
REPOSITORY = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = Path(__file__).resolve().parent / "build-kubernetes.sh"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
NODE_NAME = "ebbtide-test-node"
START_SECONDS = 90.0
STOP_SECONDS = 20.0
# Short enough that a test sees the real HPA controller act within seconds.
HPA_SYNC_PERIOD = "5s"
# Kubernetes' own default (--horizontal-pod-autoscaler-sync-period), for benchmarks.
KUBERNETES_HPA_SYNC_PERIOD = "15s"


def default_state_dir() -> Path:
    """Where `make kube-cluster` keeps its cluster: inside the checkout, ignored by git."""
    return Path(os.environ.get("EBBTIDE_TESTBED_DIR", REPOSITORY / ".testbed"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def kubernetes_binaries() -> Path:
    """The directory holding the three control-plane binaries: built once, then cached."""
    completed = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{BUILD_SCRIPT} failed (exit {completed.returncode}); its messages are above"
        )
    return Path(completed.stdout.strip().splitlines()[-1]) / "bin"


@dataclass
class Started:
    """One process the cluster started: enough to tell it from a later process with its pid."""

    name: str
    pid: int
    create_time: float
    """Its start in clock ticks since boot (`start_ticks`)."""
    log: str


@dataclass
class ClusterState:
    state_dir: str
    apiserver_port: int
    etcd_port: int
    token: str
    kubeconfig: str
    ca_file: str
    metrics_port: int = 0
    pod_subnet: str = ""
    owner: Started | None = None
    """The process whose cluster this is, when it should not outlive it (a test session)."""
    processes: list[Started] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    def save(self) -> None:
        path = Path(self.state_dir) / "cluster.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> ClusterState | None:
        path = state_dir / "cluster.json"
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        data["processes"] = [Started(**entry) for entry in data.get("processes", [])]
        if data.get("owner"):
            data["owner"] = Started(**data["owner"])
        return cls(**data)


class Cluster:
    """Start and stop the test cluster kept in `state_dir`."""

    def __init__(
        self, state_dir: Path | None = None, hpa_sync_period: str = HPA_SYNC_PERIOD
    ) -> None:
        """`hpa_sync_period` is kube-controller-manager's HPA sync period (a Go duration):
        short for tests, `KUBERNETES_HPA_SYNC_PERIOD` to measure the HPA as clusters run it."""
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.hpa_sync_period = hpa_sync_period
        self.pki = self.state_dir / "pki"
        self.logs = self.state_dir / "logs"
        self.state: ClusterState | None = ClusterState.load(self.state_dir)
        # The processes this object started, kept so that they are reaped when stopped.
        self.children: list[subprocess.Popen[bytes]] = []

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def running(self) -> bool:
        return self.state is not None and all(_alive(process) for process in self.state.processes)

    def start(self, with_node: bool = True, owned: bool = False) -> ClusterState:
        """Start everything, or return the state of the cluster already running here. An
        `owned` cluster is stopped by its node when this process ends without stopping it."""
        if self.state is not None and self.running():
            return self.state
        self.stop()
        binaries = kubernetes_binaries()
        etcd = shutil.which("etcd")
        if etcd is None:
            raise RuntimeError("etcd is not installed: apt-get install etcd-server")
        for directory in (self.state_dir, self.pki, self.logs):
            directory.mkdir(parents=True, exist_ok=True)
        self._make_pki()
        state = ClusterState(
            state_dir=str(self.state_dir),
            apiserver_port=free_port(),
            etcd_port=free_port(),
            token=secrets.token_hex(16),
            kubeconfig=str(self.kubeconfig),
            ca_file=str(self.pki / "ca.crt"),
            pod_subnet=free_subnet(),
        )
        if owned:
            state.owner = Started("owner", os.getpid(), start_ticks(os.getpid()), "")
        self.state = state
        (self.pki / "tokens.csv").write_text(f'{state.token},admin,admin,"system:masters"\n')
        self._write_kubeconfig(state)
        try:
            self._start_etcd(etcd, state)
            self._start_apiserver(binaries / "kube-apiserver", state)
            self._wait_for_apiserver(state)
            self._start_controllers(binaries, state)
            if with_node:
                network.create_bridge(state.pod_subnet)
                self._start_node(state)
                self._wait_for_node(state)
        except BaseException:
            self.stop()
            raise
        return state

    def stop(self) -> None:
        """End every process this cluster started, by pid: SIGTERM, then SIGKILL."""
        if self.state is None:
            return
        # The node first (it stops its pods' processes), then the control plane all at once.
        nodes = [p for p in self.state.processes if p.name == "test-node"]
        others = [p for p in self.state.processes if p.name != "test-node"]
        _terminate(nodes)
        _terminate(others)
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        self.children = []
        self.state.processes = []
        self.state.save()
        if self.state.pod_subnet:
            network.remove_network(self.state.pod_subnet)
        shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)
        (self.state_dir / "cluster.json").unlink(missing_ok=True)
        self.state = None

    # -- pieces ------------------------------------------------------------------------

    def _make_pki(self) -> None:
        directory = self.pki
        if (directory / "metrics.crt").exists():
            return
        pki.make_ca(directory, "ca", "ebbtide-test-ca")
        pki.make_ca(directory, "front-proxy-ca", "ebbtide-test-front-proxy-ca")
        pki.make_signing_key(directory, "service-account")
        pki.make_certificate(
            directory,
            "apiserver",
            "ca",
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=("127.0.0.1", "10.0.0.1"),
        )
        pki.make_certificate(
            directory, "front-proxy-client", "front-proxy-ca", "front-proxy-client", client=True
        )
        pki.make_certificate(
            directory,
            "metrics",
            "ca",
            "test-node-metrics",
            dns_names=("test-node-metrics.kube-system.svc", "localhost"),
            ip_addresses=("127.0.0.1",),
        )

    def _write_kubeconfig(self, state: ClusterState) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "ebbtide-test",
                    "cluster": {"server": state.server, "certificate-authority": state.ca_file},
                }
            ],
            "users": [{"name": "admin", "user": {"token": state.token}}],
            "contexts": [
                {
                    "name": "ebbtide-test",
                    "context": {"cluster": "ebbtide-test", "user": "admin", "namespace": "default"},
                }
            ],
            "current-context": "ebbtide-test",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2) + "\n")
        self.kubeconfig.chmod(0o600)

    def _spawn(
        self,
        state: ClusterState,
        name: str,
        command: list[str],
        env: dict[str, str] | None = None,
    ) -> None:
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.state_dir,
                env=env,
            )
        self.children.append(process)
        started = Started(name, process.pid, start_ticks(process.pid), str(log_path))
        state.processes.append(started)
        state.save()

    def _start_etcd(self, etcd: str, state: ClusterState) -> None:
        client = f"http://127.0.0.1:{state.etcd_port}"
        peer = f"http://127.0.0.1:{free_port()}"
        metrics = f"http://127.0.0.1:{free_port()}"
        self._spawn(
            state,
            "etcd",
            [
                etcd,
                "--name",
                "testbed",
                "--data-dir",
                str(self.state_dir / "etcd"),
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"testbed={peer}",
                "--listen-metrics-urls",
                metrics,
            ],
        )

    def _start_apiserver(self, binary: Path, state: ClusterState) -> None:
        p = self.pki
        self._spawn(
            state,
            "kube-apiserver",
            [
                str(binary),
                f"--etcd-servers=http://127.0.0.1:{state.etcd_port}",
                "--bind-address=127.0.0.1",
                f"--secure-port={state.apiserver_port}",
                "--insecure-port=0",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={p}",
                f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                f"--token-auth-file={p / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={p / 'service-account.pub'}",
                f"--service-account-signing-key-file={p / 'service-account.key'}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                # No kube-proxy here: the apiserver reaches webhooks and aggregated APIs at their
                # Endpoints' addresses instead of a Service's cluster IP.
                "--enable-aggregator-routing=true",
                f"--requestheader-client-ca-file={p / 'front-proxy-ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={p / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={p / 'front-proxy-client.key'}",
            ],
        )

    def _start_controllers(self, binaries: Path, state: ClusterState) -> None:
        p = self.pki
        kubeconfig = f"--kubeconfig={self.kubeconfig}"
        self._spawn(
            state,
            "kube-controller-manager",
            [
                str(binaries / "kube-controller-manager"),
                kubeconfig,
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--port=0",
                f"--secure-port={free_port()}",
                # The token controller writes each service account's token secret with these.
                f"--service-account-private-key-file={p / 'service-account.key'}",
                f"--root-ca-file={p / 'ca.crt'}",
                f"--horizontal-pod-autoscaler-sync-period={self.hpa_sync_period}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            ],
        )
        self._spawn(
            state,
            "kube-scheduler",
            [
                str(binaries / "kube-scheduler"),
                kubeconfig,
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--port=0",
                f"--secure-port={free_port()}",
            ],
        )

    def _start_node(self, state: ClusterState) -> None:
        state.metrics_port = free_port()
        state.save()
        self._spawn(
            state,
            "test-node",
            [
                sys.executable,
                "-m",
                "testbed.node",
                "--state-dir",
                str(self.state_dir),
            ],
            env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        )

    def client(self, state: ClusterState) -> httpx.Client:
        return httpx.Client(
            base_url=state.server,
            headers={"Authorization": f"Bearer {state.token}"},
            verify=ssl.create_default_context(cafile=state.ca_file),
            timeout=10.0,
        )

    def _wait_for_apiserver(self, state: ClusterState) -> None:
        with self.client(state) as client:
            self._wait(
                state,
                "the apiserver's default namespace",
                lambda: _ok(client, "/api/v1/namespaces/default"),
            )

    def _wait_for_node(self, state: ClusterState) -> None:
        def node_ready() -> bool:
            response = client.get(f"/api/v1/nodes/{NODE_NAME}")
            if response.status_code != 200:
                return False
            node = response.json()
            taints = node.get("spec", {}).get("taints") or []
            ready = any(
                condition["type"] == "Ready" and condition["status"] == "True"
                for condition in node.get("status", {}).get("conditions", [])
            )
            return ready and not taints

        with self.client(state) as client:
            self._wait(state, f"node {NODE_NAME} ready without taints", node_ready)
            self._wait(
                state,
                "the metrics.k8s.io API",
                lambda: _ok(client, "/apis/metrics.k8s.io/v1beta1/nodes"),
            )

    def _wait(self, state: ClusterState, what: str, check: Any) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            for process in state.processes:
                if not _alive(process):
                    tail = Path(process.log).read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{process.name} exited while waiting for {what}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if check():
                    return
            time.sleep(0.25)
        raise RuntimeError(f"timed out after {START_SECONDS:g}s waiting for {what}")


def free_subnet() -> str:
    """A /24 for pod IPs (`10.244.N`) that no bridge or route of this machine uses yet."""
    for third in [*range(secrets.randbelow(200) + 10, 250), *range(10, 250)]:
        subnet = f"10.244.{third}"
        if network.subnet_free(subnet):
            return subnet
    raise RuntimeError("no free 10.244.N.0/24 for pod IPs on this machine")


def _ok(client: httpx.Client, path: str) -> bool:
    return client.get(path).status_code == 200


def alive(process: Started) -> bool:
    return _alive(process)


def start_ticks(pid: int) -> float:
    """When `pid` started, in clock ticks since boot (/proc/PID/stat field 22): unlike a wall
    clock time it does not move when the machine's clock is adjusted."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return float(fields[19])


def _alive(process: Started) -> bool:
    try:
        found = psutil.Process(process.pid)
        return start_ticks(process.pid) == process.create_time and found.status() != "zombie"
    except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
        return False


def _terminate(processes: list[Started]) -> None:
    """SIGTERM each, then SIGKILL whatever is left after `STOP_SECONDS`."""
    found = []
    for process in processes:
        if _alive(process):
            with contextlib.suppress(psutil.NoSuchProcess):
                running = psutil.Process(process.pid)
                running.send_signal(signal.SIGTERM)
                found.append(running)
    _, left = psutil.wait_procs(found, timeout=STOP_SECONDS)
    for running in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            running.kill()
    psutil.wait_procs(left, timeout=5)
