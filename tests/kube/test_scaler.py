"""The operator's thin scaling loop on the injected clock: a cluster double in memory and a
stand-in for the gateway's admin port (a real HTTP server on 127.0.0.1 serving the contract's
traffic JSON; not the gateway)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from ebbtide.gateway.channel import EndpointReport
from ebbtide.kube.reconcile import ObjectRef
from ebbtide.kube.scaler import Scaler
from ebbtide.testing import FakeClock
from tests.kube.test_scaling import ebbtide_endpoint, pod

NAMESPACE, NAME = "default", "my-model-endpoint"


class ClusterDouble:
    """What the scaling loop reads and writes, in memory, every write recorded."""

    def __init__(self) -> None:
        self.objects: dict[ObjectRef, dict[str, Any]] = {
            ObjectRef("apps/v1", "Deployment", NAMESPACE, NAME): {"spec": {"replicas": 1}},
            ObjectRef.endpoint(NAMESPACE, NAME): {"metadata": {"uid": "u"}, "status": {}},
        }
        self.scaled: list[int] = []
        self.events: list[dict[str, Any]] = []

    async def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        found = self.objects.get(ref)
        return copy.deepcopy(found) if found is not None else None

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [pod("p0")]

    async def pod_metrics(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return []

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        self.objects[ObjectRef("apps/v1", "Deployment", namespace, name)]["spec"]["replicas"] = (
            replicas
        )
        self.scaled.append(replicas)

    async def create_event(self, manifest: Mapping[str, Any]) -> None:
        self.events.append(dict(manifest))

    async def patch_status(self, ref: ObjectRef, status: Mapping[str, Any]) -> None:
        self.objects[ref]["status"].update(status)


@contextlib.asynccontextmanager
async def stand_in() -> AsyncIterator[tuple[str, dict[str, float]]]:
    load = {"in_flight": 0, "arrivals": 0, "seconds": 0.0}

    async def traffic(_: web.Request) -> web.Response:
        report = EndpointReport(
            NAMESPACE,
            NAME,
            in_flight=int(load["in_flight"]),
            arrivals=int(load["arrivals"]),
            concurrency_seconds=load["seconds"],
        )
        body = {"gateway": "stand-in", "started": 1.0, "endpoints": [report.to_wire()]}
        return web.Response(text=json.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_get("/ebbtide/v1/traffic", traffic)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", load
    finally:
        await runner.cleanup()


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0.005)


def advance(clock: FakeClock, load: dict[str, float], seconds: float = 0.25) -> None:
    """Virtual time passes; the stand-in's in-flight integral grows with it, as a gateway's."""
    load["seconds"] += load["in_flight"] * seconds
    clock.advance(seconds)


async def until_scaled(
    cluster: ClusterDouble, clock: FakeClock, load: dict[str, float], ticks: int
) -> None:
    """Let the loop run up to `ticks` sync periods, stopping at its first rescale."""
    for _ in range(ticks):
        await settle()
        advance(clock, load)
        if cluster.scaled:
            return


def test_the_loop_decides_every_sync_period_and_scales_on_load() -> None:
    asyncio.run(loop_decides_and_scales())


async def loop_decides_and_scales() -> None:
    async with stand_in() as (url, load):
        await run_loop(url, load)


async def run_loop(url: str, load: dict[str, float]) -> None:
    cluster, clock = ClusterDouble(), FakeClock(start=100.0)
    scaler = Scaler(cluster, [url], clock=clock)
    try:
        scaler.track((NAMESPACE, NAME), ebbtide_endpoint(), "u")
        for _ in range(4):
            await settle()
            advance(clock, load)
        assert cluster.scaled == []
        status = cluster.objects[ObjectRef.endpoint(NAMESPACE, NAME)]["status"]
        assert status["desiredReplicas"] == 1
        load.update(in_flight=8, arrivals=8)
        await until_scaled(cluster, clock, load, ticks=4)  # one second of virtual time
        assert cluster.scaled
        assert cluster.scaled[0] > 1
        assert [e["reason"] for e in cluster.events] == ["SuccessfulRescale"]
        # Switched to class hpa: the loop stops, nothing more is scaled.
        scaler.track((NAMESPACE, NAME), None, None)
        load.update(in_flight=40, arrivals=48)
        before = list(cluster.scaled)
        for _ in range(4):
            await settle()
            advance(clock, load)
        assert cluster.scaled == before
    finally:
        await scaler.stop()


def test_a_restarted_operator_starts_from_the_limit_the_status_kept() -> None:
    asyncio.run(starts_from_the_kept_limit())


async def starts_from_the_kept_limit() -> None:
    from tests.kube.test_scaling import objective_endpoint

    async with stand_in() as (url, load):
        cluster, clock = ClusterDouble(), FakeClock(start=100.0)
        endpoint = ObjectRef.endpoint(NAMESPACE, NAME)
        # What an earlier operator learned: one request in flight per replica holds the
        # objective. The concurrency target (2 per replica) alone would ask for 2 replicas.
        cluster.objects[endpoint]["status"] = {"objective": {"learnedLimit": 1.0}}
        load.update(in_flight=4, arrivals=4)
        scaler = Scaler(cluster, [url], clock=clock)
        try:
            scaler.track((NAMESPACE, NAME), objective_endpoint(), "u")
            await until_scaled(cluster, clock, load, ticks=8)
            assert cluster.scaled == [4]
            assert cluster.objects[endpoint]["status"]["objective"] == {"learnedLimit": 1.0}
        finally:
            await scaler.stop()
