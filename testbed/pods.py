"""One pod on the test node: its containers as processes, their probes, restarts and ending.

A `PodWorker` thread owns one pod from the moment it is bound to the node until the node
deletes it from the apiserver after its containers stopped. It reports what happens in the
pod's status exactly where a kubelet does: phase, conditions, pod IP, containerStatuses
(state, lastState, ready, started, restartCount).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from testbed.containers import (
    ContainerError,
    Mount,
    container_command,
    container_env,
    namespace_argv,
)
from testbed.network import Sandbox

log = logging.getLogger("testbed.node")
TICK_SECONDS = 0.2
PROBE_DEFAULTS = {
    "periodSeconds": 10,
    "timeoutSeconds": 1,
    "failureThreshold": 3,
    "successThreshold": 1,
    "initialDelaySeconds": 0,
}
# A kubelet waits 10 s, doubling to 5 min; the test node's waits are shorter so tests stay short.
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
PRESTOP_EXTRA_SECONDS = 2.0
VOLUME_RETRY_SECONDS = 2.0
STAGE_ROOT = Path("/run/ebbtide-testbed")


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Api:
    """The few apiserver calls the node makes, over HTTPS with the admin token."""

    def __init__(self, server: str, token: str, ca_file: str) -> None:
        self.client = httpx.Client(
            base_url=server,
            headers={"Authorization": f"Bearer {token}"},
            verify=ssl.create_default_context(cafile=ca_file),
            timeout=15.0,
        )

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        **params: Any,
    ) -> httpx.Response:
        content = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type}
        return self.client.request(
            method, path, content=content, headers=headers, params=params or None
        )

    def get(self, path: str, **params: Any) -> dict[str, Any] | None:
        response = self.request("GET", path, **params)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    def merge_patch(self, path: str, body: Any) -> httpx.Response:
        return self.request("PATCH", path, body, "application/merge-patch+json")

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's or ConfigMap's data, decoded."""
        plural = "secrets" if kind == "secret" else "configmaps"
        found = self.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        if found is None:
            return None
        data = found.get("data") or {}
        if kind == "secret":
            return {key: base64.b64decode(value).decode() for key, value in data.items()}
        return {key: str(value) for key, value in data.items()}

    def lookup_bytes(self, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
        plural = "secrets" if kind == "secret" else "configmaps"
        found = self.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        if found is None:
            return None
        data = found.get("data") or {}
        if kind == "secret":
            return {key: base64.b64decode(value) for key, value in data.items()}
        decoded = {key: str(value).encode() for key, value in data.items()}
        for key, value in (found.get("binaryData") or {}).items():
            decoded[key] = base64.b64decode(value)
        return decoded


@dataclass
class ProbeState:
    spec: dict[str, Any]
    next_due: float = 0.0
    successes: int = 0
    failures: int = 0

    def setting(self, name: str) -> int:
        value: int = self.spec.get(name, PROBE_DEFAULTS[name])
        return value


@dataclass
class Container:
    spec: dict[str, Any]
    init: bool = False
    process: subprocess.Popen[bytes] | None = None
    started_at: str | None = None
    started_monotonic: float = 0.0
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    terminated: dict[str, Any] | None = None
    last_terminated: dict[str, Any] | None = None
    restart_at: float | None = None
    backoff: float = BACKOFF_FIRST_SECONDS
    killing: bool = False
    kill_reason: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    probes: dict[str, ProbeState] = field(default_factory=dict)

    @property
    def name(self) -> str:
        name: str = self.spec["name"]
        return name

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def status(self) -> dict[str, Any]:
        if self.running:
            state: dict[str, Any] = {"running": {"startedAt": self.started_at}}
        elif self.terminated is not None and self.restart_at is None:
            state = {"terminated": self.terminated}
        else:
            reason, message = self.waiting or ("ContainerCreating", "")
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if not self.init:
            status["started"] = self.started
        if self.process is not None:
            status["containerID"] = f"testbed://{self.process.pid}"
        return status


class PodWorker(threading.Thread):
    """Runs one pod until it is deleted; `update` hands it the pod's latest object."""

    def __init__(self, node: Any, pod: dict[str, Any]) -> None:
        super().__init__(name=f"pod-{pod['metadata']['name']}", daemon=True)
        self.node = node
        self.api: Api = node.api
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.namespace: str = pod["metadata"]["namespace"]
        self.pod_name: str = pod["metadata"]["name"]
        self.path = f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}"
        self.directory: Path = node.root / "pods" / f"{self.namespace}_{self.pod_name}_{self.uid}"
        self.lock = threading.RLock()
        self.gone = threading.Event()
        self.finished = threading.Event()
        self.node_stopping = False
        """Set by `shutdown`: no container starts (or restarts) after it."""
        self._start_lock = threading.Lock()
        self.pod_ip: str | None = None
        self.sandbox: Sandbox | None = None
        self.start_time = now_text()
        self.init_containers = [
            Container(spec, init=True) for spec in pod["spec"].get("initContainers", [])
        ]
        self.containers = [Container(spec) for spec in pod["spec"].get("containers", [])]
        self.mounts: dict[str, Mount] = {}
        self.conditions: dict[str, dict[str, Any]] = {}
        self.phase = "Pending"
        self.reported: str | None = None
        self.volume_error: ContainerError | None = None
        # Where each container's volume sources are bound before they go to their mountPaths.
        self.stage = STAGE_ROOT / self.uid

    # -- the outside's view ----------------------------------------------------------------

    def update(self, pod: dict[str, Any]) -> None:
        with self.lock:
            self.pod = pod

    def vanish(self) -> None:
        """The pod is no longer in the apiserver (force-deleted): stop without grace."""
        self.gone.set()

    def processes(self) -> list[tuple[str, int]]:
        with self.lock:
            return [
                (c.name, c.process.pid)
                for c in self.containers
                if c.process is not None and c.running
            ]

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod %s/%s failed", self.namespace, self.pod_name)
            self._kill_all()
        finally:
            if self.sandbox is not None:
                self.node.release_sandbox(self.sandbox)
            shutil.rmtree(self.stage, ignore_errors=True)
            self.finished.set()

    def _run(self) -> None:
        self.sandbox = self.node.allocate_sandbox()
        self.pod_ip = self.sandbox.address
        self.directory.mkdir(parents=True, exist_ok=True)
        self._try_volumes()
        self._report()
        init_done = not self.init_containers
        volumes_tried = time.monotonic()
        while True:
            if (
                self.volume_error is not None
                and time.monotonic() > volumes_tried + VOLUME_RETRY_SECONDS
            ):
                # As a kubelet does: a missing secret or unbound claim may appear later.
                self._try_volumes()
                volumes_tried = time.monotonic()
            if self.gone.is_set():
                self._kill_all()
                return
            if self.pod["metadata"].get("deletionTimestamp"):
                self._terminate()
                return
            if self.volume_error is None:
                if not init_done:
                    init_done = self._step_init()
                else:
                    self._step_containers()
            self._report()
            time.sleep(TICK_SECONDS)

    # -- volumes -------------------------------------------------------------------------

    def _try_volumes(self) -> None:
        try:
            self._prepare_volumes()
            self.volume_error = None
        except ContainerError as error:
            self.volume_error = error

    def _prepare_volumes(self) -> None:
        volumes = self.directory / "volumes"
        for volume in self.pod["spec"].get("volumes", []):
            name = volume["name"]
            if "emptyDir" in volume:
                source = volumes / name
                source.mkdir(parents=True, exist_ok=True)
            elif "hostPath" in volume:
                source = Path(volume["hostPath"]["path"])
                if volume["hostPath"].get("type") in ("DirectoryOrCreate", None, ""):
                    source.mkdir(parents=True, exist_ok=True)
                elif not source.exists():
                    raise ContainerError(
                        "CreateContainerConfigError", f"hostPath {source} does not exist"
                    )
            elif "persistentVolumeClaim" in volume:
                source = self._claim_directory(volume["persistentVolumeClaim"]["claimName"])
            elif "secret" in volume or "configMap" in volume:
                source = volumes / name
                kind = "secret" if "secret" in volume else "configmap"
                reference = volume.get("secret") or volume.get("configMap") or {}
                object_name = reference.get("secretName") or reference.get("name", "")
                data = self.api.lookup_bytes(kind, self.namespace, object_name)
                if data is None:
                    if not reference.get("optional"):
                        raise ContainerError(
                            "CreateContainerConfigError", f"{kind} {object_name!r} not found"
                        )
                    data = {}
                self._write_files(source, data, reference.get("items"))
            elif "projected" in volume:
                source = volumes / name
                self._write_files(source, self._projected(volume["projected"]), None)
            elif "downwardAPI" in volume:
                source = volumes / name
                self._write_files(source, self._downward(volume["downwardAPI"]["items"]), None)
            else:
                kinds = sorted(set(volume) - {"name"})
                raise ContainerError(
                    "CreateContainerConfigError",
                    f"volume {name!r}: the test node maps emptyDir, hostPath, "
                    f"persistentVolumeClaim, secret, configMap, projected and downwardAPI "
                    f"volumes, not {', '.join(kinds)}",
                )
            self.mounts[name] = Mount(source, "", False)

    def _claim_directory(self, claim: str) -> Path:
        found = self.api.get(f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims/{claim}")
        volume_name = (found or {}).get("spec", {}).get("volumeName")
        if not volume_name:
            raise ContainerError(
                "CreateContainerConfigError", f"persistentVolumeClaim {claim!r} is not bound"
            )
        volume = self.api.get(f"/api/v1/persistentvolumes/{volume_name}") or {}
        path = volume.get("spec", {}).get("hostPath", {}).get("path")
        if not path:
            raise ContainerError(
                "CreateContainerConfigError",
                f"persistentVolume {volume_name!r} is not a hostPath volume on this node",
            )
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def _projected(self, projected: dict[str, Any]) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for source in projected.get("sources", []):
            if "serviceAccountToken" in source:
                token = source["serviceAccountToken"]
                files[token["path"]] = self._token(token).encode()
            elif "secret" in source or "configMap" in source:
                kind = "secret" if "secret" in source else "configmap"
                reference = source.get("secret") or source.get("configMap") or {}
                data = self.api.lookup_bytes(kind, self.namespace, reference.get("name", ""))
                files.update(_select(data or {}, reference.get("items")))
            elif "downwardAPI" in source:
                files.update(self._downward(source["downwardAPI"].get("items", [])))
        return files

    def _token(self, request: dict[str, Any]) -> str:
        account = self.pod["spec"].get("serviceAccountName", "default")
        spec: dict[str, Any] = {"expirationSeconds": request.get("expirationSeconds", 3600)}
        if request.get("audience"):
            spec["audiences"] = [request["audience"]]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token"
        response = self.api.request("POST", path, body)
        response.raise_for_status()
        token: str = response.json()["status"]["token"]
        return token

    def _downward(self, items: list[dict[str, Any]]) -> dict[str, bytes]:
        from testbed.containers import field_value

        files = {}
        for item in items:
            if "fieldRef" in item:
                files[item["path"]] = field_value(
                    self._pod_with_ip(), item["fieldRef"]["fieldPath"]
                ).encode()
        return files

    def _write_files(
        self, directory: Path, data: dict[str, bytes], items: list[dict[str, Any]] | None
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for relative, content in _select(data, items).items():
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(0o644)

    def _container_mounts(self, container: Container) -> list[Mount]:
        mounts = []
        for mount in container.spec.get("volumeMounts", []):
            volume = self.mounts.get(mount["name"])
            if volume is None:
                raise ContainerError(
                    "CreateContainerConfigError", f"volumeMount {mount['name']!r} names no volume"
                )
            source = volume.source
            if mount.get("subPath"):
                source = source / mount["subPath"]
                if not source.exists():
                    source.mkdir(parents=True)
            mounts.append(Mount(source, mount["mountPath"], bool(mount.get("readOnly"))))
        return mounts

    # -- containers ----------------------------------------------------------------------

    def _pod_with_ip(self) -> dict[str, Any]:
        pod = dict(self.pod)
        pod["status"] = {**pod.get("status", {}), "podIP": self.pod_ip, "hostIP": self.node.host_ip}
        return pod

    def _start(self, container: Container) -> None:
        try:
            env = container_env(
                self._pod_with_ip(), container.spec, self.api.lookup, self.node.apiserver_port
            )
            argv = container_command(container.spec, env)
            mounts = self._container_mounts(container)
        except ContainerError as error:
            container.waiting = (error.reason, error.message)
            container.restart_at = time.monotonic() + container.backoff
            return
        assert self.sandbox is not None, "a pod's sandbox is made before its containers"
        logs = self.directory / "logs" / container.name
        logs.mkdir(parents=True, exist_ok=True)
        working_dir = container.spec.get("workingDir") or "/"
        with self._start_lock, (logs / f"{container.restart_count}.log").open("ab") as output:
            if self.node_stopping:
                return  # a restart racing the node's shutdown would outlive the node
            container.process = subprocess.Popen(
                [
                    *self.sandbox.enter_argv(),
                    *namespace_argv(mounts, self.stage / container.name, working_dir, argv),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        container.env = env
        container.started_at = now_text()
        container.started_monotonic = time.monotonic()
        container.waiting = None
        container.terminated = None
        container.restart_at = None
        container.ready = False
        container.started = False
        container.killing = False
        container.kill_reason = None
        container.probes = {
            kind: ProbeState(
                container.spec[key],
                next_due=container.started_monotonic
                + container.spec[key].get("initialDelaySeconds", 0),
            )
            for kind, key in (
                ("startup", "startupProbe"),
                ("readiness", "readinessProbe"),
                ("liveness", "livenessProbe"),
            )
            if key in container.spec
        }
        if "startup" not in container.probes:
            container.started = True
        log.info(
            "%s/%s: started %s as pid %d",
            self.namespace,
            self.pod_name,
            container.name,
            container.process.pid,
        )

    def _reap(self, container: Container) -> bool:
        """True when the container's process ended since the last look (now recorded)."""
        if container.process is None or container.terminated is not None:
            return False
        code = container.process.poll()
        if code is None:
            return False
        _kill_group(container.process.pid)
        reason = container.kill_reason or ("Completed" if code == 0 else "Error")
        terminated: dict[str, Any] = {
            "exitCode": code if code >= 0 else 128 - code,
            "reason": reason,
            "startedAt": container.started_at,
            "finishedAt": now_text(),
            "containerID": f"testbed://{container.process.pid}",
        }
        if code < 0:
            terminated["signal"] = -code
        container.terminated = terminated
        container.ready = False
        container.started = False
        return True

    def _restart_wanted(self, container: Container) -> bool:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        code: int = (container.terminated or {}).get("exitCode", 0)
        policy = str(policy)
        if container.init:
            return code != 0 and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    def _schedule_restart(self, container: Container) -> None:
        ran_for = time.monotonic() - container.started_monotonic
        if ran_for > 60:
            container.backoff = BACKOFF_FIRST_SECONDS
        container.last_terminated = container.terminated
        container.restart_at = time.monotonic() + container.backoff
        container.waiting = (
            "CrashLoopBackOff",
            f"back-off {container.backoff:g}s restarting "
            f"failed container={container.name} pod={self.pod_name}",
        )
        container.backoff = min(container.backoff * 2, BACKOFF_MAX_SECONDS)

    def _restart_if_due(self, container: Container) -> None:
        if container.restart_at is not None and time.monotonic() >= container.restart_at:
            if container.terminated is not None:
                container.restart_count += 1
            self._start(container)

    def _step_init(self) -> bool:
        """Run init containers one after another; True once all completed."""
        with self.lock:
            for container in self.init_containers:
                if container.terminated is not None and container.restart_at is None:
                    if container.terminated["exitCode"] == 0:
                        continue
                    return False
                if container.process is None and container.restart_at is None:
                    self._start(container)
                elif self._reap(container) and self._restart_wanted(container):
                    self._schedule_restart(container)
                self._restart_if_due(container)
                return False
            return True

    def _step_containers(self) -> None:
        with self.lock:
            for container in self.containers:
                if container.process is None and container.restart_at is None:
                    self._start(container)
                    continue
                if self._reap(container) and self._restart_wanted(container):
                    self._schedule_restart(container)
                self._restart_if_due(container)
        for container in self.containers:
            if container.running and not container.killing:
                self._probe(container)

    # -- probes --------------------------------------------------------------------------

    def _probe(self, container: Container) -> None:
        moment = time.monotonic()
        order = ["startup"] if not container.started else ["readiness", "liveness"]
        for kind in order:
            probe = container.probes.get(kind)
            if probe is None or moment < probe.next_due:
                continue
            probe.next_due = moment + probe.setting("periodSeconds")
            success = self._check(container, probe.spec, probe.setting("timeoutSeconds"))
            if success:
                probe.successes, probe.failures = probe.successes + 1, 0
            else:
                probe.successes, probe.failures = 0, probe.failures + 1
            passed = probe.successes >= probe.setting("successThreshold")
            failed = probe.failures >= probe.setting("failureThreshold")
            with self.lock:
                if kind == "startup" and passed:
                    container.started = True
                elif kind == "readiness":
                    if passed:
                        container.ready = True
                    elif failed:
                        container.ready = False
                if kind in ("startup", "liveness") and failed:
                    log.info(
                        "%s/%s: %s probe failed %d times, restarting %s",
                        self.namespace,
                        self.pod_name,
                        kind,
                        probe.failures,
                        container.name,
                    )
                    container.killing = True
                    container.kill_reason = "Error"
            if container.killing:
                threading.Thread(
                    target=self._stop_container, args=(container, None), daemon=True
                ).start()
                return
        if "readiness" not in container.probes and container.started:
            container.ready = True

    def _check(self, container: Container, spec: dict[str, Any], timeout: float) -> bool:
        host = self.pod_ip or "127.0.0.1"
        try:
            if "httpGet" in spec:
                action = spec["httpGet"]
                port = self._port(container, action["port"])
                scheme = action.get("scheme", "HTTP").lower()
                url = f"{scheme}://{action.get('host') or host}:{port}{action.get('path', '/')}"
                headers = {h["name"]: h["value"] for h in action.get("httpHeaders", [])}
                response = httpx.get(url, headers=headers, timeout=timeout, verify=False)
                return 200 <= response.status_code < 400
            if "tcpSocket" in spec:
                action = spec["tcpSocket"]
                port = self._port(container, action["port"])
                with socket.create_connection((action.get("host") or host, port), timeout):
                    return True
            if "exec" in spec:
                return self._exec(container, spec["exec"]["command"], timeout) == 0
        except (httpx.HTTPError, OSError, ssl.SSLError, subprocess.TimeoutExpired):
            return False
        return False

    def _port(self, container: Container, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for declared in container.spec.get("ports", []):
            if declared.get("name") == port:
                number: int = declared["containerPort"]
                return number
        raise OSError(f"no container port named {port!r}")

    def _exec(self, container: Container, command: list[str], timeout: float) -> int:
        """Run `command` inside the container's mount namespace, with its environment."""
        if container.process is None:
            return 1
        argv = [
            "nsenter",
            "--target",
            str(container.process.pid),
            "--mount",
            "--net",
            "--",
            *command,
        ]
        completed = subprocess.run(
            argv, env=container.env, capture_output=True, timeout=timeout, check=False
        )
        return completed.returncode

    # -- ending --------------------------------------------------------------------------

    def _grace_seconds(self) -> float:
        metadata = self.pod["metadata"]
        grace = metadata.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        return float(grace)

    def _stop_container(
        self, container: Container, grace: float | None, pre_stop_hook: bool = True
    ) -> None:
        """preStop, SIGTERM, and SIGKILL when the grace period runs out."""
        process = container.process
        if process is None or process.poll() is not None:
            return
        grace = self._grace_seconds() if grace is None else grace
        deadline = time.monotonic() + grace
        pre_stop = container.spec.get("lifecycle", {}).get("preStop")
        if pre_stop and pre_stop_hook and grace > 0:
            self._pre_stop(container, pre_stop, grace)
            # As a kubelet does, a preStop hook that took the whole grace gets 2 s more.
            deadline = max(deadline, time.monotonic() + PRESTOP_EXTRA_SECONDS)
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.info(
                "%s/%s: %s outlived its grace period, SIGKILL",
                self.namespace,
                self.pod_name,
                container.name,
            )
        _kill_group(process.pid)
        process.wait()

    def _pre_stop(self, container: Container, hook: dict[str, Any], grace: float) -> None:
        try:
            if "exec" in hook:
                self._exec(container, hook["exec"]["command"], grace)
            elif "httpGet" in hook:
                self._check(container, hook, grace)
        except (subprocess.TimeoutExpired, OSError):
            log.info(
                "%s/%s: preStop of %s did not finish", self.namespace, self.pod_name, container.name
            )

    def _terminate(self) -> None:
        log.info("%s/%s: deleting, grace %gs", self.namespace, self.pod_name, self._grace_seconds())
        with self.lock:
            for container in self.containers:
                container.killing = True
        stoppers = [
            threading.Thread(target=self._stop_container, args=(c, None), daemon=True)
            for c in [*self.init_containers, *self.containers]
        ]
        for stopper in stoppers:
            stopper.start()
        while any(stopper.is_alive() for stopper in stoppers):
            if self.gone.is_set():
                self._kill_all()
            with self.lock:
                for container in self.containers:
                    self._reap(container)
            self._report()
            time.sleep(TICK_SECONDS)
        with self.lock:
            for container in [*self.init_containers, *self.containers]:
                self._reap(container)
                container.restart_at = None
        self._report()
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        response = self.api.request("DELETE", self.path, body)
        if response.status_code not in (200, 202, 404, 409):
            log.warning("deleting %s: %s %s", self.path, response.status_code, response.text)

    def _kill_all(self) -> None:
        for container in [*self.init_containers, *self.containers]:
            if container.process is not None:
                _kill_group(container.process.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    container.process.wait(timeout=5)

    def shutdown(self, grace: float) -> None:
        """The node is stopping: end the containers within `grace` seconds, keep the pod."""
        with self._start_lock:  # a start under way finishes first, and is stopped below
            self.node_stopping = True
        stoppers = [
            threading.Thread(target=self._stop_container, args=(c, grace, False), daemon=True)
            for c in self.containers
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join(grace + 5)
        self._kill_all()

    # -- status --------------------------------------------------------------------------

    def _condition(self, kind: str, value: bool, reason: str | None = None) -> dict[str, Any]:
        status = "True" if value else "False"
        previous = self.conditions.get(kind)
        if previous is None or previous["status"] != status:
            previous = {
                "type": kind,
                "status": status,
                "lastProbeTime": None,
                "lastTransitionTime": now_text(),
            }
            if reason and not value:
                previous["reason"] = reason
            self.conditions[kind] = previous
        return previous

    def _report(self) -> None:
        with self.lock:
            status = self._status()
        text = json.dumps(status, sort_keys=True)
        if text == self.reported:
            return
        response = self.api.merge_patch(f"{self.path}/status", {"status": status})
        if response.status_code == 404:
            self.gone.set()
        elif response.status_code >= 400:
            log.warning("status of %s: %s %s", self.path, response.status_code, response.text)
        else:
            self.reported = text

    def _status(self) -> dict[str, Any]:
        containers = [c.status() for c in self.containers]
        init_statuses = [c.status() for c in self.init_containers]
        if self.volume_error is not None:
            for waiting in containers:
                waiting["state"] = {
                    "waiting": {
                        "reason": self.volume_error.reason,
                        "message": self.volume_error.message,
                    }
                }
        initialized = all(
            c.terminated is not None and c.terminated["exitCode"] == 0 for c in self.init_containers
        )
        all_ready = bool(self.containers) and all(c.ready for c in self.containers)
        deleting = bool(self.pod["metadata"].get("deletionTimestamp"))
        self.phase = self._phase(initialized)
        reason = None if all_ready else "ContainersNotReady"
        conditions = [
            self._condition("Initialized", initialized, "ContainersNotInitialized"),
            self._condition("Ready", all_ready and not deleting, reason),
            self._condition("ContainersReady", all_ready, reason),
            self._condition("PodScheduled", True),
        ]
        status: dict[str, Any] = {
            "phase": self.phase,
            "conditions": conditions,
            "hostIP": self.node.host_ip,
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "containerStatuses": containers,
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        return status

    def _phase(self, initialized: bool) -> str:
        if not initialized:
            failed = any(
                c.terminated is not None and c.terminated["exitCode"] != 0 and c.restart_at is None
                for c in self.init_containers
            )
            return "Failed" if failed else "Pending"
        if any(c.running or c.restart_at is not None for c in self.containers):
            return "Running"
        if self.containers and all(c.terminated is not None for c in self.containers):
            codes = [c.terminated["exitCode"] for c in self.containers if c.terminated]
            return "Succeeded" if all(code == 0 for code in codes) else "Failed"
        return "Pending"


def _select(data: dict[str, bytes], items: list[dict[str, Any]] | None) -> dict[str, bytes]:
    if not items:
        return dict(data)
    return {item["path"]: data[item["key"]] for item in items if item["key"] in data}


def _kill_group(pid: int) -> None:
    """SIGKILL what is left of a container: its process group (every program it started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
