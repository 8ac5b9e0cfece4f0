"""Real replica processes and gateways on free ports, all stopped in teardown."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from ebbtide.core.clock import SYSTEM_CLOCK, Clock
from ebbtide.gateway import Gateway, GatewaySettings, Upstream

APP = Path(__file__).with_name("upstream_app.py")


class Replica:
    """One upstream_app.py process, listening on a socket bound here (no port race)."""

    def __init__(self, name: str, uds: Path | None = None) -> None:
        self.name = name
        self._socket: socket.socket | None = None
        command = [sys.executable, str(APP), "--name", name]
        if uds is None:
            self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind(("127.0.0.1", 0))
            self._socket.listen(128)
            self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
            command += ["--fd", str(self._socket.fileno())]
            pass_fds: tuple[int, ...] = (self._socket.fileno(),)
        else:
            self.address = f"unix:{uds}"
            command += ["--uds", str(uds)]
            pass_fds = ()
        self.process = subprocess.Popen(command, pass_fds=pass_fds)
        self._wait_ready(uds)

    @property
    def upstream(self) -> Upstream:
        return Upstream(self.name, self.address)

    def _client(self, uds: Path | None) -> httpx.Client:
        if uds is not None:
            return httpx.Client(transport=httpx.HTTPTransport(uds=str(uds)), trust_env=False)
        return httpx.Client(trust_env=False)

    def _wait_ready(self, uds: Path | None) -> None:
        base = "http://replica" if uds else f"http://{self.address}"
        with self._client(uds) as client:
            for _ in range(300):
                if uds is not None and not uds.exists():  # httpx leaks a socket on ENOENT
                    SYSTEM_CLOCK.blocking_sleep(0.02)
                    continue
                if self.process.poll() is not None:
                    raise RuntimeError(f"replica {self.name} exited with {self.process.returncode}")
                try:
                    if client.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                        self._base, self._uds = base, uds
                        return
                except httpx.TransportError:
                    pass
                SYSTEM_CLOCK.blocking_sleep(0.02)
        self.stop()
        raise RuntimeError(f"replica {self.name} did not become ready")

    def received(self) -> dict[str, int]:
        with self._client(self._uds) as client:
            counts: dict[str, int] = client.get(f"{self._base}/stats").json()["received"]
            return counts

    def reset(self) -> None:
        with self._client(self._uds) as client:
            client.delete(f"{self._base}/stats")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._socket is not None:
            self._socket.close()


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[Replica]]:
    """Two replicas shared by a test module; their counters are reset before each test."""
    started: list[Replica] = []
    try:
        started.append(Replica("replica-a"))
        started.append(Replica("replica-b"))
        yield started
    finally:
        for replica in started:
            replica.stop()


@pytest.fixture
def fresh(replicas: list[Replica]) -> list[Replica]:
    for replica in replicas:
        replica.reset()
    return replicas


def closed_port_address() -> str:
    """An address where nothing listens: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


@asynccontextmanager
async def running_gateway(
    settings: GatewaySettings | None = None, seed: int = 7, clock: Clock = SYSTEM_CLOCK
) -> AsyncIterator[tuple[Gateway, httpx.AsyncClient]]:
    """A started gateway on a free port and a client for it; both closed on exit."""
    gateway = Gateway(clock=clock, rng=random.Random(seed), settings=settings)
    await gateway.start("127.0.0.1", 0)
    host, port = gateway.address
    client = httpx.AsyncClient(base_url=f"http://{host}:{port}", trust_env=False, timeout=10)
    try:
        yield gateway, client
    finally:
        await client.aclose()
        await gateway.stop(grace=1.0)
