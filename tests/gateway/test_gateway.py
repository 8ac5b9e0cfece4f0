"""The gateway with real sockets in front of real replica processes."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from ebbtide.core.clock import SYSTEM_CLOCK
from ebbtide.core.errors import NotFoundError
from ebbtide.gateway import GatewaySettings, Route, Upstream
from ebbtide.gateway.http1 import Parser, ResponseHead, Signal
from tests.gateway.conftest import Replica, closed_port_address, running_gateway

pytestmark = pytest.mark.integration

T = TypeVar("T")
IRIS = Route("default", "iris", "iris-model", "v1")
DIGITS = Route("default", "digits", "digits-model", "v1")
INFER = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, 60))


@asynccontextmanager
async def black_hole() -> AsyncIterator[tuple[Upstream, list[bytes]]]:
    """A replica that reads a request and hangs up without answering."""
    received: list[bytes] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readuntil(b"\r\n\r\n")
        received.append(data)
        writer.transport.abort()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Upstream("black-hole", f"127.0.0.1:{port}"), received
    finally:
        server.close()
        await server.wait_closed()


def parse_responses(raw: bytes) -> list[tuple[int, bytes]]:
    parser = Parser(requests=False)
    parser.feed(raw)
    answers: list[tuple[int, bytes]] = []
    status, body = 0, b""
    while (event := parser.next_event()) is not Signal.NEED_DATA:
        if isinstance(event, ResponseHead):
            status, body = event.status, b""
        elif isinstance(event, bytes):
            body += event
        else:
            answers.append((status, body))
    return answers


def test_routing_modes(fresh: list[Replica]) -> None:
    a, b = fresh

    async def scenario() -> None:
        async with running_gateway() as (gateway, client):
            gateway.set_upstreams(IRIS, [a.upstream])
            gateway.set_upstreams(DIGITS, [b.upstream])

            by_path = await client.post("/endpoints/iris/echo/x?y=1", content=b"body")
            assert by_path.status_code == 200
            echoed = by_path.json()
            assert (echoed["replica"], echoed["path"], echoed["query"]) == (
                "replica-a",
                "/echo/x",
                "y=1",
            )
            assert echoed["body"] == "body"

            by_host = await client.get("/echo/h", headers={"Host": "digits.default.example.com"})
            assert by_host.json()["replica"] == "replica-b"
            exact_host = await client.get("/echo/h", headers={"Host": "iris"})
            assert exact_host.json()["replica"] == "replica-a"

            by_model = await client.post("/v2/models/digits-model/infer", json=INFER)
            assert by_model.json()["id"] == "replica-b"
            v1 = await client.post("/v1/models/iris-model:predict", json={"instances": [[1]]})
            assert v1.json()["replica"] == "replica-a"

            missing = await client.get("/endpoints/nope/v2/health/ready")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/json"
            assert missing.json() == {
                "error": "no endpoint named 'nope'; known endpoints: digits, iris"
            }

            gateway.set_upstreams(Route("default", "iris2", "iris-model", "v2"), [b.upstream])
            ambiguous = await client.post("/v2/models/iris-model/infer", json=INFER)
            assert ambiguous.status_code == 404
            assert "served by endpoints iris, iris2" in ambiguous.json()["error"]
            versioned = await client.post("/v2/models/iris-model/versions/v2/infer", json=INFER)
            assert versioned.json()["id"] == "replica-b"

    run(scenario())


def test_streams_status_codes_and_pipelining(fresh: list[Replica]) -> None:
    a, _ = fresh

    async def scenario() -> None:
        async with running_gateway() as (gateway, client):
            gateway.set_upstreams(IRIS, [a.upstream])
            streamed = await client.get("/endpoints/iris/stream?parts=4")
            assert streamed.text == "part 0;part 1;part 2;part 3;"
            assert streamed.headers["transfer-encoding"] == "chunked"
            teapot = await client.get("/endpoints/iris/status/418")
            assert (teapot.status_code, teapot.text) == (418, "teapot")
            head = await client.head("/endpoints/iris/echo/x")
            assert head.status_code == 200
            assert head.content == b""
            after_head = await client.get("/endpoints/iris/echo/y")
            assert after_head.json()["path"] == "/echo/y"

            host, port = gateway.address
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                b"GET /endpoints/iris/echo/1 HTTP/1.1\r\nHost: g\r\n\r\n"
                b"POST /endpoints/iris/echo/2 HTTP/1.1\r\nHost: g\r\nExpect: 100-continue\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                b"GET /endpoints/iris/echo/3 HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"
            )
            answer = await reader.read()  # until the gateway closes, after the third
            writer.close()
            answers = parse_responses(answer)
            assert [status for status, _ in answers] == [200, 200, 200]
            bodies = [json.loads(body) for _, body in answers]
            assert [(b["path"], b["body"]) for b in bodies] == [
                ("/echo/1", ""),
                ("/echo/2", "abc"),
                ("/echo/3", ""),
            ]

    run(scenario())


def test_an_upgrade_is_answered_as_a_plain_request_then_the_connection_closes(
    fresh: list[Replica],
) -> None:
    a, _ = fresh

    async def scenario() -> None:
        async with running_gateway() as (gateway, _client):
            gateway.set_upstreams(IRIS, [a.upstream])
            host, port = gateway.address
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                b"GET /endpoints/iris/echo/u HTTP/1.1\r\nHost: g\r\nConnection: upgrade\r\n"
                b"Upgrade: websocket\r\n\r\n\x81\x85not http"
            )
            answer = await reader.read()  # until the gateway closes
            writer.close()
            assert b"\r\nconnection: close\r\n\r\n" in answer
            [(status, body)] = parse_responses(answer)
            echoed = json.loads(body)
            assert (status, echoed["path"]) == (200, "/echo/u")
            assert "upgrade" not in echoed["headers"]

    run(scenario())


def test_malformed_and_oversized_requests_get_json_errors(fresh: list[Replica]) -> None:
    a, _ = fresh

    async def scenario() -> None:
        settings = GatewaySettings(max_request_bytes=1000)
        async with running_gateway(settings) as (gateway, client):
            gateway.set_upstreams(IRIS, [a.upstream])
            too_big = await client.post("/endpoints/iris/echo/x", content=b"x" * 1001)
            assert too_big.status_code == 413
            assert "limit of 1000 bytes" in too_big.json()["error"]
            host, port = gateway.address
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
            assert (
                b'{"error": "both Content-Length and Transfer-Encoding are set: '
                b'send one of them (RFC 9112 6.3)"}' in answer
            )

    run(scenario())


SMUGGLED = [
    b"POST /endpoints/iris/echo/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 4\r\n\r\n0\r\n\r\nGET /endpoints/iris/echo/smuggled HTTP/1.1\r\n\r\n",
    b"POST /endpoints/iris/echo/x HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n"
    b"GET /endpoints/iris/echo/smuggled HTTP/1.1\r\n\r\n",
    b"POST /endpoints/iris/echo/x HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n"
    b"0\r\n\r\nGET /endpoints/iris/echo/smuggled HTTP/1.1\r\n\r\n",
    b"POST /endpoints/iris/echo/x HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n"
    b"0\r\n\r\nGET /endpoints/iris/echo/smuggled HTTP/1.1\r\n\r\n",
    b"POST /endpoints/iris/echo/x HTTP/1.1\r\nX: a\r\n Transfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /endpoints/iris/echo/smuggled HTTP/1.1\r\n\r\n",
    b"POST /endpoints/iris/echo/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1;\n\r\nx\r\n0\r\n\r\nGET /endpoints/iris/echo/smuggled HTTP/1.1\r\n\r\n",
]


@pytest.mark.parametrize("raw", SMUGGLED)
def test_request_smuggling_shapes_get_400_and_never_reach_a_replica(
    fresh: list[Replica], raw: bytes
) -> None:
    a, _ = fresh

    async def scenario() -> None:
        async with running_gateway() as (gateway, _client):
            gateway.set_upstreams(IRIS, [a.upstream])
            host, port = gateway.address
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(raw)
            answer = await reader.read()
            writer.close()
            [(status, body)] = parse_responses(answer)
            assert status in (400, 501)
            assert json.loads(body)["error"]
            assert a.received() == {}
            assert gateway.traffic("default", "iris").arrivals == 0

    run(scenario())


def test_retry_on_connection_refused(fresh: list[Replica]) -> None:
    a, _ = fresh

    async def scenario() -> None:
        async with running_gateway() as (gateway, client):
            dead = Upstream("dead", closed_port_address())
            gateway.set_upstreams(IRIS, [dead, a.upstream])
            answers = [
                await client.post("/endpoints/iris/v2/models/iris-model/infer", json=INFER)
                for _ in range(20)
            ]
            assert [r.status_code for r in answers] == [200] * 20
            assert {r.json()["id"] for r in answers} == {"replica-a"}
            traffic = gateway.traffic("default", "iris")
            assert traffic.retries >= 1  # P2C drew the dead one at least once; then it cooled down
            assert traffic.errors == 0
            assert a.received()["infer"] == 20

    run(scenario())


def test_no_retry_once_a_replica_received_the_request(fresh: list[Replica]) -> None:
    a, _ = fresh

    async def scenario() -> None:
        async with black_hole() as (hole, swallowed), running_gateway() as (gateway, client):
            gateway.set_upstreams(IRIS, [hole, a.upstream])
            statuses = Counter()
            for _ in range(20):
                answer = await client.post("/endpoints/iris/v2/models/iris-model/infer", json=INFER)
                statuses[answer.status_code] += 1
                if answer.status_code == 502:
                    assert "replica black-hole failed" in answer.json()["error"]
            assert swallowed  # the seed sends some requests to the black hole
            assert statuses == {502: len(swallowed), 200: 20 - len(swallowed)}
            assert a.received()["infer"] == 20 - len(swallowed)  # none of those sent again
            assert gateway.traffic("default", "iris").retries == 0

    run(scenario())


def test_retry_unanswered_when_asked(fresh: list[Replica]) -> None:
    a, _ = fresh

    async def scenario() -> None:
        settings = GatewaySettings(retry_unanswered=True)
        async with (
            black_hole() as (hole, swallowed),
            running_gateway(settings) as (gateway, client),
        ):
            gateway.set_upstreams(IRIS, [hole, a.upstream])
            answers = [
                await client.post("/endpoints/iris/v2/models/iris-model/infer", json=INFER)
                for _ in range(10)
            ]
            assert [r.status_code for r in answers] == [200] * 10
            assert swallowed
            assert a.received()["infer"] == 10

    run(scenario())


def test_full_queue_is_503_with_retry_after(fresh: list[Replica]) -> None:
    a, _ = fresh

    async def scenario() -> None:
        settings = GatewaySettings(
            max_outstanding_per_upstream=1, queue_length=1, retry_after_seconds=2
        )
        async with running_gateway(settings) as (gateway, client):
            gateway.set_upstreams(IRIS, [a.upstream])
            first = asyncio.ensure_future(client.get("/endpoints/iris/slow?seconds=0.5"))
            second = asyncio.ensure_future(client.get("/endpoints/iris/slow?seconds=0.1"))
            while gateway.traffic("default", "iris").concurrency < 2:
                await SYSTEM_CLOCK.sleep(0.005)
            assert gateway.traffic("default", "iris").queued == 1
            refused = await client.get("/endpoints/iris/slow?seconds=0.1")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "2"
            assert "overloaded" in refused.json()["error"]
            assert (await first).status_code == 200
            assert (await second).status_code == 200
            traffic = gateway.traffic("default", "iris")
            assert (traffic.rejected, traffic.errors, traffic.completions) == (1, 1, 3)

    run(scenario())


def test_held_at_zero_then_served_when_a_replica_is_added(fresh: list[Replica]) -> None:
    a, _ = fresh

    async def scenario() -> None:
        async with running_gateway() as (gateway, client):
            demands: list[tuple[str, str]] = []

            def on_demand(namespace: str, endpoint: str) -> None:
                demands.append((namespace, endpoint))
                # as a controller would: start a replica, then add it once ready
                asyncio.get_running_loop().call_later(
                    0.2, gateway.set_upstreams, IRIS, [a.upstream]
                )

            gateway.on_demand = on_demand
            gateway.set_upstreams(IRIS, [])
            began = SYSTEM_CLOCK.now()
            answers = await asyncio.gather(
                *(client.post("/v2/models/iris-model/infer", json=INFER) for _ in range(5))
            )
            waited = SYSTEM_CLOCK.now() - began
            assert [r.status_code for r in answers] == [200] * 5
            assert demands == [("default", "iris")]
            assert 0.2 <= waited < 1.0

    run(scenario())


def test_hold_timeout_is_503_with_retry_after() -> None:
    async def scenario() -> None:
        settings = GatewaySettings(hold_timeout=0.3)
        async with running_gateway(settings) as (gateway, client):
            gateway.set_upstreams(IRIS, [])
            began = SYSTEM_CLOCK.now()
            answer = await client.get("/endpoints/iris/v2/health/ready")
            waited = SYSTEM_CLOCK.now() - began
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "1"
            assert answer.json() == {
                "error": "endpoint 'iris' has no ready replica: none became ready within 0.3 s"
            }
            assert 0.3 <= waited < 0.6

    run(scenario())


def test_removed_replica_finishes_in_flight_requests(fresh: list[Replica]) -> None:
    a, b = fresh

    async def scenario() -> None:
        async with running_gateway() as (gateway, client):
            gateway.set_upstreams(IRIS, [a.upstream])
            slow = [
                asyncio.ensure_future(client.get("/endpoints/iris/slow?seconds=0.5"))
                for _ in range(3)
            ]
            while gateway.in_flight("default", "iris", "replica-a") < 3:
                await SYSTEM_CLOCK.sleep(0.005)
            gateway.set_upstreams(IRIS, [b.upstream])  # a leaves rotation before it drains
            assert gateway.in_flight("default", "iris", "replica-a") == 3
            meanwhile = [await client.get("/endpoints/iris/echo/x") for _ in range(5)]
            assert {r.json()["replica"] for r in meanwhile} == {"replica-b"}
            assert not await gateway.wait_drained("default", "iris", "replica-a", timeout=0.05)
            assert await gateway.wait_drained("default", "iris", "replica-a", timeout=5)
            answers = await asyncio.gather(*slow)
            assert [(r.status_code, r.json()["replica"]) for r in answers] == [
                (200, "replica-a")
            ] * 3
            assert gateway.in_flight("default", "iris") == 0
            snapshot = gateway.traffic("default", "iris")
            assert snapshot.upstream_in_flight == {"replica-b": 0}

    run(scenario())


def test_slow_replica_is_504_and_a_client_leaving_is_499(fresh: list[Replica]) -> None:
    a, _ = fresh

    async def scenario() -> None:
        async with running_gateway(GatewaySettings(upstream_timeout=0.2)) as (gateway, client):
            gateway.set_upstreams(IRIS, [a.upstream])
            late = await client.get("/endpoints/iris/slow?seconds=1")
            assert late.status_code == 504
            assert late.json() == {"error": "replica replica-a did not answer within 0.2 s"}

            host, port = gateway.address
            _, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /endpoints/iris/slow?seconds=0.1 HTTP/1.1\r\nHost: g\r\n\r\n")
            while not gateway.in_flight("default", "iris"):
                await SYSTEM_CLOCK.sleep(0.005)
            writer.close()
            while gateway.in_flight("default", "iris"):
                await SYSTEM_CLOCK.sleep(0.005)
            assert (await client.get("/endpoints/iris/echo/x")).status_code == 200
            statuses = gateway.traffic("default", "iris")
            assert (statuses.completions, statuses.errors) == (3, 1)
            metrics = (await client.get("/metrics")).text
            for code in (504, 499, 200):
                assert f'code="{code}",endpoint="iris",namespace="default"}} 1.0' in metrics
        with pytest.raises(ValueError, match="not HOST:PORT"):
            gateway.set_upstreams(IRIS, [Upstream("bad", "nowhere")])
        assert gateway.traffic("default", "iris").upstreams == 1  # unchanged

    run(scenario())


def test_removing_a_route(fresh: list[Replica]) -> None:
    a, _ = fresh

    async def scenario() -> None:
        async with running_gateway() as (gateway, client):
            gateway.set_upstreams(IRIS, [a.upstream])
            assert (await client.get("/endpoints/iris/echo/x")).status_code == 200
            gateway.remove_route("default", "iris")
            assert (await client.get("/endpoints/iris/echo/x")).status_code == 404
            assert gateway.in_flight("default", "iris") == 0
            with pytest.raises(NotFoundError, match="call set_upstreams first"):
                gateway.traffic("default", "iris")

    run(scenario())


def test_unix_socket_replica(tmp_path: Path) -> None:
    replica = Replica("replica-uds", uds=tmp_path / "r.sock")
    try:

        async def scenario() -> None:
            async with running_gateway() as (gateway, client):
                gateway.set_upstreams(IRIS, [replica.upstream])
                answer = await client.post("/endpoints/iris/v2/models/iris-model/infer", json=INFER)
                assert answer.json()["id"] == "replica-uds"

        run(scenario())
    finally:
        replica.stop()


def test_health_metrics_and_traffic(fresh: list[Replica]) -> None:
    a, _ = fresh

    async def scenario() -> None:
        async with running_gateway() as (gateway, client):
            gateway.set_upstreams(IRIS, [a.upstream])
            before = gateway.traffic("default", "iris")
            for _ in range(4):
                await client.post("/endpoints/iris/v2/models/iris-model/infer", json=INFER)
            await client.get("/endpoints/iris/status/500")
            await client.get("/nowhere")
            health = await client.get("/healthz")
            assert health.json() == {"status": "ok"}
            window = gateway.traffic("default", "iris").since(before)
            assert (window.arrivals, window.completions, window.errors) == (5, 5, 1)
            assert window.latency_percentile(50) is not None
            metrics = (await client.get("/metrics")).text.splitlines()
            iris = 'endpoint="iris",namespace="default"'
            for line in [
                f'ebbtide_gateway_requests_total{{code="200",{iris}}} 4.0',
                f'ebbtide_gateway_requests_total{{code="500",{iris}}} 1.0',
                'ebbtide_gateway_requests_total{code="404",endpoint="",namespace=""} 1.0',
                f"ebbtide_gateway_request_duration_seconds_count{{{iris}}} 5.0",
                f"ebbtide_gateway_in_flight_requests{{{iris}}} 0.0",
                f"ebbtide_gateway_queued_requests{{{iris}}} 0.0",
                f"ebbtide_gateway_upstreams{{{iris}}} 1.0",
                f"ebbtide_gateway_retries_total{{{iris}}} 0.0",
            ]:
                assert line in metrics

    run(scenario())


def test_stop_answers_held_requests_and_closes_connections() -> None:
    async def scenario() -> None:
        async with running_gateway() as (gateway, client):
            gateway.set_upstreams(IRIS, [])
            held = asyncio.ensure_future(client.get("/endpoints/iris/x"))
            while gateway.traffic("default", "iris").queued < 1:
                await SYSTEM_CLOCK.sleep(0.005)
            await gateway.stop(grace=1.0)
            answer = await held
            assert answer.status_code == 503
            assert answer.json() == {"error": "the gateway is shutting down"}
            with pytest.raises(httpx.ConnectError):
                await client.get("/healthz")

    run(scenario())
