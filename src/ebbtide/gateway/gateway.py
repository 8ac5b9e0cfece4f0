"""The gateway: one HTTP port in front of every endpoint's replicas.

The controller drives it in-process: `set_upstreams` whenever an endpoint's ready set changes,
`in_flight` to know when a replica taken out of rotation has drained, `traffic` for the
autoscaler's windows, and `on_demand` to hear that requests wait at zero replicas.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ebbtide.core.clock import SYSTEM_CLOCK, Clock
from ebbtide.core.errors import NotFoundError, NotReadyError, OverloadedError
from ebbtide.gateway.balancing import BalancingStrategy, PowerOfTwoChoices
from ebbtide.gateway.client import CLIENT_GONE, ClientConnection, Request
from ebbtide.gateway.endpoint import EndpointState, UpstreamState
from ebbtide.gateway.http1 import (
    CRLF,
    REQUEST_DROP,
    MalformedMessageError,
    forwarded_headers,
)
from ebbtide.gateway.metrics import GatewayCollector
from ebbtide.gateway.routes import Miss, Route, RouteTable, Upstream, parse_address
from ebbtide.gateway.settings import GatewaySettings
from ebbtide.gateway.traffic import TrafficSnapshot
from ebbtide.gateway.upstream import (
    ConnectFailedError,
    UpstreamClosedError,
    UpstreamConnection,
    UpstreamTimeoutError,
)

log = logging.getLogger("ebbtide.gateway")

DemandCallback = Callable[[str, str], None]
"""Called with (namespace, endpoint) when requests wait for an endpoint with no replica."""

HEALTH_PATHS = (b"/healthz", b"/healthz/")
METRICS_PATHS = (b"/metrics", b"/metrics/")


class _NotSentError(Exception):
    """The request did not reach the replica (or may be retried as if it had not)."""


class Gateway:
    """Routes HTTP requests to endpoints' replicas. One instance per control plane."""

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        settings: GatewaySettings | None = None,
        strategy: BalancingStrategy | None = None,
        on_demand: DemandCallback | None = None,
    ) -> None:
        self.settings = settings or GatewaySettings()
        self.on_demand = on_demand
        self.registry = CollectorRegistry(auto_describe=True)
        """The gateway's Prometheus metrics, served at /metrics."""
        self._clock = clock
        self._strategy = strategy or PowerOfTwoChoices(rng or random.Random())
        self._routes: RouteTable[EndpointState] = RouteTable()
        self._unrouted: dict[int, int] = {}
        self._clients: set[ClientConnection] = set()
        self._server: asyncio.Server | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._address: tuple[str, int] | None = None
        self.registry.register(
            GatewayCollector(lambda: [state for _, state in self._routes], lambda: self._unrouted)
        )

    # what the controller calls

    def set_upstreams(self, route: Route, upstreams: Sequence[Upstream]) -> None:
        """Serve `route` with exactly these ready replicas (possibly none: requests are held).

        A replica left out stops getting new requests at once; those it has finish. The route
        is created on first use and its model name and version updated on later ones.
        """
        for upstream in upstreams:
            parse_address(upstream.address)  # a bad address changes nothing
        state = self._routes.get(route.namespace, route.endpoint)
        if state is None:
            state = EndpointState(
                route,
                settings=self.settings,
                strategy=self._strategy,
                clock=self._clock,
                demand=self._demand,
            )
        elif state.route != route:
            state.route = route
        self._routes.put(route, state)  # reindexes names and models
        state.set_upstreams(upstreams)

    def remove_route(self, namespace: str, endpoint: str) -> None:
        """Stop serving an endpoint: waiting requests get 404, in-flight ones finish."""
        state = self._routes.remove(namespace, endpoint)
        if state is not None:
            state.close()

    def routes(self) -> list[Route]:
        return [route for route, _ in self._routes]

    def upstreams(self, namespace: str, endpoint: str) -> list[Upstream]:
        """The endpoint's replicas in rotation (draining ones left out); [] if unknown."""
        state = self._routes.get(namespace, endpoint)
        if state is None:
            return []
        return [s.upstream for s in state.upstream_states() if s.in_rotation]

    def in_flight(self, namespace: str, endpoint: str, upstream: str | None = None) -> int:
        """Requests sent to the endpoint's replicas (or to the named one) and not answered.

        Counts replicas taken out of rotation until their last request is answered, so a
        drain waits for this to reach 0. 0 for an unknown endpoint or replica.
        """
        state = self._routes.get(namespace, endpoint)
        return state.in_flight(upstream) if state is not None else 0

    async def wait_drained(
        self, namespace: str, endpoint: str, upstream: str, timeout: float
    ) -> bool:
        """Wait until `upstream` has no request in flight; False if `timeout` passed first."""
        deadline = self._clock.now() + timeout
        while self.in_flight(namespace, endpoint, upstream):
            remaining = deadline - self._clock.now()
            if remaining <= 0:
                return False
            await self._clock.sleep(min(remaining, 0.01))
        return True

    def traffic(self, namespace: str, endpoint: str) -> TrafficSnapshot:
        """The endpoint's counters now; `later.since(earlier)` gives rates over a window."""
        state = self._routes.get(namespace, endpoint)
        if state is None:
            raise NotFoundError(
                f"the gateway has no route for endpoint {namespace}/{endpoint}: "
                "call set_upstreams first (with no upstreams while none is ready)"
            )
        return state.snapshot(self._clock.now())

    @property
    def address(self) -> tuple[str, int]:
        """The host and port the gateway listens on (useful after starting on port 0)."""
        if self._address is None:
            raise RuntimeError("the gateway is not started")
        return self._address

    async def start(
        self, host: str = "127.0.0.1", port: int = 8080, *, sock: socket.socket | None = None
    ) -> None:
        """Listen on host:port (port 0 picks a free one, see `address`), or on a socket
        already bound and listening."""
        if self._server is not None:
            raise RuntimeError("the gateway is already started")
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(self._new_client, sock=sock, backlog=2048)
        else:
            self._server = await loop.create_server(
                self._new_client, host, port, reuse_address=True, backlog=2048
            )
        bound = self._server.sockets[0].getsockname()
        self._address = (bound[0], bound[1])
        self._housekeeping = loop.create_task(self._keep_house(), name="gateway-housekeeping")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop listening, answer waiting requests with 503, let in-flight ones finish for
        up to `grace` seconds, then close every connection."""
        if self._server is None:
            return
        self._server.close()
        stopping = NotReadyError("the gateway is shutting down")
        for _, state in self._routes:
            state.fail_waiters(stopping)
        for client in list(self._clients):
            client.shut_down()
        deadline = self._clock.now() + grace
        while self._clients and self._clock.now() < deadline:
            await self._clock.sleep(0.01)
        for client in list(self._clients):
            if client.transport is not None:
                client.transport.abort()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            await asyncio.gather(self._housekeeping, return_exceptions=True)
        for _, state in self._routes:
            for upstream in state.upstream_states():
                upstream.pool.close()
        await self._server.wait_closed()
        self._server = self._housekeeping = None

    # plumbing

    def _new_client(self) -> ClientConnection:
        client = ClientConnection(
            self._handle,
            max_head_bytes=self.settings.max_head_bytes,
            max_request_bytes=self.settings.max_request_bytes,
            on_close=self._clients.discard,
        )
        self._clients.add(client)
        return client

    def _demand(self, namespace: str, endpoint: str) -> None:
        if self.on_demand is not None:
            self.on_demand(namespace, endpoint)

    async def _keep_house(self) -> None:
        interval = self.settings.housekeeping_interval
        while True:
            await self._clock.sleep(interval)
            now = self._clock.now()
            for _, state in self._routes:
                state.expire_waiters(now)
                for upstream in state.upstream_states():
                    upstream.pool.expire(now)

    # one request

    async def _handle(self, client: ClientConnection, request: Request) -> None:
        head = request.head
        path = head.target.partition(b"?")[0]
        if path in HEALTH_PATHS:
            client.respond(200, b'{"status":"ok"}')
            return
        if path in METRICS_PATHS:
            client.respond(
                200, generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST.encode()
            )
            return
        found = self._routes.resolve(head.target, head.host)
        if isinstance(found, Miss):
            self._unrouted[404] = self._unrouted.get(404, 0) + 1
            client.respond_error(404, found.message)
            return
        endpoint = found.value
        stats = endpoint.stats
        started = self._clock.now()
        stats.arrive(started)
        status = CLIENT_GONE
        try:
            status = await self._proxy(client, request, endpoint, found.target)
        finally:
            now = self._clock.now()
            stats.complete(now, client.status_seen(status), now - started)

    async def _proxy(
        self, client: ClientConnection, request: Request, endpoint: EndpointState, target: bytes
    ) -> int:
        """Send the request to a replica (another one if it never reached the first)."""
        message = _upstream_request(request, target)
        retry_after = self.settings.retry_after_seconds
        tried: tuple[UpstreamState, ...] = ()
        while True:
            try:
                upstream = endpoint.try_acquire(tried) or await endpoint.acquire(tried)
            except (OverloadedError, NotReadyError) as refusal:
                client.respond_error(503, str(refusal), retry_after)
                return 503
            except NotFoundError as gone:
                client.respond_error(404, str(gone))
                return 404
            try:
                return await self._exchange(client, upstream, message, request.head.method)
            except _NotSentError as failure:
                endpoint.note_connect_failure(upstream, str(failure))
                log.info("retrying a request: replica %s: %s", upstream.name, failure)
                tried = (*tried, upstream)
            finally:
                endpoint.release(upstream)

    async def _exchange(
        self, client: ClientConnection, upstream: UpstreamState, message: bytes, method: bytes
    ) -> int:
        """One request-response exchange with one replica; the answer's status."""
        pool = upstream.pool
        connection = pool.take_idle(self._clock.now())
        if connection is None:
            try:
                connection = await pool.connect()
            except ConnectFailedError as failure:
                raise _NotSentError(str(failure)) from failure
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.settings.upstream_timeout, connection.time_out)
        client.attach(connection)
        try:
            reusable = await connection.send(message, method, client)
        except (UpstreamClosedError, UpstreamTimeoutError, MalformedMessageError) as failure:
            return self._failed(client, upstream, connection, failure)
        except asyncio.CancelledError:
            connection.abort()  # the client left; the rest of this answer has nowhere to go
            raise
        finally:
            timer.cancel()
            client.detach()
        pool.give_back(connection, reusable and upstream.in_rotation, self._clock.now())
        return client.response_status or 502

    def _failed(
        self,
        client: ClientConnection,
        upstream: UpstreamState,
        connection: UpstreamConnection,
        failure: Exception,
    ) -> int:
        connection.abort()
        unanswered = isinstance(failure, UpstreamClosedError) and not failure.answered
        if unanswered and self.settings.retry_unanswered:
            raise _NotSentError(str(failure))
        if client.response_status is not None:
            client.abort()  # part of the answer is out: all the client can learn is a cut
            return 502
        if isinstance(failure, UpstreamTimeoutError):
            timeout = self.settings.upstream_timeout
            client.respond_error(
                504, f"replica {upstream.name} did not answer within {timeout:g} s"
            )
            return 504
        client.respond_error(502, f"replica {upstream.name} failed: {failure}")
        return 502


def _upstream_request(request: Request, target: bytes) -> bytes:
    """The request as sent to a replica: HTTP/1.1, keep-alive, the body framed by length."""
    head = request.head
    body = request.body
    lines = [
        b"%b %b HTTP/1.1\r\n" % (head.method, target),
        forwarded_headers(head.headers, REQUEST_DROP, head.connection_tokens),
    ]
    if body or head.content_length is not None or head.chunked:
        lines.append(b"content-length: %d\r\n" % len(body))
    lines.append(CRLF)
    lines.append(body)
    return b"".join(lines)
