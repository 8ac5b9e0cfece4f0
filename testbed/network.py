"""Pod networking on the test node: a network namespace per pod, on a bridge of the cluster's.

The apiserver refuses loopback addresses in Endpoints (`may not be in the loopback range
(127.0.0.0/8)`), so pods cannot simply share 127.0.0.0/8. Instead each pod is a host of its
own, as on a real node: a network namespace with `eth0` (one end of a veth pair whose other
end is on the cluster's bridge) holding the pod IP `10.244.N.M/24`. Nothing is routed off the
machine: the bridge has no uplink, and a pod has no default route (so a DNS lookup fails at
once instead of waiting for a server it cannot reach). The metrics server gets such a
namespace too.

Inside a pod's namespace 127.0.0.1 is the pod's own loopback; the node listens there on the
apiserver's port and relays each connection to the apiserver on the machine's loopback, so
in-cluster clients reach it at KUBERNETES_SERVICE_HOST=127.0.0.1 as usual.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
BUFFER = 65536


def ip(*arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(["ip", *arguments], capture_output=True, text=True, check=False)
    if check and completed.returncode != 0:
        raise RuntimeError(f"ip {' '.join(arguments)}: {completed.stderr.strip()}")
    return completed


def bridge_name(subnet: str) -> str:
    return f"ebt{subnet.rsplit('.', 1)[1]}"


def namespace_prefix(subnet: str) -> str:
    return f"ebt-{subnet.rsplit('.', 1)[1]}-"


def subnet_free(subnet: str) -> bool:
    links = ip("-o", "link", "show").stdout
    routes = ip("-o", "route", "show").stdout
    return f" {bridge_name(subnet)}:" not in links and f"{subnet}.0/24" not in routes


def create_bridge(subnet: str) -> None:
    name = bridge_name(subnet)
    ip("link", "add", name, "type", "bridge")
    ip("address", "add", f"{subnet}.1/24", "dev", name)
    ip("link", "set", name, "up")


def remove_network(subnet: str) -> None:
    """Every pod namespace of the cluster (and any process still in one), and its bridge."""
    prefix = namespace_prefix(subnet)
    if NETNS_DIR.exists():
        for entry in NETNS_DIR.iterdir():
            if entry.name.startswith(prefix):
                # A pod's process the node could not stop (the node itself killed, or a
                # restart racing its shutdown) would outlive the cluster: end it here.
                for pid in ip("netns", "pids", entry.name, check=False).stdout.split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                ip("netns", "delete", entry.name, check=False)
    ip("link", "delete", bridge_name(subnet), check=False)


class Sandbox:
    """One pod's network namespace: `eth0` with `address` on the cluster's bridge."""

    def __init__(self, subnet: str, last: int) -> None:
        self.subnet, self.last = subnet, last
        self.address = f"{subnet}.{last}"
        self.name = f"{namespace_prefix(subnet)}{last}"
        self.path = NETNS_DIR / self.name
        self.host_end = f"{bridge_name(subnet)}p{last}"

    @property
    def mac(self) -> str:
        """`eth0`'s MAC, derived from the address as the CNI bridge plugin derives it (0a:58 and
        the four bytes): addresses are reused as soon as a pod is gone, and with a fresh MAC
        every time, the other pods' neighbour entries for a reused address would point at the
        old pod for up to half a minute, so connections to the new one would time out."""
        return "0a:58:" + ":".join(f"{int(part):02x}" for part in self.address.split("."))

    def create(self) -> None:
        ip("netns", "add", self.name)
        try:
            ip("link", "add", self.host_end, "type", "veth", "peer", "name", "eth0",
               "address", self.mac, "netns", self.name)  # fmt: skip
            ip("link", "set", self.host_end, "master", bridge_name(self.subnet), "up")
            ip("-n", self.name, "address", "add", f"{self.address}/24", "dev", "eth0")
            ip("-n", self.name, "link", "set", "eth0", "up")
            ip("-n", self.name, "link", "set", "lo", "up")
        except RuntimeError:
            self.delete()
            raise

    def delete(self) -> None:
        ip("netns", "delete", self.name, check=False)
        ip("link", "delete", self.host_end, check=False)

    def enter_argv(self) -> list[str]:
        return ["nsenter", f"--net={self.path}", "--"]


def listen_in(namespace: Path, host: str, port: int) -> socket.socket:
    """A listening TCP socket made inside the network namespace at `namespace` (a socket keeps
    the namespace it was made in, whichever thread then uses it)."""
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def make() -> None:
        # setns changes only the calling thread's namespace: a thread of its own does it.
        libc = ctypes.CDLL(None, use_errno=True)
        with namespace.open() as target:
            if libc.setns(target.fileno(), CLONE_NEWNET) != 0:
                failed.append(OSError(ctypes.get_errno(), f"setns {namespace}"))
                return
        try:
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(64)
            made.append(listener)
        except OSError as error:
            failed.append(error)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


class Relay:
    """Accepts on `listener` and joins each connection to `target` on the machine's loopback."""

    def __init__(self, listener: socket.socket, target: tuple[str, int]) -> None:
        self.listener, self.target = listener, target
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="relay").start()

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            pair = _Pair(client, upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=pair.pump, args=(source, sink), daemon=True).start()


class _Pair:
    """Two joined sockets, closed when both directions have ended."""

    def __init__(self, first: socket.socket, second: socket.socket) -> None:
        self.sockets = (first, second)
        self.open_directions = 2
        self.lock = threading.Lock()

    def pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(BUFFER):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        with self.lock:
            self.open_directions -= 1
            done = self.open_directions == 0
        if done:
            for end in self.sockets:
                end.close()
