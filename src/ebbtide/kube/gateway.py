"""The gateway in a Kubernetes cluster: the same `Gateway` as locally, fed routes by a watch.

Locally a control plane feeds each gateway worker its routes over a unix channel
(`ebbtide.gateway.service`). In a cluster, `KubernetesRouteSource` lists and watches
InferenceEndpoint objects (model name and version, hold timeout: the route) and the Endpoints
object of each endpoint's Service (its ready addresses: the upstreams), and sets the gateway's
routes from them. A pod with a deletionTimestamp, or not ready, is not among an Endpoints
object's `addresses`, so it leaves rotation as soon as the watch brings that change (well
within the model server's preStop pause), and its in-flight requests finish.

`GatewayAdmin` serves what the operator's policy reads, on its own port:
`/ebbtide/v1/traffic` (every endpoint's `EndpointReport`, cumulative since `started`),
`/ebbtide/v1/demand?timeout=S` (a long poll that answers as soon as a request waits at zero
replicas), `/healthz` and `/readyz` (ready once the first list of both kinds is applied).

The translation from objects to routes (`desired_routes`, `route_changes`) is pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ebbtide.core.clock import SYSTEM_CLOCK, Clock
from ebbtide.core.errors import KubernetesError
from ebbtide.core.sockets import listen_tcp
from ebbtide.gateway.channel import EndpointReport, RouteEntry
from ebbtide.gateway.gateway import Gateway
from ebbtide.gateway.routes import Route, Upstream
from ebbtide.gateway.settings import GatewaySettings
from ebbtide.kube.cluster import KubernetesCluster
from ebbtide.kube.install import GATEWAY_ADMIN_PORT, GATEWAY_DATA_PORT
from ebbtide.kube.manifests import MODEL_PORT
from ebbtide.spec.models import API_VERSION, PLURAL

log = logging.getLogger("ebbtide.kube.gateway")

DEMAND_TIMEOUT_LIMIT = 300.0
"""The longest `/ebbtide/v1/demand` long poll a client may ask for, in seconds."""
RELIST_BACKOFF = (0.2, 5.0)
"""Seconds before listing again after a failed list or watch: first, and at most."""

Key = tuple[str, str]


# -- pure: objects to routes --------------------------------------------------------------


def _key(item: Mapping[str, Any]) -> Key:
    metadata = item.get("metadata") or {}
    return (str(metadata.get("namespace") or "default"), str(metadata.get("name") or ""))


def route_of(endpoint: Mapping[str, Any]) -> Route | None:
    """The route for an InferenceEndpoint object as the API server returns it, or None for
    one with no model name (the webhook refuses those; the gateway skips them)."""
    namespace, name = _key(endpoint)
    spec = endpoint.get("spec") or {}
    model = spec.get("model") or {}
    if not name or not model.get("name"):
        return None
    zero = (spec.get("autoscaling") or {}).get("scaleToZero")
    hold = None
    if isinstance(zero, Mapping):
        hold = float(zero.get("holdTimeoutSeconds", 30.0))
    return Route(
        namespace, name, str(model["name"]), str(model.get("version", "")), hold_timeout=hold
    )


def upstreams_of(endpoints: Mapping[str, Any] | None) -> tuple[Upstream, ...]:
    """The ready addresses of an Endpoints object, on the model server's port (named `http`,
    else the only one, else `MODEL_PORT`). `notReadyAddresses` are left out, and so is every
    terminating pod: the endpoints controller drops a pod once it has a deletionTimestamp."""
    if not endpoints:
        return ()
    upstreams: dict[str, Upstream] = {}
    for subset in endpoints.get("subsets") or []:
        ports = subset.get("ports") or []
        port = next((p.get("port") for p in ports if p.get("name") == "http"), None)
        if port is None:
            port = ports[0].get("port") if len(ports) == 1 else MODEL_PORT
        for address in subset.get("addresses") or []:
            ip = str(address.get("ip") or "")
            if not ip:
                continue
            host = f"[{ip}]" if ":" in ip else ip
            name = str((address.get("targetRef") or {}).get("name") or ip)
            upstreams[name] = Upstream(name, f"{host}:{port}")
    return tuple(upstreams[name] for name in sorted(upstreams))


def desired_routes(
    endpoints: Mapping[Key, Mapping[str, Any]], addresses: Mapping[Key, Mapping[str, Any]]
) -> dict[Key, RouteEntry]:
    """Every InferenceEndpoint's route with the ready addresses of its Service's Endpoints
    (the Service is named as the endpoint, in its namespace); none while it has no Endpoints
    object (requests are then held, as at zero replicas)."""
    routes: dict[Key, RouteEntry] = {}
    for key, endpoint in endpoints.items():
        route = route_of(endpoint)
        if route is not None:
            routes[key] = RouteEntry(route, upstreams_of(addresses.get(key)))
    return routes


def route_changes(
    current: Mapping[Key, RouteEntry], desired: Mapping[Key, RouteEntry]
) -> tuple[list[RouteEntry], list[Key]]:
    """What to set and what to remove to go from `current` to `desired`."""
    sets = [entry for key, entry in sorted(desired.items()) if current.get(key) != entry]
    removes = sorted(key for key in current if key not in desired)
    return sets, removes


@dataclass
class Mirror:
    """The objects of one watched collection, by (namespace, name), and where the watch is."""

    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    resource_version: str = ""

    def replace(self, listing: Mapping[str, Any]) -> None:
        self.objects = {_key(item): dict(item) for item in listing.get("items") or []}
        self.resource_version = str((listing.get("metadata") or {}).get("resourceVersion", ""))

    def apply(self, event: Mapping[str, Any]) -> bool:
        """Apply one watch event; False for an ERROR event (list again). A BOOKMARK only moves
        the resourceVersion on."""
        kind, item = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            return False
        version = (item.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = str(version)
        if kind in ("ADDED", "MODIFIED"):
            self.objects[_key(item)] = dict(item)
        elif kind == "DELETED":
            self.objects.pop(_key(item), None)
        return True


# -- I/O: the watch -------------------------------------------------------------------------


class KubernetesRouteSource:
    """Keeps a gateway's routes equal to what the cluster says, through list + watch with
    reconnects. `synced` is set once both collections have been listed and applied."""

    def __init__(
        self,
        cluster: KubernetesCluster,
        gateway: Gateway,
        namespaces: Sequence[str] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.cluster = cluster
        self.gateway = gateway
        self.namespaces = list(namespaces)
        self.clock = clock
        self.synced = asyncio.Event()
        self._endpoints = {path: Mirror() for path in self._paths(f"/apis/{API_VERSION}", PLURAL)}
        self._addresses = {path: Mirror() for path in self._paths("/api/v1", "endpoints")}
        self._listed: set[str] = set()
        self._published: dict[Key, RouteEntry] = {}

    def _paths(self, prefix: str, plural: str) -> list[str]:
        if not self.namespaces:
            return [f"{prefix}/{plural}"]
        return [f"{prefix}/namespaces/{namespace}/{plural}" for namespace in self.namespaces]

    async def run(self) -> None:
        """Follow every collection until cancelled."""
        mirrors = {**self._endpoints, **self._addresses}
        await asyncio.gather(*(self._follow(path, mirror) for path, mirror in mirrors.items()))

    async def _follow(self, path: str, mirror: Mirror) -> None:
        backoff = RELIST_BACKOFF[0]
        while True:
            try:
                mirror.replace(await self.cluster.list_collection(path))
                self._listed.add(path)
                self._apply()
                backoff = RELIST_BACKOFF[0]
                while True:  # one watch after another, until one needs a new list
                    expired = False
                    async for event in self.cluster.watch_collection(path, mirror.resource_version):
                        if not mirror.apply(event):
                            expired = True
                            log.info("watch of %s expired: %s", path, event.get("object"))
                            break
                        if event.get("type") != "BOOKMARK":
                            self._apply()
                    if expired:
                        break
            except (KubernetesError, ValueError) as error:
                log.warning("%s; listing %s again in %.1f s", error, path, backoff)
                await self.clock.sleep(backoff)
                backoff = min(backoff * 2, RELIST_BACKOFF[1])

    def _apply(self) -> None:
        endpoints = {k: v for m in self._endpoints.values() for k, v in m.objects.items()}
        addresses = {k: v for m in self._addresses.values() for k, v in m.objects.items()}
        desired = desired_routes(endpoints, addresses)
        sets, removes = route_changes(self._published, desired)
        for entry in sets:
            try:
                self.gateway.set_upstreams(entry.route, entry.upstreams)
            except ValueError as error:
                log.warning("not routing %s/%s: %s", *entry.route.key, error)
                continue
            log.info(
                "route %s/%s: %s",
                *entry.route.key,
                ", ".join(u.name for u in entry.upstreams) or "no ready pod (holding)",
            )
            self._published[entry.route.key] = entry
        for key in removes:
            self.gateway.remove_route(*key)
            self._published.pop(key, None)
            log.info("route %s/%s removed", *key)
        if not self.synced.is_set() and len(self._listed) == len(self._endpoints) + len(
            self._addresses
        ):
            self.synced.set()


# -- I/O: the admin port --------------------------------------------------------------------


class GatewayAdmin:
    """The gateway's admin HTTP port (aiohttp, as the operator's health server)."""

    def __init__(
        self, gateway: Gateway, name: str, ready: Callable[[], bool], started: float
    ) -> None:
        self.gateway = gateway
        self.name = name
        self.ready = ready
        self.started = started
        self._demand = asyncio.Event()
        self._asked: set[Key] = set()
        self._runner: web.AppRunner | None = None
        gateway.on_demand = self._on_demand

    async def start(self, host: str, port: int) -> int:
        app = web.Application()
        app.router.add_get("/ebbtide/v1/traffic", self._traffic)
        app.router.add_get("/ebbtide/v1/demand", self._long_poll)
        app.router.add_get("/healthz", self._check(lambda: True, "alive"))
        app.router.add_get("/readyz", self._check(self.ready, "ready"))
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def reports(self) -> list[EndpointReport]:
        return [
            EndpointReport.of(
                r.namespace, r.endpoint, self.gateway.traffic(r.namespace, r.endpoint)
            )
            for r in self.gateway.routes()
        ]

    def waiting(self) -> list[dict[str, Any]]:
        """Endpoints with requests held at zero ready pods (or just asked for by one)."""
        found = []
        for report in self.reports():
            key = (report.namespace, report.endpoint)
            if report.upstreams == 0 and (report.queued > 0 or key in self._asked):
                found.append(
                    {"namespace": key[0], "endpoint": key[1], "queued": max(report.queued, 1)}
                )
        return found

    def _on_demand(self, namespace: str, endpoint: str) -> None:
        self._asked.add((namespace, endpoint))
        self._demand.set()

    async def _traffic(self, _: web.Request) -> web.Response:
        reports = [report.to_wire() for report in self.reports()]
        return web.json_response(
            {"gateway": self.name, "started": self.started, "endpoints": reports}
        )

    async def _long_poll(self, request: web.Request) -> web.Response:
        raw = request.query.get("timeout", "30")
        try:
            timeout = float(raw)
        except ValueError:
            timeout = -1.0
        if not 0 <= timeout <= DEMAND_TIMEOUT_LIMIT:
            return web.json_response(
                {
                    "error": f"timeout={raw!r} is not a number of seconds from 0 to "
                    f"{DEMAND_TIMEOUT_LIMIT:g}; e.g. /ebbtide/v1/demand?timeout=30"
                },
                status=400,
            )
        self._asked = {key for key in self._asked if not self.gateway.upstreams(*key)}
        deadline = time.monotonic() + timeout
        while not (waiting := self.waiting()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._demand.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._demand.wait(), remaining)
        return web.json_response({"waiting": waiting})

    @staticmethod
    def _check(
        condition: Callable[[], bool], word: str
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def answer(_: web.Request) -> web.Response:
            if condition():
                return web.Response(text=f"{word}\n")
            return web.Response(text=f"not {word}\n", status=503)

        return answer


# -- the process ------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayConfig:
    """What `ebbtide kube gateway` runs with."""

    host: str = "0.0.0.0"
    port: int = GATEWAY_DATA_PORT
    admin_port: int = GATEWAY_ADMIN_PORT
    namespaces: tuple[str, ...] = ()
    name: str = field(default_factory=socket.gethostname)
    """This gateway's name in traffic reports: the pod's name."""
    sync_timeout: float = 30.0
    """The longest to wait for the first route sync before serving with what is known."""
    drain_seconds: float = 5.0
    """After SIGTERM: keep serving this long (the gateway Service forgets the pod meanwhile),
    then finish in-flight requests within `grace`."""
    grace: float = 30.0


async def serve(config: GatewayConfig) -> None:
    """Run the in-cluster gateway until SIGTERM or SIGINT."""
    try:
        listener = listen_tcp(config.host, config.port)
    except OSError as error:
        raise KubernetesError(
            f"the gateway cannot listen on {config.host}:{config.port}: {error.strerror}; "
            "choose another --port"
        ) from None
    cluster = KubernetesCluster.from_environment()
    gateway = Gateway(
        clock=SYSTEM_CLOCK,
        rng=random.Random(),
        # Inference changes nothing: a request no pod answered a byte of is safe to resend.
        settings=GatewaySettings(retry_unanswered=True),
    )
    source = KubernetesRouteSource(cluster, gateway, config.namespaces)
    admin = GatewayAdmin(gateway, config.name, source.synced.is_set, time.time())
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await admin.start(config.host, config.admin_port)
    following = asyncio.create_task(source.run(), name="gateway-routes")
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(source.synced.wait(), config.sync_timeout)
        await gateway.start(sock=listener)
        log.info("gateway %s serving on %s:%d", config.name, *gateway.address)
        await stopped.wait()
        log.info("stopping: serving %.0f s more, then draining", config.drain_seconds)
        await asyncio.sleep(config.drain_seconds)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await gateway.stop(grace=config.grace)
        await admin.stop()
        await cluster.aclose()
