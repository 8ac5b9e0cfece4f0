"""`metrics.k8s.io/v1beta1` from the test node's real processes, as metrics-server serves it.

A sampler reads each container's process tree with psutil once a second: CPU is the rate of
its CPU time over the last `WINDOW_SECONDS` (as metrics-server reports a rate over its scrape
window), memory its resident set. The API is served over TLS to the apiserver's aggregator,
which must present the front-proxy client certificate.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psutil

GROUP_VERSION = "metrics.k8s.io/v1beta1"
PREFIX = "/apis/metrics.k8s.io/v1beta1"
WINDOW_SECONDS = 10.0
SAMPLE_SECONDS = 1.0
SELECTOR_TERM = re.compile(
    r"^\s*(?P<key>[A-Za-z0-9_./-]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9_.-]*)"
    r"|\s+(?P<set_op>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def tree_usage(pid: int) -> tuple[float, int]:
    """CPU seconds and resident bytes of `pid` and every live descendant."""
    process = psutil.Process(pid)
    with process.oneshot():
        times = process.cpu_times()
        cpu = times.user + times.system + times.children_user + times.children_system
        memory = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            child_times = child.cpu_times()
            cpu += child_times.user + child_times.system
            memory += child.memory_info().rss
    return cpu, memory


class Sampler:
    """CPU-time history per (pod uid, container, pid), and the latest memory."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.history: dict[tuple[str, str, int], deque[tuple[float, float]]] = {}
        self.memory: dict[tuple[str, str, int], int] = {}
        self.node_history: deque[tuple[float, float]] = deque()

    def sample(self, containers: list[tuple[str, str, int]]) -> None:
        moment = time.monotonic()
        seen = set()
        for key in containers:
            try:
                cpu, memory = tree_usage(key[2])
            except psutil.NoSuchProcess:
                continue
            seen.add(key)
            with self.lock:
                history = self.history.setdefault(key, deque())
                history.append((moment, cpu))
                while history and history[0][0] < moment - WINDOW_SECONDS - SAMPLE_SECONDS:
                    history.popleft()
                self.memory[key] = memory
        times = psutil.cpu_times()
        with self.lock:
            for key in set(self.history) - seen:
                self.history.pop(key, None)
                self.memory.pop(key, None)
            self.node_history.append((moment, sum(times) - times.idle - times.iowait))
            while self.node_history and self.node_history[0][0] < moment - WINDOW_SECONDS - 1:
                self.node_history.popleft()

    def usage(self, key: tuple[str, str, int]) -> tuple[float, int, float] | None:
        """(cores, bytes, window seconds), or None until two samples exist."""
        with self.lock:
            history = self.history.get(key)
            if not history or len(history) < 2:
                return None
            (start, first), (end, last) = history[0], history[-1]
            return max(0.0, (last - first) / (end - start)), self.memory[key], end - start

    def node_usage(self) -> tuple[float, float] | None:
        with self.lock:
            if len(self.node_history) < 2:
                return None
            (start, first), (end, last) = self.node_history[0], self.node_history[-1]
            return max(0.0, (last - first) / (end - start)), end - start


def matches(selector: str, labels: dict[str, str]) -> bool:
    """Label-selector matching (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`)."""
    for term in _split_terms(selector):
        if term.startswith("!"):
            if term[1:].strip() in labels:
                return False
            continue
        match = SELECTOR_TERM.match(term)
        if match is None:
            raise ValueError(f"unparsable label selector term {term!r}")
        key = match.group("key")
        if match.group("op"):
            equal = labels.get(key) == match.group("value")
            if equal != (match.group("op") != "!="):
                return False
        elif match.group("set_op"):
            values = {value.strip() for value in match.group("values").split(",")}
            inside = labels.get(key) in values
            if inside != (match.group("set_op") == "in"):
                return False
        elif key not in labels:
            return False
    return True


def _split_terms(selector: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for character in selector:
        if character == "," and depth == 0:
            terms.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(character, 0)
        current += character
    if current.strip():
        terms.append(current)
    return [term.strip() for term in terms if term.strip()]


def quantity_cpu(cores: float) -> str:
    return f"{round(cores * 1e9)}n"


def quantity_memory(size: int) -> str:
    return f"{size // 1024}Ki"


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


ApiResourceList = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": GROUP_VERSION,
    "resources": [
        {
            "name": "nodes",
            "singularName": "",
            "namespaced": False,
            "kind": "NodeMetrics",
            "verbs": ["get", "list"],
        },
        {
            "name": "pods",
            "singularName": "",
            "namespaced": True,
            "kind": "PodMetrics",
            "verbs": ["get", "list"],
        },
    ],
}


