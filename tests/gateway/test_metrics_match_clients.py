"""The gateway's request counter against what its clients received, for a burst at zero."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path

import httpx
import pytest

from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.gateway import Gateway, GatewaySettings, Route, Upstream
from ebbtide.gateway.http1 import Parser, ResponseHead, Signal
from ebbtide.runtime import ModelRepository
from ebbtide.runtime.samples import ensure_sample
from tests.gateway.conftest import Replica, running_gateway
from tests.runtime.replicas import Replica as ModelServer

pytestmark = pytest.mark.integration

IRIS = Route("default", "iris", "my-ml-model", "v1")
PATH = "/endpoints/iris/v2/models/my-ml-model/infer"
INFER = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 64], "data": [0.0] * 64}]}
"""A request the fast sample (a digits classifier) answers, and the test app echoes."""
BURST = 20
HOLD = 120.0
"""Seconds a request may be held at zero: a model server's start on a busy machine, and more."""


async def one_shot_raw(host: str, port: int) -> int:
    """A client that sends one request, reads its whole answer and hangs up at once."""
    reader, writer = await asyncio.open_connection(host, port)
    body = json.dumps(INFER).encode()
    writer.write(
        b"POST %b HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (PATH.encode(), len(body), body)
    )
    parser = Parser(requests=False)
    parser.expect_response_to(b"POST")
    status = 0
    try:
        while True:
            event = parser.next_event()
            if event is Signal.NEED_DATA:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("the gateway closed before the end of the answer")
                parser.feed(data)
            elif isinstance(event, ResponseHead):
                status = event.status
            elif event is Signal.END:
                return status
    finally:
        writer.transport.abort()  # no goodbye: as abrupt as a client can be


async def one_shot_httpx(host: str, port: int) -> int:
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", trust_env=False) as client:
        answer = await client.post(PATH, json=INFER, timeout=HOLD)
        return answer.status_code


def counted(metrics: str) -> Counter[int]:
    pattern = (
        r'ebbtide_gateway_requests_total\{code="(\d+)",endpoint="iris",namespace="default"\} (\S+)'
    )
    return Counter({int(code): int(float(n)) for code, n in re.findall(pattern, metrics)})


async def leaver(host: str, port: int) -> int:
    """A client that sends a request and gives up on it while it is held."""
    _, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET %b HTTP/1.1\r\nHost: g\r\n\r\n" % PATH.encode())
    await SYSTEM_CLOCK.sleep(0.2)
    writer.transport.abort()
    return CLIENT_LEFT


CLIENT_LEFT = 499


async def settled(gateway: Gateway, count: int) -> None:
    deadline = SYSTEM_CLOCK.now() + 10
    while gateway.traffic("default", "iris").completions < count:
        assert SYSTEM_CLOCK.now() < deadline, f"{count} requests were not settled within 10 s"
        await SYSTEM_CLOCK.sleep(0.01)


def test_a_burst_at_zero_is_counted_as_its_clients_saw_it(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path / "models")
    ensure_sample("fast", repository, name="my-ml-model", version="v1")

    async def scenario() -> None:
        started: list[ModelServer] = []
        try:
            settings = GatewaySettings(hold_timeout=HOLD)
            async with running_gateway(settings) as (gateway, metrics_client):
                starting: list[asyncio.Task[None]] = []

                async def start_replica() -> None:
                    # the model server every replica runs, started when the first request waits
                    server = ModelServer(repository.root, "my-ml-model:v1", tmp_path).start()
                    started.append(server)
                    await asyncio.to_thread(server.wait_ready)
                    gateway.set_upstreams(IRIS, [Upstream("from-zero", server.address)])

                def on_demand(namespace: str, endpoint: str) -> None:
                    if not starting:  # as a controller does: scale 0 -> 1, once
                        starting.append(asyncio.get_running_loop().create_task(start_replica()))

                gateway.on_demand = on_demand
                gateway.set_upstreams(IRIS, [])
                host, port = gateway.address
                clients = [
                    one_shot_raw(host, port) if i % 2 else one_shot_httpx(host, port)
                    for i in range(BURST)
                ]
                received = Counter(await asyncio.gather(*clients))
                await asyncio.gather(*starting)
                assert received == Counter({200: BURST})
                await settled(gateway, BURST)
                metrics = (await metrics_client.get("/metrics")).text
                assert counted(metrics) == received
        finally:
            for replica in started:
                replica.stop()

    asyncio.run(asyncio.wait_for(scenario(), HOLD + 60))


def test_clients_that_give_up_while_held_are_499_and_only_they() -> None:
    leaving = 6

    async def scenario() -> None:
        started: list[Replica] = []
        try:
            async with running_gateway() as (gateway, metrics_client):
                starting: list[asyncio.Task[None]] = []

                async def start_replica() -> None:
                    replica = await asyncio.to_thread(Replica, "from-zero")
                    started.append(replica)
                    await settled(gateway, leaving)  # the leavers are gone before it is ready
                    gateway.set_upstreams(IRIS, [replica.upstream])

                def on_demand(namespace: str, endpoint: str) -> None:
                    if not starting:  # as a controller does: scale 0 -> 1, once
                        starting.append(asyncio.get_running_loop().create_task(start_replica()))

                gateway.on_demand = on_demand
                gateway.set_upstreams(IRIS, [])
                host, port = gateway.address
                clients = [
                    leaver(host, port) if i < leaving else one_shot_raw(host, port)
                    for i in range(BURST)
                ]
                received = Counter(await asyncio.gather(*clients))
                await asyncio.gather(*starting)
                assert received == Counter({200: BURST - leaving, CLIENT_LEFT: leaving})
                await settled(gateway, BURST)
                metrics = (await metrics_client.get("/metrics")).text
                assert counted(metrics) == received
        finally:
            for replica in started:
                replica.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
