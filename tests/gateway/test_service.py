"""The gateway as a process of its own (`python -m ebbtide.gateway`) and its control channel,
spoken to over the real unix socket; and the control plane's side, `GatewayFleet`, adopting
and restarting real gateway processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.daemon.gateway_fleet import FleetSettings, GatewayFleet, _handshake
from ebbtide.gateway import Route, Upstream
from ebbtide.gateway.channel import RouteEntry
from ebbtide.store import SqliteStore
from tests.gateway.conftest import Replica

pytestmark = pytest.mark.integration


class Channel:
    """The control plane's end of a gateway's channel, read line by line."""

    def __init__(self, path: Path) -> None:
        self.connection, self.hello, fds = _handshake(path, timeout=5.0)
        self.listeners = [socket.socket(fileno=fd) for fd in fds]
        self.connection.setblocking(True)
        self.connection.settimeout(10.0)
        self._buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        self.connection.sendall(json.dumps(message).encode() + b"\n")

    def receive(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            chunk = self.connection.recv(65536)
            assert chunk, "the gateway closed the channel"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def until(self, event: str, **fields: Any) -> dict[str, Any]:
        for _ in range(1000):
            message = self.receive()
            if message.get("event") == event and all(
                message.get(k) == v for k, v in fields.items()
            ):
                return message
        raise AssertionError(f"no {event} {fields}")

    def close(self) -> None:
        self.connection.close()
        for listener in self.listeners:
            listener.close()


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    control = tmp_path / "gateway-0.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "ebbtide.gateway", "--control", str(control), "--port", "0"]
    )
    deadline = SYSTEM_CLOCK.now() + 20
    while not control.exists():
        assert process.poll() is None, "the gateway exited at start"
        assert SYSTEM_CLOCK.now() < deadline, "the gateway did not open its channel"
        SYSTEM_CLOCK.blocking_sleep(0.02)
    try:
        yield process, control
    finally:
        process.terminate()
        process.wait(timeout=20)


def route(upstreams: list[Upstream], hold: float | None = None) -> dict[str, Any]:
    entry = RouteEntry(Route("default", "iris", "iris", "v1", hold_timeout=hold), tuple(upstreams))
    return entry.to_wire()


def test_routes_in_traffic_out_and_serving_outlives_the_channel(
    gateway_process: tuple[subprocess.Popen[bytes], Path], fresh: list[Replica]
) -> None:
    process, control = gateway_process
    assert stat.S_IMODE(control.stat().st_mode) == 0o600  # only the owner may route traffic
    channel = Channel(control)
    hello = channel.hello
    assert (hello["pid"], hello["protocol"], hello["routes"]) == (process.pid, 1, [])
    [listener] = channel.listeners  # the gateway hands over its listening socket
    host, port = hello["address"]
    assert listener.getsockname()[1] == port

    channel.send({"op": "set", "seq": 1, "route": route([fresh[0].upstream])})
    channel.send({"op": "synced", "seq": 2})  # every route given: serve
    report = channel.until("traffic", applied=2)
    assert report["endpoints"][0]["upstreams"] == 1
    url = f"http://{host}:{port}/endpoints/iris/v2/models/iris/infer"
    assert httpx.post(url, json={}, timeout=10).status_code == 200
    counted = channel.until("traffic")["endpoints"][0]
    while counted["completions"] == 0:  # reports sent before the request was answered
        counted = channel.until("traffic")["endpoints"][0]
    assert counted["arrivals"] == 1
    assert counted["completions"] == 1

    channel.send({"op": "dance", "seq": 3})
    assert "unknown op 'dance'" in channel.until("error")["reason"]
    channel.close()  # the control plane is gone: the gateway serves the routes it had
    assert httpx.post(url, json={}, timeout=10).status_code == 200
    again = Channel(control)
    assert again.hello["routes"] == [route([fresh[0].upstream])]
    again.close()


def test_a_newer_control_plane_replaces_the_older_and_hears_of_demand_at_zero(
    gateway_process: tuple[subprocess.Popen[bytes], Path],
) -> None:
    _, control = gateway_process
    older = Channel(control)
    older.send({"op": "set", "seq": 1, "route": route([], hold=5.0)})
    older.send({"op": "synced", "seq": 2})
    older.until("traffic", applied=2)
    newer = Channel(control)
    while older.connection.recv(65536):  # reports already sent, then the end
        pass
    host, port = newer.hello["address"]

    async def held_request() -> int:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                f"http://{host}:{port}/endpoints/iris/v2/models/iris/infer"
            )
            return response.status_code

    async def scenario() -> int:
        waiting = asyncio.create_task(held_request())
        demand = await asyncio.to_thread(newer.until, "demand")
        assert (demand["namespace"], demand["endpoint"]) == ("default", "iris")
        newer.send({"op": "remove", "seq": 1, "namespace": "default", "endpoint": "iris"})
        return await waiting

    assert asyncio.run(scenario()) == 404  # removed while it waited
    older.close()
    newer.close()


def test_the_fleet_restarts_a_killed_gateway_on_the_same_socket_and_adopts_a_running_one(
    tmp_path: Path, fresh: list[Replica]
) -> None:
    store = SqliteStore(tmp_path / "state.db")

    async def scenario() -> None:
        fleet = GatewayFleet(tmp_path, store, FleetSettings(port=0), tmp_path)
        await fleet.start()
        host, port = fleet.address
        url = f"http://{host}:{port}/endpoints/iris/v2/models/iris/infer"
        fleet.publish(RouteEntry(Route("default", "iris", "iris", "v1"), (fresh[0].upstream,)))
        async with httpx.AsyncClient(timeout=10) as client:
            while (await client.post(url, json={})).status_code != 200:
                await asyncio.sleep(0.02)
            [first] = fleet.workers()
            os.kill(first.pid, signal.SIGKILL)
            began = SYSTEM_CLOCK.now()
            # A new connection made while no gateway runs waits in the socket's queue, which
            # the fleet holds, and is answered by the next gateway.
            async with httpx.AsyncClient(timeout=10) as newcomer:
                assert (await newcomer.post(url, json={})).status_code == 200
            assert SYSTEM_CLOCK.now() - began < 1.0
            [second] = fleet.workers()
            assert second != first
            assert second.alive()
            assert fleet.address == (host, port)
        await fleet.release()  # a hand-over: the worker runs on
        successor = GatewayFleet(tmp_path, store, FleetSettings(port=0), tmp_path)
        await successor.start()
        assert successor.adopted == 1
        assert successor.workers() == [second]
        assert successor.address == (host, port)
        assert successor.routes[("default", "iris")].upstreams == (fresh[0].upstream,)
        await successor.stop(grace=1.0)
        assert not second.alive()
        assert store.processes("gateway") == {}

    try:
        asyncio.run(scenario())
    finally:
        store.close()