class MetricsServer:
    """The HTTPS server; `pods()` gives [(pod object, [(container name, pid)])] on the node."""

    def __init__(
        self,
        listener: socket.socket,
        pki: Path,
        node_name: str,
        pods: Callable[[], list[tuple[dict[str, Any], list[tuple[str, int]]]]],
        sampler: Sampler,
    ) -> None:
        self.node_name, self.pods, self.sampler = node_name, pods, sampler
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki / "metrics.crt", pki / "metrics.key")
        # Only the apiserver's aggregator, with its front-proxy client certificate, gets in.
        context.load_verify_locations(pki / "front-proxy-ca.crt")
        context.verify_mode = ssl.CERT_REQUIRED
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code, body = server.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        # The listening socket was made in the metrics server's own network namespace.
        self.http = ThreadingHTTPServer(listener.getsockname(), Handler, bind_and_activate=False)
        self.http.socket.close()
        self.http.socket = context.wrap_socket(listener, server_side=True)
        self.http.daemon_threads = True

    def serve(self) -> None:
        threading.Thread(target=self.http.serve_forever, daemon=True, name="metrics").start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    def answer(self, raw_path: str) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        selector = (query.get("labelSelector") or [""])[0]
        path = parts.path.rstrip("/")
        if path == PREFIX:
            return 200, ApiResourceList
        if not path.startswith(PREFIX + "/"):
            return 404, _status(404, f"{path} is not served here")
        segments = path[len(PREFIX) + 1 :].split("/")
        try:
            if segments[0] == "nodes" and len(segments) <= 2:
                return self._nodes(segments[1] if len(segments) == 2 else None)
            namespace = None
            if segments[0] == "namespaces" and len(segments) >= 3:
                namespace, segments = segments[1], segments[2:]
            if segments[0] == "pods" and len(segments) <= 2:
                name = segments[1] if len(segments) == 2 else None
                return self._pods(namespace, name, selector)
        except ValueError as error:
            return 400, _status(400, str(error))
        return 404, _status(404, f"{path} is not served here")

    def _nodes(self, name: str | None) -> tuple[int, dict[str, Any]]:
        usage = self.sampler.node_usage()
        items: list[dict[str, Any]] = []
        if usage is not None:
            cores, window = usage
            memory = psutil.virtual_memory()
            items.append(
                {
                    "metadata": {"name": self.node_name},
                    "timestamp": timestamp(),
                    "window": f"{window:.0f}s",
                    "usage": {
                        "cpu": quantity_cpu(cores),
                        "memory": quantity_memory(memory.total - memory.available),
                    },
                }
            )
        if name is not None:
            found = [item for item in items if item["metadata"]["name"] == name]
            if not found:
                return 404, _status(404, f'nodemetrics.metrics.k8s.io "{name}" not found')
            return 200, {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION, **found[0]}
        return 200, {
            "kind": "NodeMetricsList",
            "apiVersion": GROUP_VERSION,
            "metadata": {},
            "items": items,
        }

    def _pods(
        self, namespace: str | None, name: str | None, selector: str
    ) -> tuple[int, dict[str, Any]]:
        items = []
        for pod, containers in self.pods():
            metadata = pod["metadata"]
            if namespace and metadata["namespace"] != namespace:
                continue
            if name and metadata["name"] != name:
                continue
            if selector and not matches(selector, metadata.get("labels") or {}):
                continue
            usages = []
            windows = []
            for container_name, pid in containers:
                usage = self.sampler.usage((metadata["uid"], container_name, pid))
                if usage is None:
                    continue
                cores, memory, window = usage
                windows.append(window)
                usages.append(
                    {
                        "name": container_name,
                        "usage": {"cpu": quantity_cpu(cores), "memory": quantity_memory(memory)},
                    }
                )
            if not usages:
                continue
            items.append(
                {
                    "metadata": {
                        "name": metadata["name"],
                        "namespace": metadata["namespace"],
                        "labels": metadata.get("labels") or {},
                        "creationTimestamp": metadata.get("creationTimestamp"),
                    },
                    "timestamp": timestamp(),
                    "window": f"{min(windows):.0f}s",
                    "containers": usages,
                }
            )
        if name is not None:
            if not items:
                return 404, _status(404, f'podmetrics.metrics.k8s.io "{name}" not found')
            return 200, {"kind": "PodMetrics", "apiVersion": GROUP_VERSION, **items[0]}
        return 200, {
            "kind": "PodMetricsList",
            "apiVersion": GROUP_VERSION,
            "metadata": {},
            "items": items,
        }


def _status(code: int, message: str) -> dict[str, Any]:
    reason = {400: "BadRequest", 404: "NotFound"}.get(code, "InternalError")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
